//! Listening TCP sockets from the kernel's `sock_diag` netlink interface (what `ss`
//! uses). Reading `/proc/net/tcp` walks every connection on the machine and costs
//! milliseconds of kernel time; asking sock_diag for listening sockets only costs
//! microseconds, which is what lets the watcher look every 200 ms.
use std::collections::BTreeMap;
use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr};

/// Listening TCP sockets (v4 and v6) by inode, with their port.
pub fn listening_sockets() -> io::Result<BTreeMap<u64, u16>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut found = BTreeMap::new();
    for (family, socket_id) in [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ] {
        dump(&socket, family, socket_id, &mut found)?;
    }
    Ok(found)
}

fn dump(
    socket: &Socket,
    family: u8,
    socket_id: SocketId,
    found: &mut BTreeMap<u64, u16>,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
            socket_id,
        })
        .into(),
    );
    request.finalize();
    let mut buffer = vec![0; request.buffer_len()];
    request.serialize(&mut buffer);
    socket.send(&buffer, 0)?;

    loop {
        let (datagram, _) = socket.recv_from_full()?;
        let mut rest = &datagram[..];
        while !rest.is_empty() {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(rest)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    found.insert(
                        u64::from(response.header.inode),
                        response.header.socket_id.source_port,
                    );
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(error) => {
                    return Err(io::Error::other(format!(
                        "sock_diag refused the dump: {error:?}"
                    )));
                }
                _ => {}
            }
            if length == 0 || length > rest.len() {
                break;
            }
            rest = &rest[length..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_listening_socket_and_forgets_it_once_closed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let found = listening_sockets().unwrap();
        assert!(found.values().any(|&p| p == port), "{found:?}");
        if let Some(v6) = &v6 {
            let port6 = v6.local_addr().unwrap().port();
            assert!(found.values().any(|&p| p == port6), "{found:?}");
        }
        // A connected socket is not listening.
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        assert!(
            !listening_sockets()
                .unwrap()
                .values()
                .any(|&p| p == client_port)
        );
        drop(listener);
        assert!(!listening_sockets().unwrap().values().any(|&p| p == port));
    }
}

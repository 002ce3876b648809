//! A connection to a target's endpoint: TCP to `127.0.0.1:<port>`, or the Unix socket of
//! a server the runner keeps private. WebSockets and the editor's HTTP go over it.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::guard::LocalTarget;
use super::routes::Endpoint;

pub enum LocalStream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// Connects to where `target` is dialled.
pub async fn connect(target: &LocalTarget) -> io::Result<LocalStream> {
    match &target.endpoint {
        Endpoint::Loopback | Endpoint::LoopbackWithCookie(_) => {
            let stream = TcpStream::connect(("127.0.0.1", target.port)).await?;
            stream.set_nodelay(true)?;
            Ok(LocalStream::Tcp(stream))
        }
        #[cfg(unix)]
        Endpoint::UnixSocket(path) => Ok(LocalStream::Unix(
            tokio::net::UnixStream::connect(path).await?,
        )),
    }
}

impl AsyncRead for LocalStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LocalStream::Tcp(stream) => Pin::new(stream).poll_read(context, buf),
            #[cfg(unix)]
            LocalStream::Unix(stream) => Pin::new(stream).poll_read(context, buf),
        }
    }
}

impl AsyncWrite for LocalStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LocalStream::Tcp(stream) => Pin::new(stream).poll_write(context, buf),
            #[cfg(unix)]
            LocalStream::Unix(stream) => Pin::new(stream).poll_write(context, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LocalStream::Tcp(stream) => Pin::new(stream).poll_write_vectored(context, bufs),
            #[cfg(unix)]
            LocalStream::Unix(stream) => Pin::new(stream).poll_write_vectored(context, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            LocalStream::Tcp(stream) => stream.is_write_vectored(),
            #[cfg(unix)]
            LocalStream::Unix(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LocalStream::Tcp(stream) => Pin::new(stream).poll_flush(context),
            #[cfg(unix)]
            LocalStream::Unix(stream) => Pin::new(stream).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LocalStream::Tcp(stream) => Pin::new(stream).poll_shutdown(context),
            #[cfg(unix)]
            LocalStream::Unix(stream) => Pin::new(stream).poll_shutdown(context),
        }
    }
}

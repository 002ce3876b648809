//! A local release feed in the format tauri-plugin-updater reads (`latest.json` with a
//! download URL and a minisign signature per platform) and the update archives it points
//! at, on a loopback port. What it offers can be switched while it runs, to play the
//! release server, an attacker who controls it, or an outage.
//!
//! The archives and signatures are fixtures (`fixtures/`, made by `fixtures/make.sh` with
//! the pinned Tauri CLI and a key pair that exists only for these tests):
//! [`NEWER`] is newer than the workspace's version, [`OLDER`] older.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The test key pair's public key, as the updater's `pubkey` setting takes it.
pub const TEST_PUBKEY: &str = include_str!("../fixtures/test-only.key.pub");

/// A signed release: its version, archive and the signature made for it.
#[derive(Debug, Clone, Copy)]
pub struct Release {
    pub version: &'static str,
    pub file: &'static str,
    archive: &'static [u8],
    signature: &'static str,
}

/// 0.2.0: the release a 0.1.0 app should update to.
pub const NEWER: Release = Release {
    version: "0.2.0",
    file: "Linzumi_0.2.0_amd64.AppImage.tar.gz",
    archive: include_bytes!("../fixtures/Linzumi_0.2.0_amd64.AppImage.tar.gz"),
    signature: include_str!("../fixtures/Linzumi_0.2.0_amd64.AppImage.tar.gz.sig"),
};

/// 0.0.9: a genuine but outdated release, what a rollback attack serves.
pub const OLDER: Release = Release {
    version: "0.0.9",
    file: "Linzumi_0.0.9_amd64.AppImage.tar.gz",
    archive: include_bytes!("../fixtures/Linzumi_0.0.9_amd64.AppImage.tar.gz"),
    signature: include_str!("../fixtures/Linzumi_0.0.9_amd64.AppImage.tar.gz.sig"),
};

/// The content of the AppImage inside [`NEWER`]'s archive.
pub const NEWER_APPIMAGE: &str = "#!/bin/sh\necho \"Linzumi 0.2.0 (test update)\"\n";

/// What the feed answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// [`NEWER`], as released.
    Newer,
    /// [`NEWER`]'s archive with [`OLDER`]'s signature: the archive was swapped.
    BadSignature,
    /// [`OLDER`], announced as what it is.
    Downgrade,
    /// [`OLDER`]'s genuine archive and signature announced as 0.3.0: a rollback dressed
    /// up as an update (its signature is bound to 0.0.9).
    OlderAsNewer,
    /// The connection is closed before any answer, as when the server is down.
    Unreachable,
    /// [`NEWER`] as the release workflow publishes it: `latest.json` written by
    /// `scripts/update_feed.py` from a folder holding the bundle and its `.sig`.
    Published,
}

/// [`NEWER`]'s archive under the name of a release bundle, for [`Offer::Published`].
const PUBLISHED_BUNDLE: &str = "Linzumi_0.2.0_amd64.AppImage";

/// The feed `scripts/update_feed.py` writes for [`NEWER`], downloads served from `addr`.
async fn published(addr: SocketAddr) -> std::io::Result<String> {
    let folder = std::env::temp_dir().join(format!(
        "release-feed-{}-{}",
        std::process::id(),
        addr.port()
    ));
    std::fs::create_dir_all(&folder)?;
    std::fs::write(folder.join(PUBLISHED_BUNDLE), NEWER.archive)?;
    std::fs::write(
        folder.join(format!("{PUBLISHED_BUNDLE}.sig")),
        NEWER.signature,
    )?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/update_feed.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&folder)
        .arg(NEWER.version)
        .arg(format!("http://{addr}"))
        .output()
        .await;
    std::fs::remove_dir_all(&folder)?;
    let output = output?;
    if !output.status.success() {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    String::from_utf8(output.stdout).map_err(std::io::Error::other)
}

/// The running feed; it stops when dropped.
pub struct ReleaseFeed {
    addr: SocketAddr,
    offer: Arc<Mutex<Offer>>,
    feed_requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ReleaseFeed {
    /// Serves `offer` on a free loopback port.
    pub async fn start(offer: Offer) -> std::io::Result<ReleaseFeed> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let offer = Arc::new(Mutex::new(offer));
        let feed_requests = Arc::new(AtomicUsize::new(0));
        let (serving, counting) = (offer.clone(), feed_requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let offer = *serving.lock().unwrap_or_else(PoisonError::into_inner);
                let counting = counting.clone();
                tokio::spawn(async move {
                    let _ = answer(stream, addr, offer, &counting).await;
                });
            }
        });
        Ok(ReleaseFeed {
            addr,
            offer,
            feed_requests,
            task,
        })
    }

    /// The feed's URL, for the updater's `endpoints`.
    pub fn url(&self) -> String {
        format!("http://{}/latest.json", self.addr)
    }

    pub fn set(&self, offer: Offer) {
        *self.offer.lock().unwrap_or_else(PoisonError::into_inner) = offer;
    }

    /// How many times the feed was asked for (including refused connections).
    pub fn feed_requests(&self) -> usize {
        self.feed_requests.load(Ordering::SeqCst)
    }
}

impl Drop for ReleaseFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The feed document: every platform the updater may ask for points at one archive.
fn feed(addr: SocketAddr, version: &str, archive: Release, signature: Release) -> String {
    let entry = serde_json::json!({
        "url": format!("http://{addr}/{}", archive.file),
        "signature": signature.signature.trim(),
    });
    let platforms: serde_json::Map<String, serde_json::Value> = [
        "linux-x86_64",
        "linux-aarch64",
        "darwin-x86_64",
        "darwin-aarch64",
        "windows-x86_64",
    ]
    .into_iter()
    .map(|target| (target.to_owned(), entry.clone()))
    .collect();
    serde_json::json!({
        "version": version,
        "notes": format!("Linzumi {version}"),
        "pub_date": "2026-12-01T12:00:00Z",
        "platforms": platforms,
    })
    .to_string()
}

async fn answer(
    mut stream: TcpStream,
    addr: SocketAddr,
    offer: Offer,
    feed_requests: &AtomicUsize,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    if path == "/latest.json" {
        feed_requests.fetch_add(1, Ordering::SeqCst);
    }
    if offer == Offer::Unreachable {
        return Ok(());
    }
    let (status, kind, body): (&str, &str, Vec<u8>) = match path {
        "/latest.json" => {
            let document = match offer {
                Offer::Newer => feed(addr, NEWER.version, NEWER, NEWER),
                Offer::BadSignature => feed(addr, NEWER.version, NEWER, OLDER),
                Offer::Downgrade => feed(addr, OLDER.version, OLDER, OLDER),
                Offer::OlderAsNewer | Offer::Unreachable => feed(addr, "0.3.0", OLDER, OLDER),
                Offer::Published => published(addr).await?,
            };
            ("200 OK", "application/json", document.into_bytes())
        }
        path if path == format!("/{}", NEWER.file) || path == format!("/{PUBLISHED_BUNDLE}") => {
            ("200 OK", "application/octet-stream", NEWER.archive.to_vec())
        }
        path if path == format!("/{}", OLDER.file) => {
            ("200 OK", "application/octet-stream", OLDER.archive.to_vec())
        }
        _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

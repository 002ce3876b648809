//! A 100 MB download through the forward tunnel streams: the process that holds the
//! Kandan test server, the runner and the client never holds the body. Alone in its test
//! binary so nothing else moves this process's resident size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/memory.rs"]
mod memory;
mod support;

use memory::PeakResident;
use support::dev_server::{DevServer, preview_client};
use support::{Harness, RUNNER_ID};

const SIZE: u64 = 100 * 1024 * 1024;
/// Generous for three parties' buffers at 256 KiB windows; buffering the body would
/// add 100 MiB.
const BOUND: u64 = 30 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_megabyte_download_streams_in_bounded_memory() {
    let harness = Harness::new("memory").await;
    let dev = DevServer::start(0);
    let mut runner = harness.start_forwarding(vec![dev.port]).await;
    let client = preview_client(&harness.kandan, RUNNER_ID, dev.port);
    let url = |path: &str| format!("{}{path}", harness.kandan.preview_url(RUNNER_ID, dev.port));
    // Warm up pools and buffers with a smaller transfer first.
    let warm = client.get(url("bytes?size=4000000")).send().await.unwrap();
    assert_eq!(warm.bytes().await.unwrap().len(), 4_000_000);

    let memory = PeakResident::start();

    let mut response = client
        .get(url(&format!("bytes?size={SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(SIZE));
    let mut offset: u64 = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        // The dev server repeats a 64 KiB block of `i % 251`.
        for (i, byte) in chunk.iter().enumerate() {
            let at = offset + i as u64;
            assert_eq!(u64::from(*byte), (at % 65_536) % 251, "byte {at}");
        }
        offset += chunk.len() as u64;
    }
    assert_eq!(offset, SIZE);
    let grew = memory.grew();
    println!(
        "resident size grew {} KiB streaming {SIZE} bytes",
        grew / 1024
    );
    assert!(grew < BOUND, "resident size grew {grew} bytes");
    runner.stop().await;
}

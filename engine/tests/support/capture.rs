//! Captures what the engine writes through `tracing` (what the CLI prints on stderr), for
//! tests that check what a person would see. The subscriber is installed on every thread
//! of a runtime of the test's own rather than process-wide, so tests sharing a process
//! (`cargo test`) do not see each other's lines. As in the CLI, records of the `log` crate
//! (tungstenite, rustls) come through too, and every line is masked by
//! [`linzumi_engine::secrets::MaskingWriter`].
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use linzumi_engine::secrets::MaskingWriter;
use tracing_subscriber::fmt::MakeWriter;

/// Everything written so far, as text.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

pub struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = MaskingWriter<CapturedWriter>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter::new(CapturedWriter(self.0.clone()))
    }
}

/// A multi-threaded runtime whose threads (workers and blocking ones) log through an
/// `EnvFilter` of `filter` into the returned [`Captured`].
pub fn capturing_runtime(filter: &str) -> (tokio::runtime::Runtime, Captured, tracing::Dispatch) {
    // Process-wide, but it only hands `log` records to each thread's own subscriber.
    let _ = tracing_log::LogTracer::init();
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let on_threads = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // Kept for the thread's whole life.
            std::mem::forget(tracing::dispatcher::set_default(&on_threads));
        })
        .build()
        .unwrap();
    (runtime, captured, dispatch)
}

/// Runs `test` on a [`capturing_runtime`]; the calling thread logs there too.
pub fn run_capturing<F: std::future::Future>(
    filter: &str,
    test: impl FnOnce(Captured) -> F,
) -> F::Output {
    let (runtime, captured, dispatch) = capturing_runtime(filter);
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let future = test(captured);
    let output = runtime.block_on(future);
    // Stop the runtime's tasks before the guard goes.
    drop(runtime);
    output
}

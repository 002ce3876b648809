//! This process's resident memory while a test runs: what it grew by at its peak, so a
//! test can show that a transfer or a fault is not buffered.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// This process's resident set size, in bytes (Linux).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// Samples the resident size every 5 ms in a thread until dropped.
pub struct PeakResident {
    baseline: u64,
    peak: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakResident {
    /// Starts sampling; the size now is the baseline.
    pub fn start() -> PeakResident {
        let baseline = resident_bytes();
        let peak = Arc::new(AtomicU64::new(baseline));
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (peak, done) = (peak.clone(), done.clone());
            move || {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(resident_bytes(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        PeakResident {
            baseline,
            peak,
            done,
            thread: Some(thread),
        }
    }

    /// How far above the baseline the highest sample so far was.
    pub fn grew(&self) -> u64 {
        self.peak
            .load(Ordering::Relaxed)
            .saturating_sub(self.baseline)
    }
}

impl Drop for PeakResident {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

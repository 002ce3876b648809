//! Retry schedules for socket reconnects and channel rejoins.
//!
//! The steps are phoenix.js's (`reconnectAfterMs`, `rejoinAfterMs`); on top of them each
//! delay gets ±20 % jitter so that many runners cut off by one server restart do not all
//! come back in the same millisecond.
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    steps: Vec<Duration>,
    after: Duration,
    jitter: f64,
}

/// The fraction by which a delay may be shortened or lengthened at random.
const JITTER: f64 = 0.2;

impl Backoff {
    pub fn new(steps: Vec<Duration>, after: Duration) -> Backoff {
        Backoff {
            steps,
            after,
            jitter: JITTER,
        }
    }

    /// phoenix.js `reconnectAfterMs`: 10, 50, 100, 150, 200, 250, 500, 1000, 2000 ms, then 5 s.
    pub fn reconnect() -> Backoff {
        Backoff::new(
            [10, 50, 100, 150, 200, 250, 500, 1000, 2000]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            Duration::from_secs(5),
        )
    }

    /// phoenix.js `rejoinAfterMs`: 1, 2, 5 s, then 10 s.
    pub fn rejoin() -> Backoff {
        Backoff::new(
            [1000, 2000, 5000]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            Duration::from_secs(10),
        )
    }

    /// Without jitter, for tests that must be exact.
    pub fn without_jitter(mut self) -> Backoff {
        self.jitter = 0.0;
        self
    }

    /// The nominal delay before attempt number `tries` (1-based, as in phoenix.js).
    pub fn nominal(&self, tries: u32) -> Duration {
        let index = tries.saturating_sub(1) as usize;
        self.steps.get(index).copied().unwrap_or(self.after)
    }

    /// The delay to wait, with jitter applied.
    pub fn delay(&self, tries: u32) -> Duration {
        let nominal = self.nominal(tries);
        if self.jitter == 0.0 {
            return nominal;
        }
        let factor = 1.0 + self.jitter * (2.0 * rand::random::<f64>() - 1.0);
        nominal.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(backoff: &Backoff, tries: u32) -> u128 {
        backoff.nominal(tries).as_millis()
    }

    #[test]
    fn reconnect_follows_phoenix_js_then_caps_at_five_seconds() {
        let backoff = Backoff::reconnect();
        let observed: Vec<u128> = (1..=11).map(|tries| millis(&backoff, tries)).collect();
        assert_eq!(
            observed,
            vec![10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000]
        );
    }

    #[test]
    fn rejoin_follows_phoenix_js_then_caps_at_ten_seconds() {
        let backoff = Backoff::rejoin();
        let observed: Vec<u128> = (1..=5).map(|tries| millis(&backoff, tries)).collect();
        assert_eq!(observed, vec![1000, 2000, 5000, 10_000, 10_000]);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let backoff = Backoff::reconnect();
        for _ in 0..1000 {
            let delay = backoff.delay(8).as_secs_f64();
            assert!((0.8..=1.2).contains(&delay), "{delay}");
        }
    }

    #[test]
    fn jitter_actually_varies() {
        let backoff = Backoff::rejoin();
        let first = backoff.delay(1);
        assert!((0..100).any(|_| backoff.delay(1) != first));
    }

    #[test]
    fn zero_tries_behaves_like_the_first() {
        assert_eq!(Backoff::reconnect().nominal(0), Duration::from_millis(10));
    }
}

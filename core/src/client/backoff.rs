//! Exponential backoff with jitter between retries.

use std::time::Duration;

use rand::Rng;

/// How long to wait before each retry: `base * 2^(retry-1)`, capped at `max`, of which a random
/// half is waived so that clients retrying together spread out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry (before jitter).
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { base: Duration::from_millis(50), max: Duration::from_secs(2) }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << retry.saturating_sub(1).min(16)).min(self.max);
        let half = exp / 2;
        half + half.mul_f64(rand::thread_rng().r#gen::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_is_capped() {
        let b = Backoff { base: Duration::from_millis(100), max: Duration::from_millis(300) };
        for _ in 0..100 {
            let first = b.delay(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let second = b.delay(2);
            assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
            assert!(b.delay(10) <= Duration::from_millis(300));
        }
    }
}

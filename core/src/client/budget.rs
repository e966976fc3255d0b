//! The retry budget: retries (and hedges) may add up to a share of the calls made over a sliding
//! window, plus a small allowance per second, as finagle's and tower's `TpsBudget`.
//!
//! Every call deposits, so a deposit is one atomic add: the clock is read and the window's slots
//! moved on only every [`DEPOSITS_PER_TICK`] deposits and at each withdrawal, where tower's
//! budget takes a lock and reads the clock on every call. Deposits made since the last tick count
//! as made in the slot open then, so they leave the window early, never late: the budget can come
//! out smaller than tower's, not larger.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// How many deposits go by between two readings of the clock.
const DEPOSITS_PER_TICK: usize = 64;
/// How many slots the window is cut into.
const SLOTS: usize = 10;

#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// Every deposit ever made: the one thing a call writes.
    deposits: AtomicUsize,
    slots: Mutex<Slots>,
    slot_length: Duration,
    /// Always available: `min_per_sec` over the window.
    reserve: isize,
    deposit_amount: isize,
    withdraw_amount: isize,
}

/// The balance of the window's closed slots, and what the current one holds so far.
#[derive(Debug)]
struct Slots {
    closed: [isize; SLOTS],
    index: usize,
    opened: Instant,
    /// How many deposits had been made when the current slot opened.
    deposits_before: usize,
    /// What was withdrawn since the current slot opened.
    withdrawn: isize,
}

impl Slots {
    /// The balance of the current slot, with `deposits` made in all.
    fn current(&self, deposits: usize, deposit_amount: isize) -> isize {
        let made = isize::try_from(deposits.wrapping_sub(self.deposits_before)).unwrap_or(isize::MAX);
        made.saturating_mul(deposit_amount).saturating_sub(self.withdrawn)
    }
}

impl RetryBudget {
    /// Retries up to `percent` (0 to 1000, as a fraction: 0.1 is 10 %) of the calls of the last
    /// `window` (1 to 60 s; clamped), plus `min_per_sec`.
    pub(crate) fn new(window: Duration, min_per_sec: u32, percent: f32) -> RetryBudget {
        let window = window.clamp(Duration::from_secs(1), Duration::from_secs(60));
        let percent = if percent.is_finite() { percent.clamp(0.0, 1000.0) } else { 0.0 };
        // Whole amounts: a deposit of 1 against a withdrawal of 1/percent, or of 1000 against
        // 1000/percent above 100 %.
        let (deposit_amount, withdraw_amount) = match percent {
            0.0 => (0, 1),
            p if p <= 1.0 => (1, (1.0 / p) as isize),
            p => (1000, (1000.0 / p) as isize),
        };
        let reserve = isize::try_from(u64::from(min_per_sec) * window.as_secs())
            .unwrap_or(isize::MAX)
            .saturating_mul(withdraw_amount);
        let slots = Slots { closed: [0; SLOTS], index: 0, opened: Instant::now(), deposits_before: 0, withdrawn: 0 };
        RetryBudget {
            deposits: AtomicUsize::new(0),
            slots: Mutex::new(slots),
            slot_length: window / SLOTS as u32,
            reserve,
            deposit_amount,
            withdraw_amount,
        }
    }

    /// Counts one call.
    pub(crate) fn deposit(&self) {
        if self.deposits.fetch_add(1, Ordering::Relaxed) % DEPOSITS_PER_TICK == 0 {
            drop(self.tick());
        }
    }

    /// Takes one retry from the budget; `false` when it has none left.
    pub(crate) fn withdraw(&self) -> bool {
        let mut slots = self.tick();
        let closed = slots.closed.iter().fold(0isize, |sum, slot| sum.saturating_add(*slot));
        let current = slots.current(self.deposits.load(Ordering::Relaxed), self.deposit_amount);
        if current.saturating_add(closed).saturating_add(self.reserve) < self.withdraw_amount {
            return false;
        }
        slots.withdrawn = slots.withdrawn.saturating_add(self.withdraw_amount);
        true
    }

    /// Closes the current slot if its time is over, and empties those the window has left
    /// behind since.
    fn tick(&self) -> MutexGuard<'_, Slots> {
        let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(slots.opened);
        if elapsed < self.slot_length {
            return slots;
        }
        let deposits = self.deposits.load(Ordering::Relaxed);
        let index = slots.index;
        slots.closed[index] = slots.current(deposits, self.deposit_amount);
        let passed = (elapsed.as_nanos() / self.slot_length.as_nanos().max(1)).min(SLOTS as u128) as usize;
        for step in 1..=passed {
            slots.closed[(index + step) % SLOTS] = 0;
        }
        slots.index = (index + passed) % SLOTS;
        slots.opened = now;
        slots.deposits_before = deposits;
        slots.withdrawn = 0;
        slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_share_of_recent_calls_plus_the_reserve() {
        let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.5);
        for _ in 0..10 {
            budget.deposit();
        }
        let granted = (0..10).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 5, "half of 10 calls");
        let reserved = RetryBudget::new(Duration::from_secs(2), 3, 0.0);
        assert_eq!((0..10).filter(|_| reserved.withdraw()).count(), 6, "3 per second over 2 s");
    }

    #[tokio::test(start_paused = true)]
    async fn calls_leave_the_budget_once_out_of_the_window() {
        let budget = RetryBudget::new(Duration::from_secs(1), 0, 1.0);
        budget.deposit();
        budget.deposit();
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(budget.withdraw(), "still within the window");
        tokio::time::advance(Duration::from_millis(1200)).await;
        assert!(!budget.withdraw(), "out of the window");
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_between_ticks_still_count() {
        let budget = RetryBudget::new(Duration::from_secs(10), 0, 1.0);
        for _ in 0..(3 * DEPOSITS_PER_TICK + 5) {
            budget.deposit();
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        let granted = (0..1000).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 3 * DEPOSITS_PER_TICK + 5);
    }

    #[test]
    fn out_of_range_settings_are_clamped_rather_than_panicking() {
        let budget = RetryBudget::new(Duration::ZERO, u32::MAX, f32::NAN);
        assert!(budget.withdraw(), "the reserve of u32::MAX per second is there");
        let generous = RetryBudget::new(Duration::from_secs(3600), 0, 5000.0);
        generous.deposit();
        assert!(generous.withdraw());
    }
}

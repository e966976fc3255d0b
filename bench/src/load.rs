//! The closed loop: a fixed number of calls in flight over one client, a warm-up, then a
//! measured window in which every completed call's latency goes into an HdrHistogram, in
//! nanoseconds: round trips of a dozen microseconds, counted in whole ones, would put a step of
//! 8 % between two neighbouring values.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::procfs;

/// What the load process reports of one measured window.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Measured {
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) client_cpu_us: f64,
    /// The first error seen, to say what failed.
    pub(crate) first_error: Option<String>,
}

/// Latencies from 1 ns to 60 s, to three significant digits.
fn latencies() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap_or_else(|_| unreachable!())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    WarmUp,
    Measure,
    Stop,
}

/// Runs `concurrency` loops of `call` for `warm_up`, then measures for `window`. `on_window`
/// is told when the window opens and closes (the orchestrator reads the server's CPU then).
pub(crate) async fn closed_loop<F, Fut>(
    call: F,
    concurrency: usize,
    warm_up: Duration,
    window: Duration,
    on_window: impl Fn(bool),
) -> Measured
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let phase = Cell::new(Phase::WarmUp);
    let first_error: Cell<Option<String>> = Cell::new(None);
    let errors = Cell::new(0u64);
    let (phase, first_error, errors, call) = (&phase, &first_error, &errors, &call);
    let worker = move || async move {
        let mut histogram = latencies();
        while phase.get() != Phase::Stop {
            let started = Instant::now();
            let result = call().await;
            let measuring = phase.get() == Phase::Measure;
            match result {
                Ok(()) if measuring => {
                    let _ = histogram.record(started.elapsed().as_nanos().max(1) as u64);
                }
                Ok(()) => {}
                Err(e) => {
                    if measuring {
                        errors.set(errors.get() + 1);
                    }
                    let seen = first_error.take();
                    first_error.set(seen.or(Some(e)));
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        histogram
    };
    let timer = async {
        tokio::time::sleep(warm_up).await;
        on_window(true);
        let cpu = procfs::own_cpu();
        let opened = Instant::now();
        phase.set(Phase::Measure);
        tokio::time::sleep(window).await;
        phase.set(Phase::Stop);
        let (seconds, cpu) = (opened.elapsed().as_secs_f64(), procfs::own_cpu() - cpu);
        on_window(false);
        (seconds, cpu)
    };
    let workers = futures::future::join_all((0..concurrency).map(|_| worker()));
    let (histograms, (seconds, cpu)) = futures::join!(workers, timer);
    let mut all = latencies();
    for histogram in &histograms {
        let _ = all.add(histogram);
    }
    let calls = all.len();
    let quantile = |q: f64| if calls == 0 { 0.0 } else { all.value_at_quantile(q) as f64 / 1000.0 };
    Measured {
        calls,
        errors: errors.get(),
        seconds,
        p50_us: quantile(0.5),
        p99_us: quantile(0.99),
        p999_us: quantile(0.999),
        client_cpu_us: cpu.as_secs_f64() * 1e6,
        first_error: first_error.take(),
    }
}

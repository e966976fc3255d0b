//! CPU time and memory of processes, from `/proc`.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time of process `pid` (all its threads).
pub(crate) fn cpu(pid: u32) -> Duration {
    cpu_of(&format!("/proc/{pid}/stat"))
}

/// This process's CPU time.
pub(crate) fn own_cpu() -> Duration {
    cpu_of("/proc/self/stat")
}

fn cpu_of(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after_name.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    let ticks: u64 = fields.iter().sum();
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

/// Resets the peak resident set size of `pid`, so the next reading is the peak since now.
pub(crate) fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// The peak resident set size of `pid` in KiB (`VmHWM`).
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The CPUs this process may run on.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

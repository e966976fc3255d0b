//! What a call does when an attempt fails (rpcx's fail modes).

use std::time::Duration;

/// How a call reacts to a failed attempt. Whatever the mode, a failed attempt is sent again only
/// when it is safe: the error is retryable and either the endpoint is idempotent or the request
/// provably never left the client; and only while the client's retry budget allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// Return the first error.
    Failfast,
    /// Try up to this many other nodes (go-micro's retries; the default, with 1).
    Failover(u32),
    /// Try the same node again, up to this many times.
    Failtry(u32),
    /// Hedge: if the first node has not answered within the delay, send the call to a second
    /// node too; the first answer wins and the other call is cancelled. Only idempotent calls
    /// are hedged; others behave as `Failover(0)` for errors raised before sending.
    Failbackup(Duration),
}

impl Default for FailMode {
    fn default() -> FailMode {
        FailMode::Failover(super::DEFAULT_RETRIES)
    }
}

impl FailMode {
    /// How many attempts may follow the first.
    pub(crate) fn retries(self) -> u32 {
        match self {
            FailMode::Failfast | FailMode::Failbackup(_) => 0,
            FailMode::Failover(n) | FailMode::Failtry(n) => n,
        }
    }
}

//! A stream's flow control for transports that carry calls as frames of their own (NATS, TCP):
//! a sender may have [`STREAM_WINDOW`] messages unconsumed; the receiver grants
//! [`STREAM_GRANT`] more each time it has consumed that many. HTTP/2 transports have their own.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// How many messages one direction of a stream may have unconsumed before the sender waits.
pub const STREAM_WINDOW: u32 = 32;
/// How many more a receiver grants each time it has consumed as many (half the window).
pub const STREAM_GRANT: u32 = STREAM_WINDOW / 2;

/// The sender's credit: one clone where the peer's grants arrive (the call table), one where
/// messages are sent (the sink or reply).
#[derive(Clone, Debug)]
pub struct SendCredit(Arc<Semaphore>);

impl Default for SendCredit {
    fn default() -> SendCredit {
        SendCredit::new()
    }
}

impl SendCredit {
    /// A full window.
    pub fn new() -> SendCredit {
        SendCredit(Arc::new(Semaphore::new(STREAM_WINDOW as usize)))
    }

    /// Waits for one message's credit and uses it; [`Code::Canceled`](crate::Code::Canceled)
    /// once the call ended.
    pub async fn take(&self) -> Result<()> {
        self.0.acquire().await.map_err(|_| Error::canceled("the call ended"))?.forget();
        Ok(())
    }

    /// Adds a peer's grant, at most a window at a time: the number comes from the network, and
    /// a semaphore given more than it can count panics.
    pub fn grant(&self, more: u64) {
        let room = (STREAM_WINDOW as usize).saturating_sub(self.0.available_permits());
        self.0.add_permits(usize::try_from(more).unwrap_or(usize::MAX).min(room));
    }

    /// Ends the stream: a sender waiting for credit is told the call ended.
    pub fn close(&self) {
        self.0.close();
    }
}

/// The receiver's count of consumed messages, which says when to grant more.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecvCredit(u32);

impl RecvCredit {
    /// Counts one consumed message; `Some(STREAM_GRANT)` when the sender is owed that much.
    pub fn consumed(&mut self) -> Option<u32> {
        self.0 = self.0.wrapping_add(1);
        (self.0 % STREAM_GRANT == 0).then_some(STREAM_GRANT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receiver_grants_half_a_window_every_half_window() {
        let mut credit = RecvCredit::default();
        let grants: Vec<u32> = (1..=64).filter_map(|_| credit.consumed()).collect();
        assert_eq!(grants, vec![STREAM_GRANT; 4]);
    }

    #[tokio::test]
    async fn a_grant_from_the_network_never_fills_more_than_a_window() {
        let credit = SendCredit::new();
        credit.grant(u64::MAX);
        assert_eq!(credit.0.available_permits(), STREAM_WINDOW as usize);
        for _ in 0..STREAM_WINDOW {
            credit.take().await.unwrap();
        }
        credit.grant(2_305_843_009_213_693_952);
        assert_eq!(credit.0.available_permits(), STREAM_WINDOW as usize);
        credit.close();
        assert!(credit.take().await.is_err());
    }
}

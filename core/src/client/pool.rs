//! Connections per address: up to `size` multiplexed connections, used in turn, dialled on
//! demand, dropped once closed or idle for longer than the idle TTL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::HashMap;
use tokio::time::Instant;

use crate::error::Result;
use crate::transport::{Connection, Transport};

/// Default connections per address: one, since every transport multiplexes calls.
pub(crate) const DEFAULT_POOL_SIZE: usize = 1;
/// Default time an unused connection is kept.
pub(crate) const DEFAULT_POOL_IDLE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Pooled {
    connection: Arc<dyn Connection>,
    last_used: Instant,
}

/// The connections to one address.
#[derive(Debug, Default)]
struct Entry {
    pooled: Vec<Pooled>,
    /// The connection the last call used.
    turn: usize,
    /// Held while dialling, so that calls arriving together dial once, not once each.
    dialling: Arc<tokio::sync::Mutex<()>>,
}

impl Entry {
    /// The next connection in turn once the pool for this address is full.
    fn next(&mut self, size: usize, idle_ttl: Duration, now: Instant) -> Option<Arc<dyn Connection>> {
        self.pooled.retain(|p| !p.connection.is_closed() && now.duration_since(p.last_used) < idle_ttl);
        if self.pooled.len() < size {
            return None;
        }
        self.turn = if self.turn + 1 < self.pooled.len() { self.turn + 1 } else { 0 };
        let chosen = &mut self.pooled[self.turn];
        chosen.last_used = now;
        Some(chosen.connection.clone())
    }
}

#[derive(Debug)]
pub(crate) struct Pool {
    transport: Arc<dyn Transport>,
    size: usize,
    idle_ttl: Duration,
    connections: Mutex<HashMap<String, Entry>>,
}

impl Pool {
    pub(crate) fn new(transport: Arc<dyn Transport>, size: usize, idle_ttl: Duration) -> Pool {
        Pool { transport, size: size.max(1), idle_ttl, connections: Mutex::default() }
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connection to `address` for a call made at `now`: the next pooled one in turn, or a new
    /// one while the pool for that address is not full. Calls that find it not full wait for one
    /// dial at a time.
    pub(crate) async fn get(&self, address: &str, now: Instant) -> Result<Arc<dyn Connection>> {
        match self.pooled(address, now) {
            Some(connection) => Ok(connection),
            // Boxed: dialling's state would otherwise enlarge every call's future.
            None => Box::pin(self.dial(address)).await,
        }
    }

    /// A pooled connection to `address`, once the pool holds as many as it keeps.
    fn pooled(&self, address: &str, now: Instant) -> Option<Arc<dyn Connection>> {
        self.connections().get_mut(address)?.next(self.size, self.idle_ttl, now)
    }

    /// Dials `address`, one dial at a time per address, unless a connection came meanwhile.
    async fn dial(&self, address: &str) -> Result<Arc<dyn Connection>> {
        let dialling = self.connections().entry(address.to_owned()).or_default().dialling.clone();
        let _dialling = dialling.lock().await;
        if let Some(connection) = self.pooled(address, Instant::now()) {
            return Ok(connection);
        }
        let connection = self.transport.dial(address).await?;
        let mut all = self.connections();
        let entry = all.entry(address.to_owned()).or_default();
        entry.pooled.push(Pooled { connection: connection.clone(), last_used: Instant::now() });
        Ok(connection)
    }

    /// Forgets the connections to `address` so the next call dials again.
    pub(crate) fn evict(&self, address: &str) {
        self.connections().remove(address);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::transport::{Listener, MemoryTransport};

    /// Counts dials.
    #[derive(Debug)]
    struct Counting(MemoryTransport, AtomicUsize);

    #[async_trait]
    impl Transport for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        async fn listen(&self, address: &str) -> Result<Box<dyn Listener>> {
            self.0.listen(address).await
        }
        async fn dial(&self, address: &str) -> Result<Arc<dyn Connection>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.dial(address).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fills_up_to_its_size_then_reuses_and_drops_idle_connections() {
        let transport = Arc::new(Counting(MemoryTransport::new(), AtomicUsize::new(0)));
        let _listener = transport.listen("memory:pool").await.unwrap();
        let pool = Pool::new(transport.clone(), 2, Duration::from_secs(30));
        for _ in 0..10 {
            pool.get("memory:pool", Instant::now()).await.unwrap();
        }
        assert_eq!(transport.1.load(Ordering::SeqCst), 2, "two connections, then reuse");
        tokio::time::advance(Duration::from_secs(31)).await;
        pool.get("memory:pool", Instant::now()).await.unwrap();
        assert_eq!(transport.1.load(Ordering::SeqCst), 3, "idle connections were dropped and one dialled again");
    }

    #[tokio::test]
    async fn calls_arriving_together_dial_once() {
        let transport = Arc::new(Counting(MemoryTransport::new(), AtomicUsize::new(0)));
        let _listener = transport.listen("memory:herd").await.unwrap();
        let pool = Pool::new(transport.clone(), 1, Duration::from_secs(30));
        let gets = (0..256).map(|_| pool.get("memory:herd", Instant::now()));
        let connections = futures::future::try_join_all(gets).await.unwrap();
        assert_eq!(transport.1.load(Ordering::SeqCst), 1, "one dial for 256 calls at once");
        assert!(connections.iter().all(|c| Arc::ptr_eq(c, &connections[0])));
    }
}

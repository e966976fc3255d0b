//! One multiplexed connection per address, dialled on first use and again once it closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::transport::{Connection, Transport};

#[derive(Debug)]
pub(crate) struct Pool {
    transport: Arc<dyn Transport>,
    connections: Mutex<HashMap<String, Arc<dyn Connection>>>,
}

impl Pool {
    pub(crate) fn new(transport: Arc<dyn Transport>) -> Pool {
        Pool { transport, connections: Mutex::default() }
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn Connection>>> {
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) async fn get(&self, address: &str) -> Result<Arc<dyn Connection>> {
        if let Some(conn) = self.connections().get(address).filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        let conn = self.transport.dial(address).await?;
        self.connections().insert(address.to_owned(), conn.clone());
        Ok(conn)
    }

    /// Forgets the connection to `address` so the next call dials again.
    pub(crate) fn evict(&self, address: &str) {
        self.connections().remove(address);
    }
}

//! Key/value pairs that travel with a call (both ways) and with a published message.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Metadata: string keys and values, with keys compared case-insensitively (stored lowercase)
/// so they survive transports that carry them as HTTP headers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(&key.to_ascii_lowercase()).map(String::as_str)
    }

    /// Sets `key` to `value`, returning the value it replaced.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl Into<String>) -> Option<String> {
        self.0.insert(key.as_ref().to_ascii_lowercase(), value.into())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(&key.to_ascii_lowercase())
    }

    /// Copies every pair of `other` into `self`, overwriting keys both have.
    pub fn merge(&mut self, other: &Metadata) {
        for (k, v) in other.iter() {
            self.0.insert(k.to_owned(), v.to_owned());
        }
    }

    /// The pairs, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many pairs there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: AsRef<str>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Metadata {
        let mut md = Metadata::new();
        for (k, v) in iter {
            md.insert(k, v);
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive() {
        let mut md = Metadata::new();
        md.insert("X-Request-Id", "42");
        assert_eq!(md.get("x-request-id"), Some("42"));
        assert_eq!(md.get("X-REQUEST-ID"), Some("42"));
    }
}

//! Key/value pairs that travel with a call (both ways) and with a published message.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Metadata: string keys and values, with keys compared case-insensitively (stored lowercase)
/// so they survive transports that carry them as HTTP headers.
///
/// Kept as pairs sorted by key: a call carries a handful at most, and empty metadata, the
/// common case, costs nothing to make or drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata(Vec<(String, String)>);

/// Orders the stored (lowercase) `stored` against `key` as if `key` were lowercase, without
/// making a lowercase copy of it.
fn compare_key(stored: &str, key: &str) -> Ordering {
    stored.bytes().cmp(key.bytes().map(|b| b.to_ascii_lowercase()))
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(stored, _)| compare_key(stored, key))
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| self.0[i].1.as_str())
    }

    /// Sets `key` to `value`, returning the value it replaced.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl Into<String>) -> Option<String> {
        let key = key.as_ref();
        match self.find(key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value.into())),
            Err(i) => {
                self.0.insert(i, (key.to_ascii_lowercase(), value.into()));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// Copies every pair of `other` into `self`, overwriting keys both have.
    pub fn merge(&mut self, other: &Metadata) {
        for (k, v) in other.iter() {
            self.insert(k, v);
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

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Serialized as a map from key to value.
impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// Read from a map; keys are lowercased as [`insert`](Metadata::insert) does.
impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Metadata, D::Error> {
        let pairs = std::collections::BTreeMap::<String, String>::deserialize(deserializer)?;
        Ok(pairs.into_iter().collect())
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
        assert_eq!(md.insert("x-request-ID", "43"), Some("42".to_owned()));
        assert_eq!(md.len(), 1);
        assert_eq!(md.remove("X-Request-Id"), Some("43".to_owned()));
        assert!(md.is_empty());
    }

    #[test]
    fn pairs_stay_in_key_order_whatever_the_order_of_insertion() {
        let md: Metadata = [("b", "2"), ("C", "3"), ("a", "1")].into_iter().collect();
        assert_eq!(md.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "2"), ("c", "3")]);
        let same: Metadata = [("a", "1"), ("c", "3"), ("b", "2")].into_iter().collect();
        assert_eq!(md, same);
    }

    #[test]
    fn serializes_as_a_map_and_lowercases_keys_read_back() {
        let md: Metadata = [("x-user", "ada"), ("trace", "t-1")].into_iter().collect();
        let json = serde_json::to_string(&md).unwrap();
        assert_eq!(json, r#"{"trace":"t-1","x-user":"ada"}"#);
        let read: Metadata = serde_json::from_str(r#"{"X-User":"ada","trace":"t-1"}"#).unwrap();
        assert_eq!(read, md);
    }
}

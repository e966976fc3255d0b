//! Filters narrow a service's versions and nodes before a strategy picks one.

use std::fmt;
use std::sync::Arc;

use crate::registry::ServiceRecord;

/// A filter over the versions of one service (and their nodes).
#[derive(Clone)]
pub struct Filter(Arc<dyn Fn(Vec<ServiceRecord>) -> Vec<ServiceRecord> + Send + Sync>);

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Filter")
    }
}

impl Filter {
    /// A filter from any function over the service's versions.
    pub fn new(f: impl Fn(Vec<ServiceRecord>) -> Vec<ServiceRecord> + Send + Sync + 'static) -> Filter {
        Filter(Arc::new(f))
    }

    /// Applies the filter.
    pub fn apply(&self, services: Vec<ServiceRecord>) -> Vec<ServiceRecord> {
        (self.0)(services)
    }
}

/// Keeps only the given version.
pub fn version(version: impl Into<String>) -> Filter {
    let version = version.into();
    Filter::new(move |services| services.into_iter().filter(|s| s.version == version).collect())
}

/// Keeps only nodes whose metadata has `key` set to `value`.
pub fn label(key: impl Into<String>, value: impl Into<String>) -> Filter {
    let (key, value) = (key.into(), value.into());
    Filter::new(move |services| {
        services
            .into_iter()
            .map(|mut s| {
                s.nodes.retain(|n| n.metadata.get(&key) == Some(&value));
                s
            })
            .collect()
    })
}

/// Keeps only versions that declare the endpoint `name`.
pub fn endpoint(name: impl Into<String>) -> Filter {
    let name = name.into();
    Filter::new(move |services| services.into_iter().filter(|s| s.endpoints.iter().any(|e| e.name == name)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Endpoint, Node};

    fn svc(version: &str, zone: &str, endpoint: &str) -> ServiceRecord {
        ServiceRecord {
            name: "s".into(),
            version: version.into(),
            endpoints: vec![Endpoint { name: endpoint.into(), ..Endpoint::default() }],
            nodes: vec![Node {
                id: format!("{version}-{zone}"),
                metadata: [("zone".to_owned(), zone.to_owned())].into(),
                ..Node::default()
            }],
            ..ServiceRecord::default()
        }
    }

    #[test]
    fn filters_by_version_label_and_endpoint() {
        let all = vec![svc("1", "a", "S.Get"), svc("2", "b", "S.Put")];
        assert_eq!(version("2").apply(all.clone())[0].version, "2");
        let by_zone = label("zone", "a").apply(all.clone());
        assert_eq!(by_zone.iter().map(|s| s.nodes.len()).sum::<usize>(), 1);
        assert_eq!(endpoint("S.Put").apply(all)[0].version, "2");
    }
}

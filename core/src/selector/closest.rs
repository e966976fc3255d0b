//! The node nearest the client, by great-circle distance (rpcx's geo selector).

use std::sync::Arc;

use rand::Rng;

use super::{SelectOptions, Strategy};
use crate::registry::Node;

/// The node labels holding a node's position, in decimal degrees.
pub const LATITUDE_LABEL: &str = "latitude";
/// See [`LATITUDE_LABEL`].
pub const LONGITUDE_LABEL: &str = "longitude";

/// Sends each call to the node closest to the client's position; nodes without a position are
/// used only when none has one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Closest {
    latitude: f64,
    longitude: f64,
}

impl Closest {
    /// A strategy for a client at `latitude`, `longitude` (decimal degrees).
    pub fn new(latitude: f64, longitude: f64) -> Closest {
        Closest { latitude, longitude }
    }
}

fn position(node: &Node) -> Option<(f64, f64)> {
    let read = |label| node.metadata.get(label).and_then(|v: &String| v.parse::<f64>().ok());
    Some((read(LATITUDE_LABEL)?, read(LONGITUDE_LABEL)?))
}

/// Distance in kilometres between two positions (haversine).
fn distance_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().asin()
}

impl Strategy for Closest {
    fn pick<'a>(&self, _service: &str, nodes: &'a [Arc<Node>], _options: &SelectOptions) -> &'a Arc<Node> {
        let here = (self.latitude, self.longitude);
        nodes
            .iter()
            .filter_map(|n| position(n).map(|p| (distance_km(here, p), n)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, n)| n)
            .unwrap_or_else(|| &nodes[rand::thread_rng().gen_range(0..nodes.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: &str, lat: f64, lon: f64) -> Arc<Node> {
        Arc::new(Node {
            id: id.into(),
            metadata: [(LATITUDE_LABEL.to_owned(), lat.to_string()), (LONGITUDE_LABEL.to_owned(), lon.to_string())]
                .into(),
            ..Node::default()
        })
    }

    #[test]
    fn picks_the_nearest_node() {
        let nodes = vec![at("frankfurt", 50.11, 8.68), at("virginia", 38.03, -78.48), at("singapore", 1.35, 103.82)];
        let from_paris = Closest::new(48.86, 2.35);
        assert_eq!(from_paris.pick("s", &nodes, &SelectOptions::default()).id, "frankfurt");
        let from_tokyo = Closest::new(35.68, 139.69);
        assert_eq!(from_tokyo.pick("s", &nodes, &SelectOptions::default()).id, "singapore");
    }
}

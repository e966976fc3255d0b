//! What every registry checks before it stores a registration.

use crate::error::{Error, Result};
use crate::registry::ServiceRecord;

/// Whether `service` can be registered: it has a name, and every node has an id and an address;
/// otherwise a [`Code::BadRequest`](crate::Code::BadRequest) naming what is missing.
///
/// Call it before storing anything: a registry that writes node by node and checks as it goes
/// leaves the nodes before a bad one registered when it fails.
pub fn check_registration(service: &ServiceRecord) -> Result<()> {
    if service.name.is_empty() {
        return Err(Error::bad_request("a service needs a name to be registered"));
    }
    for node in &service.nodes {
        if node.id.is_empty() {
            return Err(Error::bad_request(format!("node at {:?} has no id", node.address)));
        }
        if node.address.is_empty() {
            return Err(Error::bad_request(format!("node {:?} has no address", node.id)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::Code;
    use crate::registry::Node;

    fn node(id: &str, address: &str) -> Node {
        Node { id: id.to_owned(), address: address.to_owned(), ..Node::default() }
    }

    fn service(name: &str, nodes: Vec<Node>) -> ServiceRecord {
        ServiceRecord { name: name.to_owned(), nodes, ..ServiceRecord::default() }
    }

    #[test]
    fn a_named_service_with_complete_nodes_passes() {
        check_registration(&service("greeter", vec![node("g-1", "127.0.0.1:1"), node("g-2", "127.0.0.1:2")])).unwrap();
        check_registration(&service("greeter", vec![])).unwrap();
    }

    #[test]
    fn what_is_missing_is_named() {
        let cases = [
            (service("", vec![node("g-1", "127.0.0.1:1")]), "a service needs a name to be registered"),
            (
                service("greeter", vec![node("g-1", "127.0.0.1:1"), node("", "127.0.0.1:2")]),
                "node at \"127.0.0.1:2\" has no id",
            ),
            (service("greeter", vec![node("g-1", "")]), "node \"g-1\" has no address"),
        ];
        for (service, missing) in cases {
            let err = check_registration(&service).unwrap_err();
            assert_eq!((err.code, err.detail.as_str()), (Code::BadRequest, missing));
        }
    }
}

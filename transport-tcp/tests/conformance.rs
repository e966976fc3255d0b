//! The TCP transport against the core transport suite, over loopback TCP, over a Unix socket
//! and over TLS.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rmicro_core::testkit::transport::TransportUnderTest;
use rmicro_transport_tcp::{TcpConfig, TcpTransport, TlsConfig};

const MAX_MESSAGE_SIZE: usize = 64 * 1024;

async fn under_test(config: TcpConfig, listen_address: String) -> TransportUnderTest {
    let transport = TcpTransport::connect(config.with_max_message_size(MAX_MESSAGE_SIZE)).await.unwrap();
    TransportUnderTest { transport: Arc::new(transport), listen_address, max_message_size: MAX_MESSAGE_SIZE }
}

mod tcp {
    rmicro_core::transport_conformance!(|| async {
        super::under_test(rmicro_transport_tcp::TcpConfig::default(), "127.0.0.1:0".to_owned()).await
    });
}

mod unix {
    rmicro_core::transport_conformance!(|| async {
        let path = std::env::temp_dir().join(format!("rmicro-tcp-{}.sock", rmicro_core::testkit::unique("conf")));
        super::under_test(rmicro_transport_tcp::TcpConfig::default(), format!("unix:{}", path.display())).await
    });
}

/// A CA, and a certificate for `localhost` it signed with its key (PEM).
fn certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn over_tls() -> TcpConfig {
    let (ca, cert, key) = certificates();
    TcpConfig::default().with_tls(TlsConfig::default().identity(cert, key).trust(ca, "localhost"))
}

mod tls {
    rmicro_core::transport_conformance!(|| async {
        super::under_test(super::over_tls(), "127.0.0.1:0".to_owned()).await
    });
}

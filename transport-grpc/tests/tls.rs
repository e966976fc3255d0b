//! gRPC over TLS: a client trusting the CA calls a TLS server; one that does not trust it, or
//! that speaks plaintext, cannot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use rmicro_core::transport::{CallHead, Transport};
use rmicro_transport_grpc::{GrpcConfig, GrpcTransport, TlsConfig};

/// A CA and a `localhost` certificate it signed: (CA PEM, certificate PEM, key PEM).
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

async fn over_tls(tls: TlsConfig) -> GrpcTransport {
    GrpcTransport::connect(GrpcConfig::default().with_tls(tls)).await.unwrap()
}

async fn echo_once(transport: &GrpcTransport, address: &str) -> rmicro_core::Result<Bytes> {
    let conn = transport.dial(address).await?;
    let mut call = conn
        .open(CallHead {
            service: "echo".into(),
            endpoint: "Echo.Unary".into(),
            content_type: "application/grpc+proto".into(),
            ..CallHead::default()
        })
        .await?;
    call.requests.send(Bytes::from_static(b"over tls")).await?;
    call.requests.close().await?;
    call.responses.recv().await?.ok_or_else(|| rmicro_core::Error::internal("no reply"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_the_ca_calls_a_tls_server() {
    let (ca, cert, key) = certificates();
    let server = over_tls(TlsConfig::default().identity(cert, key)).await;
    let mut listener = server.listen("127.0.0.1:0").await.unwrap();
    let address = listener.address().replace("127.0.0.1", "localhost");
    tokio::spawn(async move {
        while let Some(call) = listener.accept().await {
            let mut call = call;
            let body = call.requests.into_source().recv().await.unwrap().unwrap();
            call.reply.send_header(Default::default()).await.unwrap();
            call.reply.send(body).await.unwrap();
            call.reply.finish(Ok(())).await;
        }
    });

    let trusting = over_tls(TlsConfig::default().trust(ca, "localhost")).await;
    assert_eq!(echo_once(&trusting, &address).await.unwrap(), Bytes::from_static(b"over tls"));

    let (other_ca, _, _) = certificates();
    let mistrusting = over_tls(TlsConfig::default().trust(other_ca, "localhost")).await;
    let refused = echo_once(&mistrusting, &address).await.unwrap_err();
    eprintln!("untrusted CA: {refused}");
    assert_eq!(refused.code, rmicro_core::Code::Unavailable);

    let plaintext = GrpcTransport::connect(GrpcConfig::default()).await.unwrap();
    assert!(echo_once(&plaintext, &address).await.is_err(), "plaintext does not reach a TLS server");
}

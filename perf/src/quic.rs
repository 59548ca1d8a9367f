//! quinn on loopback: the sealed UDP peer. A server and a client endpoint
//! on one tokio runtime, a self-signed certificate from rcgen, rustls on
//! ring, unreliable datagrams (RFC 9221) on one connection.
//!
//! Both endpoints get sockets with the same buffers as every other contender
//! ([`BUFFER`]); the transport's datagram buffers are raised to match, and
//! the initial MTU is 1472 (stt's default datagram size on loopback), so
//! that a 1200-byte datagram fits from the first packet without waiting for
//! path MTU discovery. Congestion control is quinn's default (Cubic).

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;

use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use quinn::{ClientConfig, Connection, Endpoint, EndpointConfig, ServerConfig, TransportConfig};

use crate::common::{big_std_socket, BUFFER};

pub type BoxError = Box<dyn Error + Send + Sync>;

/// A tokio runtime with a worker per core, as the `ws` workload uses.
pub fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn transport() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.initial_mtu(1472)
        .datagram_receive_buffer_size(Some(BUFFER))
        .datagram_send_buffer_size(BUFFER);
    Arc::new(t)
}

/// A connected pair; the server side accepted, the client side dialled.
pub struct QuicPair {
    pub server: Connection,
    pub client: Connection,
    // Kept alive with the connections.
    server_endpoint: Endpoint,
    client_endpoint: Endpoint,
}

impl QuicPair {
    /// Closes both connections and waits until the endpoints are idle.
    pub async fn close(self) {
        self.client.close(0u32.into(), b"done");
        self.server.close(0u32.into(), b"done");
        self.client_endpoint.wait_idle().await;
        self.server_endpoint.wait_idle().await;
    }
}

/// Starts a server and a client endpoint on 127.0.0.1 and connects them.
/// Must run inside a tokio runtime.
pub async fn connect() -> Result<QuicPair, BoxError> {
    connect_via(Ok).await
}

/// As [`connect`], the client dialling `route(server address)` instead of
/// the server itself (a relay in front of it, for instance).
pub async fn connect_via(
    route: impl FnOnce(SocketAddr) -> Result<SocketAddr, BoxError>,
) -> Result<QuicPair, BoxError> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let cert_der: CertificateDer<'static> = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut server_config = ServerConfig::with_single_cert(vec![cert_der.clone()], key)?;
    server_config.transport_config(transport());
    let runtime = Arc::new(quinn::TokioRuntime);
    let server_endpoint = Endpoint::new(
        EndpointConfig::default(),
        Some(server_config),
        big_std_socket(),
        runtime.clone(),
    )?;
    let addr: SocketAddr = server_endpoint.local_addr()?;

    let mut roots = quinn::rustls::RootCertStore::empty();
    roots.add(cert_der)?;
    let mut client_config = ClientConfig::with_root_certificates(Arc::new(roots))?;
    client_config.transport_config(transport());
    let mut client_endpoint =
        Endpoint::new(EndpointConfig::default(), None, big_std_socket(), runtime)?;
    client_endpoint.set_default_client_config(client_config);

    let accepting = {
        let endpoint = server_endpoint.clone();
        tokio::spawn(async move {
            let incoming = endpoint.accept().await.ok_or("server endpoint closed")?;
            Ok::<_, BoxError>(incoming.await?)
        })
    };
    let client = client_endpoint.connect(route(addr)?, "localhost")?.await?;
    let server = accepting.await??;
    Ok(QuicPair {
        server,
        client,
        server_endpoint,
        client_endpoint,
    })
}

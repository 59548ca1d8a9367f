//! TLS for `wss://`, with rustls (ring provider).
//!
//! The server takes a certificate chain and a private key from PEM files; a
//! client verifies servers against the webpki roots (Mozilla's set) or
//! against a CA the application gives. Both sides speak TLS 1.3 and 1.2.
//!
//! `TlsStream` adapts a rustls connection to a *non-blocking* socket:
//! `WouldBlock` passes through unchanged so tungstenite can resume, and the
//! plaintext rustls buffers is bounded so a slow peer shows as backpressure.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what} in {path}: {reason}")]
    Pem {
        /// What was looked for.
        what: &'static str,
        /// The file.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// rustls refused the configuration (e.g. a key that does not match).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from a PEM certificate chain and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1).
pub fn server_config_from_pem_files(
    cert_chain: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let pem_err = |what, path: &Path, reason: String| TlsError::Pem {
        what,
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_chain)
        .map_err(|e| pem_err("certificate chain", cert_chain, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err("certificate chain", cert_chain, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err(
            "certificate chain",
            cert_chain,
            "no CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| pem_err("private key", key, e.to_string()))?;
    server_config(certs, key)
}

/// A server configuration from DER certificates and key (e.g. generated).
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    Ok(Arc::new(config))
}

/// A client configuration trusting the webpki roots (Mozilla's CA set).
pub fn client_config_webpki() -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    client_config(roots)
}

/// A client configuration trusting only the CA certificates in a PEM file.
pub fn client_config_with_ca_file(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| TlsError::Pem {
            what: "CA certificates",
            path: ca.display().to_string(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what: "CA certificates",
            path: ca.display().to_string(),
            reason: e.to_string(),
        })?;
    client_config_with_ca(certs)
}

/// A client configuration trusting only the given CA certificates.
pub fn client_config_with_ca(
    cas: Vec<CertificateDer<'static>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in cas {
        roots.add(c)?;
    }
    Ok(client_config(roots))
}

fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    // The ring provider supports the safe default versions, so this cannot
    // fail.
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3");
    Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
}

/// A rustls connection over a non-blocking stream. See the module docs.
#[derive(Debug)]
pub(crate) struct TlsStream<S> {
    pub(crate) conn: rustls::Connection,
    pub(crate) io: S,
}

/// Plaintext rustls may hold while the socket is busy: beyond it a write
/// reports `WouldBlock`, which tungstenite turns into its own backpressure.
const TLS_BUFFER_LIMIT: usize = 1 << 20;

impl<S: Read + Write> TlsStream<S> {
    pub(crate) fn server(config: Arc<ServerConfig>, io: S) -> Result<Self, rustls::Error> {
        let mut conn = rustls::Connection::Server(ServerConnection::new(config)?);
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(TlsStream { conn, io })
    }

    pub(crate) fn client(
        config: Arc<ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
        io: S,
    ) -> Result<Self, rustls::Error> {
        let mut conn = rustls::Connection::Client(ClientConnection::new(config, server_name)?);
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(TlsStream { conn, io })
    }

    /// Writes out what rustls has queued, until done or the socket blocks.
    fn push_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.io) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Handshake messages may wait to go out before more comes in.
            match self.push_tls() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(&mut self.io) {
                // The peer closed TCP without close_notify.
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {
                    self.conn
                        .process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        match self.push_tls() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if n == 0 && !buf.is_empty() {
            // rustls's buffer is full: the socket is the bottleneck.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.conn.writer().flush()?;
        self.push_tls()?;
        self.io.flush()
    }
}

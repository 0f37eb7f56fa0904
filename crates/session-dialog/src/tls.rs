//! TLS for SIP (RFC 3261 §26.2.1; `sips:` and `;transport=tls`): rustls with its ring
//! provider — no OpenSSL, no C toolchain beyond what ring needs.
//!
//! A [`TlsConfig`] holds what the driver needs for both directions: our certificate chain and
//! key (to accept connections, and to present when a server asks for a client certificate),
//! the roots we trust when we connect (the peer's certificate must chain to one of them and
//! name the host we meant to reach: the URI's host, or its IP address), and whether clients
//! connecting to us must present a certificate of their own.
//!
//! rustls speaks TLS 1.2 and 1.3 only, so a peer must offer one of them: Kamailio 5.6's `tls`
//! module, for one, offers TLS 1.0 alone unless its `tls_method` is set (`TLSv1.2+`), and the
//! handshake then fails as any handshake failure does, as a transport error
//! (`tests/tests/tls_interop.rs` runs calls through it and to baresip).
//!
//! ```
//! use session_dialog::tls::TlsConfig;
//!
//! // Test material made on the spot (rcgen); a deployment reads PEM files instead
//! // (`identity_pem_files`, `trust_pem_file`).
//! let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
//! let config = TlsConfig::builder()
//!     .identity_pem(ca.cert.pem().as_bytes(), ca.signing_key.serialize_pem().as_bytes())
//!     .unwrap()
//!     .trust_pem(ca.cert.pem().as_bytes())
//!     .unwrap()
//!     .build()
//!     .unwrap();
//! assert!(config.accepts_connections());
//! ```

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// PEM text held no certificate, or a malformed one.
    #[error("no usable certificate in the PEM text")]
    NoCertificate,
    /// PEM text held no private key, or a malformed one.
    #[error("no usable private key in the PEM text")]
    NoKey,
    /// Client certificates are required but no root to verify them is trusted.
    #[error("client certificates are required but no root is trusted to verify them")]
    NoClientRoots,
    /// rustls refused the configuration (a key that does not match the certificate, …).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// What the driver uses for TLS: see the module docs. Built with [`TlsConfig::builder`].
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) server: Option<Arc<rustls::ServerConfig>>,
    pub(crate) client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("accepts_connections", &self.accepts_connections())
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// A builder with nothing set: no identity, no trusted roots.
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder::default()
    }

    /// Whether we have an identity to accept TLS connections with.
    pub fn accepts_connections(&self) -> bool {
        self.server.is_some()
    }

    /// The acceptor for incoming connections.
    pub(crate) fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.server.clone().map(tokio_rustls::TlsAcceptor::from)
    }

    /// The connector for outgoing connections.
    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.client.clone())
    }
}

/// Builds a [`TlsConfig`].
pub struct TlsConfigBuilder {
    chain: Vec<CertificateDer<'static>>,
    key: Option<PrivateKeyDer<'static>>,
    roots: RootCertStore,
    require_client_certificates: bool,
}

impl std::fmt::Debug for TlsConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfigBuilder")
            .field("certificates", &self.chain.len())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl Default for TlsConfigBuilder {
    fn default() -> Self {
        Self {
            chain: Vec::new(),
            key: None,
            roots: RootCertStore::empty(),
            require_client_certificates: false,
        }
    }
}

impl TlsConfigBuilder {
    /// Our identity: a certificate chain (ours first) and its private key, in PEM.
    pub fn identity_pem(mut self, chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let chain: Vec<_> = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<_, _>>()
            .map_err(|_| TlsError::NoCertificate)?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        self.chain = chain;
        self.key = Some(PrivateKeyDer::from_pem_slice(key).map_err(|_| TlsError::NoKey)?);
        Ok(self)
    }

    /// [`TlsConfigBuilder::identity_pem`] from files.
    pub fn identity_pem_files(
        self,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let chain = read(chain.as_ref())?;
        let key = read(key.as_ref())?;
        self.identity_pem(&chain, &key)
    }

    /// Trusts the certificates in `pem` as roots: for the servers we connect to, and for the
    /// clients that connect to us when client certificates are required.
    pub fn trust_pem(mut self, pem: &[u8]) -> Result<Self, TlsError> {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|_| TlsError::NoCertificate)?;
            self.roots.add(cert)?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsError::NoCertificate);
        }
        Ok(self)
    }

    /// [`TlsConfigBuilder::trust_pem`] from a file.
    pub fn trust_pem_file(self, path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let pem = read(path.as_ref())?;
        self.trust_pem(&pem)
    }

    /// Whether clients connecting to us must present a certificate that chains to a trusted
    /// root (mutual TLS). Off by default.
    pub fn require_client_certificates(mut self, required: bool) -> Self {
        self.require_client_certificates = required;
        self
    }

    /// The configuration. With an identity we accept connections (and present it when a
    /// server asks for a client certificate); without one we only connect.
    pub fn build(self) -> Result<TlsConfig, TlsError> {
        // ring rather than aws-lc-rs: no C/CMake build for the provider. rustls marks ring's
        // provider deprecated for lacking post-quantum key exchange, which SIP peers do not
        // offer today; the classical suites are the safe defaults.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(self.roots);
        let server = match (&self.key, self.chain.is_empty()) {
            (Some(key), false) => {
                let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()?;
                let builder = if self.require_client_certificates {
                    if roots.is_empty() {
                        return Err(TlsError::NoClientRoots);
                    }
                    let verifier = WebPkiClientVerifier::builder_with_provider(
                        roots.clone(),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|error| TlsError::Verifier(error.to_string()))?;
                    builder.with_client_cert_verifier(verifier)
                } else {
                    builder.with_no_client_auth()
                };
                Some(Arc::new(
                    builder.with_single_cert(self.chain.clone(), key.clone_key())?,
                ))
            }
            _ => None,
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let client = match self.key {
            Some(key) if !self.chain.is_empty() => {
                builder.with_client_auth_cert(self.chain, key)?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(TlsConfig {
            server,
            client: Arc::new(client),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The name a server's certificate must carry: `host` when it is a DNS name or an IP
/// address, else the address we connect to.
pub(crate) fn server_name(host: Option<&str>, address: SocketAddr) -> ServerName<'static> {
    host.and_then(|host| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_owned()).ok()
    })
    .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()))
}

//! mTLS to a service (`[services.NAME.tls]`, rustls with ring): the CA that verifies the service, the
//! BFF's client certificate and key (its identity is `bff.name`), the name verified in the service's
//! certificate. The files are watched: new connections use rotated certificates without a restart.

use bff_config::TlsConfig;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use std::{path::PathBuf, sync::Arc, time::SystemTime};

/// The files of a service's TLS settings, resolved against the config's folder.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TlsFiles {
    ca: PathBuf,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    pub(crate) server_name: Option<String>,
}

impl TlsFiles {
    /// The service's files, as the loader resolved them (against the config file's folder).
    pub(crate) fn new(cfg: &TlsConfig) -> Self {
        Self {
            ca: PathBuf::from(&cfg.ca),
            cert: cfg.cert.as_ref().map(PathBuf::from),
            key: cfg.key.as_ref().map(PathBuf::from),
            server_name: cfg.server_name.clone(),
        }
    }

    /// The files' modification times: a change means new certificates.
    pub(crate) fn stamp(&self) -> Vec<Option<SystemTime>> {
        [Some(&self.ca), self.cert.as_ref(), self.key.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    /// A rustls client config from the files as they are now.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let mut roots = RootCertStore::empty();
        let ca = |source: Cause| TlsError::File {
            key: "tls.ca",
            path: self.ca.clone(),
            source,
        };
        let cas = CertificateDer::pem_file_iter(&self.ca).map_err(|e| ca(Box::new(e)))?;
        for cert in cas {
            let cert = cert.map_err(|e| ca(Box::new(e)))?;
            roots.add(cert).map_err(|e| ca(Box::new(e)))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Versions)?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| TlsError::File {
                        key: "tls.cert",
                        path: cert.clone(),
                        source: Box::new(e),
                    })?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
                    key: "tls.key",
                    path: key.clone(),
                    source: Box::new(e),
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(TlsError::Identity)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(TlsError::Incomplete),
        };
        // ALPN is set by the connector from the service's protocol.
        Ok(config)
    }

    pub(crate) fn server_name(&self) -> Result<Option<ServerName<'static>>, TlsError> {
        self.server_name
            .as_ref()
            .map(|n| {
                ServerName::try_from(n.clone()).map_err(|source| TlsError::ServerName {
                    name: n.clone(),
                    source,
                })
            })
            .transpose()
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A service's `[services.NAME.tls]` that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file that cannot be read or parsed.
    #[error("{key} {}", path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: Cause,
    },
    /// The client certificate and key do not go together.
    #[error("tls.cert/tls.key")]
    Identity(#[source] rustls::Error),
    /// rustls refused its own safe defaults (a build without them).
    #[error("tls protocol versions")]
    Versions(#[source] rustls::Error),
    #[error("tls.cert and tls.key go together")]
    Incomplete,
    #[error("tls.server_name {name:?}")]
    ServerName {
        name: String,
        #[source]
        source: rustls_pki_types::InvalidDnsNameError,
    },
}

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
    pub(crate) fn client_config(&self) -> Result<ClientConfig, String> {
        let mut roots = RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(&self.ca)
            .map_err(|e| format!("tls.ca {}: {e}", self.ca.display()))?;
        for ca in cas {
            let ca = ca.map_err(|e| format!("tls.ca {}: {e}", self.ca.display()))?;
            roots
                .add(ca)
                .map_err(|e| format!("tls.ca {}: {e}", self.ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("tls.cert {}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("tls.key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("tls.cert/tls.key: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("tls.cert and tls.key go together".into()),
        };
        // ALPN is set by the connector from the service's protocol.
        Ok(config)
    }

    pub(crate) fn server_name(&self) -> Result<Option<ServerName<'static>>, String> {
        self.server_name
            .as_ref()
            .map(|n| {
                ServerName::try_from(n.clone()).map_err(|e| format!("tls.server_name {n:?}: {e}"))
            })
            .transpose()
    }
}

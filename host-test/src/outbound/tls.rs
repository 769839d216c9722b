//! TLS settings for talking to a real MISP.
//!
//! Trust starts from the Mozilla root bundle (`webpki-roots`), the same set
//! wasmtime's stock client uses, so a MISP with a public certificate works
//! with no setup. Many MISP instances sit behind an internal CA or a
//! self-signed certificate; `--ca-file` adds the certificates of one PEM
//! file to the trusted set. There is deliberately no way to switch
//! verification off.
//!
//! Limitation: the operating system's trust store is not read; a CA that
//! only the system trusts must be passed with `--ca-file` (for example
//! `/etc/ssl/certs/ca-certificates.crt`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why the TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read or holds no PEM certificate.
    #[error("{}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    /// rustls refused the protocol settings (not expected with the defaults).
    #[error("TLS setup failed: {0}")]
    Setup(#[from] rustls::Error),
}

/// A client configuration trusting the Mozilla roots plus `extra_ca`.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = extra_ca {
        for cert in read_certificates(path)? {
            roots.add(cert).map_err(|err| TlsError::CaFile {
                path: path.to_owned(),
                reason: format!("unusable certificate: {err}"),
            })?;
        }
    }
    // ring rather than aws-lc-rs: wasmtime-wasi-http already depends on ring,
    // and aws-lc-rs would add a CMake build.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::CaFile { path: path.to_owned(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| fail(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| fail(err.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate found".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_builds() {
        client_config(None).unwrap();
    }

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = client_config(Some(&path)).unwrap_err();
        assert_eq!(err.to_string(), format!("{}: no PEM certificate found", path.display()));
    }
}

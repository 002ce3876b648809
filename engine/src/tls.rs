//! TLS trust for every connection to Kandan: the system's roots, plus one extra CA from
//! `KANDAN_TLS_CA_FILE` for development servers (seed `kandanTls.ts`). Verification is
//! never turned off.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub const CA_FILE_ENV: &str = "KANDAN_TLS_CA_FILE";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{CA_FILE_ENV} does not exist: {0}")]
    MissingCaFile(PathBuf),
    #[error("{CA_FILE_ENV} holds no usable PEM certificate: {path}: {reason}")]
    BadCaFile { path: PathBuf, reason: String },
    #[error("no trusted root certificates: the system store is empty or unreadable ({0})")]
    NoRoots(String),
    #[error("TLS configuration failed: {0}")]
    Config(#[from] rustls::Error),
}

/// The extra CA file named by the environment, if any.
pub fn ca_file_from_env() -> Option<PathBuf> {
    ca_file_from(std::env::var_os(CA_FILE_ENV)?)
}

/// The seed trims the value; blank means unset.
fn ca_file_from(value: std::ffi::OsString) -> Option<PathBuf> {
    let path = match value.to_str() {
        Some(text) => PathBuf::from(text.trim()),
        None => PathBuf::from(value),
    };
    (!path.as_os_str().is_empty()).then_some(path)
}

/// A rustls client configuration trusting the system roots and `extra_ca`.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        for certificate in read_ca_file(path)? {
            roots
                .add(certificate)
                .map_err(|error| TlsError::BadCaFile {
                    path: path.to_owned(),
                    reason: error.to_string(),
                })?;
        }
    } else if added == 0 {
        let reasons: Vec<String> = native.errors.iter().map(ToString::to_string).collect();
        return Err(TlsError::NoRoots(reasons.join("; ")));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The configuration for this process: system roots plus `KANDAN_TLS_CA_FILE`.
pub fn client_config_from_env() -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_config(ca_file_from_env().as_deref())
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    if !path.exists() {
        return Err(TlsError::MissingCaFile(path.to_owned()));
    }
    let bad = |reason: String| TlsError::BadCaFile {
        path: path.to_owned(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| bad(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad(error.to_string()))?;
    if certificates.is_empty() {
        return Err(bad("no CERTIFICATE block found".into()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_file_variable_is_trimmed_and_blank_is_unset() {
        assert_eq!(
            ca_file_from(" /etc/ca.pem\n".into()),
            Some(PathBuf::from("/etc/ca.pem"))
        );
        assert_eq!(ca_file_from("  ".into()), None);
        assert_eq!(ca_file_from("".into()), None);
    }

    #[test]
    fn missing_ca_file_is_named() {
        let error = client_config(Some(Path::new("/does/not/exist.pem"))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "KANDAN_TLS_CA_FILE does not exist: /does/not/exist.pem"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("linzumi-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = client_config(Some(&path)).unwrap_err();
        assert!(
            error.to_string().contains("no CERTIFICATE block found"),
            "{error}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

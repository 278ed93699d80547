//! tls owns transport security: rustls configurations for the gRPC and HTTP
//! servers and for gRPC clients, mutual TLS, the Prometheus web-config
//! (`--http.config`), client-certificate identities, and certificate reload.
//!
//! One crypto provider, aws-lc-rs, is used everywhere (object_store already
//! links it); every config is built with it explicitly, so the process-wide
//! default never matters. Certificates, keys and CA bundles are re-read when
//! their content changes ([`Reloading`]): new handshakes use the new material,
//! established connections keep theirs, and a broken new file leaves the old
//! material in use and is logged.

mod client;
mod identity;
mod reload;
mod server;
mod webconfig;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub use client::{ClientTls, ClientTlsOptions, ConnectError, TlsConnector};
pub use identity::{PeerIdentity, parse_identity};
pub use reload::{DEFAULT_RELOAD_INTERVAL, Reloading};
pub use server::{
    ClientAuth, Incoming, PeerInfo, ServerStream, ServerTls, ServerTlsOptions, incoming,
};
pub use webconfig::{BasicAuth, HttpServerSettings, WebConfig};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS configuration problem, naming the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("invalid TLS version {0:?}: use 1.2, 1.3, TLS12 or TLS13")]
    Version(String),
    #[error("{0}")]
    Config(String),
    #[error("{what}: {source}")]
    Rustls { what: String, source: rustls::Error },
}

/// A TLS protocol version rustls can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// Parses Thanos' (`1.2`, `1.3`) and Prometheus' (`TLS12`, `TLS13`)
    /// spellings. TLS 1.0 and 1.1 are accepted as minimums and mean 1.2,
    /// the oldest version rustls speaks.
    pub fn parse(s: &str) -> Result<Self, TlsError> {
        match s.trim().to_ascii_uppercase().as_str() {
            "1.0" | "1.1" | "1.2" | "TLS10" | "TLS11" | "TLS12" | "TLS1.2" | "VERSIONTLS12" => {
                Ok(TlsVersion::Tls12)
            }
            "1.3" | "TLS13" | "TLS1.3" | "VERSIONTLS13" => Ok(TlsVersion::Tls13),
            _ => Err(TlsError::Version(s.to_string())),
        }
    }

    /// Parses an optional setting: empty means `default`.
    pub fn parse_or(s: &str, default: TlsVersion) -> Result<Self, TlsError> {
        if s.trim().is_empty() {
            Ok(default)
        } else {
            Self::parse(s)
        }
    }

    /// The versions in `[min, max]` (max `None` = newest).
    pub fn range(
        min: TlsVersion,
        max: Option<TlsVersion>,
    ) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
        let max = max.unwrap_or(TlsVersion::Tls13);
        if max < min {
            return Err(TlsError::Config(format!(
                "max TLS version {max} is below min version {min}"
            )));
        }
        let mut v = Vec::new();
        if max >= TlsVersion::Tls13 {
            v.push(&rustls::version::TLS13);
        }
        if min <= TlsVersion::Tls12 {
            v.push(&rustls::version::TLS12);
        }
        Ok(v)
    }
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "TLS 1.2",
            TlsVersion::Tls13 => "TLS 1.3",
        })
    }
}

/// The one crypto provider (aws-lc-rs).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// Installs aws-lc-rs as the process default provider, for libraries that
/// build rustls configs without naming one. Idempotent.
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Reads a file for `what` (for error messages).
pub(crate) fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM bundle; at least one.
pub(crate) fn parse_certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what: "private key",
        path: path.to_path_buf(),
        reason: format!("no usable private key: {e}"),
    })
}

/// A root store from a PEM CA bundle.
pub(crate) fn parse_roots(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in parse_certs(what, path, pem)? {
        roots.add(c).map_err(|e| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// Every message of an error's source chain, joined with `: `, repeated
/// messages (wrappers that print their source) left out.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let m = err.to_string();
        if !m.is_empty() && !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thanos_and_prometheus_version_spellings() {
        assert_eq!(TlsVersion::parse("1.3").unwrap(), TlsVersion::Tls13);
        assert_eq!(TlsVersion::parse("TLS13").unwrap(), TlsVersion::Tls13);
        assert_eq!(TlsVersion::parse("1.2").unwrap(), TlsVersion::Tls12);
        assert_eq!(TlsVersion::parse("TLS12").unwrap(), TlsVersion::Tls12);
        assert_eq!(TlsVersion::parse("TLS10").unwrap(), TlsVersion::Tls12);
        assert!(TlsVersion::parse("1.4").is_err());
        assert_eq!(
            TlsVersion::parse_or("", TlsVersion::Tls13).unwrap(),
            TlsVersion::Tls13
        );
        assert_eq!(TlsVersion::range(TlsVersion::Tls13, None).unwrap().len(), 1);
        assert_eq!(TlsVersion::range(TlsVersion::Tls12, None).unwrap().len(), 2);
        assert!(TlsVersion::range(TlsVersion::Tls13, Some(TlsVersion::Tls12)).is_err());
    }
}

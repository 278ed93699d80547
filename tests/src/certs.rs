//! Certificates for the TLS tests, generated with rcgen: certificate authorities (one per simulated cluster),
//! server and client leaves, expired leaves, and files written atomically (rename) the way secret volumes change.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate authority.
pub struct Ca {
    pub name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("name", &self.name).finish()
    }
}

/// A leaf certificate and its key.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

/// How a leaf may be used and how long it is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Valid,
    /// Valid from 2020-01-01 to 2021-01-01.
    Expired,
}

impl Ca {
    /// A new self-signed CA named `name` (its CN).
    pub fn new(name: &str) -> Result<Ca> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.distinguished_name
            .push(DnType::OrganizationName, "Sluice e2e");
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate()?)
            .with_context(|| format!("self-signing CA {name}"))?;
        Ok(Ca {
            name: name.to_owned(),
            issuer,
        })
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for both server and client use, with common name `cn` and SANs `sans` (DNS names, IP addresses, or
    /// `URI:`-prefixed URIs).
    pub fn leaf(&self, cn: &str, sans: &[&str], validity: Validity) -> Result<Leaf> {
        let (uris, names): (Vec<&str>, Vec<&str>) =
            sans.iter().partition(|s| s.starts_with("URI:"));
        let mut p =
            CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
        for u in uris {
            p.subject_alt_names.push(rcgen::SanType::URI(
                u.trim_start_matches("URI:").try_into()?,
            ));
        }
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if validity == Validity::Expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate()?;
        let cert = p
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("signing {cn} with {}", self.name))?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }
}

/// Writes `contents` to `path` by renaming a temporary file over it, so readers see the old or the new file.
pub fn write_atomic(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, contents).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// The files of one leaf: `<dir>/<name>.crt` and `<dir>/<name>.key`.
#[derive(Debug, Clone)]
pub struct LeafFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl LeafFiles {
    /// Writes `leaf` (atomically) as `<dir>/<name>.crt` and `.key`.
    pub fn write(dir: &Path, name: &str, leaf: &Leaf) -> Result<LeafFiles> {
        let f = LeafFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        f.replace(leaf)?;
        Ok(f)
    }

    /// Replaces both files with `leaf` (key first, then certificate).
    pub fn replace(&self, leaf: &Leaf) -> Result<()> {
        write_atomic(&self.key, &leaf.key_pem)?;
        write_atomic(&self.cert, &leaf.cert_pem)
    }

    pub fn cert_str(&self) -> String {
        self.cert.display().to_string()
    }

    pub fn key_str(&self) -> String {
        self.key.display().to_string()
    }
}

/// Writes a CA bundle (the concatenated PEMs of `cas`) to `path`, atomically.
pub fn write_bundle(path: &Path, cas: &[&Ca]) -> Result<()> {
    let pem: String = cas.iter().map(|c| c.pem()).collect();
    write_atomic(path, &pem)
}

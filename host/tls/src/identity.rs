//! The identity in a peer's X.509 certificate: subject common name and the
//! subject alternative names (DNS, URI, IP). A small DER reader over exactly
//! the fields needed; any malformed input is an error, never a panic. The
//! certificate has already been verified by webpki when `verified` is set.

use std::net::IpAddr;

/// Names a peer certificate carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The chain was verified against a configured client CA. Identities of
    /// unverified certificates (`RequestClientCert`, `RequireAnyClientCert`)
    /// are never used for authorization.
    pub verified: bool,
    pub common_name: Option<String>,
    /// Subject O values, in certificate order.
    pub organizations: Vec<String>,
    /// Subject OU values, in certificate order.
    pub organizational_units: Vec<String>,
    pub dns_names: Vec<String>,
    pub uris: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl PeerIdentity {
    /// Whether any SAN URI, SAN DNS name or the CN equals `name` exactly.
    pub fn has_name(&self, name: &str) -> bool {
        self.uris.iter().any(|u| u == name)
            || self.dns_names.iter().any(|d| d == name)
            || self.common_name.as_deref() == Some(name)
    }

    /// Whether any SAN (DNS, URI, IP; e-mail is not kept) equals `name`: the
    /// web-config's `client_allowed_sans` check.
    pub fn has_san(&self, name: &str) -> bool {
        self.uris.iter().any(|u| u == name)
            || self.dns_names.iter().any(|d| d == name)
            || self.ips.iter().any(|ip| ip.to_string() == name)
    }

    /// A short description for logs: `CN=x, DNS=a, URI=b`.
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        if let Some(cn) = &self.common_name {
            v.push(format!("CN={cn}"));
        }
        v.extend(self.dns_names.iter().map(|d| format!("DNS={d}")));
        v.extend(self.uris.iter().map(|u| format!("URI={u}")));
        v.extend(self.ips.iter().map(|i| format!("IP={i}")));
        if v.is_empty() {
            "no names".into()
        } else {
            v.join(", ")
        }
    }
}

/// A DER structure could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed certificate: {0}")]
pub struct DerError(&'static str);

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// One TLV: (tag, contents).
    fn tlv(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let [tag, first, rest @ ..] = self.0 else {
            return Err(DerError("truncated TLV"));
        };
        if tag & 0x1f == 0x1f {
            return Err(DerError("multi-byte tags are not used in certificates"));
        }
        let (len, rest) = if first & 0x80 == 0 {
            (usize::from(*first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(DerError("bad length"));
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return Err(DerError("length beyond the end"));
        }
        let (content, after) = rest.split_at(len);
        self.0 = after;
        Ok((*tag, content))
    }

    fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], DerError> {
        let (t, c) = self.tlv()?;
        if t != tag {
            return Err(DerError(what));
        }
        Ok(c)
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
/// id-at-commonName 2.5.4.3
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// id-at-organizationName 2.5.4.10
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
/// id-at-organizationalUnitName 2.5.4.11
const OID_OU: &[u8] = &[0x55, 0x04, 0x0b];
/// id-ce-subjectAltName 2.5.29.17
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

fn directory_string(tag: u8, v: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, TeletexString, IA5String
        0x0c | 0x13 | 0x14 | 0x16 => Some(String::from_utf8_lossy(v).into_owned()),
        // BMPString: UTF-16BE
        0x1e => {
            let units: Vec<u16> = v
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

/// Reads the subject CN and SANs of a DER certificate.
pub fn parse_identity(der: &[u8], verified: bool) -> Result<PeerIdentity, DerError> {
    let mut id = PeerIdentity {
        verified,
        ..Default::default()
    };
    let cert = Reader(der).expect(SEQUENCE, "certificate is not a SEQUENCE")?;
    let mut tbs = Reader(Reader(cert).expect(SEQUENCE, "tbsCertificate is not a SEQUENCE")?);
    if tbs.peek_tag() == Some(0xa0) {
        tbs.tlv()?; // version
    }
    tbs.tlv()?; // serialNumber
    tbs.expect(SEQUENCE, "signature algorithm")?;
    tbs.expect(SEQUENCE, "issuer")?;
    tbs.expect(SEQUENCE, "validity")?;
    let subject = tbs.expect(SEQUENCE, "subject")?;
    tbs.expect(SEQUENCE, "subjectPublicKeyInfo")?;

    let mut rdns = Reader(subject);
    while !rdns.is_empty() {
        let mut set = Reader(rdns.expect(SET, "RDN is not a SET")?);
        while !set.is_empty() {
            let mut atv = Reader(set.expect(SEQUENCE, "attribute is not a SEQUENCE")?);
            let oid = atv.expect(OID, "attribute type")?;
            let (tag, value) = atv.tlv()?;
            if oid == OID_CN {
                // The last CN wins, as in Go's pkix.Name.
                if let Some(s) = directory_string(tag, value) {
                    id.common_name = Some(s);
                }
            } else if oid == OID_O {
                id.organizations.extend(directory_string(tag, value));
            } else if oid == OID_OU {
                id.organizational_units.extend(directory_string(tag, value));
            }
        }
    }

    while !tbs.is_empty() {
        let (tag, content) = tbs.tlv()?;
        if tag != 0xa3 {
            continue; // issuerUniqueID / subjectUniqueID
        }
        let mut exts = Reader(Reader(content).expect(SEQUENCE, "extensions")?);
        while !exts.is_empty() {
            let mut ext = Reader(exts.expect(SEQUENCE, "extension")?);
            let oid = ext.expect(OID, "extension id")?;
            if ext.peek_tag() == Some(0x01) {
                ext.tlv()?; // critical
            }
            let value = ext.expect(OCTET_STRING, "extension value")?;
            if oid != OID_SAN {
                continue;
            }
            let mut names = Reader(Reader(value).expect(SEQUENCE, "GeneralNames")?);
            while !names.is_empty() {
                let (tag, v) = names.tlv()?;
                match tag {
                    0x82 => id.dns_names.push(String::from_utf8_lossy(v).into_owned()),
                    0x86 => id.uris.push(String::from_utf8_lossy(v).into_owned()),
                    0x87 => match v.len() {
                        4 => id.ips.push(IpAddr::from(
                            <[u8; 4]>::try_from(v).map_err(|_| DerError("IPv4 SAN"))?,
                        )),
                        16 => id.ips.push(IpAddr::from(
                            <[u8; 16]>::try_from(v).map_err(|_| DerError("IPv6 SAN"))?,
                        )),
                        _ => return Err(DerError("IP SAN of odd length")),
                    },
                    _ => {}
                }
            }
        }
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    #[test]
    fn reads_cn_and_sans_of_generated_certificates() {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["store.cluster-a.svc".to_string()]).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "sluice-admin");
        p.distinguished_name
            .push(DnType::OrganizationName, "Sluice");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "team-a");
        p.subject_alt_names.push(SanType::URI(
            "spiffe://cluster-a/ns/monitoring/sa/admin"
                .try_into()
                .unwrap(),
        ));
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.subject_alt_names
            .push(SanType::IpAddress("::1".parse().unwrap()));
        let cert = p.self_signed(&key).unwrap();
        let id = parse_identity(cert.der(), true).unwrap();
        assert_eq!(id.common_name.as_deref(), Some("sluice-admin"));
        assert_eq!(id.organizations, vec!["Sluice"]);
        assert_eq!(id.organizational_units, vec!["team-a"]);
        assert_eq!(id.dns_names, vec!["store.cluster-a.svc"]);
        assert_eq!(id.uris, vec!["spiffe://cluster-a/ns/monitoring/sa/admin"]);
        assert_eq!(id.ips.len(), 2);
        assert!(id.has_name("sluice-admin"));
        assert!(id.has_name("spiffe://cluster-a/ns/monitoring/sa/admin"));
        assert!(id.has_name("store.cluster-a.svc"));
        assert!(!id.has_name("Sluice"));
        assert!(id.has_san("127.0.0.1") && !id.has_san("sluice-admin"));
    }

    #[test]
    fn certificate_without_names() {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        let cert = p.self_signed(&key).unwrap();
        let id = parse_identity(cert.der(), false).unwrap();
        assert_eq!(id, PeerIdentity::default());
        assert_eq!(id.describe(), "no names");
    }

    #[test]
    fn malformed_input_is_an_error() {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["a".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            assert!(parse_identity(&der[..cut], true).is_err(), "cut at {cut}");
        }
        assert!(parse_identity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], true).is_err());
        assert!(parse_identity(b"not der at all", true).is_err());
    }
}

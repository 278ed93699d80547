//! Prometheus' web configuration file (`--http.config`, the exporter-toolkit
//! format): HTTP server TLS with optional client certificates, response
//! headers, HTTP/2 on or off, and basic-auth users with bcrypt hashes.
//! Relative paths are relative to the file's directory, as in Prometheus.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::server::{ClientAuth, ServerTlsOptions};
use super::{TlsError, TlsVersion};

/// `tls_server_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    /// Server certificate (PEM, may include intermediates).
    #[serde(default)]
    cert_file: String,
    /// Server private key.
    #[serde(default)]
    key_file: String,
    /// CA bundle verifying client certificates.
    #[serde(default)]
    client_ca_file: String,
    /// NoClientCert (default), RequestClientCert, RequireAnyClientCert,
    /// VerifyClientCertIfGiven or RequireAndVerifyClientCert.
    #[serde(default)]
    client_auth_type: String,
    /// Oldest TLS version accepted (TLS12 default; TLS13).
    #[serde(default)]
    min_version: String,
    /// Newest TLS version accepted.
    #[serde(default)]
    max_version: String,
    /// Accepted for compatibility; rustls' default suites are used.
    #[serde(default)]
    cipher_suites: Vec<String>,
    /// Accepted for compatibility; rustls' default groups are used.
    #[serde(default)]
    curve_preferences: Vec<String>,
    /// Accepted for compatibility; no effect.
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    /// When set, a verified client certificate must carry one of these SANs.
    #[serde(default)]
    client_allowed_sans: Vec<String>,
}

/// `http_server_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    /// Offer HTTP/2 over TLS (default true).
    #[serde(default)]
    http2: Option<bool>,
    /// Headers added to every response.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    http_server_config: Option<HttpServerConfig>,
    /// user → bcrypt hash.
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

/// A parsed and validated `--http.config`.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// TLS for the HTTP server; `None` = plain HTTP.
    pub tls: Option<ServerTlsOptions>,
    pub http: HttpServerSettings,
    /// Basic-auth users; `None` = no authentication.
    pub basic_auth: Option<std::sync::Arc<BasicAuth>>,
}

/// `http_server_config` settings.
#[derive(Debug, Clone, Default)]
pub struct HttpServerSettings {
    pub headers: BTreeMap<String, String>,
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

impl WebConfig {
    /// Reads and validates the file, reporting every problem.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let text = std::fs::read_to_string(path).map_err(|source| TlsError::Read {
            what: "--http.config",
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir)
            .map_err(|e| TlsError::Config(format!("--http.config {}: {e}", path.display())))
    }

    /// Parses YAML, resolving relative paths against `dir`.
    pub fn parse(yaml: &str, dir: &Path) -> Result<Self, String> {
        let raw: RawWebConfig = if yaml.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?
        };
        let mut problems = Vec::new();
        let http2 = raw
            .http_server_config
            .as_ref()
            .and_then(|h| h.http2)
            .unwrap_or(true);
        let tls = match raw.tls_server_config {
            None => None,
            Some(t) => {
                if t.cert_file.is_empty() {
                    problems.push("tls_server_config: missing cert_file".to_string());
                }
                if t.key_file.is_empty() {
                    problems.push("tls_server_config: missing key_file".to_string());
                }
                let client_auth = ClientAuth::parse(&t.client_auth_type)
                    .map_err(|e| problems.push(e.to_string()))
                    .unwrap_or_default();
                let min_version = TlsVersion::parse_or(&t.min_version, TlsVersion::Tls12)
                    .map_err(|e| problems.push(format!("min_version: {e}")))
                    .unwrap_or(TlsVersion::Tls12);
                let max_version = if t.max_version.trim().is_empty() {
                    None
                } else {
                    TlsVersion::parse(&t.max_version)
                        .map_err(|e| problems.push(format!("max_version: {e}")))
                        .ok()
                };
                if !t.cipher_suites.is_empty() || !t.curve_preferences.is_empty() {
                    tracing::info!(
                        "--http.config: cipher_suites and curve_preferences are ignored; rustls' defaults are used"
                    );
                }
                let _ = t.prefer_server_cipher_suites;
                let mut alpn = Vec::new();
                if http2 {
                    alpn.push(b"h2".to_vec());
                }
                alpn.push(b"http/1.1".to_vec());
                let opts = ServerTlsOptions {
                    what: "HTTP server",
                    cert_file: resolve(dir, &t.cert_file),
                    key_file: resolve(dir, &t.key_file),
                    client_ca_file: (!t.client_ca_file.is_empty())
                        .then(|| resolve(dir, &t.client_ca_file)),
                    client_auth,
                    min_version,
                    max_version,
                    alpn,
                    allowed_sans: t.client_allowed_sans,
                };
                if let Err(e) = opts.validate() {
                    problems.push(e.to_string());
                }
                Some(opts)
            }
        };
        let basic_auth = if raw.basic_auth_users.is_empty() {
            None
        } else {
            for (user, hash) in &raw.basic_auth_users {
                if hash.parse::<bcrypt::HashParts>().is_err() {
                    problems.push(format!(
                        "basic_auth_users: the password of {user:?} is not a bcrypt hash"
                    ));
                }
            }
            Some(std::sync::Arc::new(BasicAuth {
                users: raw.basic_auth_users.into_iter().collect(),
                cache: Mutex::new(HashMap::new()),
            }))
        };
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(WebConfig {
            tls,
            http: HttpServerSettings {
                headers: raw
                    .http_server_config
                    .map(|h| h.headers)
                    .unwrap_or_default(),
            },
            basic_auth,
        })
    }
}

/// Basic-auth users with bcrypt hashes. bcrypt is slow on purpose (tens of
/// milliseconds); a successful check is cached by a hash of user, password
/// and stored hash, as Prometheus does.
pub struct BasicAuth {
    users: HashMap<String, String>,
    cache: Mutex<HashMap<[u8; 32], bool>>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users: Vec<&String> = self.users.keys().collect();
        users.sort();
        f.debug_struct("BasicAuth")
            .field("users", &users)
            .field("hashes", &"<redacted>")
            .finish()
    }
}

/// A valid bcrypt hash to compare against for unknown users, so that the
/// answer takes as long for them as for known ones.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

impl BasicAuth {
    /// Checks an `Authorization: Basic …` header value. Blocking (bcrypt):
    /// call from a blocking thread.
    pub fn check_header(&self, header: Option<&str>) -> bool {
        let Some(encoded) = header.and_then(|h| h.strip_prefix("Basic ")) else {
            return false;
        };
        let Some(decoded) = base64_decode(encoded.trim()) else {
            return false;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, pass)) = decoded.split_once(':') else {
            return false;
        };
        self.check(user, pass)
    }

    /// Checks a user and password. Blocking (bcrypt).
    pub fn check(&self, user: &str, pass: &str) -> bool {
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (DUMMY_HASH, false),
        };
        let mut h = Sha256::new();
        for part in [user, pass, hash] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let key: [u8; 32] = h.finalize().into();
        if let Some(ok) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return *ok && known;
        }
        let ok = bcrypt::verify(pass, hash).unwrap_or(false) && known;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(key, ok);
        ok
    }
}

/// Standard base64 (with or without padding).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_web_config() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let yaml = format!(
            "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: /abs/server.key\n  client_ca_file: ca.crt\n  \
             client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS13\n  client_allowed_sans: [admin]\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  alice: {hash}\n"
        );
        let c = WebConfig::parse(&yaml, Path::new("/etc/sluice")).unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.cert_file, PathBuf::from("/etc/sluice/tls/server.crt"));
        assert_eq!(t.key_file, PathBuf::from("/abs/server.key"));
        assert_eq!(t.client_ca_file, Some(PathBuf::from("/etc/sluice/ca.crt")));
        assert_eq!(t.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(t.min_version, TlsVersion::Tls13);
        assert_eq!(t.alpn, vec![b"http/1.1".to_vec()]);
        assert_eq!(c.http.headers["X-Frame-Options"], "deny");
        let auth = c.basic_auth.unwrap();
        assert!(auth.check("alice", "s3cret"));
        assert!(auth.check("alice", "s3cret"), "cached");
        assert!(!auth.check("alice", "wrong"));
        assert!(!auth.check("bob", "s3cret"));
        // "alice:s3cret"
        assert!(auth.check_header(Some("Basic YWxpY2U6czNjcmV0")));
        assert!(!auth.check_header(Some("Bearer x")));
        assert!(!auth.check_header(None));
        assert!(!format!("{auth:?}").contains("$2"), "hashes are redacted");
    }

    #[test]
    fn reports_every_problem() {
        let e = WebConfig::parse(
            "tls_server_config:\n  client_ca_file: ca.crt\n  client_auth_type: Bogus\n  min_version: TLS14\n\
             basic_auth_users:\n  bob: plaintext\n",
            Path::new("."),
        )
        .unwrap_err();
        for want in [
            "missing cert_file",
            "missing key_file",
            "Bogus",
            "TLS14",
            "not a bcrypt hash",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
        let e = WebConfig::parse(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.contains("without a client auth type"), "{e}");
        assert!(WebConfig::parse("tls_server_config:\n  certfile: a\n", Path::new(".")).is_err());
        let c = WebConfig::parse("", Path::new(".")).unwrap();
        assert!(c.tls.is_none() && c.basic_auth.is_none());
    }

    #[test]
    fn decodes_base64() {
        assert_eq!(base64_decode("YWxpY2U6czNjcmV0").unwrap(), b"alice:s3cret");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("!!").is_none());
        assert!(DUMMY_HASH.parse::<bcrypt::HashParts>().is_ok());
    }
}

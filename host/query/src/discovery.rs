//! discovery turns endpoint specifications into endpoint lists: static
//! `host:port`, `dns+host:port` (A/AAAA), `dnssrv+_grpc._tcp.name` (SRV, then
//! A/AAAA of each target), `dnssrvnoa+` (SRV targets as given), the
//! `--endpoint.sd-config` YAML and Prometheus file SD (`--store.sd-files`).
//! Lists are re-resolved on every refresh, so changes apply without restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// An endpoint address specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSpec {
    /// `host:port` used as given.
    Static(String),
    /// `dns+host:port`: every A/AAAA record of host, with the port.
    Dns { host: String, port: u16 },
    /// `dnssrv+name` (`noa`: `dnssrvnoa+`, targets not resolved further).
    Srv { name: String, noa: bool },
}

/// An endpoint specification could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid endpoint {spec:?}: {reason}")]
pub struct SpecError {
    pub spec: String,
    pub reason: String,
}

fn host_port(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    let port = p.parse().ok()?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    (!h.is_empty()).then(|| (h.to_string(), port))
}

impl EndpointSpec {
    /// Parses Thanos' `--endpoint` syntax.
    pub fn parse(s: &str) -> Result<Self, SpecError> {
        let err = |reason: &str| SpecError {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = s.strip_prefix("dns+") {
            let (host, port) = host_port(rest).ok_or_else(|| err("dns+ needs host:port"))?;
            return Ok(EndpointSpec::Dns { host, port });
        }
        if let Some(rest) = s.strip_prefix("dnssrv+") {
            return if rest.is_empty() {
                Err(err("dnssrv+ needs a name"))
            } else {
                Ok(EndpointSpec::Srv {
                    name: rest.to_string(),
                    noa: false,
                })
            };
        }
        if let Some(rest) = s.strip_prefix("dnssrvnoa+") {
            return if rest.is_empty() {
                Err(err("dnssrvnoa+ needs a name"))
            } else {
                Ok(EndpointSpec::Srv {
                    name: rest.to_string(),
                    noa: true,
                })
            };
        }
        if s.contains('+') {
            return Err(err("unknown scheme (use dns+, dnssrv+ or dnssrvnoa+)"));
        }
        host_port(s).ok_or_else(|| err("expected host:port"))?;
        Ok(EndpointSpec::Static(s.to_string()))
    }
}

/// TLS settings of a client connection (`tls_config` in Thanos' sd-config,
/// Prometheus' `tls_config` field names). Present (and not `enabled: false`)
/// means TLS.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `false` turns TLS off while keeping the settings.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub cert_file: String,
    /// Client private key (PEM).
    #[serde(default)]
    pub key_file: String,
    /// CA bundle verifying the endpoint's certificate (default: system roots).
    #[serde(default)]
    pub ca_file: String,
    /// Name the endpoint's certificate must carry (default: the address's host).
    #[serde(default)]
    pub server_name: String,
    /// Accept any endpoint certificate (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Oldest TLS version: TLS12 (default) or TLS13 (also 1.2, 1.3).
    #[serde(default)]
    pub min_version: String,
    /// Newest TLS version (default: TLS13).
    #[serde(default)]
    pub max_version: String,
}

/// `client_config` of an endpoint.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    #[serde(default)]
    pub server_name: String,
    /// `none` or `snappy`.
    #[serde(default)]
    pub compression: String,
}

impl ClientConfig {
    /// The TLS options this config asks for; `None` = plaintext.
    pub fn tls_options(&self) -> Result<Option<sluice_tls::ClientTlsOptions>, String> {
        use sluice_tls::{ClientTlsOptions, TlsVersion};
        let Some(t) = &self.tls_config else {
            return Ok(None);
        };
        if t.enabled == Some(false) {
            return Ok(None);
        }
        let path = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        let mut problems = Vec::new();
        let min_version = TlsVersion::parse_or(&t.min_version, TlsVersion::Tls12)
            .map_err(|e| problems.push(format!("min_version: {e}")))
            .unwrap_or(TlsVersion::Tls12);
        let max_version = if t.max_version.is_empty() {
            None
        } else {
            TlsVersion::parse(&t.max_version)
                .map_err(|e| problems.push(format!("max_version: {e}")))
                .ok()
        };
        if t.cert_file.is_empty() != t.key_file.is_empty() {
            problems.push("tls_config: cert_file and key_file go together".into());
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let server_name = [&t.server_name, &self.server_name]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned();
        Ok(Some(ClientTlsOptions {
            ca_file: path(&t.ca_file),
            cert_file: path(&t.cert_file),
            key_file: path(&t.key_file),
            server_name,
            insecure_skip_verify: t.insecure_skip_verify,
            min_version,
            max_version,
        }))
    }
}

/// One entry of `endpoints:` in `--endpoint.sd-config`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SdEndpoint {
    pub address: String,
    #[serde(default)]
    pub strict: bool,
    #[serde(default)]
    pub group: bool,
    #[serde(default)]
    pub service_config: Option<String>,
    #[serde(default)]
    pub client_config: Option<ClientConfig>,
}

/// Thanos' `--endpoint.sd-config` file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SdConfig {
    #[serde(default)]
    pub default_client_config: Option<ClientConfig>,
    #[serde(default)]
    pub endpoints: Vec<SdEndpoint>,
}

impl SdConfig {
    /// Parses the YAML and checks every address, reporting all problems.
    pub fn parse(yaml: &str) -> Result<Self, String> {
        let c: SdConfig =
            serde_saphyr::from_str(yaml).map_err(|e| format!("endpoint sd-config: {e}"))?;
        let problems: Vec<String> = c
            .endpoints
            .iter()
            .filter_map(|e| EndpointSpec::parse(&e.address).err().map(|e| e.to_string()))
            .collect();
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(problems.join("; "))
        }
    }
}

/// A target group of Prometheus file SD.
#[derive(Debug, Clone, Deserialize)]
struct FileSdGroup {
    targets: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: BTreeMap<String, String>,
}

/// One configured source of endpoints.
#[derive(Debug, Clone)]
pub struct Source {
    pub spec: EndpointSpec,
    pub strict: bool,
    pub client: Option<ClientConfig>,
}

/// A resolved endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub address: String,
    pub strict: bool,
    /// The endpoint's own `client_config` (or the sd-config's default);
    /// `None` = the querier's `--grpc-client-*` flags apply.
    pub client: Option<ClientConfig>,
}

/// Resolves sources on demand.
pub struct Discovery {
    sources: Vec<Source>,
    sd_files: Vec<PathBuf>,
    sd_config_file: Option<PathBuf>,
    resolver: Option<hickory_resolver::TokioResolver>,
    /// `--dns.nameserver`: when set, `dns+` lookups go to it too (not to the system resolver).
    nameserver: Option<SocketAddr>,
    /// The last successful resolution of each DNS-based spec, kept through transient failures.
    last_good: std::sync::Mutex<BTreeMap<String, Vec<String>>>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("sources", &self.sources)
            .field("sd_files", &self.sd_files)
            .finish()
    }
}

impl Discovery {
    /// `nameserver` directs DNS lookups to one server (tests, split-horizon
    /// setups); otherwise the system resolver configuration is used.
    pub fn new(
        sources: Vec<Source>,
        sd_files: Vec<PathBuf>,
        sd_config_file: Option<PathBuf>,
        nameserver: Option<SocketAddr>,
    ) -> Self {
        let needs_dns = sources.iter().any(|s| match s.spec {
            EndpointSpec::Srv { .. } => true,
            EndpointSpec::Dns { .. } => nameserver.is_some(),
            EndpointSpec::Static(_) => false,
        }) || sd_config_file.is_some();
        let resolver = if needs_dns {
            build_resolver(nameserver)
        } else {
            None
        };
        Discovery {
            sources,
            sd_files,
            sd_config_file,
            resolver,
            nameserver,
            last_good: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Every endpoint the sources name right now. A name that does not exist
    /// (NXDOMAIN, no records) contributes nothing; any other resolution
    /// failure (timeout, SERVFAIL, unreachable server) keeps the addresses of
    /// the last successful resolution, as Thanos' DNS provider does, so a DNS
    /// blip does not empty the endpoint set.
    pub async fn resolve(&self) -> Vec<Target> {
        let mut out = Vec::new();
        let mut sources = self.sources.clone();
        if let Some(path) = &self.sd_config_file {
            match std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| SdConfig::parse(&t))
            {
                Ok(c) => {
                    for e in c.endpoints {
                        if let Ok(spec) = EndpointSpec::parse(&e.address) {
                            sources.push(Source {
                                spec,
                                strict: e.strict,
                                client: e.client_config.or(c.default_client_config.clone()),
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read endpoint sd-config")
                }
            }
        }
        for f in &self.sd_files {
            match read_file_sd(f) {
                Ok(targets) => out.extend(targets.into_iter().map(|address| Target {
                    address,
                    strict: false,
                    client: None,
                })),
                Err(e) => tracing::warn!(path = %f.display(), error = %e, "cannot read file SD"),
            }
        }
        for s in &sources {
            let key = format!("{:?}", s.spec);
            let addrs = match self.resolve_one(&s.spec).await {
                Ok(addrs) => {
                    if !matches!(s.spec, EndpointSpec::Static(_)) {
                        self.last_good
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(key, addrs.clone());
                    }
                    addrs
                }
                Err(e) => {
                    let kept = self
                        .last_good
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&key)
                        .cloned()
                        .unwrap_or_default();
                    tracing::warn!(endpoint = ?s.spec, error = %e, kept = kept.len(), "endpoint resolution failed; keeping the last resolved addresses");
                    kept
                }
            };
            out.extend(addrs.into_iter().map(|address| Target {
                address,
                strict: s.strict,
                client: s.client.clone(),
            }));
        }
        out.sort();
        out.dedup_by(|a, b| {
            if a.address == b.address {
                b.strict |= a.strict;
                if b.client.is_none() {
                    b.client = a.client.take();
                }
                true
            } else {
                false
            }
        });
        out
    }

    async fn resolve_one(&self, spec: &EndpointSpec) -> Result<Vec<String>, String> {
        match spec {
            EndpointSpec::Static(a) => Ok(vec![a.clone()]),
            EndpointSpec::Dns { host, port } => {
                let mut v: Vec<String> = match (&self.resolver, self.nameserver) {
                    (Some(resolver), Some(_)) => match resolver.lookup_ip(host.as_str()).await {
                        Ok(ips) => ips
                            .iter()
                            .map(|ip| SocketAddr::new(ip, *port).to_string())
                            .collect(),
                        Err(e) if dns_not_found(&e) => {
                            tracing::warn!(host, error = %e, "dns+ name has no A/AAAA records");
                            Vec::new()
                        }
                        Err(e) => return Err(format!("lookup {host}: {e}")),
                    },
                    _ => match tokio::net::lookup_host((host.as_str(), *port)).await {
                        Ok(addrs) => addrs.map(|a| a.to_string()).collect(),
                        Err(e) if io_not_found(&e) => {
                            tracing::warn!(host, error = %e, "dns+ name not found");
                            Vec::new()
                        }
                        Err(e) => return Err(format!("lookup {host}: {e}")),
                    },
                };
                v.sort();
                v.dedup();
                Ok(v)
            }
            EndpointSpec::Srv { name, noa } => {
                let resolver = self.resolver.as_ref().ok_or("no DNS resolver available")?;
                let srv = match resolver.srv_lookup(name.as_str()).await {
                    Ok(srv) => srv,
                    Err(e) if dns_not_found(&e) => {
                        tracing::warn!(name, error = %e, "dnssrv+ name has no SRV records");
                        return Ok(Vec::new());
                    }
                    Err(e) => return Err(format!("SRV lookup {name}: {e}")),
                };
                let mut v = Vec::new();
                for r in srv.answers() {
                    let hickory_resolver::proto::rr::RData::SRV(s) = &r.data else {
                        continue;
                    };
                    let target = s.target.to_utf8();
                    let target = target.trim_end_matches('.');
                    if *noa {
                        v.push(format!("{target}:{}", s.port));
                        continue;
                    }
                    match resolver.lookup_ip(target).await {
                        Ok(ips) => {
                            v.extend(ips.iter().map(|ip| SocketAddr::new(ip, s.port).to_string()))
                        }
                        Err(e) if dns_not_found(&e) => {
                            tracing::warn!(target, error = %e, "SRV target has no A/AAAA records")
                        }
                        Err(e) => return Err(format!("A/AAAA lookup of SRV target {target}: {e}")),
                    }
                }
                v.sort();
                v.dedup();
                Ok(v)
            }
        }
    }
}

/// Whether a lookup failed because the name does not exist (NXDOMAIN) or has
/// no records of the type (NODATA), as opposed to a failure to get an answer
/// (SERVFAIL, REFUSED, timeout).
fn dns_not_found(e: &hickory_resolver::net::NetError) -> bool {
    use hickory_resolver::net::{DnsError, NetError, NoRecords};
    use hickory_resolver::proto::op::ResponseCode;
    matches!(
        e,
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NXDomain | ResponseCode::NoError,
            ..
        }))
    )
}

/// Whether a system resolver (getaddrinfo) error says the name does not exist,
/// as opposed to a temporary failure (glibc's EAI_NONAME / EAI_NODATA texts).
fn io_not_found(e: &std::io::Error) -> bool {
    let m = e.to_string();
    m.contains("Name or service not known")
        || m.contains("No address associated with hostname")
        || m.contains("nodename nor servname provided")
}

fn build_resolver(nameserver: Option<SocketAddr>) -> Option<hickory_resolver::TokioResolver> {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let builder = match nameserver {
        Some(ns) => {
            let mut server = NameServerConfig::udp_and_tcp(ns.ip());
            for c in &mut server.connections {
                c.port = ns.port();
            }
            let cfg = ResolverConfig::from_parts(None, vec![], vec![server]);
            hickory_resolver::Resolver::builder_with_config(cfg, TokioRuntimeProvider::default())
        }
        None => match hickory_resolver::Resolver::builder_tokio() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no system DNS configuration; dnssrv+ endpoints will not resolve");
                return None;
            }
        },
    };
    builder
        .build()
        .map_err(|e| tracing::warn!(error = %e, "cannot build DNS resolver"))
        .ok()
}

/// Reads a Prometheus file SD file (JSON or YAML list of target groups).
pub fn read_file_sd(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let groups: Vec<FileSdGroup> = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| e.to_string())?
    } else {
        serde_saphyr::from_str(&text).map_err(|e| e.to_string())?
    };
    Ok(groups.into_iter().flat_map(|g| g.targets).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thanos_endpoint_syntax() {
        assert_eq!(
            EndpointSpec::parse("store:10901").unwrap(),
            EndpointSpec::Static("store:10901".into())
        );
        assert_eq!(
            EndpointSpec::parse("dns+store.svc:10901").unwrap(),
            EndpointSpec::Dns {
                host: "store.svc".into(),
                port: 10901
            }
        );
        assert_eq!(
            EndpointSpec::parse("dnssrv+_grpc._tcp.store").unwrap(),
            EndpointSpec::Srv {
                name: "_grpc._tcp.store".into(),
                noa: false
            }
        );
        assert!(EndpointSpec::parse("store").is_err());
        assert!(EndpointSpec::parse("dns+store").is_err());
        assert!(EndpointSpec::parse("http+x:1").is_err());
    }

    #[test]
    fn parses_sd_config_with_tls_fields() {
        let c = SdConfig::parse(
            "default_client_config:\n  tls_config:\n    ca_file: /ca.pem\nendpoints:\n  - address: a:1\n    strict: true\n  - address: dns+b:2\n    client_config:\n      tls_config:\n        cert_file: c.pem\n        key_file: k.pem\n        server_name: b\n",
        )
        .unwrap();
        assert_eq!(c.endpoints.len(), 2);
        assert!(c.endpoints[0].strict);
        assert_eq!(
            c.endpoints[1]
                .client_config
                .as_ref()
                .unwrap()
                .tls_config
                .as_ref()
                .unwrap()
                .server_name,
            "b"
        );
        assert!(SdConfig::parse("endpoints:\n  - address: nope\n").is_err());
        assert!(SdConfig::parse("endpoints:\n  - adress: a:1\n").is_err());
    }

    #[test]
    fn client_config_becomes_tls_options() {
        use sluice_tls::TlsVersion;
        let c = SdConfig::parse(
            "default_client_config:\n  tls_config:\n    ca_file: /ca.pem\nendpoints:\n  - address: a:1\n    client_config:\n      server_name: from-client-config\n      tls_config:\n        cert_file: c.pem\n        key_file: k.pem\n        min_version: TLS13\n        max_version: \"1.3\"\n  - address: b:2\n    client_config:\n      tls_config:\n        enabled: false\n  - address: c:3\n    client_config:\n      tls_config:\n        cert_file: only-cert.pem\n        min_version: TLS99\n",
        )
        .unwrap();
        let o = c.endpoints[0]
            .client_config
            .as_ref()
            .unwrap()
            .tls_options()
            .unwrap()
            .unwrap();
        assert_eq!(o.cert_file, Some(PathBuf::from("c.pem")));
        assert_eq!(o.ca_file, None);
        assert_eq!(o.server_name.as_deref(), Some("from-client-config"));
        assert_eq!(
            (o.min_version, o.max_version),
            (TlsVersion::Tls13, Some(TlsVersion::Tls13))
        );
        let default = c
            .default_client_config
            .as_ref()
            .unwrap()
            .tls_options()
            .unwrap()
            .unwrap();
        assert_eq!(default.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(default.min_version, TlsVersion::Tls12);
        assert!(
            c.endpoints[1]
                .client_config
                .as_ref()
                .unwrap()
                .tls_options()
                .unwrap()
                .is_none()
        );
        let e = c.endpoints[2]
            .client_config
            .as_ref()
            .unwrap()
            .tls_options()
            .unwrap_err();
        assert!(e.contains("TLS99") && e.contains("go together"), "{e}");
        assert!(ClientConfig::default().tls_options().unwrap().is_none());
    }

    #[tokio::test]
    async fn resolves_static_dns_and_file_sd() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sd.json");
        std::fs::write(
            &f,
            r#"[{"targets": ["10.0.0.1:10901", "10.0.0.2:10901"], "labels": {"a": "b"}}]"#,
        )
        .unwrap();
        let d = Discovery::new(
            vec![
                Source {
                    spec: EndpointSpec::parse("127.0.0.1:1").unwrap(),
                    strict: true,
                    client: None,
                },
                Source {
                    spec: EndpointSpec::parse("dns+localhost:2").unwrap(),
                    strict: false,
                    client: None,
                },
            ],
            vec![f.clone()],
            None,
            None,
        );
        let t = d.resolve().await;
        let addrs: Vec<&str> = t.iter().map(|t| t.address.as_str()).collect();
        assert!(addrs.contains(&"127.0.0.1:1") && addrs.contains(&"10.0.0.2:10901"));
        assert!(addrs.iter().any(|a| a.ends_with(":2")), "{addrs:?}");
        std::fs::write(&f, r#"[{"targets": ["10.0.0.3:10901"]}]"#).unwrap();
        let t = d.resolve().await;
        assert!(
            t.iter().any(|t| t.address == "10.0.0.3:10901")
                && !t.iter().any(|t| t.address == "10.0.0.1:10901")
        );
    }
}

//! The HTTP client configuration of Thanos' `--prometheus.http-client(-file)`
//! (and of every later component that calls a Prometheus-style HTTP API):
//! Prometheus common's `HTTPClientConfig` YAML, the keys that matter.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::SidecarError;

/// `basic_auth` of the client YAML.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// `tls_config` of the client YAML.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Thanos' `clientconfig.HTTPClientConfig` (the `http_config` part and the
/// transport keys Thanos accepts next to it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpClientConfig {
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub proxy_url: Option<String>,
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    /// Connection-pool tuning of Go's transport; reqwest pools on its own.
    #[serde(default)]
    pub transport_config: Option<serde_json::Value>,
}

impl HttpClientConfig {
    /// Parses the YAML (empty text = defaults).
    pub fn parse(yaml: &str) -> Result<Self, SidecarError> {
        if yaml.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_saphyr::from_str(yaml)
            .map_err(|e| SidecarError::Config(format!("HTTP client config: {e}")))
    }

    /// The `Authorization` header value, read now (files are re-read by
    /// rebuilding the client).
    fn authorization(&self) -> Result<Option<String>, SidecarError> {
        if let Some(b) = &self.basic_auth {
            let password = match &b.password_file {
                Some(p) => std::fs::read_to_string(p)
                    .map_err(|e| {
                        SidecarError::Config(format!("password_file {}: {e}", p.display()))
                    })?
                    .trim()
                    .to_string(),
                None => b.password.clone(),
            };
            use base64::Engine as _;
            let creds = format!("{}:{}", b.username, password);
            return Ok(Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(creds)
            )));
        }
        let token = match (&self.bearer_token, &self.bearer_token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(p)) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| {
                        SidecarError::Config(format!("bearer_token_file {}: {e}", p.display()))
                    })?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        Ok(token.map(|t| format!("Bearer {t}")))
    }

    /// A reqwest client for this configuration.
    pub fn build(&self, timeout: Option<Duration>) -> Result<reqwest::Client, SidecarError> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("Sluice/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(90));
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        if let Some(auth) = self.authorization()? {
            let mut headers = reqwest::header::HeaderMap::new();
            let mut v = reqwest::header::HeaderValue::from_str(&auth)
                .map_err(|e| SidecarError::Config(format!("authorization header: {e}")))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
            b = b.default_headers(headers);
        }
        if let Some(p) = &self.proxy_url {
            b = b.proxy(
                reqwest::Proxy::all(p)
                    .map_err(|e| SidecarError::Config(format!("proxy_url {p}: {e}")))?,
            );
        } else {
            b = b.no_proxy();
        }
        if let Some(t) = &self.tls_config {
            let tls = sluice_tls::ClientTls::new(sluice_tls::ClientTlsOptions {
                ca_file: t.ca_file.clone(),
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
                server_name: t.server_name.clone(),
                insecure_skip_verify: t.insecure_skip_verify,
                ..Default::default()
            })
            .map_err(|e| SidecarError::Config(format!("tls_config: {e}")))?;
            let mut cfg = (*tls.current()).clone();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            if t.server_name.is_some() {
                tracing::warn!(
                    "tls_config.server_name of the HTTP client config has no effect: the certificate is verified \
                     against the URL's host"
                );
            }
            b = b.tls_backend_preconfigured(cfg);
        }
        if self.transport_config.is_some() {
            tracing::info!(
                "transport_config of the HTTP client config has no effect: connections are pooled by the client"
            );
        }
        b.build()
            .map_err(|e| SidecarError::Config(format!("building the HTTP client: {e}")))
    }
}

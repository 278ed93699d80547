//! Thanos `objstore.yml` (`type`, `config`, `prefix`) → an `object_store`
//! bucket. Supports S3, GCS, AZURE and FILESYSTEM with Thanos' key names;
//! unknown keys and missing required keys are reported all at once.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use serde::Deserialize;
use serde_json::Value;

use sluice_config::parse_duration;

pub mod gcs;

/// The objstore configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ObjstoreError {
    #[error("objstore config: {0}")]
    Parse(String),
    #[error("objstore config has {} problem(s): {}", .0.len(), .0.join("; "))]
    Invalid(Vec<String>),
    #[error("objstore config: cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("objstore {kind} bucket: {source}")]
    Build {
        kind: &'static str,
        #[source]
        source: object_store::Error,
    },
}

/// A secret string that never shows in `Debug` output.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

/// Parsed `objstore.yml`.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketConfig {
    pub kind: BucketKind,
    /// Optional path prefix inside the bucket.
    pub prefix: String,
}

/// Provider-specific configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum BucketKind {
    Filesystem(FilesystemConfig),
    S3(S3Config),
    Gcs(GcsConfig),
    Azure(AzureConfig),
}

impl BucketKind {
    pub fn name(&self) -> &'static str {
        match self {
            BucketKind::Filesystem(_) => "FILESYSTEM",
            BucketKind::S3(_) => "S3",
            BucketKind::Gcs(_) => "GCS",
            BucketKind::Azure(_) => "AZURE",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct FilesystemConfig {
    /// Local directory holding the bucket (testing and demo only).
    pub directory: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TlsConfig {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub server_name: String,
    pub insecure_skip_verify: bool,
}

/// Thanos' `http_config` block (durations as strings such as `1m30s`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct HttpConfig {
    pub idle_conn_timeout: Option<String>,
    pub response_header_timeout: Option<String>,
    pub insecure_skip_verify: bool,
    pub tls_handshake_timeout: Option<String>,
    pub expect_continue_timeout: Option<String>,
    pub max_idle_conns: Option<u64>,
    pub max_idle_conns_per_host: Option<u64>,
    pub max_conns_per_host: Option<u64>,
    pub disable_compression: bool,
    pub tls_config: TlsConfig,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SseConfig {
    /// `SSE-KMS`, `SSE-C` or `SSE-S3`.
    #[serde(rename = "type")]
    pub kind: String,
    pub kms_key_id: String,
    pub kms_encryption_context: std::collections::BTreeMap<String, String>,
    /// Path to a file holding the 32-byte SSE-C key.
    pub encryption_key: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct S3Config {
    pub bucket: String,
    /// `host[:port]` without a scheme, as in Thanos.
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: Secret,
    pub session_token: Secret,
    /// Use plain HTTP to the endpoint.
    pub insecure: bool,
    /// `auto`, `virtual-hosted` or `path`.
    pub bucket_lookup_type: String,
    pub max_retries: Option<usize>,
    pub http_config: HttpConfig,
    pub sse_config: SseConfig,
    pub sts_endpoint: String,
    // Accepted for compatibility with Thanos configs; no effect here.
    pub disable_dualstack: bool,
    pub aws_sdk_auth: bool,
    pub signature_version2: bool,
    pub put_user_metadata: std::collections::BTreeMap<String, String>,
    pub list_objects_version: String,
    pub send_content_md5: bool,
    pub disable_multipart: bool,
    pub part_size: u64,
    pub trace: Value,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GcsConfig {
    pub bucket: String,
    /// Inline service-account JSON; empty means application default credentials.
    pub service_account: Secret,
    pub max_retries: Option<usize>,
    pub http_config: HttpConfig,
    // Accepted for compatibility; no effect here.
    pub use_grpc: bool,
    pub grpc_conn_pool_size: u64,
    pub chunk_size_bytes: u64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct AzureConfig {
    pub storage_account: String,
    pub storage_account_key: Secret,
    pub storage_connection_string: Secret,
    pub container: String,
    /// Blob endpoint suffix, default `blob.core.windows.net`.
    pub endpoint: String,
    pub az_tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub user_assigned_id: String,
    pub max_retries: Option<usize>,
    pub http_config: HttpConfig,
    // Accepted for compatibility; no effect here.
    pub storage_create_container: Option<bool>,
    pub reader_config: Value,
    pub pipeline_config: Value,
    pub msi_resource: String,
}

const HTTP_KEYS: &[&str] = &[
    "idle_conn_timeout",
    "response_header_timeout",
    "insecure_skip_verify",
    "tls_handshake_timeout",
    "expect_continue_timeout",
    "max_idle_conns",
    "max_idle_conns_per_host",
    "max_conns_per_host",
    "disable_compression",
    "tls_config",
];
const TLS_KEYS: &[&str] = &[
    "ca_file",
    "cert_file",
    "key_file",
    "server_name",
    "insecure_skip_verify",
];
const S3_KEYS: &[&str] = &[
    "bucket",
    "endpoint",
    "region",
    "access_key",
    "secret_key",
    "session_token",
    "insecure",
    "bucket_lookup_type",
    "max_retries",
    "http_config",
    "sse_config",
    "sts_endpoint",
    "disable_dualstack",
    "aws_sdk_auth",
    "signature_version2",
    "put_user_metadata",
    "list_objects_version",
    "send_content_md5",
    "disable_multipart",
    "part_size",
    "trace",
];
const SSE_KEYS: &[&str] = &[
    "type",
    "kms_key_id",
    "kms_encryption_context",
    "encryption_key",
];
const GCS_KEYS: &[&str] = &[
    "bucket",
    "service_account",
    "max_retries",
    "http_config",
    "use_grpc",
    "grpc_conn_pool_size",
    "chunk_size_bytes",
];
const AZURE_KEYS: &[&str] = &[
    "storage_account",
    "storage_account_key",
    "storage_connection_string",
    "container",
    "endpoint",
    "az_tenant_id",
    "client_id",
    "client_secret",
    "user_assigned_id",
    "max_retries",
    "http_config",
    "storage_create_container",
    "reader_config",
    "pipeline_config",
    "msi_resource",
];
const FS_KEYS: &[&str] = &["directory"];

fn check_keys(v: &Value, allowed: &[&str], at: &str, problems: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for k in m.keys() {
                if !allowed.contains(&k.as_str()) {
                    problems.push(format!("unknown key {at}.{k}"));
                }
            }
        }
        Value::Null => {}
        _ => problems.push(format!("{at} must be a mapping")),
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn check_http(cfg: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(h) = cfg.get("http_config") {
        check_keys(h, HTTP_KEYS, &format!("{at}.http_config"), problems);
        if let Some(t) = h.get("tls_config") {
            check_keys(
                t,
                TLS_KEYS,
                &format!("{at}.http_config.tls_config"),
                problems,
            );
        }
        for k in [
            "idle_conn_timeout",
            "response_header_timeout",
            "tls_handshake_timeout",
            "expect_continue_timeout",
        ] {
            if let Some(s) = h.get(k).and_then(Value::as_str)
                && let Err(e) = parse_duration(s)
            {
                problems.push(format!("{at}.http_config.{k}: {e}"));
            }
        }
    }
}

impl BucketConfig {
    /// Parses the YAML text of an `objstore.yml`.
    pub fn parse(yaml: &str) -> Result<Self, ObjstoreError> {
        let root: Value =
            serde_saphyr::from_str(yaml).map_err(|e| ObjstoreError::Parse(e.to_string()))?;
        let mut problems = Vec::new();
        check_keys(&root, &["type", "config", "prefix"], "", &mut problems);
        let kind = str_at(&root, "type").to_ascii_uppercase();
        let cfg = root.get("config").cloned().unwrap_or(Value::Null);
        let cfg = if cfg.is_null() {
            Value::Object(Default::default())
        } else {
            cfg
        };
        let prefix = str_at(&root, "prefix").trim_matches('/').to_string();
        let required = |keys: &[&str], problems: &mut Vec<String>| {
            for k in keys {
                if str_at(&cfg, k).is_empty() {
                    problems.push(format!("missing required key config.{k} for type {kind}"));
                }
            }
        };
        match kind.as_str() {
            "FILESYSTEM" => {
                check_keys(&cfg, FS_KEYS, "config", &mut problems);
                required(&["directory"], &mut problems);
            }
            "S3" => {
                check_keys(&cfg, S3_KEYS, "config", &mut problems);
                check_http(&cfg, "config", &mut problems);
                if let Some(s) = cfg.get("sse_config") {
                    check_keys(s, SSE_KEYS, "config.sse_config", &mut problems);
                }
                required(&["bucket"], &mut problems);
                let lookup = str_at(&cfg, "bucket_lookup_type");
                if !["", "auto", "virtual-hosted", "path"].contains(&lookup) {
                    problems.push(format!(
                        "config.bucket_lookup_type {lookup:?}: must be auto, virtual-hosted or path"
                    ));
                }
                let sse = cfg
                    .get("sse_config")
                    .map(|s| str_at(s, "type"))
                    .unwrap_or("");
                if !["", "SSE-KMS", "SSE-C", "SSE-S3"].contains(&sse) {
                    problems.push(format!(
                        "config.sse_config.type {sse:?}: must be SSE-KMS, SSE-C or SSE-S3"
                    ));
                }
            }
            "GCS" => {
                check_keys(&cfg, GCS_KEYS, "config", &mut problems);
                check_http(&cfg, "config", &mut problems);
                required(&["bucket"], &mut problems);
            }
            "AZURE" => {
                check_keys(&cfg, AZURE_KEYS, "config", &mut problems);
                check_http(&cfg, "config", &mut problems);
                required(&["container"], &mut problems);
                if str_at(&cfg, "storage_account").is_empty()
                    && str_at(&cfg, "storage_connection_string").is_empty()
                {
                    problems.push("missing required key config.storage_account (or config.storage_connection_string) for type AZURE".into());
                }
            }
            "" => problems.push("missing required key type (S3, GCS, AZURE or FILESYSTEM)".into()),
            other => problems.push(format!(
                "unsupported type {other:?}: Sluice supports S3, GCS, AZURE and FILESYSTEM"
            )),
        }
        if !problems.is_empty() {
            return Err(ObjstoreError::Invalid(problems));
        }
        let typed = |e: serde_json::Error| ObjstoreError::Invalid(vec![format!("config: {e}")]);
        let kind = match kind.as_str() {
            "FILESYSTEM" => BucketKind::Filesystem(serde_json::from_value(cfg).map_err(typed)?),
            "S3" => BucketKind::S3(serde_json::from_value(cfg).map_err(typed)?),
            "GCS" => BucketKind::Gcs(serde_json::from_value(cfg).map_err(typed)?),
            _ => BucketKind::Azure(serde_json::from_value(cfg).map_err(typed)?),
        };
        Ok(BucketConfig { kind, prefix })
    }

    /// Reads and parses an `objstore.yml` file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ObjstoreError> {
        let text = std::fs::read_to_string(path).map_err(|source| ObjstoreError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// A configuration for a local directory bucket.
    pub fn filesystem(dir: impl Into<String>) -> Self {
        BucketConfig {
            kind: BucketKind::Filesystem(FilesystemConfig {
                directory: dir.into(),
            }),
            prefix: String::new(),
        }
    }

    /// Builds the bucket client.
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>, ObjstoreError> {
        let kind = self.kind.name();
        let wrap = |source| ObjstoreError::Build { kind, source };
        let store: Arc<dyn ObjectStore> = match &self.kind {
            BucketKind::Filesystem(c) => {
                std::fs::create_dir_all(&c.directory).map_err(|source| ObjstoreError::Read {
                    path: c.directory.clone(),
                    source,
                })?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&c.directory)
                        .map_err(wrap)?,
                )
            }
            BucketKind::S3(c) => Arc::new(build_s3(c)?.build().map_err(wrap)?),
            BucketKind::Gcs(c) => {
                let emulator = gcs::emulator_base();
                let mut opts = client_options(&c.http_config)?;
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&c.bucket)
                    .with_retry(retry(c.max_retries));
                if let Some(base) = &emulator {
                    // The SDKs' emulator variable: plain HTTP, no credentials.
                    tracing::info!(emulator = %base, "GCS bucket on the emulator named by STORAGE_EMULATOR_HOST");
                    opts = opts.with_allow_http(true);
                    b = b.with_base_url(base.as_str()).with_skip_signature(true);
                } else if !c.service_account.0.is_empty() {
                    b = b.with_service_account_key(&c.service_account.0);
                }
                let inner = b.with_client_options(opts).build().map_err(wrap)?;
                let base = emulator
                    .clone()
                    .unwrap_or_else(|| "https://storage.googleapis.com".into());
                Arc::new(gcs::Gcs::new(inner, &base, &c.bucket, emulator.is_some()).map_err(wrap)?)
            }
            BucketKind::Azure(c) => Arc::new(build_azure(c)?.build().map_err(wrap)?),
        };
        Ok(if self.prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, self.prefix.as_str()))
        })
    }
}

fn dur(s: &Option<String>) -> Result<Option<Duration>, ObjstoreError> {
    s.as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| ObjstoreError::Invalid(vec![e.to_string()]))
}

fn client_options(h: &HttpConfig) -> Result<object_store::ClientOptions, ObjstoreError> {
    let mut o = object_store::ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        .with_allow_invalid_certificates(
            h.insecure_skip_verify || h.tls_config.insecure_skip_verify,
        );
    if let Some(d) = dur(&h.response_header_timeout)? {
        o = o.with_timeout(d);
    } else {
        o = o.with_timeout(Duration::from_secs(120));
    }
    if let Some(d) = dur(&h.idle_conn_timeout)? {
        o = o.with_pool_idle_timeout(d);
    }
    if let Some(n) = h.max_idle_conns_per_host {
        o = o.with_pool_max_idle_per_host(n as usize);
    }
    if !h.tls_config.ca_file.is_empty() {
        let pem = std::fs::read(&h.tls_config.ca_file).map_err(|source| ObjstoreError::Read {
            path: h.tls_config.ca_file.clone(),
            source,
        })?;
        let cert =
            object_store::Certificate::from_pem(&pem).map_err(|source| ObjstoreError::Build {
                kind: "tls",
                source,
            })?;
        o = o.with_root_certificate(cert);
    }
    Ok(o)
}

fn retry(max: Option<usize>) -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: max.unwrap_or(3),
        retry_timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

fn build_s3(c: &S3Config) -> Result<object_store::aws::AmazonS3Builder, ObjstoreError> {
    let mut b = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(&c.bucket)
        .with_region(if c.region.is_empty() {
            "us-east-1"
        } else {
            &c.region
        })
        .with_allow_http(c.insecure)
        .with_client_options(client_options(&c.http_config)?.with_allow_http(c.insecure))
        .with_retry(retry(c.max_retries));
    if !c.endpoint.is_empty() {
        let scheme = if c.insecure { "http" } else { "https" };
        let endpoint = if c.endpoint.contains("://") {
            c.endpoint.clone()
        } else {
            format!("{scheme}://{}", c.endpoint)
        };
        b = b.with_endpoint(endpoint);
    }
    let aws_endpoint = c.endpoint.is_empty() || c.endpoint.contains("amazonaws.com");
    let virtual_hosted = match c.bucket_lookup_type.as_str() {
        "virtual-hosted" => true,
        "path" => false,
        _ => aws_endpoint,
    };
    b = b.with_virtual_hosted_style_request(virtual_hosted);
    if !c.access_key.is_empty() {
        b = b
            .with_access_key_id(&c.access_key)
            .with_secret_access_key(&c.secret_key.0);
    }
    if !c.session_token.0.is_empty() {
        b = b.with_token(&c.session_token.0);
    }
    match c.sse_config.kind.as_str() {
        "SSE-KMS" => b = b.with_sse_kms_encryption(&c.sse_config.kms_key_id),
        "SSE-C" => {
            let key = std::fs::read(&c.sse_config.encryption_key).map_err(|source| {
                ObjstoreError::Read {
                    path: c.sse_config.encryption_key.clone(),
                    source,
                }
            })?;
            b = b.with_ssec_encryption(base64_encode(&key));
        }
        _ => {}
    }
    Ok(b)
}

fn build_azure(
    c: &AzureConfig,
) -> Result<object_store::azure::MicrosoftAzureBuilder, ObjstoreError> {
    let mut account = c.storage_account.clone();
    let mut key = c.storage_account_key.0.clone();
    let mut blob_endpoint = String::new();
    for part in c.storage_connection_string.0.split(';') {
        if let Some((k, v)) = part.split_once('=') {
            match k.trim() {
                "AccountName" if account.is_empty() => account = v.to_string(),
                "AccountKey" if key.is_empty() => key = v.to_string(),
                "BlobEndpoint" => blob_endpoint = v.to_string(),
                _ => {}
            }
        }
    }
    // A connection string's plain-HTTP blob endpoint (Azurite, the emulator) is allowed as written.
    let plain_http = blob_endpoint.starts_with("http://");
    let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
        .with_account(&account)
        .with_container_name(&c.container)
        .with_client_options(client_options(&c.http_config)?.with_allow_http(plain_http))
        .with_retry(retry(c.max_retries));
    if !key.is_empty() {
        b = b.with_access_key(key);
    }
    if !blob_endpoint.is_empty() {
        b = b.with_endpoint(blob_endpoint);
    } else if !c.endpoint.is_empty() && c.endpoint != "blob.core.windows.net" {
        b = b.with_endpoint(format!("https://{account}.{}", c.endpoint));
    }
    if !c.client_id.is_empty() {
        b = b.with_client_id(&c.client_id);
    } else if !c.user_assigned_id.is_empty() {
        b = b.with_client_id(&c.user_assigned_id);
    }
    if !c.client_secret.0.is_empty() {
        b = b.with_client_secret(&c.client_secret.0);
    }
    if !c.az_tenant_id.is_empty() {
        b = b.with_tenant_id(&c.az_tenant_id);
    }
    Ok(b)
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Keys of a config that were accepted for compatibility but have no effect
/// (`http_config.` and `http_config.tls_config.` prefixes for nested ones).
/// Each process logs them once at start.
pub fn ignored_keys(yaml: &str) -> BTreeSet<String> {
    const NO_EFFECT: &[&str] = &[
        "disable_dualstack",
        "aws_sdk_auth",
        "signature_version2",
        "put_user_metadata",
        "list_objects_version",
        "send_content_md5",
        "disable_multipart",
        "part_size",
        "trace",
        "use_grpc",
        "grpc_conn_pool_size",
        "chunk_size_bytes",
        "storage_create_container",
        "reader_config",
        "pipeline_config",
        "msi_resource",
        "sts_endpoint",
    ];
    // object_store's client has no counterpart for these.
    const HTTP_NO_EFFECT: &[&str] = &[
        "max_idle_conns",
        "max_conns_per_host",
        "disable_compression",
        "expect_continue_timeout",
        "tls_handshake_timeout",
    ];
    const TLS_NO_EFFECT: &[&str] = &["cert_file", "key_file", "server_name"];
    let root: Value = serde_saphyr::from_str(yaml).unwrap_or(Value::Null);
    let Some(cfg) = root.get("config").and_then(Value::as_object) else {
        return BTreeSet::new();
    };
    let mut out: BTreeSet<String> = cfg
        .keys()
        .filter(|k| NO_EFFECT.contains(&k.as_str()))
        .cloned()
        .collect();
    if let Some(h) = cfg.get("http_config").and_then(Value::as_object) {
        out.extend(
            h.keys()
                .filter(|k| HTTP_NO_EFFECT.contains(&k.as_str()))
                .map(|k| format!("http_config.{k}")),
        );
        if let Some(t) = h.get("tls_config").and_then(Value::as_object) {
            out.extend(
                t.keys()
                    .filter(|k| TLS_NO_EFFECT.contains(&k.as_str()))
                    .map(|k| format!("http_config.tls_config.{k}")),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thanos_s3_config() {
        let c = BucketConfig::parse(
            "type: s3\nconfig:\n  bucket: metrics\n  endpoint: 127.0.0.1:9000\n  access_key: a\n  secret_key: b\n  insecure: true\n  http_config:\n    idle_conn_timeout: 1m30s\n    tls_config:\n      insecure_skip_verify: true\nprefix: /tenant-a/\n",
        )
        .unwrap();
        assert_eq!(c.prefix, "tenant-a");
        let BucketKind::S3(s3) = &c.kind else {
            panic!("not s3")
        };
        assert_eq!(s3.bucket, "metrics");
        assert!(s3.insecure);
        assert!(s3.http_config.tls_config.insecure_skip_verify);
        assert!(
            !format!("{s3:?}").contains("\"b\""),
            "secret leaked in Debug"
        );
        c.build().unwrap();
    }

    #[test]
    fn reports_every_problem() {
        let err = BucketConfig::parse("type: S3\nconfig:\n  endpoint: x\n  bukket: y\n  sse_config:\n    type: nope\nextra: 1\n")
            .unwrap_err()
            .to_string();
        for needle in [
            "unknown key config.bukket",
            "missing required key config.bucket",
            "unknown key .extra",
            "sse_config.type",
        ] {
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
    }

    #[test]
    fn rejects_unknown_type_and_missing_type() {
        assert!(
            BucketConfig::parse("type: SWIFT\nconfig: {}\n")
                .unwrap_err()
                .to_string()
                .contains("SWIFT")
        );
        assert!(
            BucketConfig::parse("config: {}\n")
                .unwrap_err()
                .to_string()
                .contains("missing required key type")
        );
        assert!(
            BucketConfig::parse("type: FILESYSTEM\n")
                .unwrap_err()
                .to_string()
                .contains("config.directory")
        );
        assert!(BucketConfig::parse(": : :\n  - [").is_err());
    }

    #[test]
    fn gcs_and_azure_parse() {
        let c =
            BucketConfig::parse("type: GCS\nconfig:\n  bucket: b\n  use_grpc: false\n").unwrap();
        assert!(matches!(c.kind, BucketKind::Gcs(_)));
        assert_eq!(
            ignored_keys("type: GCS\nconfig:\n  bucket: b\n  use_grpc: false\n").len(),
            1
        );
        let s3 = "type: S3\nconfig:\n  bucket: b\n  sts_endpoint: x\n  http_config:\n    max_conns_per_host: 3\n    \
                  idle_conn_timeout: 1m\n    tls_config:\n      ca_file: /ca\n      cert_file: /c\n";
        assert_eq!(
            ignored_keys(s3).into_iter().collect::<Vec<_>>(),
            vec![
                "http_config.max_conns_per_host".to_string(),
                "http_config.tls_config.cert_file".to_string(),
                "sts_endpoint".to_string()
            ],
            "honoured keys (idle_conn_timeout, ca_file) are not listed"
        );
        let c = BucketConfig::parse("type: AZURE\nconfig:\n  storage_account: acct\n  storage_account_key: a2V5\n  container: c\n").unwrap();
        assert!(matches!(c.kind, BucketKind::Azure(_)));
        c.build().unwrap();
        assert!(BucketConfig::parse("type: AZURE\nconfig:\n  container: c\n").is_err());
    }

    #[tokio::test]
    async fn filesystem_bucket_with_prefix_roundtrips() {
        use object_store::{ObjectStoreExt, path::Path};
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\nprefix: p\n",
            dir.path().display()
        );
        let b = BucketConfig::parse(&yaml).unwrap().build().unwrap();
        b.put(&Path::from("x/meta.json"), b"{}".to_vec().into())
            .await
            .unwrap();
        assert!(dir.path().join("p/x/meta.json").exists());
        assert_eq!(
            b.get(&Path::from("x/meta.json"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .as_ref(),
            b"{}"
        );
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }
}

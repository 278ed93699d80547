//! Client side: reloadable rustls client configs (CA bundle, client
//! certificate, server name, version range, optional skip-verify) and a
//! connector tonic channels dial through. The connector remembers the last
//! TLS failure of its endpoint, including alerts that arrive after the
//! handshake (TLS 1.3 servers reject a client certificate after the client
//! considers the handshake done), so health checks can say why.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::reload::Reloading;
use super::{TlsError, TlsVersion};

/// How a client connects over TLS. Empty optional paths mean "not set".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTlsOptions {
    /// CA bundle verifying servers; the system roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Name to verify the server certificate against (and send as SNI);
    /// the endpoint's host when unset.
    pub server_name: Option<String>,
    /// Accept any server certificate (testing only).
    pub insecure_skip_verify: bool,
    pub min_version: TlsVersion,
    pub max_version: Option<TlsVersion>,
}

impl Default for ClientTlsOptions {
    fn default() -> Self {
        ClientTlsOptions {
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
            insecure_skip_verify: false,
            min_version: TlsVersion::Tls12,
            max_version: None,
        }
    }
}

fn build_client(
    opts: &ClientTlsOptions,
    contents: &[Vec<u8>],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = super::provider();
    let versions = TlsVersion::range(opts.min_version, opts.max_version)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|source| TlsError::Rustls {
            what: "client TLS protocol versions".into(),
            source,
        })?;
    let mut i = 0;
    let mut next = || {
        let c = contents.get(i).map(Vec::as_slice).unwrap_or_default();
        i += 1;
        c
    };
    let builder = if opts.insecure_skip_verify {
        if let Some(ca) = &opts.ca_file {
            next();
            tracing::debug!(ca = %ca.display(), "insecure_skip_verify set: the CA file is not used");
        }
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify(provider.clone())))
    } else if let Some(ca) = &opts.ca_file {
        builder.with_root_certificates(super::parse_roots("CA", ca, next())?)
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if roots.is_empty() {
            return Err(TlsError::Config(
                "no CA file given and no system CA certificates found".into(),
            ));
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&opts.cert_file, &opts.key_file) {
        (Some(c), Some(k)) => {
            let certs = super::parse_certs("client certificate", c, next())?;
            let key = super::parse_key(k, next())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|source| TlsError::Rustls {
                    what: format!(
                        "client certificate {} with key {}",
                        c.display(),
                        k.display()
                    ),
                    source,
                })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError::Config(
                "a client certificate needs both a cert file and a key file".into(),
            ));
        }
    };
    // gRPC servers (grpc-go since 1.67) require h2 to be negotiated.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A reloadable client TLS configuration.
#[derive(Debug)]
pub struct ClientTls {
    opts: ClientTlsOptions,
    inner: Arc<Reloading<Arc<rustls::ClientConfig>>>,
}

impl ClientTls {
    /// Loads the CA bundle and client certificate; fails on unusable material.
    pub fn new(opts: ClientTlsOptions) -> Result<Arc<Self>, TlsError> {
        let mut paths = Vec::new();
        paths.extend(opts.ca_file.clone());
        paths.extend(opts.cert_file.clone());
        paths.extend(opts.key_file.clone());
        let o = opts.clone();
        let what = match (&opts.cert_file, &opts.ca_file) {
            (Some(c), _) => format!("gRPC client certificate {}", c.display()),
            (None, Some(ca)) => format!("gRPC client CA {}", ca.display()),
            (None, None) => "gRPC client TLS".to_string(),
        };
        let inner = Reloading::new(what, paths, move |c: &[Vec<u8>]| build_client(&o, c))?;
        Ok(Arc::new(ClientTls { opts, inner }))
    }

    /// Re-reads the files every `every` while this config is in use.
    pub fn watch(&self, every: Duration) {
        self.inner.spawn_watch(every);
    }

    /// Re-reads the files now; whether new material was published.
    pub fn reload_now(&self) -> bool {
        self.inner.check()
    }

    pub fn options(&self) -> &ClientTlsOptions {
        &self.opts
    }

    /// The config new connections use.
    pub fn current(&self) -> Arc<rustls::ClientConfig> {
        (*self.inner.current()).clone()
    }

    /// Connects to `host:port` and completes the TLS handshake.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
        let address = format!("{host}:{port}");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = self.opts.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_string()).map_err(|e| ConnectError {
            address: address.clone(),
            stage: "TLS setup",
            detail: format!("invalid server name {name:?}: {e}"),
        })?;
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| ConnectError {
                address: address.clone(),
                stage: "TCP connect",
                detail: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(self.current())
            .connect(server_name, tcp)
            .await
            .map_err(|e| ConnectError {
                address,
                stage: "TLS handshake",
                detail: format!("{}{}", super::error_chain(&e), hint(&e.to_string())),
            })
    }
}

/// A sentence that tells the operator what a rustls error most likely means.
fn hint(e: &str) -> &'static str {
    if e.contains("CertificateRequired") {
        " (the server requires a client certificate: set cert_file and key_file)"
    } else if e.contains("UnknownCA") || e.contains("BadCertificate") {
        " (the server does not accept our client certificate: wrong CA?)"
    } else if e.contains("CertificateExpired") {
        " (the server says our client certificate has expired)"
    } else if e.contains("ProtocolVersion") {
        " (no TLS version in common: check min_version/max_version on both sides)"
    } else if e.contains("UnknownIssuer") {
        " (the server's certificate is not signed by our CA: check ca_file)"
    } else if e.contains("NotValidForName") || e.contains("not valid for name") {
        " (the server's certificate does not name the server: check server_name)"
    } else {
        ""
    }
}

/// Connecting to an endpoint failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{stage} to {address} failed: {detail}")]
pub struct ConnectError {
    pub address: String,
    pub stage: &'static str,
    pub detail: String,
}

/// Accepts any server certificate (`insecure_skip_verify`); handshake
/// signatures are still checked.
#[derive(Debug)]
struct SkipVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The last TLS failure seen on an endpoint's connections.
type LastError = Arc<Mutex<Option<(std::time::Instant, String)>>>;

/// Dials endpoints over TLS for tonic (`Endpoint::connect_with_connector`).
/// When the client config could not be built, every dial fails with that
/// reason, so the endpoint shows it.
#[derive(Debug, Clone)]
pub struct TlsConnector {
    tls: Result<Arc<ClientTls>, String>,
    last_error: LastError,
}

impl TlsConnector {
    pub fn new(tls: Result<Arc<ClientTls>, String>) -> Self {
        TlsConnector {
            tls,
            last_error: Arc::new(Mutex::new(None)),
        }
    }

    /// Whether the client config was built.
    pub fn is_configured(&self) -> bool {
        self.tls.is_ok()
    }

    /// The last TLS failure, when it happened within `within`.
    pub fn last_error(&self, within: Duration) -> Option<String> {
        let g = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .filter(|(t, _)| t.elapsed() <= within)
            .map(|(_, e)| e.clone())
    }

    /// Forgets the last failure (after a successful check).
    pub fn clear_error(&self) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

fn record(slot: &LastError, e: String) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), e));
}

impl tower_service::Service<tonic::codegen::http::Uri> for TlsConnector {
    type Response = TokioIo<ClientStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        let slot = self.last_error.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tls = match tls {
                Ok(t) => t,
                Err(e) => {
                    let err = ConnectError {
                        address: format!("{host}:{port}"),
                        stage: "TLS setup",
                        detail: e,
                    };
                    record(&slot, err.to_string());
                    return Err(err);
                }
            };
            match tls.connect(&host, port).await {
                Ok(s) => Ok(TokioIo::new(ClientStream {
                    inner: s,
                    last_error: slot,
                })),
                Err(e) => {
                    record(&slot, e.to_string());
                    Err(e)
                }
            }
        })
    }
}

/// A TLS client connection that records TLS-level I/O failures.
#[derive(Debug)]
pub struct ClientStream {
    inner: tokio_rustls::client::TlsStream<TcpStream>,
    last_error: LastError,
}

impl ClientStream {
    fn note<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r {
            // rustls errors (alerts, bad records) arrive as InvalidData.
            if e.kind() == io::ErrorKind::InvalidData {
                let addr = self
                    .inner
                    .get_ref()
                    .0
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let m = super::error_chain(e);
                record(
                    &self.last_error,
                    format!("TLS connection to {addr} failed: {m}{}", hint(&m)),
                );
            }
        }
        r
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.note(r)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note(r)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note(r)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

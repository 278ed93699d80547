//! Server side: reloadable rustls server configs, client-certificate policies
//! (Go's `tls.ClientAuthType`, as in Prometheus' web-config), and the accept
//! loop shared by the gRPC and HTTP servers. Handshakes run concurrently, one
//! task each, so a slow or hostile client never stalls accepting others; a
//! failed handshake is logged with the peer address and the reason.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::identity::{PeerIdentity, parse_identity};
use super::reload::Reloading;
use super::{TlsError, TlsVersion};

/// How long a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether and how client certificates are requested and verified (Go's
/// `tls.ClientAuthType`, spelled as in Prometheus' web-config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No certificate requested.
    #[default]
    NoClientCert,
    /// Requested, not required, not verified.
    RequestClientCert,
    /// Required, not verified.
    RequireAnyClientCert,
    /// Verified against the client CA when given.
    VerifyClientCertIfGiven,
    /// Required and verified against the client CA (mutual TLS).
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// Parses the web-config spelling (`RequireClientCert` is Prometheus' old
    /// name of `RequireAnyClientCert`); empty means `NoClientCert`.
    pub fn parse(s: &str) -> Result<Self, TlsError> {
        Ok(match s {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            other => {
                return Err(TlsError::Config(format!(
                    "invalid client_auth_type {other:?}: use NoClientCert, RequestClientCert, \
                     RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                )));
            }
        })
    }

    fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// What a TLS server serves with.
#[derive(Debug, Clone)]
pub struct ServerTlsOptions {
    /// What this is, for logs (`gRPC server`, `HTTP server`).
    pub what: &'static str,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub min_version: TlsVersion,
    pub max_version: Option<TlsVersion>,
    /// ALPN protocols offered (`h2` for gRPC; `h2`, `http/1.1` for HTTP).
    pub alpn: Vec<Vec<u8>>,
    /// When non-empty, a client certificate must carry one of these SANs.
    pub allowed_sans: Vec<String>,
}

impl ServerTlsOptions {
    /// Checks the combination of settings, reporting every problem.
    pub fn validate(&self) -> Result<(), TlsError> {
        let mut problems = Vec::new();
        if self.client_auth.verifies() && self.client_ca_file.is_none() {
            problems.push(format!(
                "{}: client auth {:?} needs a client CA file",
                self.what, self.client_auth
            ));
        }
        if self.client_ca_file.is_some() && self.client_auth == ClientAuth::NoClientCert {
            problems.push(format!(
                "{}: a client CA is configured without a client auth type",
                self.what
            ));
        }
        if !self.allowed_sans.is_empty() && !self.client_auth.verifies() {
            problems.push(format!(
                "{}: client_allowed_sans needs client certificates to be verified",
                self.what
            ));
        }
        if let Err(e) = TlsVersion::range(self.min_version, self.max_version) {
            problems.push(format!("{}: {e}", self.what));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TlsError::Config(problems.join("; ")))
        }
    }
}

/// A built server config and whether it verifies client certificates.
#[derive(Debug)]
pub struct BuiltServer {
    pub config: Arc<rustls::ServerConfig>,
    pub verifies_clients: bool,
}

fn build_server(opts: &ServerTlsOptions, contents: &[Vec<u8>]) -> Result<BuiltServer, TlsError> {
    let provider = super::provider();
    let certs = super::parse_certs("certificate", &opts.cert_file, &contents[0])?;
    let key = super::parse_key(&opts.key_file, &contents[1])?;
    let versions = TlsVersion::range(opts.min_version, opts.max_version)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|source| TlsError::Rustls {
            what: format!("{}: protocol versions", opts.what),
            source,
        })?;
    let verifier: Arc<dyn ClientCertVerifier> = match (opts.client_auth, &opts.client_ca_file) {
        (ClientAuth::NoClientCert, _) => rustls::server::WebPkiClientVerifier::no_client_auth(),
        (ClientAuth::RequestClientCert, _) => Arc::new(AnyClientCert {
            mandatory: false,
            provider: provider.clone(),
        }),
        (ClientAuth::RequireAnyClientCert, _) => Arc::new(AnyClientCert {
            mandatory: true,
            provider: provider.clone(),
        }),
        (mode, Some(ca_path)) => {
            let roots = super::parse_roots("client CA", ca_path, &contents[2])?;
            let mut b = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            );
            if mode == ClientAuth::VerifyClientCertIfGiven {
                b = b.allow_unauthenticated();
            }
            let inner = b.build().map_err(|e| {
                TlsError::Config(format!(
                    "{}: client CA {}: {e}",
                    opts.what,
                    ca_path.display()
                ))
            })?;
            if opts.allowed_sans.is_empty() {
                inner
            } else {
                Arc::new(AllowedSans {
                    inner,
                    allowed: opts.allowed_sans.clone(),
                })
            }
        }
        (mode, None) => {
            return Err(TlsError::Config(format!(
                "{}: client auth {mode:?} needs a client CA file",
                opts.what
            )));
        }
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Rustls {
            what: format!(
                "{}: certificate {} with key {}",
                opts.what,
                opts.cert_file.display(),
                opts.key_file.display()
            ),
            source,
        })?;
    config.alpn_protocols = opts.alpn.clone();
    Ok(BuiltServer {
        config: Arc::new(config),
        verifies_clients: opts.client_auth.verifies(),
    })
}

/// A reloadable TLS server configuration.
#[derive(Debug, Clone)]
pub struct ServerTls {
    opts: Arc<ServerTlsOptions>,
    inner: Arc<Reloading<BuiltServer>>,
}

impl ServerTls {
    /// Loads the certificate, key and client CA; fails on unusable material.
    pub fn new(opts: ServerTlsOptions) -> Result<Self, TlsError> {
        opts.validate()?;
        let mut paths = vec![opts.cert_file.clone(), opts.key_file.clone()];
        if let Some(ca) = &opts.client_ca_file {
            paths.push(ca.clone());
        }
        let o = opts.clone();
        let inner = Reloading::new(opts.what, paths, move |c: &[Vec<u8>]| build_server(&o, c))?;
        Ok(ServerTls {
            opts: Arc::new(opts),
            inner,
        })
    }

    /// Re-reads the files every `every` while this config is in use.
    pub fn watch(&self, every: Duration) {
        self.inner.spawn_watch(every);
    }

    /// Re-reads the files now; whether new material was published.
    pub fn reload_now(&self) -> bool {
        self.inner.check()
    }

    /// The settings.
    pub fn options(&self) -> &ServerTlsOptions {
        &self.opts
    }

    /// The rustls config new handshakes use.
    pub fn current(&self) -> Arc<BuiltServer> {
        self.inner.current()
    }
}

/// Accepts any client certificate without verifying its chain
/// (`RequestClientCert`, `RequireAnyClientCert`); the handshake signature is
/// still checked, so the client holds the key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A verifying client-cert verifier that also requires one of a list of SANs
/// (web-config `client_allowed_sans`).
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let id =
            parse_identity(end_entity, true).map_err(|e| rustls::Error::General(e.to_string()))?;
        if self.allowed.iter().any(|a| id.has_san(a)) {
            Ok(ok)
        } else {
            Err(rustls::Error::General(format!(
                "client certificate ({}) has none of the allowed SANs {:?}",
                id.describe(),
                self.allowed
            )))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// An accepted connection: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum ServerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl ServerStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            ServerStream::Plain(s) => s,
            ServerStream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            ServerStream::Plain(s) => s.is_write_vectored(),
            ServerStream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for ServerStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        <TcpStream as tonic::transport::server::Connected>::connect_info(self.tcp())
    }
}

/// Most TLS handshakes in progress at once on one listener; each is also
/// bounded in time by the handshake timeout.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// Who is on the other end of an accepted connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote: SocketAddr,
    /// The client certificate's names, when one was presented.
    pub identity: Option<Arc<PeerIdentity>>,
}

/// Accepted (and, with TLS, handshaken) connections: a `Stream` for tonic;
/// the HTTP server takes them one by one with [`Incoming::accept_next`].
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<(ServerStream, PeerInfo)>,
    local_addr: SocketAddr,
}

/// Starts accepting on `listener` (with TLS when `tls` is set) until `stop`
/// is raised or the returned [`Incoming`] is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Option<ServerTls>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> io::Result<Incoming> {
    let local_addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, tls, stop, tx));
    Ok(Incoming { rx, local_addr })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<ServerTls>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    tx: mpsc::Sender<(ServerStream, PeerInfo)>,
) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tx.closed() => return,
            a = listener.accept() => a,
        };
        let (tcp, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &tls else {
            let peer = PeerInfo {
                remote,
                identity: None,
            };
            if tx.send((ServerStream::Plain(tcp), peer)).await.is_err() {
                return;
            }
            continue;
        };
        let built = tls.current();
        let what = tls.options().what;
        let tx = tx.clone();
        // At most MAX_PENDING_HANDSHAKES at once: when they are all taken,
        // accepting waits, and the kernel's backlog holds new connections.
        let permit = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            p = handshakes.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        tokio::spawn(async move {
            let _permit = permit;
            let acceptor = tokio_rustls::TlsAcceptor::from(built.config.clone());
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(server = what, peer = %remote, error = %super::error_chain(&e), "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(server = what, peer = %remote, "TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}");
                    return;
                }
            };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| match parse_identity(der, built.verifies_clients) {
                    Ok(id) => Some(Arc::new(id)),
                    Err(e) => {
                        tracing::warn!(server = what, peer = %remote, error = %e, "cannot read the client certificate's names");
                        None
                    }
                });
            tracing::debug!(server = what, peer = %remote, client = ?identity.as_ref().map(|i| i.describe()), "TLS connection established");
            let _ = tx
                .send((
                    ServerStream::Tls(Box::new(stream)),
                    PeerInfo { remote, identity },
                ))
                .await;
        });
    }
}

impl futures::Stream for Incoming {
    type Item = io::Result<ServerStream>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|o| o.map(|(s, _)| Ok(s)))
    }
}

impl Incoming {
    /// The next accepted connection and who is on the other end; `None`
    /// once the accept loop has stopped (the server is shutting down).
    pub async fn accept_next(&mut self) -> Option<(ServerStream, PeerInfo)> {
        self.rx.recv().await
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

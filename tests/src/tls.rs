//! A TLS client for the tests, independent of Sluice's own: rustls configs from PEM strings, a probe that returns
//! the certificate a server presents in a fresh handshake, and tonic channels dialled over TLS.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sluice_proto::thanos::info::info_client::InfoClient;
use sluice_proto::thanos::store_client::StoreClient;
use tokio::net::TcpStream;
use tonic::transport::Channel;

/// A client config trusting the CAs in `ca_pem` (one or more PEMs), presenting `identity` (cert PEM, key PEM)
/// when given, speaking TLS 1.2 and 1.3 (or only 1.2 with `tls12_only`), offering ALPN h2.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    tls12_only: bool,
) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<std::result::Result<Vec<_>, _>>()?;
            b.with_client_auth_cert(certs, PrivateKeyDer::from_pem_slice(key.as_bytes())?)?
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Handshakes with `addr` as `server_name` and returns the end-entity certificate the server presented (DER).
pub async fn presented_cert(
    addr: std::net::SocketAddr,
    server_name: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned())?;
    let tls = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .context("TLS handshake timed out")?
    .with_context(|| format!("TLS handshake with {addr} as {server_name}"))?;
    let Some(c) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        bail!("{addr} presented no certificate");
    };
    Ok(c.to_vec())
}

/// Dials `https://addr` through rustls for tonic.
#[derive(Clone)]
struct Connector {
    cfg: Arc<rustls::ClientConfig>,
    server_name: String,
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<Self::Response, Self::Error>>
                + Send,
        >,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let cfg = self.cfg.clone();
        let name = self.server_name.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or("127.0.0.1").to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let s = tokio_rustls::TlsConnector::from(cfg)
                .connect(ServerName::try_from(name)?, tcp)
                .await?;
            Ok(TokioIo::new(s))
        })
    }
}

/// A gRPC channel to `addr` over TLS, connected now (so a rejected handshake is an error here or on first use).
pub async fn channel(
    addr: std::net::SocketAddr,
    server_name: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<Channel> {
    let ep =
        Channel::from_shared(format!("https://{addr}"))?.connect_timeout(Duration::from_secs(10));
    Ok(ep
        .connect_with_connector(Connector {
            cfg,
            server_name: server_name.to_owned(),
        })
        .await?)
}

/// A StoreAPI client over TLS with the decode limit raised as Thanos does.
pub async fn store_client(
    addr: std::net::SocketAddr,
    server_name: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<StoreClient<Channel>> {
    Ok(StoreClient::new(channel(addr, server_name, cfg).await?)
        .max_decoding_message_size(sluice_proto::MAX_GRPC_MESSAGE_SIZE))
}

/// An Info client over TLS.
pub async fn info_client(
    addr: std::net::SocketAddr,
    server_name: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<InfoClient<Channel>> {
    Ok(InfoClient::new(channel(addr, server_name, cfg).await?))
}

//! The endpoint set: discovered endpoints, their last `Info`, health.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use sluice_proto::thanos::info::InfoRequest;
use sluice_proto::thanos::info::info_client::InfoClient;
use sluice_storeapi::snappy::SnappyChannel;
use tonic::transport::Channel;

/// The channel to an endpoint: tonic's, snappy-compressed when configured.
pub type EndpointChannel = SnappyChannel<Channel>;

use crate::discovery::{Discovery, Target};
use sluice_model::{Labels, Matcher};
use sluice_tls::{ClientTls, ClientTlsOptions, TlsConnector};

/// Knobs with Thanos' defaults.
#[derive(Debug, Clone)]
pub struct EndpointSetOptions {
    /// Health check interval and `Info` timeout (`--endpoint.info-timeout`, 5s).
    pub info_timeout: Duration,
    /// Endpoints failing for longer are removed (`--store.unhealthy-timeout`, 5m).
    pub unhealthy_timeout: Duration,
    /// Longest wait for the next frame of a `Series` stream; 0 = none (`--store.response-timeout`).
    pub response_timeout: Duration,
    /// Connect timeout for new connections (TLS handshake included).
    pub connect_timeout: Duration,
    /// Client TLS for endpoints without their own `client_config`
    /// (`--grpc-client-tls-*`); `None` = plaintext.
    pub client_tls: Option<ClientTlsOptions>,
    /// How often client certificate files are checked for changes.
    pub tls_reload_interval: Duration,
    /// `--grpc-compression=snappy`: calls to endpoints without their own
    /// `client_config` are snappy-compressed.
    pub snappy: bool,
}

impl Default for EndpointSetOptions {
    fn default() -> Self {
        EndpointSetOptions {
            info_timeout: Duration::from_secs(5),
            unhealthy_timeout: Duration::from_secs(300),
            response_timeout: Duration::ZERO,
            connect_timeout: Duration::from_secs(5),
            client_tls: None,
            tls_reload_interval: sluice_tls::DEFAULT_RELOAD_INTERVAL,
            snappy: false,
        }
    }
}

/// What the last `Info` said, and the health bookkeeping.
#[derive(Debug, Clone, Default)]
pub struct EndpointState {
    pub component_type: String,
    pub label_sets: Vec<Labels>,
    pub min_time: i64,
    pub max_time: i64,
    pub has_store: bool,
    pub supports_without_replica_labels: bool,
    /// The other APIs Info advertised.
    pub rules: bool,
    pub targets: bool,
    pub metric_metadata: bool,
    pub exemplars: bool,
    pub last_check: Option<SystemTime>,
    pub last_error: Option<String>,
    last_success: Option<Instant>,
}

/// How an endpoint is dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Transport {
    Plain,
    Tls(ClientTlsOptions),
    /// The endpoint's TLS settings are invalid; every check fails with this.
    Invalid(String),
}

/// One StoreAPI endpoint.
pub struct Endpoint {
    pub address: String,
    pub strict: bool,
    pub(crate) channel: EndpointChannel,
    transport: Transport,
    /// Set for TLS endpoints: dials, and remembers the last TLS failure.
    connector: Option<TlsConnector>,
    state: RwLock<EndpointState>,
    /// Series streams open to this endpoint right now.
    pub(crate) open_streams: AtomicI64,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.address)
            .field("strict", &self.strict)
            .finish()
    }
}

impl Endpoint {
    fn new(
        target: &Target,
        opts: &EndpointSetOptions,
        transport: Transport,
        tls: Option<Result<Arc<ClientTls>, String>>,
    ) -> Result<Self, String> {
        let scheme = if matches!(transport, Transport::Plain) {
            "http"
        } else {
            "https"
        };
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", target.address))
                .map_err(|e| format!("endpoint {}: {e}", target.address))?
                .connect_timeout(opts.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30));
        let (channel, connector) = match (&transport, tls) {
            (Transport::Plain, _) => (endpoint.connect_lazy(), None),
            (Transport::Invalid(e), _) => {
                let c = TlsConnector::new(Err(e.clone()));
                (endpoint.connect_with_connector_lazy(c.clone()), Some(c))
            }
            (Transport::Tls(_), tls) => {
                let c = TlsConnector::new(
                    tls.unwrap_or_else(|| Err("no client TLS config".to_string())),
                );
                (endpoint.connect_with_connector_lazy(c.clone()), Some(c))
            }
        };
        // An sd-config's `compression` decides for its endpoints; else `--grpc-compression`.
        let snappy = match &target.client {
            Some(c) => c.compression == sluice_storeapi::snappy::NAME,
            None => opts.snappy,
        };
        let channel = SnappyChannel::new(channel, snappy, sluice_proto::MAX_GRPC_MESSAGE_SIZE);
        let mut state = EndpointState::default();
        if target.strict {
            // Thanos' placeholder for a strict endpoint never seen healthy.
            state.has_store = true;
            state.min_time = i64::MIN;
            state.max_time = i64::MAX;
        }
        Ok(Endpoint {
            address: target.address.clone(),
            strict: target.strict,
            channel,
            transport,
            connector,
            state: RwLock::new(state),
            open_streams: AtomicI64::new(0),
        })
    }

    /// The last known state.
    pub fn state(&self) -> EndpointState {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Healthy: the last check succeeded.
    pub fn healthy(&self) -> bool {
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        s.last_error.is_none() && s.last_success.is_some()
    }

    /// Whether this endpoint can be kept for `transport` (TLS endpoints
    /// whose client config failed to build are rebuilt, to retry).
    fn reusable(&self, transport: &Transport) -> bool {
        self.transport == *transport && self.connector.as_ref().is_none_or(|c| c.is_configured())
    }

    /// The last TLS failure on this endpoint's connections, unless `msg`
    /// already says it.
    fn tls_reason(&self, msg: &str, within: Duration) -> String {
        match self.connector.as_ref().and_then(|c| c.last_error(within)) {
            Some(t) if !msg.contains(&t) => format!("; {t}"),
            _ => String::new(),
        }
    }

    /// Calls `Info` and records the outcome.
    async fn check(&self, timeout: Duration) -> Result<(), String> {
        let mut client = InfoClient::new(self.channel.clone());
        let r = tokio::time::timeout(timeout, client.info(InfoRequest {})).await;
        let within = timeout * 2 + Duration::from_secs(1);
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        s.last_check = Some(SystemTime::now());
        match r {
            Ok(Ok(resp)) => {
                let i = resp.into_inner();
                s.component_type = i.component_type;
                s.label_sets = i
                    .label_sets
                    .into_iter()
                    .map(|ls| Labels::from_pairs(ls.labels.into_iter().map(|l| (l.name, l.value))))
                    .collect();
                match i.store {
                    Some(st) => {
                        s.has_store = true;
                        s.min_time = st.min_time;
                        s.max_time = st.max_time;
                        s.supports_without_replica_labels = st.supports_without_replica_labels;
                    }
                    None => s.has_store = false,
                }
                s.rules = i.rules.is_some();
                s.targets = i.targets.is_some();
                s.metric_metadata = i.metric_metadata.is_some();
                s.exemplars = i.exemplars.is_some();
                s.last_error = None;
                s.last_success = Some(Instant::now());
                if let Some(c) = &self.connector {
                    c.clear_error();
                }
                Ok(())
            }
            Ok(Err(status)) => {
                // Transport failures carry the cause (TLS alerts, refused
                // connections) in the source chain, not in the message.
                let mut detail = status.message().to_string();
                let mut cur = std::error::Error::source(&status);
                while let Some(err) = cur {
                    let m = err.to_string();
                    if !m.is_empty() && !detail.contains(&m) {
                        detail = if detail.is_empty() {
                            m
                        } else {
                            format!("{detail}: {m}")
                        };
                    }
                    cur = err.source();
                }
                let mut e = format!(
                    "Info call failed: {}: {detail}",
                    sluice_storeapi::code_name(status.code()),
                );
                e.push_str(&self.tls_reason(&e, within));
                s.last_error = Some(e.clone());
                Err(e)
            }
            Err(_) => {
                let mut e = format!("Info call timed out after {timeout:?}");
                e.push_str(&self.tls_reason(&e, within));
                s.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Whether a query over `[mint, maxt]` with `matchers` may find data here.
    pub fn matches(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> bool {
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        if !s.has_store || s.min_time > maxt || s.max_time < mint {
            return false;
        }
        if s.label_sets.is_empty() {
            return true;
        }
        // Skip the endpoint when every label set contradicts some matcher.
        s.label_sets.iter().any(|ls| {
            matchers
                .iter()
                .all(|m| ls.get(&m.name).is_none_or(|v| m.matches(v)))
        })
    }
}

/// The querier's endpoints.
pub struct EndpointSet {
    discovery: Discovery,
    opts: EndpointSetOptions,
    endpoints: RwLock<BTreeMap<String, Arc<Endpoint>>>,
    /// Discovered endpoints that never passed a check: not queried, but
    /// listed on `/api/v1/stores` with their error (a TLS misconfiguration
    /// shows there), and their connections reused between checks.
    pending: RwLock<BTreeMap<String, Arc<Endpoint>>>,
    /// One reloading client TLS config per distinct setting.
    tls_clients: std::sync::Mutex<std::collections::HashMap<ClientTlsOptions, Arc<ClientTls>>>,
}

impl std::fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSet")
            .field("discovery", &self.discovery)
            .finish()
    }
}

impl EndpointSet {
    pub fn new(discovery: Discovery, opts: EndpointSetOptions) -> Arc<Self> {
        Arc::new(EndpointSet {
            discovery,
            opts,
            endpoints: RwLock::new(BTreeMap::new()),
            pending: RwLock::new(BTreeMap::new()),
            tls_clients: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// How `target` is dialled: its own `client_config`, else the flags.
    fn transport(&self, target: &Target) -> Transport {
        let opts = match &target.client {
            Some(c) => match c.tls_options() {
                Ok(o) => o,
                Err(e) => {
                    return Transport::Invalid(format!(
                        "invalid client_config.tls_config for {}: {e}",
                        target.address
                    ));
                }
            },
            None => self.opts.client_tls.clone(),
        };
        opts.map_or(Transport::Plain, Transport::Tls)
    }

    /// The shared reloading client config for `opts`.
    fn client_tls(&self, opts: &ClientTlsOptions) -> Result<Arc<ClientTls>, String> {
        let mut cache = self.tls_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(opts) {
            return Ok(c.clone());
        }
        let c = ClientTls::new(opts.clone()).map_err(|e| format!("client TLS config: {e}"))?;
        c.watch(self.opts.tls_reload_interval);
        cache.insert(opts.clone(), c.clone());
        Ok(c)
    }

    pub fn options(&self) -> &EndpointSetOptions {
        &self.opts
    }

    /// Re-resolves discovery and checks every endpoint once (Thanos rules:
    /// a new endpoint failing its first check is not added unless strict; an
    /// existing one stays but is not queried; after the unhealthy timeout it
    /// is removed unless strict; undiscovered endpoints go).
    pub async fn refresh(&self) {
        let targets = self.discovery.resolve().await;
        let current = self.all();
        let pending: Vec<Arc<Endpoint>> = self
            .pending
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut checks = Vec::new();
        for t in &targets {
            let transport = self.transport(t);
            let existing = current
                .iter()
                .chain(pending.iter())
                .find(|e| e.address == t.address && e.reusable(&transport))
                .cloned();
            let ep = match existing {
                Some(e) => e,
                None => match Endpoint::new(
                    t,
                    &self.opts,
                    transport.clone(),
                    match &transport {
                        Transport::Tls(o) => Some(self.client_tls(o)),
                        _ => None,
                    },
                ) {
                    Ok(e) => Arc::new(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot create endpoint");
                        continue;
                    }
                },
            };
            let timeout = self.opts.info_timeout;
            checks.push(async move {
                let r = ep.check(timeout).await;
                (ep, r)
            });
        }
        let results = futures::future::join_all(checks).await;
        let mut next = BTreeMap::new();
        let mut next_pending = BTreeMap::new();
        let was: BTreeMap<String, Arc<Endpoint>> = current
            .into_iter()
            .map(|e| (e.address.clone(), e))
            .collect();
        for (ep, r) in results {
            let known = was.contains_key(&ep.address);
            match r {
                Ok(()) => {
                    if !known {
                        tracing::info!(address = %ep.address, component = %ep.state().component_type, "adding new endpoint");
                    }
                    next.insert(ep.address.clone(), ep);
                }
                Err(e) if ep.strict => {
                    tracing::warn!(address = %ep.address, error = %e, "strict endpoint unhealthy; still queried");
                    next.insert(ep.address.clone(), ep);
                }
                Err(e) if !known => {
                    tracing::warn!(address = %ep.address, error = %e, "new endpoint failed its first check; not added");
                    next_pending.insert(ep.address.clone(), ep);
                }
                Err(e) => {
                    let stale = ep
                        .state
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .last_success
                        .is_none_or(|t| t.elapsed() > self.opts.unhealthy_timeout);
                    if stale {
                        tracing::warn!(address = %ep.address, error = %e, "removing endpoint unhealthy for longer than the unhealthy timeout");
                    } else {
                        tracing::warn!(address = %ep.address, error = %e, "endpoint unhealthy; not queried");
                        next.insert(ep.address.clone(), ep);
                    }
                }
            }
        }
        for addr in was.keys() {
            if !next.contains_key(addr) && !targets.iter().any(|t| &t.address == addr) {
                tracing::info!(address = %addr, "removing endpoint no longer discovered");
            }
        }
        *self.endpoints.write().unwrap_or_else(|p| p.into_inner()) = next;
        *self.pending.write().unwrap_or_else(|p| p.into_inner()) = next_pending;
        // Client configs no endpoint uses any more stop being watched.
        self.tls_clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| Arc::strong_count(c) > 1);
    }

    /// Refreshes every `info_timeout` until dropped.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let set = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(set.opts.info_timeout);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                set.refresh().await;
            }
        })
    }

    /// Series streams open right now across all endpoints (leak checks).
    pub fn open_streams(&self) -> i64 {
        self.all()
            .iter()
            .map(|e| e.open_streams.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Every endpoint in the set.
    pub fn all(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Endpoints to query: healthy ones, and strict ones regardless.
    pub fn queryable(&self) -> Vec<Arc<Endpoint>> {
        self.all()
            .into_iter()
            .filter(|e| e.strict || e.healthy())
            .collect()
    }

    /// Union of the queryable endpoints' label sets and time range.
    pub fn info(&self) -> (i64, i64, Vec<Labels>) {
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        let mut sets = Vec::new();
        for e in self.queryable() {
            let s = e.state();
            if !s.has_store {
                continue;
            }
            min = min.min(s.min_time);
            max = max.max(s.max_time);
            sets.extend(s.label_sets);
        }
        sets.sort();
        sets.dedup();
        (min, max, sets)
    }

    /// `/api/v1/stores` data in Thanos' shape: component type → endpoints.
    pub fn stores_json(&self) -> serde_json::Value {
        let mut by_type: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        let pending: Vec<Arc<Endpoint>> = self
            .pending
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for e in self.all().into_iter().chain(pending) {
            let s = e.state();
            let kind = if s.component_type.is_empty() {
                "unknown".to_string()
            } else {
                s.component_type.clone()
            };
            let ts = |t: Option<SystemTime>| {
                t.map(rfc3339)
                    .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
            };
            by_type.entry(kind).or_default().push(serde_json::json!({
                "name": e.address,
                "lastCheck": ts(s.last_check),
                "lastError": s.last_error,
                "labelSets": s.label_sets.iter().map(|ls| ls.iter().map(|l| (l.name.clone(), l.value.clone())).collect::<BTreeMap<_, _>>()).collect::<Vec<_>>(),
                "minTime": s.min_time,
                "maxTime": s.max_time,
                "strict": e.strict,
                "healthy": e.healthy(),
                "openStreams": e.open_streams.load(std::sync::atomic::Ordering::Relaxed),
            }));
        }
        serde_json::to_value(by_type).unwrap_or_default()
    }
}

/// RFC 3339 (UTC, second precision).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    sluice_model::time::rfc3339_nanos(secs, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats() {
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_069_000)),
            "2024-01-01T00:30:00Z"
        );
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}

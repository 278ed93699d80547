//! Real processes on 127.0.0.1: a `sluice store` under test and a moto S3 server. Each is killed (by its own
//! PID) when its handle is dropped; if the test is failing at that moment, the process's log is printed.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sluice_proto::thanos::info::info_client::InfoClient;
use sluice_proto::thanos::store_client::StoreClient;
use tempfile::TempDir;
use tokio::time::{Instant, sleep};
use tonic::transport::Channel;

use crate::tools;

/// How long a process may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `sluice <subcommand>` that prints `sluice <subcommand> listening grpc=ADDR http=ADDR` on stdout:
/// the shared half of [`SluiceStore`] and [`SluiceQuery`].
pub struct SluiceProcess {
    kind: &'static str,
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// Holds the config files, data dir and logs; removed on drop.
    dir: TempDir,
    http_client: reqwest::Client,
    /// `http` or `https` (see [`SluiceProcess::use_https`]).
    http_scheme: &'static str,
}

/// How the tests reach an HTTPS listener: the CA to trust and an optional client certificate (PEM cert + key).
#[derive(Debug, Clone)]
pub struct HttpsAccess {
    pub ca_pem: String,
    pub identity_pem: Option<String>,
}

impl std::fmt::Debug for SluiceProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SluiceProcess")
            .field("kind", &self.kind)
            .field("grpc", &self.grpc)
            .field("http", &self.http)
            .finish()
    }
}

impl SluiceProcess {
    /// Starts `sluice <kind> --grpc-address=127.0.0.1:0 --http-address=127.0.0.1:0 <args>` with `dir` as its
    /// working directory (logs go there) and waits for its listening line.
    fn spawn(kind: &'static str, args: &[String], dir: TempDir) -> Result<SluiceProcess> {
        Self::spawn_env(kind, args, dir, &[])
    }

    /// [`SluiceProcess::spawn`] with extra environment variables for the child.
    fn spawn_env(
        kind: &'static str,
        args: &[String],
        dir: TempDir,
        env: &[(&str, &str)],
    ) -> Result<SluiceProcess> {
        let bin = tools::sluice_bin()?;
        let stderr = File::create(dir.path().join("stderr.log"))?;
        let mut cmd = Command::new(&bin);
        cmd.arg(kind);
        // The query frontend serves HTTP only.
        if kind != "query-frontend" {
            cmd.arg("--grpc-address=127.0.0.1:0");
        }
        cmd.arg("--http-address=127.0.0.1:0")
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        // RUST_LOG (info unless the test run sets it) would override a `--log.level` a test asks for.
        if args.iter().any(|a| a.starts_with("--log.level")) {
            cmd.env_remove("RUST_LOG");
        } else {
            cmd.env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let stdout_log = dir.path().join("stdout.log");
        let (tx, rx) = mpsc::channel::<String>();
        let prefix = format!("sluice {kind} listening");
        std::thread::spawn(move || {
            let mut log = File::create(stdout_log).ok();
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if !sent && line.starts_with(&prefix) {
                    sent = true;
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                bail!(
                    "sluice {kind} did not print `sluice {kind} listening grpc=… http=…` within {START_TIMEOUT:?} \
                     (exit status: {status:?}); command: {cmd:?}\n{}",
                    read_logs(dir.path())
                );
            }
        };
        let (grpc, http) = match parse_listening(&line) {
            Ok(a) => a,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(SluiceProcess {
            kind,
            child,
            grpc,
            http,
            dir,
            http_client: reqwest::Client::new(),
            http_scheme: "http",
        })
    }

    /// Talks HTTPS to the HTTP listener from now on (the process serves `--http.config` with TLS).
    pub fn use_https(&mut self, access: &HttpsAccess) -> Result<()> {
        let mut b = reqwest::Client::builder()
            .tls_backend_rustls()
            .tls_certs_only([reqwest::Certificate::from_pem(access.ca_pem.as_bytes())?]);
        if let Some(id) = &access.identity_pem {
            b = b.identity(reqwest::Identity::from_pem(id.as_bytes())?);
        }
        self.http_client = b.build()?;
        self.http_scheme = "https";
        Ok(())
    }

    /// `http://127.0.0.1:PORT` or `https://…`.
    pub fn http_base(&self) -> String {
        format!("{}://{}", self.http_scheme, self.http)
    }

    /// Polls `/-/ready` until it answers 200, failing if the process exits or `timeout` passes.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.http_get("/-/ready").await {
                Ok((200, _)) => return Ok(()),
                Ok((code, body)) => format!("HTTP {code}: {}", body.trim()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "sluice {} not ready after {timeout:?}; last /-/ready answer: {last}\n{}",
                    self.kind,
                    self.logs()
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `/-/ready` until it answers anything but 200 (the process stays up), failing after `timeout`.
    pub async fn wait_not_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.http_get("/-/ready").await {
                Ok((200, _)) => {}
                Ok(_) => return Ok(()),
                Err(e) => bail!(
                    "sluice {}: /-/ready failed instead of answering: {e:#}",
                    self.kind
                ),
            }
            if Instant::now() >= deadline {
                bail!(
                    "sluice {} still ready after {timeout:?}\n{}",
                    self.kind,
                    self.logs()
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// A StoreAPI client with the decode limit raised as Thanos does.
    pub async fn store_client(&self) -> Result<StoreClient<Channel>> {
        let ch = self.channel().await?;
        Ok(StoreClient::new(ch)
            .max_decoding_message_size(sluice_proto::MAX_GRPC_MESSAGE_SIZE)
            .max_encoding_message_size(sluice_proto::MAX_GRPC_MESSAGE_SIZE))
    }

    /// An Info client.
    pub async fn info_client(&self) -> Result<InfoClient<Channel>> {
        let ch = self.channel().await?;
        Ok(InfoClient::new(ch).max_decoding_message_size(sluice_proto::MAX_GRPC_MESSAGE_SIZE))
    }

    async fn channel(&self) -> Result<Channel> {
        let ch = Channel::from_shared(format!("http://{}", self.grpc))?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("connect gRPC {}", self.grpc))?;
        Ok(ch)
    }

    /// GET on the HTTP listener: (status, body).
    pub async fn http_get(&self, path: &str) -> Result<(u16, String)> {
        let resp = self
            .http_client
            .get(format!("{}{path}", self.http_base()))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .with_context(|| format!("GET {}{path}", self.http_base()))?;
        let code = resp.status().as_u16();
        Ok((code, resp.text().await?))
    }

    /// POST of an `application/x-www-form-urlencoded` body on the HTTP listener: (status, body).
    pub async fn http_post_form(&self, path: &str, form: &str) -> Result<(u16, String)> {
        let resp = self
            .http_client
            .post(format!("{}{path}", self.http_base()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .with_context(|| format!("POST {}{path}", self.http_base()))?;
        let code = resp.status().as_u16();
        Ok((code, resp.text().await?))
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        let (code, body) = self.http_get("/metrics").await?;
        if code != 200 {
            bail!("/metrics answered HTTP {code}: {body}");
        }
        Ok(body)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process (SIGKILL, by its own handle) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().context("kill")?;
        self.child.wait().context("wait")?;
        Ok(())
    }

    /// The process's private directory (config files may be written here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// stderr and stdout of the process so far.
    pub fn logs(&self) -> String {
        read_logs(self.dir.path())
    }
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- sluice {} {} logs ----\n{}",
                self.kind,
                self.grpc,
                tail(&self.logs(), 80)
            );
        }
    }
}

/// A running `sluice store`.
#[derive(Debug)]
pub struct SluiceStore(SluiceProcess);

impl std::ops::Deref for SluiceStore {
    type Target = SluiceProcess;
    fn deref(&self) -> &SluiceProcess {
        &self.0
    }
}

impl std::ops::DerefMut for SluiceStore {
    fn deref_mut(&mut self) -> &mut SluiceProcess {
        &mut self.0
    }
}

impl SluiceStore {
    /// Starts `sluice store --objstore.config-file=<objstore_yaml> --grpc-address=127.0.0.1:0
    /// --http-address=127.0.0.1:0 --data-dir=<tmp>` plus `extra` flags, and waits for its listening line (not for
    /// readiness: see [`SluiceProcess::wait_ready`]).
    pub fn start(objstore_yaml: &str, extra: &[&str]) -> Result<SluiceStore> {
        Self::start_env(objstore_yaml, extra, &[])
    }

    /// [`SluiceStore::start`] with extra environment variables (e.g. `STORAGE_EMULATOR_HOST`).
    pub fn start_env(
        objstore_yaml: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<SluiceStore> {
        let dir = tempfile::Builder::new().prefix("sluice-store-").tempdir()?;
        let cfg = dir.path().join("objstore.yml");
        fs::write(&cfg, objstore_yaml)?;
        let data = dir.path().join("data");
        fs::create_dir_all(&data)?;
        let mut args = vec![
            format!("--objstore.config-file={}", cfg.display()),
            format!("--data-dir={}", data.display()),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Ok(SluiceStore(SluiceProcess::spawn_env(
            "store", &args, dir, env,
        )?))
    }

    /// [`SluiceStore::start_env`], then waits until `/-/ready` answers 200.
    pub async fn start_ready_env(
        objstore_yaml: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<SluiceStore> {
        let s = Self::start_env(objstore_yaml, extra, env)?;
        s.wait_ready(Duration::from_secs(60)).await?;
        Ok(s)
    }

    /// Starts a store and waits until `/-/ready` answers 200.
    pub async fn start_ready(objstore_yaml: &str, extra: &[&str]) -> Result<SluiceStore> {
        let s = Self::start(objstore_yaml, extra)?;
        s.wait_ready(Duration::from_secs(60)).await?;
        Ok(s)
    }

    /// Starts a store whose HTTP listener speaks TLS (`--http.config` among `extra`) and waits until `/-/ready`
    /// answers 200 over HTTPS.
    pub async fn start_ready_https(
        objstore_yaml: &str,
        extra: &[&str],
        access: &HttpsAccess,
    ) -> Result<SluiceStore> {
        let mut s = Self::start(objstore_yaml, extra)?;
        s.use_https(access)?;
        s.wait_ready(Duration::from_secs(60)).await?;
        Ok(s)
    }
}

/// A running `sluice query`.
#[derive(Debug)]
pub struct SluiceQuery(SluiceProcess);

impl std::ops::Deref for SluiceQuery {
    type Target = SluiceProcess;
    fn deref(&self) -> &SluiceProcess {
        &self.0
    }
}

impl std::ops::DerefMut for SluiceQuery {
    fn deref_mut(&mut self) -> &mut SluiceProcess {
        &mut self.0
    }
}

impl SluiceQuery {
    /// Starts `sluice query --grpc-address=127.0.0.1:0 --http-address=127.0.0.1:0 <args>` and waits until it
    /// prints its listening line and `/-/ready` answers 200.
    pub async fn start(args: &[String]) -> Result<SluiceQuery> {
        let dir = tempfile::Builder::new().prefix("sluice-query-").tempdir()?;
        let q = SluiceQuery(SluiceProcess::spawn("query", args, dir)?);
        q.wait_ready(Duration::from_secs(60)).await?;
        Ok(q)
    }

    /// Like [`SluiceQuery::start`] for a querier whose HTTP listener speaks TLS (`--http.config` among `args`).
    pub async fn start_https(args: &[String], access: &HttpsAccess) -> Result<SluiceQuery> {
        let dir = tempfile::Builder::new().prefix("sluice-query-").tempdir()?;
        let mut q = SluiceQuery(SluiceProcess::spawn("query", args, dir)?);
        q.use_https(access)?;
        q.wait_ready(Duration::from_secs(60)).await?;
        Ok(q)
    }

    /// The base URL of the HTTP API, `http://127.0.0.1:PORT` (or `https://`).
    pub fn url(&self) -> String {
        self.http_base()
    }
}

/// A running `sluice sidecar` next to a Prometheus.
#[derive(Debug)]
pub struct SluiceSidecar(SluiceProcess);

impl std::ops::Deref for SluiceSidecar {
    type Target = SluiceProcess;
    fn deref(&self) -> &SluiceProcess {
        &self.0
    }
}

impl std::ops::DerefMut for SluiceSidecar {
    fn deref_mut(&mut self) -> &mut SluiceProcess {
        &mut self.0
    }
}

impl SluiceSidecar {
    /// Starts `sluice sidecar --prometheus.url=<prometheus_url> <args>` and waits for its listening line (not for
    /// readiness, which follows Prometheus: see [`SluiceProcess::wait_ready`]).
    pub fn start(prometheus_url: &str, args: &[String]) -> Result<SluiceSidecar> {
        Self::start_env(prometheus_url, args, &[])
    }

    /// [`SluiceSidecar::start`] with extra environment variables for the child.
    pub fn start_env(
        prometheus_url: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<SluiceSidecar> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-sidecar-")
            .tempdir()?;
        let mut all = vec![format!("--prometheus.url={prometheus_url}")];
        all.extend(args.iter().cloned());
        Ok(SluiceSidecar(SluiceProcess::spawn_env(
            "sidecar", &all, dir, env,
        )?))
    }

    /// Starts a sidecar and waits until `/-/ready` answers 200.
    pub async fn start_ready(prometheus_url: &str, args: &[String]) -> Result<SluiceSidecar> {
        let s = Self::start(prometheus_url, args)?;
        s.wait_ready(Duration::from_secs(60)).await?;
        Ok(s)
    }
}

fn read_logs(dir: &Path) -> String {
    let err = fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
    let out = fs::read_to_string(dir.join("stdout.log")).unwrap_or_default();
    format!("stderr:\n{err}\nstdout:\n{out}")
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Parses `sluice store listening grpc=127.0.0.1:PORT http=127.0.0.1:PORT`.
pub fn parse_listening(line: &str) -> Result<(SocketAddr, SocketAddr)> {
    let mut grpc = None;
    let mut http = None;
    for tok in line.split_whitespace() {
        if let Some(a) = tok.strip_prefix("grpc=") {
            grpc = Some(
                a.parse::<SocketAddr>()
                    .with_context(|| format!("grpc address in {line:?}"))?,
            );
        } else if let Some(a) = tok.strip_prefix("http=") {
            http = Some(
                a.parse::<SocketAddr>()
                    .with_context(|| format!("http address in {line:?}"))?,
            );
        }
    }
    // An HTTP-only process (the query frontend) has no gRPC address.
    if grpc.is_none() && http.is_some() && !line.contains("grpc=") {
        grpc = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    match (grpc, http) {
        (Some(g), Some(h)) => {
            if !g.ip().is_loopback() || !h.ip().is_loopback() {
                bail!("store listens beyond loopback: {line:?}");
            }
            Ok((g, h))
        }
        _ => bail!("listening line lacks grpc= or http=: {line:?}"),
    }
}

/// A `sluice query-frontend` (HTTP only; `grpc` is unused).
pub struct SluiceFrontend(SluiceProcess);

impl std::ops::Deref for SluiceFrontend {
    type Target = SluiceProcess;
    fn deref(&self) -> &SluiceProcess {
        &self.0
    }
}

impl SluiceFrontend {
    /// Starts `sluice query-frontend --query-frontend.downstream-url=<downstream> <args>` and waits for `/-/ready`.
    pub async fn start_ready(downstream: &str, args: &[String]) -> Result<SluiceFrontend> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-frontend-")
            .tempdir()?;
        let mut all = vec![format!("--query-frontend.downstream-url={downstream}")];
        all.extend(args.iter().cloned());
        let f = SluiceFrontend(SluiceProcess::spawn("query-frontend", &all, dir)?);
        f.wait_ready(Duration::from_secs(30)).await?;
        Ok(f)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }
}

/// A moto server (S3 in server mode) on 127.0.0.1, plus a boto3 helper to fill its buckets.
pub struct Moto {
    child: Child,
    pub port: u16,
    dir: TempDir,
    python: PathBuf,
    helper: PathBuf,
}

impl std::fmt::Debug for Moto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moto").field("port", &self.port).finish()
    }
}

impl Moto {
    /// Starts `python3 -m moto.server -H 127.0.0.1 -p PORT` on a free port and waits until it answers.
    pub async fn start() -> Result<Moto> {
        let python = tools::check_moto()?;
        let mut last_err = None;
        for _ in 0..3 {
            match Self::try_start(&python).await {
                Ok(m) => return Ok(m),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("moto did not start")))
    }

    async fn try_start(python: &Path) -> Result<Moto> {
        let port = free_port()?;
        let dir = tempfile::Builder::new().prefix("sluice-moto-").tempdir()?;
        let helper = dir.path().join("s3_helper.py");
        fs::write(&helper, include_str!("s3_helper.py"))?;
        let log = File::create(dir.path().join("moto.log"))?;
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawn moto server")?;
        let mut m = Moto {
            child,
            port,
            dir,
            python: python.to_owned(),
            helper,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = m.child.try_wait() {
                bail!("moto exited ({status}):\n{}", m.log());
            }
            if let Ok(r) = client
                .get(m.endpoint_url())
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(m);
            }
            if Instant::now() >= deadline {
                bail!(
                    "moto not answering on {} after 30 s:\n{}",
                    m.endpoint_url(),
                    m.log()
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// `127.0.0.1:PORT`, as objstore.yml's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.endpoint())
    }

    /// The server's log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    fn helper(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.python)
            .arg(&self.helper)
            .arg(self.endpoint_url())
            .args(args)
            .output()
            .context("run s3_helper.py")?;
        if !out.status.success() {
            bail!(
                "s3_helper.py {args:?} failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates a bucket.
    pub fn make_bucket(&self, bucket: &str) -> Result<()> {
        self.helper(&["mkbucket", bucket]).map(|_| ())
    }

    /// Uploads a local directory tree under `prefix` (meta.json files last).
    pub fn put_dir(&self, bucket: &str, local: &Path, prefix: &str) -> Result<()> {
        let local = local.to_str().context("non-UTF-8 path")?;
        self.helper(&["put-dir", bucket, local, prefix]).map(|_| ())
    }

    /// Deletes every object under `prefix/` (meta.json first).
    pub fn rm_prefix(&self, bucket: &str, prefix: &str) -> Result<()> {
        self.helper(&["rm-prefix", bucket, prefix]).map(|_| ())
    }

    /// Lists every key in a bucket.
    pub fn list(&self, bucket: &str) -> Result<Vec<String>> {
        Ok(self
            .helper(&["ls", bucket])?
            .lines()
            .map(str::to_owned)
            .collect())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- moto :{} log ----\n{}",
                self.port,
                tail(&self.log(), 40)
            );
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `timeout`; `f` also returns a description of the
/// state it saw, shown when the wait fails.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Option<T>, String)>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let (v, state) = f().await?;
        if let Some(v) = v {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not reached within {timeout:?}; last state: {state}");
        }
        sleep(Duration::from_millis(100)).await;
    }
}

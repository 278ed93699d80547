//! Headless Chromium driven through `chromedriver` over the W3C WebDriver HTTP protocol, with just the commands
//! the UI tests use (navigate, find, click, type, run a script, move the pointer, screenshot), plus a check that a
//! screenshot is not blank.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (`apt-get install -y chromium chromium-driver`);
//! `CHROMEDRIVER` and `CHROMIUM` override where they are looked for. The browser only talks to 127.0.0.1: every
//! other host goes to a proxy on a closed loopback port (loopback itself bypasses proxies) and host names do not resolve.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::process::{eventually, free_port};
use crate::tools::which;

/// The W3C element reference key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Viewport of every session; screenshots have this size.
pub const WINDOW: (u32, u32) = (1400, 1000);

fn chromedriver_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMEDRIVER") {
        return Ok(PathBuf::from(p));
    }
    which("chromedriver").context(
        "chromedriver not found in PATH: install it with `apt-get install -y chromium chromium-driver` \
         (or set CHROMEDRIVER=/path/to/chromedriver)",
    )
}

fn chromium_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    // Debian's /usr/bin/chromium is a shell wrapper around this binary.
    let real = PathBuf::from("/usr/lib/chromium/chromium");
    if real.is_file() {
        return Ok(real);
    }
    which("chromium")
        .or_else(|| which("chromium-browser"))
        .context(
            "chromium not found: install it with `apt-get install -y chromium chromium-driver`",
        )
}

/// A running `chromedriver` on 127.0.0.1; on drop it and the browsers it started are killed (by its process group).
pub struct ChromeDriver {
    child: Child,
    url: String,
    dir: TempDir,
    http: reqwest::Client,
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port and waits until it reports ready.
    pub async fn start() -> Result<ChromeDriver> {
        let bin = chromedriver_bin()?;
        chromium_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-chromedriver-")
            .tempdir()?;
        let port = free_port()?;
        let log = dir.path().join("chromedriver.log");
        // Its own process group, which the browsers it starts join: dropping the driver ends them all, even
        // when a failing test never closed its session.
        let child = Command::new(&bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let d = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
        };
        eventually(
            Duration::from_secs(30),
            "chromedriver /status ready",
            || async {
                let r = d.http.get(format!("{}/status", d.url)).send().await;
                let v: Option<Value> = match r {
                    Ok(r) => r
                        .text()
                        .await
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok()),
                    Err(_) => None,
                };
                let ready = v.as_ref().and_then(|v| v["value"]["ready"].as_bool()) == Some(true);
                Ok((ready.then_some(()), format!("{v:?}")))
            },
        )
        .await
        .with_context(|| format!("chromedriver log:\n{}", d.log()))?;
        Ok(d)
    }

    /// chromedriver's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// A new headless browser session.
    pub async fn session(&self) -> Result<Browser> {
        let chromium = chromium_bin()?;
        let profile = self.dir.path().join(format!("profile-{}", free_port()?));
        let (w, h) = WINDOW;
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={w},{h}"),
            "--force-device-scale-factor=1".into(),
            "--hide-scrollbars".into(),
            format!("--user-data-dir={}", profile.display()),
            "--lang=en-US".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-extensions".into(),
            "--disable-sync".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-default-apps".into(),
            "--disable-domain-reliability".into(),
            "--disable-client-side-phishing-detection".into(),
            "--no-pings".into(),
            // No crash reports (the crash handler exits with the browser).
            "--disable-breakpad".into(),
            // Nothing leaves the machine: other hosts go to a closed loopback port, and no DNS lookups.
            "--proxy-server=http://127.0.0.1:9".into(),
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1".into(),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": chromium.to_string_lossy(), "args": args},
        }}});
        let v = call(
            &self.http,
            reqwest::Method::POST,
            &format!("{}/session", self.url),
            Some(caps),
        )
        .await
        .with_context(|| format!("new session; chromedriver log:\n{}", tail(&self.log(), 30)))?;
        let id = v["sessionId"]
            .as_str()
            .context("new session: no sessionId")?
            .to_owned();
        let b = Browser {
            http: self.http.clone(),
            base: format!("{}/session/{id}", self.url),
        };
        // --window-size sizes the window, not the page: pin the viewport so screenshots are WINDOW.
        b.cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setDeviceMetricsOverride",
                "params": {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": false}})),
        )
        .await?;
        Ok(b)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- chromedriver log (tail) ----\n{}",
                tail(&self.log(), 40)
            );
        }
        // The group's id is chromedriver's PID (process_group(0) above).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends one WebDriver command and returns its `value`; a WebDriver error is an `Err` naming it.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = http.request(method.clone(), url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    } else if method == reqwest::Method::POST {
        req = req.header("content-type", "application/json").body("{}");
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("{method} {url}: HTTP {status}, body not JSON: {text}"))?;
    if !status.is_success() || v["value"].get("error").is_some() {
        bail!(
            "{method} {url}: HTTP {status}: {} — {}",
            v["value"]["error"].as_str().unwrap_or("?"),
            v["value"]["message"].as_str().unwrap_or(&text)
        );
    }
    Ok(v["value"].clone())
}

/// An element reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(pub String);

impl Element {
    fn json(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

/// Keys for [`Browser::send_keys`].
pub mod keys {
    pub const ENTER: &str = "\u{E007}";
}

/// One browser session; ended on [`Browser::close`] (chromedriver's exit ends it too).
pub struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        call(&self.http, method, &format!("{}{path}", self.base), body).await
    }

    /// Loads `url` and waits for the page's load event.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await
            .map(|_| ())
    }

    /// All elements matching a CSS selector, now.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(v.as_array()
            .context("find elements: not an array")?
            .iter()
            .filter_map(|e| e[ELEMENT_KEY].as_str().map(|s| Element(s.to_owned())))
            .collect())
    }

    /// Waits up to `timeout` for at least `min` elements matching `css`, and returns them.
    pub async fn wait_for_n(
        &self,
        css: &str,
        min: usize,
        timeout: Duration,
    ) -> Result<Vec<Element>> {
        let what = format!("at least {min} element(s) matching `{css}`");
        eventually(timeout, &what, || async {
            let found = self.find_all(css).await?;
            let n = found.len();
            let page = if n >= min {
                String::new()
            } else {
                self.page_text().await.unwrap_or_default()
            };
            Ok((
                (n >= min).then_some(found),
                format!("{n} found; page text: {page}"),
            ))
        })
        .await
    }

    /// Waits up to `timeout` for an element matching `css`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element> {
        Ok(self.wait_for_n(css, 1, timeout).await?.remove(0))
    }

    /// The rendered text of an element.
    pub async fn text(&self, el: &Element) -> Result<String> {
        let v = self
            .cmd(
                reqwest::Method::GET,
                &format!("/element/{}/text", el.0),
                None,
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// An element's attribute (or property, as WebDriver's "Get Element Attribute" does for booleans).
    pub async fn attr(&self, el: &Element, name: &str) -> Result<Option<String>> {
        let v = self
            .cmd(
                reqwest::Method::GET,
                &format!("/element/{}/attribute/{name}", el.0),
                None,
            )
            .await?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// The visible text of the whole page (for failure messages).
    pub async fn page_text(&self) -> Result<String> {
        let v = self
            .script("return document.body ? document.body.innerText : ''", &[])
            .await?;
        Ok(v.as_str().unwrap_or_default().chars().take(2000).collect())
    }

    pub async fn click(&self, el: &Element) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/click", el.0),
            None,
        )
        .await
        .map(|_| ())
    }

    pub async fn clear(&self, el: &Element) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/clear", el.0),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Types `text` into an element (see [`keys`] for special keys).
    pub async fn send_keys(&self, el: &Element, text: &str) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/value", el.0),
            Some(json!({"text": text})),
        )
        .await
        .map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns what it returns.
    pub async fn script(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Moves the mouse pointer to (`x`, `y`) relative to the centre of `el`.
    pub async fn move_to(&self, el: &Element, x: i64, y: i64) -> Result<()> {
        let actions = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "duration": 50, "origin": el.json(), "x": x, "y": y}],
        }]});
        self.cmd(reqwest::Method::POST, "/actions", Some(actions))
            .await
            .map(|_| ())
    }

    /// A PNG screenshot of the viewport.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await?;
        let b64 = v.as_str().context("screenshot: value is not a string")?;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .context("screenshot: not base64")
    }

    /// Ends the session (closes the browser).
    pub async fn close(self) -> Result<()> {
        self.cmd(reqwest::Method::DELETE, "", None)
            .await
            .map(|_| ())
    }
}

/// What a screenshot shows, roughly.
#[derive(Debug, Clone, Copy)]
pub struct ImageStats {
    pub width: u32,
    pub height: u32,
    /// Standard deviation of the luma over all pixels (0 for a single colour).
    pub luma_stddev: f64,
    /// Distinct colours (RGB), counted up to 100,000.
    pub colors: usize,
}

/// Decodes a PNG and measures how much it varies.
pub fn image_stats(png_bytes: &[u8]) -> Result<ImageStats> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().context("screenshot: not a PNG")?;
    let mut buf = vec![
        0;
        reader
            .output_buffer_size()
            .context("screenshot: image too large")?
    ];
    let info = reader
        .next_frame(&mut buf)
        .context("screenshot: PNG frame")?;
    let channels = info.color_type.samples();
    ensure!(
        channels >= 3,
        "screenshot: {:?} has fewer than 3 channels",
        info.color_type
    );
    let data = &buf[..info.buffer_size()];
    let (mut sum, mut sum_sq, mut n) = (0f64, 0f64, 0f64);
    let mut colors = std::collections::HashSet::new();
    for px in data.chunks_exact(channels) {
        let (r, g, b) = (f64::from(px[0]), f64::from(px[1]), f64::from(px[2]));
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        sum += y;
        sum_sq += y * y;
        n += 1.0;
        if colors.len() < 100_000 {
            colors.insert([px[0], px[1], px[2]]);
        }
    }
    let mean = sum / n.max(1.0);
    Ok(ImageStats {
        width: info.width,
        height: info.height,
        luma_stddev: (sum_sq / n.max(1.0) - mean * mean).max(0.0).sqrt(),
        colors: colors.len(),
    })
}

/// Fails unless the PNG is the window's size and not blank: its luma varies and it has many colours (text
/// anti-aliasing and chart lines give hundreds; an empty page has one or two).
pub fn check_not_blank(png_bytes: &[u8], what: &str) -> Result<ImageStats> {
    let s = image_stats(png_bytes).with_context(|| what.to_owned())?;
    ensure!(
        (s.width, s.height) == WINDOW,
        "{what}: screenshot is {}x{}, want {}x{}",
        s.width,
        s.height,
        WINDOW.0,
        WINDOW.1
    );
    ensure!(
        s.luma_stddev > 8.0 && s.colors >= 64,
        "{what}: screenshot looks blank: {s:?}"
    );
    Ok(s)
}

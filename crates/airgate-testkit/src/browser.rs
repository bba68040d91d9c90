//! A real browser for the web UI's tests: Debian's headless Chromium,
//! driven over WebDriver through Debian's `chromedriver` (W3C WebDriver,
//! plain JSON over HTTP, so a few requests here replace a client crate).
//!
//! A test that needs the browser and does not find it fails, with the
//! command that installs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};

/// `chromedriver` running on a free port, with one browser session;
/// both are ended when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("base", &self.base).finish()
    }
}

fn find(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium of `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Result<Browser> {
        let hint = "hint: `dev/tools` installs Debian's chromium and chromium-driver";
        let driver_bin = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .with_context(|| format!("chromedriver not found\n{hint}"))?;
        let chromium = find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"])
            .with_context(|| format!("chromium not found\n{hint}"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        use std::os::unix::process::CommandExt as _;
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            // Its own process group: Chromium and its helpers end with it.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", driver_bin.display()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
        };
        // chromedriver answers /status once it listens.
        let mut up = false;
        for _ in 0..100 {
            if browser
                .http
                .get(format!("{}/status", browser.base))
                .send()
                .await
                .is_ok()
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !up {
            bail!("chromedriver did not answer on port {port}");
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--disable-default-apps",
                         format!("--window-size={width},{height}")]
            }
        }}});
        let answer = browser.call("POST", "/session", Some(caps)).await?;
        browser.session = answer["sessionId"]
            .as_str()
            .context("WebDriver: no sessionId in the new session's answer")?
            .to_string();
        Ok(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body.unwrap_or(json!({})))?),
        };
        let bytes = request
            .send()
            .await
            .with_context(|| format!("WebDriver {method} {path}"))?
            .bytes()
            .await
            .with_context(|| format!("WebDriver {method} {path}: reading the answer"))?;
        let answer: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("WebDriver {method} {path}: the answer is not JSON"))?;
        if let Some(error) = answer["value"]["error"].as_str() {
            bail!(
                "WebDriver {method} {path}: {error}: {}",
                answer["value"]["message"].as_str().unwrap_or_default()
            );
        }
        Ok(answer["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Loads `url` and waits for the page.
    pub async fn go(&self, url: &str) -> Result<()> {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        )
        .await
        .map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and returns what it returns.
    pub async fn run(&self, script: &str, args: Value) -> Result<Value> {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The page's URL now.
    pub async fn url(&self) -> Result<String> {
        Ok(self
            .call("GET", &self.session_path("/url"), None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The text of the page's body, as a user reads it.
    pub async fn text(&self) -> Result<String> {
        Ok(self
            .run("return document.body.innerText;", json!([]))
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Every URL the page loaded (the document and each resource, from
    /// the Resource Timing API) and every URL its elements point at.
    pub async fn requested(&self) -> Result<Vec<String>> {
        let v = self
            .run(
                "return [location.href]
                   .concat(performance.getEntriesByType('resource').map(e => e.name))
                   .concat(Array.from(document.querySelectorAll('[src],link[href]'))
                     .map(e => e.src || e.href));",
                json!([]),
            )
            .await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(String::from))
            .collect())
    }

    /// Writes a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let png = self
            .call("GET", &self.session_path("/screenshot"), None)
            .await?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .context("the screenshot is not base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver, Chromium and its helpers: one process group.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

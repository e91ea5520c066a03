//! A real mail system for tests: Dovecot (IMAP and LMTP, Maildir, passwd-file users, a
//! master-user service account, push_notification callbacks) and Postfix (SMTP, delivering to
//! Dovecot over LMTP), on loopback ports in a temporary directory.
//!
//! The servers are started by `stack/mail-stack.sh` (embedded here and written into the stack's
//! directory, so it also runs by hand: `crates/testkit/stack/mail-stack.sh start DIR`). It needs
//! root and the Debian packages `dovecot-imapd dovecot-lmtpd lua-socket postfix` and a `vmail`
//! user, which `scripts/test` installs; when something is missing, [`MailStack::start`] fails
//! and says what to install.
//!
//! Users: `alice`, `bob`, `carol` `@example.test` with passwords `alicepw`, `bobpw`, `carolpw`,
//! and with [`MailStackOptions::extra_users`] = N also `u0001@example.test` … (password `pw`).
//! The service account logs in to any mailbox as `alice@example.test*service` / `servicepw`
//! (see [`MailStack::service_login`]), as BES's service account reached every Exchange mailbox.
//!
//! Push callbacks: Dovecot's Lua push_notification driver POSTs one JSON object per mail event
//! (`{"user","event","mailbox","uid","uidvalidity","from","subject"}`; events `MessageNew`,
//! `MessageAppend`, `FlagsSet`, … as Dovecot names them) to [`MailStackOptions::push_url`], or to
//! the URL set for one user with [`MailStack::set_user_push_url`]. It is synchronous (a 2 s
//! timeout) and fire-and-forget.
//!
//! Logs, for a failing test: `DIR/dovecot/dovecot.log`, `DIR/postfix/postfix.log`. Set
//! `BRAMBLE_TEST_KEEP_DIRS=1` to keep the directory after the stack stops.
//!
//! Teardown: [`MailStack::stop`], also on drop. A small watchdog process started with each
//! stack stops it (and removes its directory) when the test process is gone, so a killed test
//! run or the never-dropped [`MailStack::shared`] leaves nothing behind.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rand::seq::SliceRandom;

/// The script that starts and stops the servers; see the module docs.
pub const SCRIPT: &str = include_str!("../stack/mail-stack.sh");

/// The mail domain of every user.
pub const DOMAIN: &str = "example.test";

/// How many `uNNNN` users [`MailStack::shared`] has.
pub const SHARED_EXTRA_USERS: u32 = 60;

const SCRIPT_NAME: &str = "mail-stack.sh";
const BASE_USERS: [&str; 3] = ["alice", "bob", "carol"];
const SERVICE_USER: &str = "service";
const SERVICE_PASSWORD: &str = "servicepw";
const IMAP_OFFSET: u16 = 143;
const LMTP_OFFSET: u16 = 24;
const SMTP_OFFSET: u16 = 25;
/// Every port the stack listens on, as offsets from its `PORT_BASE`.
const PORT_OFFSETS: [u16; 3] = [IMAP_OFFSET, LMTP_OFFSET, SMTP_OFFSET];
/// `PORT_BASE` candidates: below the ephemeral range (32768) with room for later services
/// (CalDAV will be `PORT_BASE + 5232`), and no two bases' ports overlapping.
const PORT_BASES: std::ops::RangeInclusive<u16> = 10..=27;
const PORT_BASE_STEP: u16 = 1000;
/// `mail-stack.sh start` exits with this when a port is taken (another base may work).
const EX_PORT_IN_USE: i32 = 75;
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`MailStack::start`] sets up. `MailStackOptions::default()`: the three named users, no
/// push URL.
#[derive(Debug, Clone, Default)]
pub struct MailStackOptions {
    /// How many users `u0001@example.test` … `uNNNN@example.test` (password `pw`) to add.
    pub extra_users: u32,
    /// Where Dovecot POSTs push_notification events (JSON) for every user, unless a per-user
    /// URL is set with [`MailStack::set_user_push_url`]. `None`: no callbacks.
    pub push_url: Option<String>,
    /// How many IMAP connections Dovecot takes at once (each is an `imap` process of its own,
    /// about 1 MiB). `None`: the script's default, 4,096. A benchmark watching 10,000 mailboxes
    /// raises it.
    pub imap_max_connections: Option<u32>,
}

/// A running Dovecot + Postfix pair; stopped by [`MailStack::stop`] or on drop.
#[derive(Debug)]
pub struct MailStack {
    dir: PathBuf,
    temp: Option<tempfile::TempDir>,
    port_base: u16,
    extra_users: u32,
    watchdog: Option<Child>,
    /// Held while the stack runs: claims the `PORT_BASE` against other stacks (also in other
    /// test processes).
    lock: Option<File>,
    running: bool,
}

impl MailStack {
    /// Starts a stack on a free `PORT_BASE` (random in 10000..=27000, step 1000, all of its
    /// ports free; another one on collision) and waits until IMAP and SMTP answer.
    ///
    /// Fails, naming the Debian package, when a program is missing; fails when not run as root.
    pub fn start(opts: MailStackOptions) -> Result<MailStack> {
        let mut bases: Vec<u16> = PORT_BASES.map(|b| b * PORT_BASE_STEP).collect();
        bases.shuffle(&mut rand::rng());
        let mut collisions = Vec::new();
        for base in bases {
            let Some(lock) = crate::port::lock_file(&format!("mail-{base}"))? else {
                collisions.push(format!("{base}: claimed by another stack"));
                continue;
            };
            if let Some(port) = PORT_OFFSETS
                .map(|o| base + o)
                .into_iter()
                .find(|&p| !port_is_free(p))
            {
                collisions.push(format!("{base}: port {port} in use"));
                continue;
            }
            match Self::start_at(base, lock, &opts) {
                Ok(stack) => return Ok(stack),
                Err(StartError::PortInUse(e)) => collisions.push(format!("{base}: {e:#}")),
                Err(StartError::Failed(e)) => return Err(e),
            }
        }
        bail!(
            "no free PORT_BASE for a mail stack in 10000..=27000:\n  {}",
            collisions.join("\n  ")
        )
    }

    /// The stack shared by all tests of this test process, started on first use with
    /// [`SHARED_EXTRA_USERS`] extra users and no push URL. Tests that share it should each use
    /// their own users (e.g. `u0017@example.test`) so they do not see each other's mail.
    ///
    /// # Panics
    /// If it cannot start, with the reason (every call, not only the first).
    pub fn shared() -> &'static MailStack {
        static SHARED: OnceLock<Result<MailStack, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            MailStack::start(MailStackOptions {
                extra_users: SHARED_EXTRA_USERS,
                ..MailStackOptions::default()
            })
            .map_err(|e| format!("{e:#}"))
        });
        match started {
            Ok(stack) => stack,
            Err(e) => panic!("the shared mail stack did not start: {e}"),
        }
    }

    fn start_at(base: u16, lock: File, opts: &MailStackOptions) -> Result<MailStack, StartError> {
        let temp = tempfile::Builder::new()
            .prefix("bramble-mail-")
            .tempdir()
            .context("creating a temp dir for the mail stack")?;
        let dir = temp.path().to_owned();
        std::fs::write(dir.join(SCRIPT_NAME), SCRIPT).context("writing mail-stack.sh")?;
        let mut stack = MailStack {
            dir,
            temp: Some(temp),
            port_base: base,
            extra_users: opts.extra_users,
            watchdog: None,
            lock: Some(lock),
            running: true,
        };
        // The watchdog first: whatever happens to this process from here on, the servers go.
        stack.watchdog = Some(stack.spawn_watchdog()?);

        let t0 = Instant::now();
        let out = stack
            .script("start")
            .env("PORT_BASE", base.to_string())
            .env("EXTRA_USERS", opts.extra_users.to_string())
            .env("PUSH_URL", opts.push_url.as_deref().unwrap_or(""))
            .env(
                "IMAP_MAX_CONN",
                opts.imap_max_connections.unwrap_or(4096).to_string(),
            )
            .output()
            .context("running bash (Debian package bash) for mail-stack.sh")?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
            stack.stop(); // whatever did start
            let err = anyhow!("{stderr}").context(format!(
                "mail-stack.sh start (PORT_BASE={base}) failed with {}",
                out.status
            ));
            return Err(if out.status.code() == Some(EX_PORT_IN_USE) {
                StartError::PortInUse(err)
            } else {
                StartError::Failed(err)
            });
        }
        let ready = wait_for_greeting(stack.imap_addr(), "* OK")
            .and_then(|()| wait_for_greeting(stack.smtp_addr(), "220"));
        if let Err(e) = ready {
            let logs = stack.log_tails();
            stack.stop();
            return Err(StartError::Failed(e.context(format!(
                "the mail stack started but does not answer\n{logs}"
            ))));
        }
        if std::env::var_os("BRAMBLE_TEST_VERBOSE").is_some() {
            eprintln!(
                "mail stack up in {:?} at {} (PORT_BASE={base})",
                t0.elapsed(),
                stack.dir.display()
            );
        }
        Ok(stack)
    }

    /// `sh` that waits until this process is gone (a zombie counts as gone), then stops the
    /// stack and removes its directory. In its own process group, so a Ctrl-C to the test run
    /// does not take it down with the tests.
    fn spawn_watchdog(&self) -> Result<Child> {
        crate::port::watchdog(
            "mail",
            &format!(r#"bash "$1/{SCRIPT_NAME}" stop "$1""#),
            &self.dir,
        )
    }

    fn script(&self, command: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(self.dir.join(SCRIPT_NAME))
            .arg(command)
            .arg(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    fn addr(&self, offset: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            self.port_base + offset,
        ))
    }

    /// Dovecot's IMAP listener (plaintext, `LOGIN` allowed).
    pub fn imap_addr(&self) -> SocketAddr {
        self.addr(IMAP_OFFSET)
    }

    /// Postfix's SMTP listener; it relays for 127.0.0.0/8 and delivers `@example.test` to
    /// Dovecot.
    pub fn smtp_addr(&self) -> SocketAddr {
        self.addr(SMTP_OFFSET)
    }

    /// Dovecot's LMTP listener (delivery without Postfix).
    pub fn lmtp_addr(&self) -> SocketAddr {
        self.addr(LMTP_OFFSET)
    }

    /// The stack's directory: configuration, logs, Maildirs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Maildir of a user (`…/Maildir` with `new/`, `cur/`, `tmp/` once mail arrived).
    pub fn maildir(&self, email: &str) -> PathBuf {
        self.dir.join("mail").join(email).join("Maildir")
    }

    /// Every user and password: alice, bob, carol, then the extra users in order.
    pub fn users(&self) -> Vec<(String, String)> {
        let named = BASE_USERS
            .iter()
            .map(|u| (format!("{u}@{DOMAIN}"), format!("{u}pw")));
        let extra = (1..=self.extra_users).map(|i| (format!("u{i:04}@{DOMAIN}"), "pw".to_owned()));
        named.chain(extra).collect()
    }

    /// The service account's master-user name and password: `("service", "servicepw")`. Log
    /// in as `USER*service` ([`MailStack::service_login`]) to reach USER's mailbox.
    pub fn service_account(&self) -> (&str, &str) {
        (SERVICE_USER, SERVICE_PASSWORD)
    }

    /// The IMAP login name that opens `email`'s mailbox with the service account's password.
    pub fn service_login(&self, email: &str) -> String {
        format!("{email}*{SERVICE_USER}")
    }

    /// `example.test`.
    pub fn domain(&self) -> &str {
        DOMAIN
    }

    /// Sends push_notification events for `email` to `url` instead of the stack's
    /// [`MailStackOptions::push_url`]; `None` goes back to it. Takes effect with the next mail
    /// event. Lets tests that share a stack each receive their own users' events.
    pub fn set_user_push_url(&self, email: &str, url: Option<&str>) -> Result<()> {
        if email.contains('/') || email.is_empty() {
            bail!("not a user name: {email:?}");
        }
        let path = self.dir.join("push").join(email);
        match url {
            Some(url) => std::fs::write(&path, format!("{url}\n")),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
        }
        .with_context(|| format!("writing {}", path.display()))
    }

    /// Sends `message` (RFC 5322 text; bare `\n` line ends are fine) from `from` to `to` over
    /// SMTP, a plain dialogue with Postfix. Returns once Postfix has accepted it; delivery into
    /// the Maildir follows within milliseconds, IMAP IDLE reports it ~0.5 s later.
    pub fn send_mail(&self, from: &str, to: &str, message: &str) -> Result<()> {
        self.send_mail_bytes(from, to, message.as_bytes())
    }

    /// [`MailStack::send_mail`] for a message that is not text: any bytes (8-bit headers,
    /// invalid UTF-8, NULs), split into lines at `\n` (a `\r` before it is dropped) and sent as
    /// they are. Postfix takes at most 50,000,000 bytes (`message_size_limit` in `mail-stack.sh`).
    pub fn send_mail_bytes(&self, from: &str, to: &str, message: &[u8]) -> Result<()> {
        self.send_mail_accepted(from, to, message).map(|_| ())
    }

    /// [`MailStack::send_mail_bytes`], returning when Postfix accepted the message: the moment
    /// its `250` reply to the message's end was read (before `QUIT`). What a benchmark measures
    /// delivery latency from.
    pub fn send_mail_accepted(&self, from: &str, to: &str, message: &[u8]) -> Result<Instant> {
        smtp_send(self.smtp_addr(), from, to, message).with_context(|| {
            format!(
                "sending mail from {from} to {to} over SMTP at {}",
                self.smtp_addr()
            )
        })
    }

    /// The last lines of the Dovecot and Postfix logs, for a failure message.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for log in ["dovecot/dovecot.log", "postfix/postfix.log"] {
            let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {log} (last lines)\n"));
            for line in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Stops the servers and removes the directory (unless `BRAMBLE_TEST_KEEP_DIRS` is set).
    /// Returns once the ports are free. Idempotent; also run on drop.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        match self.script("stop").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "stopping the mail stack in {} failed ({}): {}",
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            ),
            Err(e) => eprintln!("stopping the mail stack in {}: {e}", self.dir.display()),
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if let Some(temp) = self.temp.take() {
            if crate::port::keep_dirs() {
                eprintln!("kept the mail stack's directory {}", temp.keep().display());
            } else if let Err(e) = temp.close() {
                eprintln!("removing {}: {e}", self.dir.display());
            }
        }
        self.lock = None;
    }
}

impl Drop for MailStack {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug)]
enum StartError {
    /// A port was taken between the check and the bind: try another `PORT_BASE`.
    PortInUse(anyhow::Error),
    /// Anything else: another `PORT_BASE` would not help.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Failed(e)
    }
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Connects until the server's first line starts with `prefix`.
fn wait_for_greeting(addr: SocketAddr, prefix: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let attempt = (|| -> Result<String> {
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line)?;
            Ok(line)
        })();
        match attempt {
            Ok(line) if line.starts_with(prefix) => return Ok(()),
            Ok(line) => bail!(
                "{addr} greeted with {:?}, expected {prefix:?}",
                line.trim_end()
            ),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("{addr} did not answer within {READY_TIMEOUT:?}")));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A minimal SMTP client: EHLO, MAIL, RCPT, DATA (dot-stuffed, CRLF), QUIT. Returns when the
/// message was accepted (its `250` read).
fn smtp_send(addr: SocketAddr, from: &str, to: &str, message: &[u8]) -> Result<Instant> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut expect = |code: &str, what: &str| -> Result<()> {
        // a reply is "CODE-text" lines then one "CODE text" line
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                bail!("connection closed waiting for the reply to {what}");
            }
            if !line.starts_with(code) {
                bail!("{what}: expected {code}, got {:?}", line.trim_end());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    };
    expect("220", "the greeting")?;
    let mut send = |line: &str| writer.write_all(format!("{line}\r\n").as_bytes());
    send("EHLO bramble-testkit.example.test")?;
    expect("250", "EHLO")?;
    send(&format!("MAIL FROM:<{from}>"))?;
    expect("250", "MAIL FROM")?;
    send(&format!("RCPT TO:<{to}>"))?;
    expect("250", "RCPT TO")?;
    send("DATA")?;
    expect("354", "DATA")?;
    // written in pieces: a message may be tens of MiB
    let mut data = std::io::BufWriter::with_capacity(64 * 1024, &mut writer);
    let message = message.strip_suffix(b"\n").unwrap_or(message);
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b".") {
            data.write_all(b".")?;
        }
        data.write_all(line)?;
        data.write_all(b"\r\n")?;
    }
    data.write_all(b".\r\n")?;
    data.flush()?;
    drop(data);
    expect("250", "the message")?;
    let accepted = Instant::now();
    writer.write_all(b"QUIT\r\n")?;
    expect("221", "QUIT")?;
    Ok(accepted)
}

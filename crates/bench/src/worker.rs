//! The other side of a benchmark, run in a child process (`bramble bench-worker SPEC`), so
//! that what it costs is not counted against the programs measured: the devices of
//! `bramble bench activation` and `bramble bench push`, whose Argon2id, keys and mail stores
//! a phone would pay for on its own CPU; the idle connections of `bramble bench idle`, whose
//! descriptors would not fit in the relay's process beside its own; and the raw IMAP IDLE
//! clients of `bramble bench mailboxes`, measured as a process of their own.
//!
//! The parent writes a [`Spec`] as JSON to a file and starts the child; the child answers on
//! its standard output with one JSON [`Line`] per line: `Ready` once it is set up, then
//! `Done` or `Failed` for each device (activation) or a `Step` each time the parent writes a
//! line to its input (idle), and `Finished` at the end of an activation batch; the devices of
//! `bramble bench push` then say `Listening` and a `Received` line for each message stored.
//!
//! Owns: the spec and line types, the child's loop ([`run`]) and the parent's side
//! ([`Child`]). Must not touch: the parent's programs (the child reaches them only over
//! loopback), files outside the spec's directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bramble_device::Device;
use bramble_device::activation::ActivateOptions;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout, Command};

use crate::BenchError;

/// Bytes of one line from the child at most (a line names one device or the totals).
const MAX_LINE: usize = 16 * 1024;
/// Bytes of a spec at most (one names at most tens of thousands of users).
const MAX_SPEC: u64 = 16 * 1024 * 1024;

/// What the child is to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Spec {
    /// Activate each of `emails` (with the one `password`) from its own device, all at once.
    Activate {
        /// The relay's device address.
        relay: String,
        /// The relay certificate's fingerprint.
        fingerprint: String,
        /// Where the devices keep their data (one folder each).
        dir: PathBuf,
        /// The users to activate.
        emails: Vec<String>,
        /// Their activation password.
        password: String,
        /// How long one activation may take.
        timeout: Duration,
    },
    /// Activates each of `emails` from its own device, `at_once` at a time, then keeps every
    /// device connected and receiving: a `Received` line for each new message a device stored
    /// (decrypted, in its mail store), until the parent closes the child's input.
    Push {
        /// The relay's device address.
        relay: String,
        /// The relay certificate's fingerprint.
        fingerprint: String,
        /// Where the devices keep their data (one folder each).
        dir: PathBuf,
        /// The users to activate.
        emails: Vec<String>,
        /// Their activation password.
        password: String,
        /// How long one activation may take.
        timeout: Duration,
        /// Activations running at once.
        at_once: usize,
    },
    /// Opens `connections` idle connections in `steps` equal steps, one step each time the
    /// parent writes a line; holds them until the parent closes the child's input.
    Idle {
        /// What to connect to.
        target: IdleTarget,
        /// Connections in all.
        connections: usize,
        /// In how many steps.
        steps: usize,
    },
}

/// Where idle connections go.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum IdleTarget {
    /// A relay's device port: TLS 1.3 and a device PIN proof each (a fresh identity each).
    Relay {
        /// The relay's device address.
        addr: String,
        /// The relay certificate's fingerprint.
        fingerprint: String,
    },
    /// A nats-server: a plain TCP connection, `CONNECT` and `PING` answered by `PONG`.
    Nats {
        /// Its address.
        addr: String,
    },
    /// An IMAP server: a raw IMAP IDLE client per user (`LOGIN`, `SELECT INBOX`, `IDLE`), the
    /// `i`-th connection logged in as the `i`-th user.
    Imap {
        /// Its address.
        addr: std::net::SocketAddr,
        /// The users, one a connection.
        users: Vec<String>,
        /// Their password.
        password: String,
    },
}

/// One line of the child's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Line {
    /// The devices are open; activations start now.
    Ready,
    /// A device reached Activation Complete after `wall` from its start.
    Done {
        /// The user.
        email: String,
        /// Wall time from the password to Activation Complete.
        wall: Duration,
    },
    /// A device's activation failed.
    Failed {
        /// The user.
        email: String,
        /// Why, in words.
        error: String,
    },
    /// A step of idle connections is open.
    Step {
        /// Connections open now, in all.
        connected: usize,
        /// How long this step's connections took to open.
        elapsed: Duration,
    },
    /// Every device of a `Push` spec is activated and connected: mail may come.
    Listening {
        /// Devices connected.
        connected: usize,
    },
    /// A device stored a new message (decrypted, in its mail store).
    Received {
        /// The device's user.
        email: String,
        /// The message's subject.
        subject: String,
        /// When it was stored: [`monotonic_ns`] (the same clock in every process).
        at_ns: u64,
    },
    /// A device was sent a message it already held (a retried delivery), recognised and not
    /// stored again.
    Duplicate {
        /// The device's user.
        email: String,
    },
    /// All done.
    Finished {
        /// From `Ready` to the last device's end.
        wall: Duration,
        /// CPU time this process used from `Ready` on (all threads).
        cpu: Duration,
    },
}

/// CPU time this process has used, all threads together.
pub fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Nanoseconds on this machine's monotonic clock (`CLOCK_MONOTONIC`): one clock for every
/// process, so a time taken here and one taken in the parent can be subtracted.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

fn say(line: &Line) {
    // A line per write: the parent reads them as they come.
    if let Ok(text) = serde_json::to_string(line) {
        println!("{text}");
    }
}

/// The child: reads the spec at `spec`, does it, and answers on standard output.
///
/// # Errors
/// When the spec cannot be read or a device cannot be opened.
pub async fn run(spec: &Path) -> Result<(), BenchError> {
    let size = std::fs::metadata(spec)
        .map_err(|e| BenchError::Setup(format!("cannot read {}: {e}", spec.display())))?
        .len();
    if size > MAX_SPEC {
        return Err(BenchError::Setup(format!(
            "{} is {size} bytes; a worker spec is at most {MAX_SPEC}",
            spec.display()
        )));
    }
    let text = std::fs::read(spec)
        .map_err(|e| BenchError::Setup(format!("cannot read {}: {e}", spec.display())))?;
    let spec: Spec = serde_json::from_slice(&text)
        .map_err(|e| BenchError::Setup(format!("{} is not a worker spec: {e}", spec.display())))?;
    match spec {
        Spec::Activate {
            relay,
            fingerprint,
            dir,
            emails,
            password,
            timeout,
        } => {
            let devices = open_devices(&dir, emails, &relay, &fingerprint)?;
            let (start, cpu0) = (Instant::now(), process_cpu());
            say(&Line::Ready);
            let mut running = tokio::task::JoinSet::new();
            for (email, mut d) in devices {
                let password = password.clone();
                running.spawn(async move {
                    let opts = ActivateOptions {
                        timeout,
                        ..ActivateOptions::default()
                    };
                    let t = Instant::now();
                    match d.activate(&email, &password, &opts, |_| {}).await {
                        Ok(()) => Line::Done {
                            email,
                            wall: t.elapsed(),
                        },
                        Err(e) => Line::Failed {
                            email,
                            error: e.to_string(),
                        },
                    }
                });
            }
            while let Some(r) = running.join_next().await {
                match r {
                    Ok(line) => say(&line),
                    Err(e) => say(&Line::Failed {
                        email: String::new(),
                        error: format!("a device's task failed: {e}"),
                    }),
                }
            }
            say(&Line::Finished {
                wall: start.elapsed(),
                cpu: process_cpu().saturating_sub(cpu0),
            });
            Ok(())
        }
        Spec::Push {
            relay,
            fingerprint,
            dir,
            emails,
            password,
            timeout,
            at_once,
        } => {
            // Each device holds its connection and its stores' files.
            crate::limits::raise_open_files(emails.len() as u64 * 12 + 256)?;
            let opts = ActivateOptions {
                timeout,
                ..ActivateOptions::default()
            };
            let devices = open_devices(&dir, emails, &relay, &fingerprint)?;
            let (start, cpu0) = (Instant::now(), process_cpu());
            say(&Line::Ready);
            let activated: Vec<(String, Device)> = futures::stream::iter(devices)
                .map(|(email, mut d)| {
                    let (password, opts) = (&password, &opts);
                    async move {
                        let t = Instant::now();
                        match d.activate(&email, password, opts, |_| {}).await {
                            Ok(()) => {
                                say(&Line::Done {
                                    email: email.clone(),
                                    wall: t.elapsed(),
                                });
                                Some((email, d))
                            }
                            Err(e) => {
                                say(&Line::Failed {
                                    email,
                                    error: e.to_string(),
                                });
                                None
                            }
                        }
                    }
                })
                .buffer_unordered(at_once.max(1))
                .filter_map(|d| async move { d })
                .collect()
                .await;
            say(&Line::Finished {
                wall: start.elapsed(),
                cpu: process_cpu().saturating_sub(cpu0),
            });
            let mut input = parent_lines();
            let (up_tx, mut up_rx) = tokio::sync::mpsc::channel(activated.len().max(1));
            let mut listening = tokio::task::JoinSet::new();
            let n = activated.len();
            for (email, d) in activated {
                listening.spawn(receive(email, d, up_tx.clone()));
            }
            drop(up_tx);
            let mut connected = 0;
            while connected < n {
                match up_rx.recv().await {
                    Some(Ok(())) => connected += 1,
                    Some(Err(e)) => {
                        say(&Line::Failed {
                            email: String::new(),
                            error: e.clone(),
                        });
                        return Err(BenchError::Run(e));
                    }
                    None => break,
                }
            }
            say(&Line::Listening { connected });
            // Receive until the parent closes our input.
            while input.recv().await.is_some() {}
            listening.abort_all();
            Ok(())
        }
        Spec::Idle {
            target,
            connections,
            steps,
        } => idle(target, connections, steps.max(1)).await,
    }
}

/// A device for each of `emails` in `dir` (a folder each), set to reach the relay at `relay`
/// whose certificate has `fingerprint`.
fn open_devices(
    dir: &Path,
    emails: Vec<String>,
    relay: &str,
    fingerprint: &str,
) -> Result<Vec<(String, Device)>, BenchError> {
    let fingerprint: bramble_net::tls::Fingerprint = fingerprint
        .parse()
        .map_err(|e| BenchError::Setup(format!("the relay's fingerprint: {e}")))?;
    let mut devices = Vec::with_capacity(emails.len());
    for email in emails {
        let mut d = Device::open(&dir.join(&email))
            .map_err(|e| BenchError::Setup(format!("a device: {e}")))?;
        d.set_relay(relay, Some(fingerprint))
            .map_err(|e| BenchError::Setup(format!("a device's relay: {e}")))?;
        devices.push((email, d));
    }
    Ok(devices)
}

/// One device of a `Push` spec: connected (saying so on `up` once), storing and answering
/// what comes, a `Received` line for each new message. A dropped connection is made again.
async fn receive(
    email: String,
    mut device: Device,
    up: tokio::sync::mpsc::Sender<Result<(), String>>,
) {
    let store = match device.mail_store().await {
        Ok(s) => s,
        Err(e) => {
            let _ = up.send(Err(format!("{email}'s mail store: {e}"))).await;
            return;
        }
    };
    let mut up = Some(up);
    loop {
        let mut conn = match device.connect().await {
            Ok(c) => c,
            Err(e) => {
                if let Some(up) = up.take() {
                    let _ = up.send(Err(format!("{email} cannot connect: {e}"))).await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if let Some(up) = up.take() {
            let _ = up.send(Ok(())).await;
        }
        while let Ok(item) = conn.recv().await {
            let event =
                match bramble_device::mail::handle_and_answer(&mut conn, &store, &item).await {
                    Ok(event) => event,
                    Err(_) => break,
                };
            match event {
                bramble_device::mail::MailEvent::NewMessage { ref_id } => {
                    let at_ns = monotonic_ns();
                    let subject = store
                        .message(ref_id)
                        .await
                        .map(|m| m.subject)
                        .unwrap_or_default();
                    say(&Line::Received {
                        email: email.clone(),
                        subject,
                        at_ns,
                    });
                }
                bramble_device::mail::MailEvent::Duplicate { .. } => say(&Line::Duplicate {
                    email: email.clone(),
                }),
                _ => {}
            }
        }
        conn.close().await;
    }
}

/// Connections being opened at once.
pub const CONNECTING: usize = 256;

async fn idle(target: IdleTarget, connections: usize, steps: usize) -> Result<(), BenchError> {
    crate::limits::raise_open_files(connections as u64 + 64)?;
    let identities = match &target {
        IdleTarget::Relay { .. } => (0..connections)
            .map(|_| bramble_proto::DeviceIdentity::generate())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BenchError::Setup(format!("a device identity: {e}")))?,
        IdleTarget::Nats { .. } | IdleTarget::Imap { .. } => Vec::new(),
    };
    let pin = match &target {
        IdleTarget::Relay { fingerprint, .. } => {
            Some(bramble_net::CertPin::expect(fingerprint.parse().map_err(
                |e| BenchError::Setup(format!("the relay's fingerprint: {e}")),
            )?))
        }
        IdleTarget::Nats { .. } | IdleTarget::Imap { .. } => None,
    };
    let mut input = parent_lines();
    let mut held = tokio::task::JoinSet::new();
    let per = connections.div_ceil(steps);
    let mut done = 0;
    say(&Line::Ready);
    while done < connections {
        if input.recv().await.is_none() {
            return Ok(());
        }
        let n = per.min(connections - done);
        let t = Instant::now();
        let opened: Vec<Result<(), String>> = futures::stream::iter(done..done + n)
            .map(|i| {
                let (target, pin) = (&target, pin.as_ref());
                let identity = identities.get(i);
                async move {
                    match (target, pin, identity) {
                        (IdleTarget::Relay { addr, .. }, Some(pin), Some(identity)) => {
                            let link = bramble_net::Link::connect(
                                addr,
                                pin,
                                bramble_net::Credentials::Device { identity },
                            )
                            .await
                            .map_err(|e| format!("a device login failed: {e}"))?;
                            Ok(Held::Link(Box::new(link)))
                        }
                        (IdleTarget::Nats { addr }, _, _) => nats_client(addr).await.map(Held::Tcp),
                        (
                            IdleTarget::Imap {
                                addr,
                                users,
                                password,
                            },
                            _,
                            _,
                        ) => {
                            let user = users.get(i).ok_or("fewer users than connections")?;
                            crate::push::idle_session(*addr, user, password)
                                .await
                                .map(|(r, w, _)| Held::Imap(r, w))
                                .map_err(|e| format!("{user}: {e}"))
                        }
                        _ => Err("no identity for a device".to_owned()),
                    }
                }
            })
            .buffer_unordered(CONNECTING)
            .map(|r| {
                r.map(|h| {
                    held.spawn(h.hold());
                })
            })
            .collect()
            .await;
        if let Some(Err(e)) = opened.into_iter().find(Result::is_err) {
            say(&Line::Failed {
                email: String::new(),
                error: e.clone(),
            });
            return Err(BenchError::Run(e));
        }
        done += n;
        say(&Line::Step {
            connected: done,
            elapsed: t.elapsed(),
        });
    }
    // Hold them until the parent closes our input.
    while input.recv().await.is_some() {}
    held.abort_all();
    Ok(())
}

/// The parent's lines on our standard input, read on a thread of their own (tokio's stdin
/// is a thread too, and its feature is not built); the channel closes with the input.
fn parent_lines() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        use std::io::{BufRead, Read};
        let mut input = std::io::stdin().lock();
        let mut line = Vec::new();
        loop {
            // A line is a word ("next"); at most MAX_LINE bytes of one are read.
            line.clear();
            match (&mut input)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => return,
                Ok(_) if tx.blocking_send(()).is_err() => return,
                Ok(_) => {}
            }
        }
    });
    rx
}

/// An open idle connection.
enum Held {
    Link(Box<bramble_net::Link>),
    Tcp(tokio::net::TcpStream),
    Imap(crate::push::ImapReader, crate::push::ImapWriter),
}

impl Held {
    /// Keeps the connection alive: reads what comes (a relay's keepalive, a NATS `PING`,
    /// answered) until it closes.
    async fn hold(self) {
        match self {
            Held::Link(mut link) => while link.recv().await.is_ok() {},
            // Dovecot says "* OK Still here" now and then; nothing to answer while idling.
            Held::Imap(mut r, _w) => while crate::push::imap_line(&mut r).await.is_ok() {},
            Held::Tcp(mut s) => {
                let mut buf = [0u8; 512];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if buf[..n].windows(4).any(|w| w == b"PING")
                                && s.write_all(b"PONG\r\n").await.is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A NATS client that said `CONNECT` and got its `PING` answered.
async fn nats_client(addr: &str) -> Result<tokio::net::TcpStream, String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to nats-server at {addr}: {e}"))?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let mut wrote = false;
    loop {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading nats-server: {e}"))?;
        if n == 0 {
            return Err("nats-server closed the connection".into());
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.len() > 64 * 1024 {
            return Err("nats-server sent too much before PONG".into());
        }
        if !wrote && seen.windows(2).any(|w| w == b"\r\n") {
            s.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
                .await
                .map_err(|e| format!("writing to nats-server: {e}"))?;
            wrote = true;
        }
        if wrote && seen.windows(4).any(|w| w == b"PONG") {
            return Ok(s);
        }
    }
}

/// The parent's side: a running child and its answer.
#[derive(Debug)]
pub struct Child {
    child: tokio::process::Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
    /// What was read of a line not yet whole (kept when [`Child::next`] is cancelled).
    partial: Vec<u8>,
}

impl Child {
    /// Writes `spec` into `dir` and starts this program's `bench-worker` on it.
    ///
    /// # Errors
    /// When the spec cannot be written or the child cannot be started.
    pub fn start(spec: &Spec, dir: &Path, name: &str) -> Result<Child, BenchError> {
        let path = dir.join(format!("worker-{name}.json"));
        let text = serde_json::to_vec(spec)
            .map_err(|e| BenchError::Setup(format!("the worker spec: {e}")))?;
        std::fs::write(&path, text)
            .map_err(|e| BenchError::Setup(format!("cannot write {}: {e}", path.display())))?;
        let exe = std::env::current_exe()
            .map_err(|e| BenchError::Setup(format!("cannot find this program to start it: {e}")))?;
        let mut child = Command::new(exe)
            .arg("bench-worker")
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Setup(format!("cannot start the benchmark worker: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Setup("the benchmark worker has no output".into()))?;
        Ok(Child {
            input: child.stdin.take(),
            child,
            output: BufReader::new(stdout),
            partial: Vec::new(),
        })
    }

    /// The child's process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Tells the child to go on (an idle worker opens its next step).
    ///
    /// # Errors
    /// When the child is gone.
    pub async fn go_on(&mut self) -> Result<(), BenchError> {
        let gone = || BenchError::Run("the benchmark worker is gone".into());
        let input = self.input.as_mut().ok_or_else(gone)?;
        input.write_all(b"next\n").await.map_err(|_| gone())?;
        input.flush().await.map_err(|_| gone())
    }

    /// Closes the child's input (an idle worker then lets its connections go and ends) and
    /// waits for it to end.
    pub async fn finish(mut self) {
        drop(self.input.take());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }

    /// The next line of the child's answer; `None` when it ended. Cancel-safe: what was read
    /// of a line is kept for the next call.
    ///
    /// # Errors
    /// When the child writes something that is not a line of the answer.
    pub async fn next(&mut self) -> Result<Option<Line>, BenchError> {
        // At most MAX_LINE bytes are read for one line: a longer one is refused, not kept.
        let room = (MAX_LINE as u64 + 1).saturating_sub(self.partial.len() as u64);
        let n = (&mut self.output)
            .take(room)
            .read_until(b'\n', &mut self.partial)
            .await
            .map_err(|e| BenchError::Run(format!("reading the benchmark worker: {e}")))?;
        // Returned (not cancelled): a whole line, the end of the output, or the limit reached.
        let raw = std::mem::take(&mut self.partial);
        if n == 0 && raw.is_empty() {
            let status = self.child.wait().await.ok();
            return match status {
                Some(s) if s.success() => Ok(None),
                Some(s) => Err(BenchError::Run(format!("the benchmark worker ended: {s}"))),
                None => Ok(None),
            };
        }
        if raw.len() > MAX_LINE {
            return Err(BenchError::Run(
                "the benchmark worker wrote an over-long line".into(),
            ));
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end();
        serde_json::from_str(line).map(Some).map_err(|e| {
            BenchError::Run(format!(
                "the benchmark worker wrote {line:?}, not a line of its answer: {e}"
            ))
        })
    }
}

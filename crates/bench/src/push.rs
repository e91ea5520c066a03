//! `bramble bench push`: push latency, from SMTP acceptance to the device holding the
//! decrypted message, with N activated devices on a real Dovecot and Postfix (default 1,000),
//! against two baselines measured on the same mailboxes in the same run:
//!
//! - the floor: SMTP acceptance to Dovecot's push_notification callback (its Lua driver, the
//!   one the server's push hook listens to) reaching a bare HTTP listener in this process;
//! - what a mail client gets: a raw IMAP IDLE client per mailbox, SMTP acceptance to its
//!   `* n EXISTS`.
//!
//! Procedure: the mail stack of `bramble-testkit` starts (Dovecot and Postfix on loopback; it
//! needs root and their Debian packages, and says which are missing) with N users. First the
//! baselines: every user's push URL points at the bare listener, an IDLE client sits on every
//! INBOX, and mail goes in over SMTP at the set rate, one message per user in turn. Then the
//! relay and the enterprise server start in this process (the server watching every mailbox
//! over IMAP as the service account, its push hook on loopback), the devices in a child process
//! ([`crate::worker`]) activate through the real mail path (`at_once` at a time) and stay
//! connected, every user's push URL points at the server's hook, and the same number of
//! messages goes in at the same rate. A device reports each message it stored; each latency
//! is its clock time (`CLOCK_MONOTONIC`, one clock for every process) minus the time Postfix
//! answered `250` to the message. A message that does not arrive within 60 s, or arrives twice,
//! fails the run.
//!
//! The messages are realistic business mail of 2–8 KiB ([`crate::corpus`]) with a subject that
//! names the phase and the message's number.
//!
//! Owns: that procedure, the bare HTTP listener and the IDLE clients. Must not touch: the code
//! it measures (public APIs only), anything beyond loopback and its temporary directories.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble_testkit::mail::{MailStack, MailStackOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::latency::Latencies;
use crate::report::{Report, Row};
use crate::worker::{self, monotonic_ns};
use crate::{BenchError, Options, progress, site};

/// p50 at most this many times the floor's (the goal).
pub const P50_GOAL: f64 = 2.0;
/// p99 at most this many times the floor's (the goal).
pub const P99_GOAL: f64 = 3.0;
/// p50 at most this fraction of IMAP IDLE's (the goal: 10× faster).
pub const IDLE_GOAL: f64 = 0.1;
pub(crate) const PASSWORD: &str = "Bench-Push-Activation-1";
/// The password of the mail stack's `uNNNN` users.
pub(crate) const USER_PASSWORD: &str = "pw";
const SENDER: &str = "reports@partner.example";
/// How long a message may take to arrive before the run fails (a full run).
pub(crate) const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(60);
/// The same with `--quick`, where every message arrives within a second: a lost one is named
/// well before a caller's own time limit (the smoke tests allow 20 s for the whole run).
pub(crate) const QUICK_ARRIVAL_TIMEOUT: Duration = Duration::from_secs(8);
/// Bytes of one HTTP request's head, and of its body, the bare listener reads at most.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;
/// Bytes of one IMAP line an IDLE client reads at most.
const MAX_IMAP_LINE: usize = 8 * 1024;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Users with a mailbox and an activated device.
    pub devices: usize,
    /// Messages sent in each phase, one per user in turn.
    pub messages: usize,
    /// Messages per second over SMTP.
    pub rate: f64,
    /// Activations running at once while the devices are set up.
    pub at_once: usize,
    /// How long a message may take to arrive before the run fails.
    pub arrival: Duration,
}

impl Size {
    /// The default size (1,000 devices, 1,000 messages at 50/s), or a small one with `quick`.
    pub fn for_options(opts: &Options) -> Size {
        if opts.quick {
            Size {
                devices: 5,
                messages: 10,
                rate: 10.0,
                at_once: 5,
                arrival: QUICK_ARRIVAL_TIMEOUT,
            }
        } else {
            Size {
                devices: 1000,
                messages: 1000,
                rate: 50.0,
                at_once: 50,
                arrival: ARRIVAL_TIMEOUT,
            }
        }
    }
}

/// Runs the push latency benchmark at its default size.
///
/// # Errors
/// When the mail stack, the relay, the server or a device cannot be set up, or a message is
/// lost or shown twice.
pub async fn run(opts: &Options) -> Result<Report, BenchError> {
    let size = Size::for_options(opts);
    let mut report = run_sized(size).await?;
    report.quick = opts.quick;
    Ok(report)
}

/// Runs the push latency benchmark at `size`.
///
/// # Errors
/// As [`run`].
pub async fn run_sized(size: Size) -> Result<Report, BenchError> {
    let n = size.devices.max(1);
    let stack = start_stack(n, 2 * n + 256).await?;
    let users: Vec<String> = (1..=n).map(|i| format!("u{i:04}@example.test")).collect();
    let dir = tempfile::tempdir().map_err(|e| BenchError::Setup(format!("a temp dir: {e}")))?;
    let root = dir.path();

    // Baselines: the hook at a bare listener, an IDLE client on every INBOX.
    let mut floor_hook = BareHook::start().await?;
    set_push_urls(&stack, &users, &floor_hook.url()).await?;
    let mut idle = IdleClients::connect(stack.imap_addr(), &users).await?;
    let users = Arc::new(users);
    let (floor, idle_lat) = {
        let bar = progress::bar(size.messages as u64, "push: baselines (floor, IDLE)");
        let sent = send_paced(
            stack.clone(),
            users.clone(),
            "floor".into(),
            size,
            Some(bar.clone()),
        )
        .await?;
        bar.finish_and_clear();
        let floor = floor_hook.collect(&sent, size.arrival).await?;
        let idle_lat = idle.collect(&sent, size.arrival).await?;
        (floor, idle_lat)
    };
    idle.close();
    floor_hook.stop();

    // Bramble: relay and server here, the devices in a child process.
    let site = site::start(root, &site::MailPath::dovecot(&stack)).await?;
    site::add_users(&site.cfg, &users, PASSWORD, "push: adding users").await?;
    let server = site::start_server(&site).await?;
    let hook = server
        .push_addr()
        .ok_or_else(|| BenchError::Setup("the server's push hook is not listening".into()))?;
    set_push_urls(&stack, &users, &format!("http://{hook}/dovecot")).await?;
    let mut devices = start_devices(root, &site, &users, size).await?;

    let cpu0 = worker::process_cpu();
    // markers for a log of what the programs did (BRAMBLE_LOG=bramble_bench=info,…)
    tracing::info!(messages = size.messages, "push: sending");
    let round = devices
        .round(&stack, &users, "push", size, &format!("push: {n} devices"))
        .await;
    let server_cpu = worker::process_cpu().saturating_sub(cpu0);
    tracing::info!("push: all stored");
    devices.child.finish().await;
    server.shutdown().await;
    site.relay.shutdown().await;
    let (push, duplicates) = round?;

    let q = |l: &Latencies, q: f64| l.quantile_us(q) / 1000.0;
    let floor_name = "floor: SMTP accepted → Dovecot's push callback at a bare HTTP listener";
    let mut rows = Vec::new();
    for (what, quantile, goal) in [
        ("p50", 0.5, Some(P50_GOAL)),
        ("p90", 0.9, None),
        ("p99", 0.99, Some(P99_GOAL)),
        ("max", 1.0, None),
    ] {
        let (figure, base) = (q(&push, quantile), q(&floor, quantile));
        rows.push(Row::new(
            format!("push latency, SMTP accepted → on the device, {n} devices: {what}"),
            figure,
            "ms",
            format!("{floor_name}, {what}"),
            base,
            goal.map_or_else(
                || "informational".to_owned(),
                |g| format!("<= {g}x the floor"),
            ),
            goal.map(|g| base > 0.0 && figure / base <= g),
        ));
    }
    let (p50, idle_p50) = (q(&push, 0.5), q(&idle_lat, 0.5));
    rows.push(Row::new(
        format!("push latency p50 against IMAP IDLE, {n} devices"),
        p50,
        "ms",
        "a raw IMAP IDLE client per mailbox: SMTP accepted → EXISTS, p50",
        idle_p50,
        format!("<= {IDLE_GOAL}x IDLE (10x faster)"),
        Some(idle_p50 > 0.0 && p50 / idle_p50 <= IDLE_GOAL),
    ));
    rows.push(Row::new(
        "messages on the devices, each once",
        push.len() as f64,
        "msgs",
        "messages accepted over SMTP",
        size.messages as f64,
        "all, none twice",
        // a message stored twice fails the run (match_arrivals); a retried delivery the
        // device recognised is counted in the notes
        Some(push.len() as usize == size.messages),
    ));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Report {
        bench: "push".into(),
        quick: false,
        machine: crate::Machine::current(),
        rows,
        notes: vec![
            format!(
                "Dovecot and Postfix (bramble-testkit's mail stack) with {n} users; {} messages \
                 a phase over SMTP at {}/s, one per user in turn, 2–8 KiB of realistic mail \
                 each; all on the same {cores} cores",
                size.messages, size.rate
            ),
            format!(
                "relay and server (SQLite) in this process, watching {n} mailboxes over IMAP as \
                 the service account with Dovecot's push hook; the {n} devices (activated \
                 through the real mail path beforehand, {} at a time) in a child process",
                size.at_once
            ),
            format!(
                "this process (relay, server, the SMTP client) used {:.2} ms of CPU a message \
                 while mail was pushed",
                server_cpu.as_secs_f64() * 1000.0 / size.messages.max(1) as f64
            ),
            format!(
                "{duplicates} retried deliveries were recognised by the devices and not shown \
                 again"
            ),
        ],
    })
}

/// Starts a mail stack with `users` extra users and room for `connections` IMAP connections.
pub(crate) async fn start_stack(
    users: usize,
    connections: usize,
) -> Result<Arc<MailStack>, BenchError> {
    let users = u32::try_from(users).map_err(|_| BenchError::Setup("too many users".into()))?;
    let connections =
        u32::try_from(connections).map_err(|_| BenchError::Setup("too many users".into()))?;
    tokio::task::spawn_blocking(move || {
        MailStack::start(MailStackOptions {
            extra_users: users,
            imap_max_connections: Some(connections),
            ..MailStackOptions::default()
        })
    })
    .await
    .map_err(|e| BenchError::Setup(e.to_string()))?
    .map(Arc::new)
    .map_err(|e| {
        BenchError::Setup(format!(
            "the mail stack (Dovecot and Postfix) did not start: {e:#}"
        ))
    })
}

/// Points every user's push_notification callback at `url`.
pub(crate) async fn set_push_urls(
    stack: &Arc<MailStack>,
    users: &[String],
    url: &str,
) -> Result<(), BenchError> {
    let (stack, users, url) = (stack.clone(), users.to_vec(), url.to_owned());
    tokio::task::spawn_blocking(move || {
        users
            .iter()
            .try_for_each(|u| stack.set_user_push_url(u, Some(&url)))
    })
    .await
    .map_err(|e| BenchError::Setup(e.to_string()))?
    .map_err(|e| BenchError::Setup(format!("setting the push URLs: {e:#}")))
}

/// A message sent and accepted.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// Its subject (unique in the run).
    subject: String,
    /// Which user it went to (an index into the users).
    user: usize,
    /// When Postfix accepted it, [`monotonic_ns`].
    accepted_ns: u64,
}

/// `message` with its `Subject:` header (and the lines folded into it) replaced by `subject`.
fn with_subject(message: &[u8], subject: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + subject.len());
    let mut in_subject = false;
    let mut in_head = true;
    let mut replaced = false;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if in_head {
            let bare = line.strip_suffix(b"\n").unwrap_or(line);
            let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
            if bare.is_empty() {
                in_head = false;
                if !replaced {
                    out.extend_from_slice(format!("Subject: {subject}\r\n").as_bytes());
                }
            } else if in_subject && line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                continue;
            } else if line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"subject:") {
                in_subject = true;
                replaced = true;
                out.extend_from_slice(format!("Subject: {subject}\r\n").as_bytes());
                continue;
            } else {
                in_subject = false;
            }
        }
        out.extend_from_slice(line);
    }
    out
}

/// Sends `size.messages` messages over SMTP at `size.rate`, one per user in turn, each with the
/// subject `bench {phase} NNNNNN`; returns them with their acceptance times.
pub(crate) async fn send_paced(
    stack: Arc<MailStack>,
    users: Arc<Vec<String>>,
    phase: String,
    size: Size,
    bar: Option<indicatif::ProgressBar>,
) -> Result<Vec<Sent>, BenchError> {
    // Messages of their own for each phase (Message-IDs too): FNV-1a of its name as the seed.
    let seed = phase.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let bodies = crate::corpus::Corpus::new(seed).messages(size.messages);
    let anchor = (Instant::now(), monotonic_ns());
    let to_ns = move |t: Instant| {
        anchor.1.saturating_add(
            u64::try_from(t.saturating_duration_since(anchor.0).as_nanos()).unwrap_or(u64::MAX),
        )
    };
    let interval = Duration::from_secs_f64(1.0 / size.rate.max(0.001));
    let mut sending = tokio::task::JoinSet::new();
    for (k, body) in bodies.into_iter().enumerate() {
        tokio::time::sleep_until((anchor.0 + interval * k as u32).into()).await;
        let user = k % users.len();
        let (stack, to) = (stack.clone(), users[user].clone());
        let subject = format!("bench {phase} {k:06}");
        sending.spawn_blocking(move || {
            let message = with_subject(&body, &subject);
            stack
                .send_mail_accepted(SENDER, &to, &message)
                .map(|t| Sent {
                    subject,
                    user,
                    accepted_ns: to_ns(t),
                })
        });
    }
    let mut sent = Vec::with_capacity(size.messages);
    while let Some(r) = sending.join_next().await {
        let s = r
            .map_err(|e| BenchError::Run(e.to_string()))?
            .map_err(|e| BenchError::Run(format!("{e:#}")))?;
        sent.push(s);
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    Ok(sent)
}

/// A bare HTTP listener for Dovecot's push callbacks: the time each request was read, by the
/// subject it names.
pub(crate) struct BareHook {
    addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<(String, u64)>,
    task: tokio::task::JoinHandle<()>,
}

impl BareHook {
    pub(crate) async fn start() -> Result<BareHook, BenchError> {
        let listener = TcpListener::bind(site::loopback())
            .await
            .map_err(|e| BenchError::Setup(format!("a listener for the push callbacks: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(Some(event)) = read_callback(conn).await {
                        let _ = tx.send(event);
                    }
                });
            }
        });
        Ok(BareHook { addr, rx, task })
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The latency of each of `sent` (the first callback naming its subject), waiting at most
    /// `arrival` for the last.
    pub(crate) async fn collect(
        &mut self,
        sent: &[Sent],
        arrival: Duration,
    ) -> Result<Latencies, BenchError> {
        let mut waiting: HashMap<&str, u64> = sent
            .iter()
            .map(|s| (s.subject.as_str(), s.accepted_ns))
            .collect();
        let mut lat = Latencies::new();
        let deadline = tokio::time::Instant::now() + arrival;
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((subject, at))) => {
                    if let Some(accepted) = waiting.remove(subject.as_str()) {
                        lat.record(Duration::from_nanos(at.saturating_sub(accepted)));
                    }
                }
                Ok(None) | Err(_) => {
                    return Err(BenchError::Run(format!(
                        "{} of {} messages brought no push callback from Dovecot within {}s \
                         (see its log for lua-push errors)",
                        waiting.len(),
                        sent.len(),
                        arrival.as_secs()
                    )));
                }
            }
        }
        Ok(lat)
    }

    pub(crate) fn stop(self) {
        self.task.abort();
    }
}

/// Reads one callback (head and body, bounded), answers `204`, and returns the subject of a
/// new-message event with the time it was read.
async fn read_callback(mut conn: TcpStream) -> std::io::Result<Option<(String, u64)>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return Ok(None);
    }
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let at = monotonic_ns();
    conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await?;
    let body = buf.get(head_end..head_end + length).unwrap_or_default();
    let event: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    let name = event["event"].as_str().unwrap_or_default();
    if !name.eq_ignore_ascii_case("MessageNew") && !name.eq_ignore_ascii_case("message_new") {
        return Ok(None);
    }
    Ok(event["subject"].as_str().map(|s| (s.to_owned(), at)))
}

/// An IMAP IDLE client on every user's INBOX: the time of each `EXISTS`, by user.
struct IdleClients {
    rx: mpsc::UnboundedReceiver<(usize, u64)>,
    tasks: tokio::task::JoinSet<()>,
}

impl IdleClients {
    /// Logs in as each user, selects INBOX and starts IDLE; returns once all are idling.
    async fn connect(addr: SocketAddr, users: &[String]) -> Result<IdleClients, BenchError> {
        crate::limits::raise_open_files(users.len() as u64 * 3 + 1024)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (up_tx, mut up_rx) = mpsc::channel(users.len().max(1));
        let mut tasks = tokio::task::JoinSet::new();
        let bar = progress::bar(users.len() as u64, "push: IDLE clients");
        // at most 100 logins at a time, as a mail client fleet reconnecting would
        let gate = Arc::new(tokio::sync::Semaphore::new(100));
        for (i, user) in users.iter().enumerate() {
            let (tx, up_tx, user, gate) = (tx.clone(), up_tx.clone(), user.clone(), gate.clone());
            tasks.spawn(async move {
                let permit = gate.acquire_owned().await;
                match idle_session(addr, &user, USER_PASSWORD).await {
                    Ok((reader, writer, base)) => {
                        drop(permit);
                        let _ = up_tx.send(Ok(())).await;
                        watch_exists(reader, writer, i, base, tx).await;
                    }
                    Err(e) => {
                        let _ = up_tx.send(Err(format!("{user}: {e}"))).await;
                    }
                }
            });
        }
        drop(up_tx);
        for _ in 0..users.len() {
            match up_rx.recv().await {
                Some(Ok(())) => bar.inc(1),
                Some(Err(e)) => {
                    return Err(BenchError::Setup(format!(
                        "an IMAP IDLE client could not start: {e}"
                    )));
                }
                None => break,
            }
        }
        bar.finish_and_clear();
        Ok(IdleClients { rx, tasks })
    }

    /// The latency of each of `sent`: the k-th `EXISTS` a user's client saw is the k-th
    /// message sent to that user; waiting at most `arrival` for the last.
    async fn collect(&mut self, sent: &[Sent], arrival: Duration) -> Result<Latencies, BenchError> {
        let mut by_user: HashMap<usize, Vec<u64>> = HashMap::new();
        let mut ordered: Vec<&Sent> = sent.iter().collect();
        ordered.sort_by_key(|s| s.accepted_ns);
        for s in ordered {
            by_user.entry(s.user).or_default().push(s.accepted_ns);
        }
        let mut seen: HashMap<usize, usize> = HashMap::new();
        let mut lat = Latencies::new();
        let mut left = sent.len();
        let deadline = tokio::time::Instant::now() + arrival;
        while left > 0 {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((user, at))) => {
                    let k = seen.entry(user).or_default();
                    if let Some(accepted) = by_user.get(&user).and_then(|v| v.get(*k)) {
                        lat.record(Duration::from_nanos(at.saturating_sub(*accepted)));
                        left -= 1;
                    }
                    *k += 1;
                }
                Ok(None) | Err(_) => {
                    return Err(BenchError::Run(format!(
                        "{left} of {} messages were not announced to the IMAP IDLE clients \
                         within {}s",
                        sent.len(),
                        arrival.as_secs()
                    )));
                }
            }
        }
        Ok(lat)
    }

    fn close(mut self) {
        self.tasks.abort_all();
    }
}

pub(crate) type ImapReader = BufReader<tokio::net::tcp::OwnedReadHalf>;
pub(crate) type ImapWriter = tokio::net::tcp::OwnedWriteHalf;

/// One line from the IMAP server (at most [`MAX_IMAP_LINE`] bytes), without its line end.
pub(crate) async fn imap_line(r: &mut ImapReader) -> Result<String, String> {
    let mut raw = Vec::new();
    let n = r
        .take(MAX_IMAP_LINE as u64)
        .read_until(b'\n', &mut raw)
        .await
        .map_err(|e| format!("reading from Dovecot: {e}"))?;
    if n == 0 {
        return Err("Dovecot closed the connection".into());
    }
    Ok(String::from_utf8_lossy(&raw).trim_end().to_owned())
}

/// `* n EXISTS` → n.
fn exists(line: &str) -> Option<usize> {
    let rest = line.strip_prefix("* ")?;
    let (n, word) = rest.split_once(' ')?;
    word.eq_ignore_ascii_case("EXISTS")
        .then(|| n.parse().ok())
        .flatten()
}

/// Logs in as `user` with `password`, selects INBOX and starts IDLE; returns the connection
/// and how many messages INBOX held.
pub(crate) async fn idle_session(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> Result<(ImapReader, ImapWriter, usize), String> {
    let conn = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to Dovecot at {addr}: {e}"))?;
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    let greeting = imap_line(&mut r).await?;
    if !greeting.starts_with("* OK") {
        return Err(format!("Dovecot greeted with {greeting:?}"));
    }
    let mut base = 0;
    for (tag, command) in [
        ("a1", format!("LOGIN \"{user}\" \"{password}\"")),
        ("a2", "SELECT INBOX".to_owned()),
    ] {
        w.write_all(format!("{tag} {command}\r\n").as_bytes())
            .await
            .map_err(|e| format!("writing to Dovecot: {e}"))?;
        loop {
            let line = imap_line(&mut r).await?;
            if let Some(n) = exists(&line) {
                base = n;
            }
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                if !status.starts_with("OK") {
                    return Err(format!("{command:?} was answered {status:?}"));
                }
                break;
            }
        }
    }
    w.write_all(b"a3 IDLE\r\n")
        .await
        .map_err(|e| format!("writing to Dovecot: {e}"))?;
    loop {
        let line = imap_line(&mut r).await?;
        if line.starts_with('+') {
            return Ok((r, w, base));
        }
        if line.starts_with("a3 ") {
            return Err(format!("IDLE was answered {line:?}"));
        }
    }
}

/// Reports `(user, time)` for each message `EXISTS` announces beyond `base`, until the
/// connection ends.
async fn watch_exists(
    mut r: ImapReader,
    _w: ImapWriter,
    user: usize,
    mut seen: usize,
    tx: mpsc::UnboundedSender<(usize, u64)>,
) {
    while let Ok(line) = imap_line(&mut r).await {
        if let Some(n) = exists(&line) {
            let at = monotonic_ns();
            for _ in seen..n {
                let _ = tx.send((user, at));
            }
            seen = seen.max(n);
        }
    }
}

/// The devices, activated and connected, in their child process.
pub(crate) struct Devices {
    pub(crate) child: worker::Child,
    /// How many there are.
    count: usize,
}

/// What the devices reported while mail was pushed.
#[derive(Debug, Default)]
pub(crate) struct Arrivals {
    /// Each message a device stored: its subject and when.
    stored: Vec<(String, u64)>,
    /// Retried deliveries recognised and not stored again.
    duplicates: u64,
}

/// Activates a device for each user in a child process and waits until all are connected.
pub(crate) async fn start_devices(
    root: &std::path::Path,
    site: &site::Site,
    users: &[String],
    size: Size,
) -> Result<Devices, BenchError> {
    let spec = worker::Spec::Push {
        relay: site.relay.device_addr().to_string(),
        fingerprint: site.relay.fingerprint().to_string(),
        dir: root.join("devices"),
        emails: users.to_vec(),
        password: PASSWORD.into(),
        timeout: Duration::from_secs(300),
        at_once: size.at_once,
    };
    let mut child = worker::Child::start(&spec, root, "push-devices")?;
    let bar = progress::bar(users.len() as u64, "push: activating devices");
    loop {
        match child.next().await? {
            Some(worker::Line::Done { .. }) => bar.inc(1),
            Some(worker::Line::Failed { email, error }) => {
                return Err(BenchError::Setup(format!(
                    "the device of {email} did not activate: {error}"
                )));
            }
            Some(worker::Line::Listening { connected }) => {
                bar.finish_and_clear();
                if connected != users.len() {
                    return Err(BenchError::Setup(format!(
                        "{connected} of {} devices connected",
                        users.len()
                    )));
                }
                return Ok(Devices {
                    child,
                    count: users.len(),
                });
            }
            Some(_) => {}
            None => {
                return Err(BenchError::Setup(
                    "the benchmark worker ended before its devices were connected".into(),
                ));
            }
        }
    }
}

impl Devices {
    /// Sends `size.messages` messages of `phase` to `users` at `size.rate` while reading what
    /// the devices report (so that they never wait on a full pipe); returns each message's
    /// latency from its acceptance to a device's store, and the retried deliveries the devices
    /// recognised. A message lost (not stored within `size.arrival` of the last send) or
    /// stored twice is an error.
    pub(crate) async fn round(
        &mut self,
        stack: &Arc<MailStack>,
        users: &Arc<Vec<String>>,
        phase: &str,
        size: Size,
        label: &str,
    ) -> Result<(Latencies, u64), BenchError> {
        let bar = progress::bar(size.messages as u64, label);
        let sending = tokio::spawn(send_paced(
            stack.clone(),
            users.clone(),
            phase.to_owned(),
            size,
            None,
        ));
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs_f64(size.messages as f64 / size.rate.max(0.001))
            + size.arrival;
        let got = self
            .receive(phase, size.messages, deadline, size.arrival, &bar)
            .await;
        let sent = sending.await.map_err(|e| BenchError::Run(e.to_string()))?;
        bar.finish_and_clear();
        match_arrivals(&sent?, &got?)
    }

    /// The devices' reports until `count` messages of `phase` were stored, or `deadline`.
    async fn receive(
        &mut self,
        phase: &str,
        count: usize,
        deadline: tokio::time::Instant,
        arrival: Duration,
        bar: &indicatif::ProgressBar,
    ) -> Result<Arrivals, BenchError> {
        let mut got = Arrivals::default();
        let prefix = format!("bench {phase} ");
        while got.stored.len() < count {
            match tokio::time::timeout_at(deadline, self.child.next()).await {
                Ok(Ok(Some(worker::Line::Received { subject, at_ns, .. }))) => {
                    if subject.starts_with(&prefix) {
                        got.stored.push((subject, at_ns));
                        bar.inc(1);
                    }
                }
                Ok(Ok(Some(worker::Line::Duplicate { .. }))) => got.duplicates += 1,
                Ok(Ok(Some(worker::Line::Failed { email, error }))) => {
                    return Err(BenchError::Run(format!("the device of {email}: {error}")));
                }
                Ok(Ok(Some(_))) => {}
                Ok(Err(e)) => return Err(e),
                Ok(Ok(None)) | Err(_) => {
                    return Err(BenchError::Run(format!(
                        "{} of {count} messages did not reach the {} devices within {}s of \
                         being sent",
                        count - got.stored.len(),
                        self.count,
                        arrival.as_secs()
                    )));
                }
            }
        }
        Ok(got)
    }
}

/// Each stored message's latency from its acceptance, and the duplicates recognised; a
/// message stored twice is an error.
fn match_arrivals(sent: &[Sent], got: &Arrivals) -> Result<(Latencies, u64), BenchError> {
    let mut waiting: HashMap<&str, u64> = sent
        .iter()
        .map(|s| (s.subject.as_str(), s.accepted_ns))
        .collect();
    let mut lat = Latencies::new();
    for (subject, at) in &got.stored {
        match waiting.remove(subject.as_str()) {
            Some(accepted) => lat.record(Duration::from_nanos(at.saturating_sub(accepted))),
            None => {
                return Err(BenchError::Run(format!(
                    "a device showed {subject:?} twice, or a message that was not sent"
                )));
            }
        }
    }
    Ok((lat, got.duplicates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_is_replaced_with_its_folded_lines() {
        let m = b"From: a@x\r\nSubject: Budget\r\n  for Q3\r\nTo: b@x\r\n\r\nSubject: body\r\n";
        let out = String::from_utf8_lossy(&with_subject(m, "bench push 000001")).into_owned();
        assert_eq!(
            out,
            "From: a@x\r\nSubject: bench push 000001\r\nTo: b@x\r\n\r\nSubject: body\r\n"
        );
        let none = String::from_utf8_lossy(&with_subject(b"From: a@x\n\nhi\n", "s")).into_owned();
        assert_eq!(none, "From: a@x\nSubject: s\r\n\nhi\n");
    }

    #[test]
    fn exists_lines() {
        assert_eq!(exists("* 3 EXISTS"), Some(3));
        assert_eq!(exists("* 3 exists"), Some(3));
        assert_eq!(exists("* 3 RECENT"), None);
        assert_eq!(exists("* OK Still here"), None);
    }
}

//! `bramble bench mailboxes`: the enterprise server watching 1,000 and then 10,000 mailboxes
//! on a real Dovecot: how long until it watches them all, its memory and CPU while idle, and
//! push latency at that size, against raw IMAP IDLE clients on the same mailboxes (in a
//! process of their own: memory, CPU, time to connect) and Dovecot's own push callback (the
//! latency floor) measured in the same run.
//!
//! Procedure: the mail stack of `bramble-testkit` starts with 10,000 users (Dovecot's
//! connection limits raised; each connection is an `imap` process, about 1 MiB). For each
//! size: the users are added to the server's database (the first 20 with an activation
//! password); a child process ([`crate::worker`]) opens an IDLE client on every mailbox and
//! is measured; then the server
//! starts in this process, watching every mailbox over IMAP as the service account; once every
//! watcher is up to date and idling, its anonymous memory (above what this process held before
//! it started) and its CPU over a quiet window are read; then mail goes to the 20 devices'
//! users, first with the push callback at a bare listener (the floor), then at the server's
//! hook, the devices (activated in the first round, in a child process) reporting each message
//! they store. The server is stopped between sizes and starts again on the larger set of users,
//! as after a restart.
//!
//! Owns: that procedure and its rows. Must not touch: the code it measures (public APIs only),
//! anything beyond loopback and its temporary directories.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::idle::{process_cpu_of, rss_anon_kib};
use crate::latency::Latencies;
use crate::push::{self, BareHook, Size};
use crate::report::{Report, Row};
use crate::{BenchError, Options, progress, site, worker};

/// How long the server may take to watch every mailbox.
const WATCH_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs the mailboxes benchmark.
///
/// # Errors
/// When the mail stack, the server or a device cannot be set up, a watcher does not come up,
/// or a message is lost or shown twice.
pub async fn run(opts: &Options) -> Result<Report, BenchError> {
    let (sizes, sample, quiet): (&[usize], usize, Duration) = if opts.quick {
        (&[20], 3, Duration::from_secs(2))
    } else {
        (&[1000, 10_000], 20, Duration::from_secs(20))
    };
    let mail = Size {
        devices: sample,
        messages: if opts.quick { 6 } else { 100 },
        rate: if opts.quick { 6.0 } else { 20.0 },
        at_once: sample,
        arrival: if opts.quick {
            push::QUICK_ARRIVAL_TIMEOUT
        } else {
            push::ARRIVAL_TIMEOUT
        },
    };
    let max = sizes.iter().copied().max().unwrap_or(1);
    let stack = push::start_stack(max, max + 512).await?;
    let all: Vec<String> = (1..=max).map(|i| format!("u{i:04}@example.test")).collect();
    let sampled = Arc::new(all[..sample.min(max)].to_vec());
    let dir = tempfile::tempdir().map_err(|e| BenchError::Setup(format!("a temp dir: {e}")))?;
    let root = dir.path();
    let site = site::start(root, &site::MailPath::dovecot(&stack)).await?;
    site::add_users(
        &site.cfg,
        &sampled,
        push::PASSWORD,
        "mailboxes: adding users",
    )
    .await?;
    let mut added = sampled.len();
    let mut floor_hook = BareHook::start().await?;
    let mut devices: Option<push::Devices> = None;
    let mut rows = Vec::new();
    let mut notes = Vec::new();

    for &size in sizes {
        add_plain_users(&site.cfg, &all[added..size]).await?;
        added = added.max(size);
        let clients = idle_clients(root, stack.imap_addr(), &all[..size], quiet).await?;

        let rss0 = rss_anon_kib("self")?;
        let t = Instant::now();
        let server = site::start_server(&site).await?;
        let bar = progress::bar(size as u64, &format!("mailboxes: watching {size}"));
        let deadline = Instant::now() + WATCH_TIMEOUT;
        loop {
            let (watched, watching) = server.mailboxes();
            bar.set_position(watching as u64);
            if watched == size && watching == size {
                break;
            }
            if Instant::now() > deadline {
                return Err(BenchError::Run(format!(
                    "after {}s the server watched {watched} of {size} mailboxes, {watching} of \
                     them up to date",
                    WATCH_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bar.finish_and_clear();
        let watch_time = t.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss1 = rss_anon_kib("self")?;
        let cpu0 = worker::process_cpu();
        tokio::time::sleep(quiet).await;
        let cpu = worker::process_cpu().saturating_sub(cpu0);

        // The floor at this size, then the server's push to the devices.
        push::set_push_urls(&stack, &sampled, &floor_hook.url()).await?;
        let sent = push::send_paced(
            stack.clone(),
            sampled.clone(),
            format!("floor-{size}"),
            mail,
            None,
        )
        .await?;
        let floor = floor_hook.collect(&sent, mail.arrival).await?;
        let hook = server
            .push_addr()
            .ok_or_else(|| BenchError::Setup("the server's push hook is not listening".into()))?;
        push::set_push_urls(&stack, &sampled, &format!("http://{hook}/dovecot")).await?;
        if devices.is_none() {
            devices = Some(push::start_devices(root, &site, &sampled, mail).await?);
        }
        let Some(devs) = devices.as_mut() else {
            return Err(BenchError::Setup("no devices".into()));
        };
        let (lat, duplicates) = devs
            .round(
                &stack,
                &sampled,
                &format!("push-{size}"),
                mail,
                &format!("mailboxes: push at {size}"),
            )
            .await?;
        server.shutdown().await;

        rows.extend(size_rows(
            size,
            &clients,
            Watched {
                time: watch_time,
                kib: (rss1 - rss0).max(0.0),
                cpu,
                quiet,
            },
        ));
        let q = |l: &Latencies, q: f64| l.quantile_us(q) / 1000.0;
        for (what, quantile, goal) in [("p50", 0.5, push::P50_GOAL), ("p99", 0.99, push::P99_GOAL)]
        {
            let (figure, base) = (q(&lat, quantile), q(&floor, quantile));
            rows.push(Row::new(
                format!("push latency with {size} watched, {sample} devices: {what}"),
                figure,
                "ms",
                format!("Dovecot's push callback at a bare HTTP listener, {what}"),
                base,
                format!("<= {goal}x the floor"),
                Some(base > 0.0 && figure / base <= goal),
            ));
        }
        notes.push(format!(
            "{size} watched: {} messages to the {sample} devices' users at {}/s, all stored \
             once ({duplicates} retried deliveries recognised)",
            mail.messages, mail.rate
        ));
    }
    if let Some(d) = devices {
        d.child.finish().await;
    }
    floor_hook.stop();
    site.relay.shutdown().await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    notes.insert(
        0,
        format!(
            "Dovecot and Postfix (bramble-testkit's mail stack, an imap process for each IMAP \
             connection) with {max} users; relay and server (SQLite) in this process, the \
             IDLE clients and the {sample} devices in child processes, all on the same {cores} \
             cores; memory is RssAnon, CPU over {}s with nothing arriving",
            quiet.as_secs()
        ),
    );
    Ok(Report {
        bench: "mailboxes".into(),
        quick: opts.quick,
        machine: crate::Machine::current(),
        rows,
        notes,
    })
}

/// What the server's watchers cost at one size.
struct Watched {
    /// From the start until every mailbox was watched and up to date.
    time: Duration,
    /// Anonymous memory above this process's before the server started, KiB.
    kib: f64,
    /// CPU over `quiet`.
    cpu: Duration,
    quiet: Duration,
}

/// What the raw IDLE clients cost at one size.
struct Clients {
    /// Until all were idling.
    time: Duration,
    /// Their process's anonymous memory for them, KiB.
    kib: f64,
    /// CPU over `quiet`.
    cpu: Duration,
}

fn size_rows(size: usize, clients: &Clients, server: Watched) -> Vec<Row> {
    let per = |kib: f64| kib / size.max(1) as f64;
    let percent = |cpu: Duration| cpu.as_secs_f64() * 100.0 / server.quiet.as_secs_f64().max(1e-9);
    vec![
        Row::new(
            format!("time until all {size} mailboxes are watched"),
            server.time.as_secs_f64(),
            "s",
            format!(
                "raw IMAP IDLE clients until all idle ({} connecting at a time)",
                worker::CONNECTING
            ),
            clients.time.as_secs_f64(),
            "informational",
            None,
        ),
        Row::new(
            format!("server memory per watched mailbox, {size} watched"),
            per(server.kib),
            "KiB",
            "a raw IMAP IDLE client per mailbox, in a process of its own",
            per(clients.kib),
            "informational",
            None,
        ),
        Row::new(
            format!("server CPU while idle, {size} watched"),
            percent(server.cpu),
            "% of a core",
            "the raw IMAP IDLE clients' process",
            percent(clients.cpu),
            "informational",
            None,
        ),
    ]
}

/// Adds `emails` to the server's database without an activation password (their mailboxes
/// are watched all the same).
async fn add_plain_users(
    cfg: &bramble_server::ServerConfig,
    emails: &[String],
) -> Result<(), BenchError> {
    if emails.is_empty() {
        return Ok(());
    }
    let store = site::open_store(cfg).await?;
    let bar = progress::bar(emails.len() as u64, "mailboxes: adding users");
    for email in emails {
        store
            .add_user(email, None)
            .await
            .map_err(|e| BenchError::Setup(format!("a user: {e}")))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    store.close().await;
    Ok(())
}

/// An IDLE client on each of `users`' INBOX in a child process: how long until all idle, the
/// process's anonymous memory for them, its CPU over `quiet`.
async fn idle_clients(
    root: &std::path::Path,
    imap: std::net::SocketAddr,
    users: &[String],
    quiet: Duration,
) -> Result<Clients, BenchError> {
    let spec = worker::Spec::Idle {
        target: worker::IdleTarget::Imap {
            addr: imap,
            users: users.to_vec(),
            password: push::USER_PASSWORD.into(),
        },
        connections: users.len(),
        steps: 1,
    };
    let mut child = worker::Child::start(&spec, root, &format!("imap-idle-{}", users.len()))?;
    let gone = || BenchError::Run("the IDLE clients' process is gone".into());
    match child.next().await? {
        Some(worker::Line::Ready) => {}
        Some(worker::Line::Failed { error, .. }) => return Err(BenchError::Run(error)),
        _ => return Err(gone()),
    }
    let pid = child.id().ok_or_else(gone)?;
    let before = rss_anon_kib(&pid.to_string())?;
    child.go_on().await?;
    let time = match child.next().await? {
        Some(worker::Line::Step { elapsed, .. }) => elapsed,
        Some(worker::Line::Failed { error, .. }) => {
            return Err(BenchError::Run(format!(
                "an IMAP IDLE client could not start: {error}"
            )));
        }
        _ => return Err(gone()),
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_anon_kib(&pid.to_string())?;
    let cpu0 = process_cpu_of(pid)?;
    tokio::time::sleep(quiet).await;
    let cpu = process_cpu_of(pid)?.saturating_sub(cpu0);
    child.finish().await;
    Ok(Clients {
        time,
        kib: (after - before).max(0.0),
        cpu,
    })
}

//! `bramble bench idle`: as many idle device connections to one relay as the open-file limit
//! allows, the relay's user memory per connection from the slope of its resident anonymous
//! memory against the number connected, and how fast they connect; against nats-server with
//! the same number of idle clients, measured in the same run.
//!
//! The relay runs in this process (nothing else here holds memory per connection); the
//! clients run in child processes ([`crate::worker`]), at most [`PER_CHILD`] each, so their
//! descriptors do not count against the relay's. Each device connection is a real one: TLS
//! 1.3, the device's PIN proof with a fresh identity, then idle (the relay's keepalive is
//! answered). The NATS clients say `CONNECT` and `PING` and wait for `PONG`, in plain TCP.
//!
//! Owns: that procedure and its rows, reading `RssAnon` from `/proc`. Must not touch: the
//! relay's code or settings beyond an operator's (loopback ports, a temporary data
//! directory), any address but 127.0.0.1.

use std::time::{Duration, Instant};

use crate::nats::NatsServer;
use crate::report::{Report, Row, number};
use crate::worker::{Child, IdleTarget, Line, Spec};
use crate::{BenchError, Options, progress};

/// Connections one child process opens at most.
pub const PER_CHILD: usize = 8_000;
/// Goal: user memory per idle device connection, KiB.
pub const MEMORY_GOAL_KIB: f64 = 8.0;
/// Goal: device connects per second.
pub const CONNECT_GOAL: f64 = 30_000.0;
/// Steps the connections are opened in (the slope's points, besides none).
const STEPS: usize = 5;
/// Descriptors the relay's process keeps for itself (listeners, relay.db, the runtime).
const FILES_SPARE: u64 = 256;
/// How long memory may settle after a step before it is read.
const SETTLE: Duration = Duration::from_millis(500);

/// What one side (the relay or nats-server) measured.
#[derive(Debug)]
struct Side {
    /// KiB of resident anonymous memory per connection (least-squares slope).
    per_connection_kib: f64,
    /// Resident anonymous memory with every connection open, MiB.
    total_mib: f64,
    /// Connections opened per second, over the steps.
    connects_per_s: f64,
}

/// Reads `RssAnon` of a process (`self` or a pid) from `/proc`, in KiB.
pub(crate) fn rss_anon_kib(pid: &str) -> Result<f64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| BenchError::Run(format!("cannot read {path}: {e}")))?;
    text.lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .ok_or_else(|| BenchError::Run(format!("{path} has no RssAnon line")))
}

/// CPU time a process (a pid) has used, user and system together, from `/proc/PID/stat`
/// (in clock ticks of 10 ms).
pub(crate) fn process_cpu_of(pid: u32) -> Result<std::time::Duration, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| BenchError::Run(format!("cannot read {path}: {e}")))?;
    // after the command name in parentheses: state is field 3, utime 14 and stime 15
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (tick(11), tick(12)) {
        (Some(user), Some(system)) => Ok(std::time::Duration::from_millis((user + system) * 10)),
        _ => Err(BenchError::Run(format!(
            "{path} does not read as a process's stat"
        ))),
    }
}

/// The least-squares slope of `y` against `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

/// Opens `n` idle connections to `target` from child processes in [`STEPS`] steps, reading
/// the memory of process `pid` before and after each.
async fn measure(
    target: IdleTarget,
    n: usize,
    pid: &str,
    dir: &std::path::Path,
    label: &str,
) -> Result<Side, BenchError> {
    let children_n = n.div_ceil(PER_CHILD).max(1);
    let mut children = Vec::with_capacity(children_n);
    let mut left = n;
    for i in 0..children_n {
        let mine = left.div_ceil(children_n - i);
        left -= mine;
        let spec = Spec::Idle {
            target: target.clone(),
            connections: mine,
            steps: STEPS,
        };
        children.push(Child::start(&spec, dir, &format!("idle-{i}"))?);
    }
    for c in &mut children {
        match c.next().await? {
            Some(Line::Ready) => {}
            other => {
                return Err(BenchError::Run(format!(
                    "the idle worker did not get ready: {other:?}"
                )));
            }
        }
    }
    let bar = progress::bar(n as u64, label);
    tokio::time::sleep(SETTLE).await;
    let mut points = vec![(0.0, rss_anon_kib(pid)?)];
    let mut connecting = Duration::ZERO;
    let mut connected = 0;
    for _ in 0..STEPS {
        for c in &mut children {
            c.go_on().await?;
        }
        let t = Instant::now();
        let mut now = 0;
        for c in &mut children {
            match c.next().await? {
                Some(Line::Step { connected, .. }) => now += connected,
                Some(Line::Failed { error, .. }) => return Err(BenchError::Run(error)),
                other => {
                    return Err(BenchError::Run(format!(
                        "the idle worker answered {other:?} to a step"
                    )));
                }
            }
        }
        connecting += t.elapsed();
        bar.inc((now - connected) as u64);
        connected = now;
        tokio::time::sleep(SETTLE).await;
        points.push((connected as f64, rss_anon_kib(pid)?));
    }
    bar.finish_and_clear();
    let total = points.last().map_or(0.0, |p| p.1);
    for c in children {
        c.finish().await;
    }
    Ok(Side {
        per_connection_kib: slope(&points),
        total_mib: total / 1024.0,
        connects_per_s: connected as f64 / connecting.as_secs_f64().max(1e-9),
    })
}

/// Runs the idle-connections benchmark.
///
/// # Errors
/// When nats-server is missing, the relay cannot start, or a connection fails.
pub async fn run(opts: &Options) -> Result<Report, BenchError> {
    let mut notes = Vec::new();
    let (_, hard) = rlimit::Resource::NOFILE
        .get()
        .map_err(|e| BenchError::Setup(format!("cannot read the open-file limit: {e}")))?;
    // As many as the relay's process may hold, one descriptor each.
    let n = if opts.quick {
        400
    } else {
        usize::try_from(hard.saturating_sub(FILES_SPARE).min(1_000_000)).unwrap_or(1_000)
    };
    let (_, note) = crate::limits::raise_open_files(n as u64 + FILES_SPARE)?;
    notes.extend(note);
    let dir = tempfile::tempdir().map_err(|e| BenchError::Setup(format!("a temp dir: {e}")))?;

    let binary = crate::nats::find_binary()?;
    let nats = NatsServer::start(&binary).await?;
    let nats_side = measure(
        IdleTarget::Nats {
            addr: nats.addr().to_string(),
        },
        n,
        &nats.pid().to_string(),
        dir.path(),
        "idle: NATS clients",
    )
    .await?;
    let nats_name = format!("nats-server {}", nats.version);
    drop(nats);

    let mut cfg = bramble_relay::RelayConfig::with_data_dir(dir.path().join("relay"));
    cfg.server_listen = ([127, 0, 0, 1], 0).into();
    cfg.device_listen = ([127, 0, 0, 1], 0).into();
    let relay = bramble_relay::start(cfg)
        .await
        .map_err(|e| BenchError::Setup(format!("the relay did not start: {e}")))?;
    let measured = measure(
        IdleTarget::Relay {
            addr: relay.device_addr().to_string(),
            fingerprint: relay.fingerprint().to_string(),
        },
        n,
        "self",
        dir.path(),
        "idle: device connections",
    )
    .await;
    relay.shutdown().await;
    let ours = measured?;

    let count = number(n as f64);
    let rows = vec![
        Row::new(
            format!("user memory per idle device, {count} connected"),
            ours.per_connection_kib,
            "KiB",
            format!("{nats_name}, per idle client"),
            nats_side.per_connection_kib,
            format!("<= {MEMORY_GOAL_KIB} KiB"),
            Some(ours.per_connection_kib <= MEMORY_GOAL_KIB),
        ),
        Row::new(
            format!("relay's anonymous memory, {count} connected"),
            ours.total_mib,
            "MiB",
            format!("{nats_name}, {count} clients"),
            nats_side.total_mib,
            "informational",
            None,
        ),
        Row::new(
            "device connects/s (TLS 1.3 and PIN proof)",
            ours.connects_per_s,
            "conn/s",
            format!("{nats_name} connects/s (TCP, CONNECT, PING)"),
            nats_side.connects_per_s,
            format!(">= {} conn/s", number(CONNECT_GOAL)),
            Some(ours.connects_per_s >= CONNECT_GOAL),
        ),
    ];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    notes.push(format!(
        "{count} connections opened in {STEPS} steps from {} child process(es), at most 256 \
         opening at once each; memory is RssAnon of the relay's process (this one) and of \
         nats-server, read {} ms after each step; the slope is a least-squares fit over the \
         {} points",
        n.div_ceil(PER_CHILD).max(1),
        SETTLE.as_millis(),
        STEPS + 1
    ));
    notes.push(format!(
        "the clients share the {cores} cores with the server they connect to: a device's TLS \
         handshake and PIN signature cost the client as much as the relay, so connects/s is a \
         floor"
    ));
    Ok(Report {
        bench: "idle".into(),
        quick: opts.quick,
        machine: crate::Machine::current(),
        rows,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn the_slope_of_a_line_is_its_gradient() {
        let pts: Vec<(f64, f64)> = (0..6)
            .map(|i| (f64::from(i), 3.0 * f64::from(i) + 7.0))
            .collect();
        assert!((slope(&pts) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&pts[..1]), 0.0);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 5.0)]), 0.0);
    }
}

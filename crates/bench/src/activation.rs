//! `bramble bench activation`: Enterprise Activation end to end through the real mail path
//! (device → relay → activation mail into the embedded Maildir store → the server's messaging
//! agent → OPAQUE → master key → IT policy and service books → Activation Complete) with 1,
//! 50 and 500 devices at once, against the OPAQUE server side alone measured in the same run.
//!
//! A relay and an enterprise server on a SQLite database run in this process; the devices in a
//! child process ([`crate::worker`]), all on 127.0.0.1, in a temporary directory. The rate is
//! activations per CPU-second of this process (relay and server): the devices' own work (their
//! half of OPAQUE, which stretches the password with Argon2id) is what a phone pays for. They
//! still share this machine's cores, so the wall times at 500 at once include waiting for
//! them. The 50-at-once batch runs twice: first with the server taking one activation at a time
//! (`[server.activation] shards = 1`, as before activations ran side by side), then as
//! configured by default.
//!
//! Owns: that procedure and its rows. Must not touch: the code it measures (it goes through
//! the programs' public APIs), anything outside its temporary directory and loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use bramble_proto::pake;

use crate::progress;
use crate::report::{Report, Row};
use crate::{BenchError, Options, site, worker};

/// Wall time one activation may take at most (the goal).
pub const WALL_GOAL: Duration = Duration::from_secs(2);
/// Activations per second per core end to end (the goal).
pub const RATE_GOAL: f64 = 200.0;
const PASSWORD: &str = "Bench-Activation-1";

/// The OPAQUE server side alone (KE1 → KE2, KE3 checked), seconds per login, on this thread.
fn opaque_server_seconds(
    setup: &[u8],
    record: &[u8],
    user: &str,
    logins: usize,
) -> Result<f64, BenchError> {
    let mut server = Duration::ZERO;
    for _ in 0..logins {
        let (client, ke1) =
            pake::client_start(PASSWORD.as_bytes()).map_err(|e| BenchError::Run(e.to_string()))?;
        let t = Instant::now();
        let (state, ke2) = pake::server_start(setup, record, user, &ke1)
            .map_err(|e| BenchError::Run(e.to_string()))?;
        server += t.elapsed();
        let (ke3, _) = pake::client_finish(&client, PASSWORD.as_bytes(), &ke2)
            .map_err(|e| BenchError::Run(e.to_string()))?;
        let t = Instant::now();
        pake::server_finish(&state, &ke3).map_err(|e| BenchError::Run(e.to_string()))?;
        server += t.elapsed();
    }
    Ok(server.as_secs_f64() / logins as f64)
}

/// Runs the activation benchmark.
///
/// # Errors
/// When the relay, the server or a device cannot be set up, or an activation fails.
pub async fn run(opts: &Options) -> Result<Report, BenchError> {
    let batches: &[usize] = if opts.quick { &[1, 5] } else { &[1, 50, 500] };
    // The same as the middle batch, with the server working on one activation at a time.
    let serial = if opts.quick { 5 } else { 50 };
    let default_shards = bramble_server::messaging::activation::SHARDS;
    let total: usize = batches.iter().sum::<usize>() + serial;
    let dir = tempfile::tempdir().map_err(|e| BenchError::Setup(format!("a temp dir: {e}")))?;
    let root = dir.path();

    let mut site = site::start(root, &site::MailPath::Maildir).await?;
    let emails: Vec<String> = (0..total)
        .map(|i| format!("u{i:04}@example.test"))
        .collect();
    let users = site::add_users(&site.cfg, &emails, PASSWORD, "activation: adding users").await?;
    let (setup, records) = (&users.setup, &users.records);

    // The baseline: the OPAQUE server side alone, on one core.
    let logins = if opts.quick { 20 } else { 200 };
    let (user0, record0) = &records[0];
    let opaque = opaque_server_seconds(setup, record0, user0, logins)?;
    let opaque_rate = 1.0 / opaque;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut rows = Vec::new();
    let mut device_cpu = Duration::ZERO;
    let mut next = 0;
    // First the server as it was before activations ran side by side (one shard: every
    // activation's steps one after another), then as configured by default.
    for (shards, sizes) in [(1, &[serial][..]), (default_shards, batches)] {
        site.cfg.activation.shards = shards;
        let server = site::start_server(&site).await?;
        let how = if shards == 1 {
            ", one at a time in the server (before)".to_owned()
        } else {
            String::new()
        };
        for &n in sizes {
            let emails: Vec<String> = records[next..next + n]
                .iter()
                .map(|(e, _)| e.clone())
                .collect();
            next += n;
            let b = batch(
                root,
                &site.relay,
                emails,
                &format!("activation: {n} at once{how}"),
            )
            .await?;
            device_cpu += b.device_cpu;
            let mut walls = b.walls;
            walls.sort_by(f64::total_cmp);
            let max = walls.last().copied().unwrap_or(0.0);
            let p50 = walls.get(walls.len() / 2).copied().unwrap_or(0.0);
            for (what, wall) in [("p50", p50), ("max", max)] {
                rows.push(Row::new(
                    format!("activation wall time, {n} at once{how}: {what}"),
                    wall * 1000.0,
                    "ms",
                    "OPAQUE server side alone, one login",
                    opaque * 1000.0,
                    format!("<= {} ms each", WALL_GOAL.as_millis()),
                    Some(wall <= WALL_GOAL.as_secs_f64()),
                ));
            }
            if n > 1 {
                let per_cpu = n as f64 / b.server_cpu.as_secs_f64().max(1e-9);
                rows.push(Row::new(
                    format!("activations per CPU-second of relay and server, {n} at once{how}"),
                    per_cpu,
                    "act/s",
                    "OPAQUE server logins/s, one core",
                    opaque_rate,
                    format!(">= {RATE_GOAL} per core end to end"),
                    Some(per_cpu >= RATE_GOAL),
                ));
                rows.push(Row::new(
                    format!("activations/s on the wall clock, {n} at once{how}"),
                    n as f64 / b.elapsed.as_secs_f64().max(1e-9),
                    "act/s",
                    "OPAQUE server logins/s, one core",
                    opaque_rate,
                    "informational",
                    None,
                ));
            }
        }
        server.shutdown().await;
    }
    site.relay.shutdown().await;
    let activated = (next as u32).max(1);
    Ok(Report {
        bench: "activation".into(),
        quick: opts.quick,
        machine: crate::Machine::current(),
        rows,
        notes: vec![
            format!(
                "relay and server (SQLite, {default_shards} activation shards) in this process, \
                 the {total} devices in a child process, all on the same {cores} cores; the CPU \
                 rate counts this process's CPU time only"
            ),
            format!(
                "the devices used {:.1} ms of CPU an activation (their half of OPAQUE stretches \
                 the password with Argon2id): on this machine they take cores the server would \
                 use, so wall times at many at once are longer than a phone's would be",
                device_cpu.as_secs_f64() * 1000.0 / f64::from(activated)
            ),
            "through the real mail path: activation mail into the embedded Maildir store".into(),
        ],
    })
}

/// What one batch of devices measured.
struct Batch {
    /// Each device's wall time, seconds.
    walls: Vec<f64>,
    /// From the first start to the last end.
    elapsed: Duration,
    /// CPU time of this process (relay and server) meanwhile.
    server_cpu: Duration,
    /// CPU time of the devices' process meanwhile.
    device_cpu: Duration,
}

/// Activates `emails` all at once from devices in a child process.
async fn batch(
    root: &Path,
    relay: &bramble_relay::RelayHandle,
    emails: Vec<String>,
    label: &str,
) -> Result<Batch, BenchError> {
    let n = emails.len();
    let bar = progress::bar(n as u64, label);
    let spec = worker::Spec::Activate {
        relay: relay.device_addr().to_string(),
        fingerprint: relay.fingerprint().to_string(),
        dir: root.join("devices"),
        emails,
        password: PASSWORD.into(),
        timeout: Duration::from_secs(120),
    };
    let mut child = worker::Child::start(&spec, root, "devices")?;
    let mut cpu0 = None;
    let mut walls = Vec::with_capacity(n);
    loop {
        match child.next().await? {
            Some(worker::Line::Ready) => cpu0 = Some(worker::process_cpu()),
            Some(
                worker::Line::Step { .. }
                | worker::Line::Listening { .. }
                | worker::Line::Received { .. }
                | worker::Line::Duplicate { .. },
            ) => {}
            Some(worker::Line::Done { wall, .. }) => {
                walls.push(wall.as_secs_f64());
                bar.inc(1);
            }
            Some(worker::Line::Failed { email, error }) => {
                return Err(BenchError::Run(format!(
                    "{email} did not activate: {error}"
                )));
            }
            Some(worker::Line::Finished { wall, cpu }) => {
                let server_cpu = cpu0.map_or(Duration::ZERO, |c| worker::process_cpu() - c);
                bar.finish_and_clear();
                if walls.len() != n {
                    return Err(BenchError::Run(format!(
                        "{} of {n} devices reported back",
                        walls.len()
                    )));
                }
                return Ok(Batch {
                    walls,
                    elapsed: wall,
                    server_cpu,
                    device_cpu: cpu,
                });
            }
            None => {
                return Err(BenchError::Run(
                    "the benchmark worker ended before its devices were done".into(),
                ));
            }
        }
    }
}

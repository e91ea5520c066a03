//! `bramble bench relay`: 1 KiB frames from one enterprise server to N devices through a real
//! relay (`bramble_relay::start` in this process, TLS 1.3 on 127.0.0.1, real device PIN proofs
//! and a real SRP login through `bramble_net::Link`), against NATS pub/sub (one publisher,
//! one subscriber) on the same machine in the same run.
//!
//! Two figures per device count: frames/s (the server keeps a window of frames sent and not
//! yet reported DELIVERED; the relay does its whole job: forward, wait for the device's ack,
//! report to the server) and p99 hop latency (one frame at a time, from the server's send to
//! the device's receipt).
//!
//! Owns: the relay benchmark's procedure and rows. Must not touch: the relay's code or
//! configuration beyond what an operator sets (loopback ports, a temporary data directory),
//! any address but 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bramble_net::link::frame_ref;
use bramble_net::{CertPin, Credentials, Link, LinkEvent};
use bramble_proto::schema::{DeliveryStatus, FrameRef};
use bramble_proto::{Address, DeviceIdentity, Frame, FrameKind, Header, Pin, SrpId};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::latency::Latencies;
use crate::nats::NatsServer;
use crate::report::{Report, Row};
use crate::{BenchError, Options, progress};

/// Bytes of each frame's body (what NATS carries as the payload).
pub const FRAME_LEN: usize = 1024;
/// The rate goal: at least this many times NATS's.
pub const RATE_GOAL: f64 = 2.0;
/// Frames in flight (sent, not yet delivered) at most, overall.
const WINDOW: u64 = 1024;
/// Frames in flight to one device at most: under the relay's per-connection channel (256),
/// so frames go live instead of to the disk queue.
const WINDOW_PER_DEVICE: u64 = 128;
/// Frames handed to the link per write at most.
const BATCH: u64 = 64;
/// A device acks what it holds after this many frames, or when nothing came for
/// [`ACK_DELAY`].
const ACK_EVERY: usize = 32;
const ACK_DELAY: Duration = Duration::from_millis(1);
/// Logins in progress at once.
const CONNECTING: usize = 64;
/// The longest wait for a delivery report before the run is called stuck.
const STALL: Duration = Duration::from_secs(30);
/// Open files needed besides two per device.
const FILES_SPARE: u64 = 64;
/// Body byte 8: this frame is a latency probe.
const PROBE: u8 = 1;

/// Sizes of one run.
#[derive(Debug, Clone)]
struct Size {
    devices: Vec<usize>,
    frames: u64,
    samples: usize,
}

impl Size {
    fn of(opts: &Options) -> Size {
        if opts.quick {
            Size {
                devices: vec![1, 10],
                frames: 2_000,
                samples: 100,
            }
        } else {
            Size {
                devices: vec![1, 100, 10_000],
                frames: 200_000,
                samples: 2_000,
            }
        }
    }
}

/// What one device count measured.
#[derive(Debug)]
struct Measured {
    rate: f64,
    latency: Latencies,
    connect: Duration,
    not_live: u64,
}

/// Runs the relay benchmark.
///
/// # Errors
/// When nats-server is missing or too old, the relay cannot start, a login fails or a run
/// stalls.
pub async fn run(opts: &Options) -> Result<Report, BenchError> {
    let size = Size::of(opts);
    let mut notes = Vec::new();
    let most = size.devices.iter().copied().max().unwrap_or(1) as u64;
    // Two descriptors per device (both ends of its connection are in this process), and some
    // to spare for the listeners, relay.db, the server's link and the runtime.
    let (files, note) = crate::limits::raise_open_files(2 * most + FILES_SPARE)?;
    notes.extend(note);
    let fits = usize::try_from(files.saturating_sub(FILES_SPARE) / 2).unwrap_or(usize::MAX);
    let binary = crate::nats::find_binary()?;
    let nats = NatsServer::start(&binary).await?;
    let bar = progress::bar(2, "relay: NATS baseline");
    let nats_rate = nats.rate(size.frames, FRAME_LEN, WINDOW).await?;
    bar.inc(1);
    let nats_latency = nats.latency(size.samples, FRAME_LEN).await?;
    bar.finish_and_clear();
    let nats_name = format!("NATS {} pub/sub 1→1", nats.version);
    notes.push(format!(
        "baseline: nats-server {} ({}) on {}, async-nats clients, one publisher connection to \
         one subscriber connection, {FRAME_LEN}-byte payloads, at most {WINDOW} in flight; \
         latency one message at a time (publish + flush to receipt)",
        nats.version,
        binary.display(),
        nats.addr()
    ));
    drop(nats);

    let mut rows = Vec::new();
    for &asked in &size.devices {
        let n = asked.min(fits);
        let m = one_count(n, &size).await?;
        let count = |n: usize| match n {
            1 => "1 device".to_owned(),
            n if n < 1000 => format!("{n} devices"),
            n => format!("{} devices", crate::report::number(n as f64)),
        };
        let label = if n < asked {
            notes.push(format!(
                "{} asked, {} run: {asked} devices and the relay's side of their connections \
                 need {} open files in this one process, and the limit is {files}",
                count(asked),
                count(n),
                2 * asked as u64 + FILES_SPARE
            ));
            format!(
                "{} (of {} asked)",
                count(n),
                crate::report::number(asked as f64)
            )
        } else {
            count(n)
        };
        rows.push(Row::new(
            format!("relay frames/s, {label}"),
            m.rate,
            "frames/s",
            nats_name.clone(),
            nats_rate,
            format!(">= {RATE_GOAL}× baseline"),
            Some(m.rate >= RATE_GOAL * nats_rate),
        ));
        rows.push(Row::new(
            format!("relay p99 hop latency, {label}"),
            m.latency.quantile_us(0.99),
            "µs",
            nats_name.clone(),
            nats_latency.quantile_us(0.99),
            "informational",
            None,
        ));
        notes.push(format!(
            "{label}: logged in in {:.2} s; p50 latency {:.0} µs (NATS {:.0} µs){}",
            m.connect.as_secs_f64(),
            m.latency.quantile_us(0.5),
            nats_latency.quantile_us(0.5),
            if m.not_live > 0 {
                format!(
                    "; {} reports other than DELIVERED (frames that went through the disk queue)",
                    m.not_live
                )
            } else {
                String::new()
            }
        ));
    }
    notes.push(format!(
        "relay: {} frames of {FRAME_LEN} bytes per device count, round-robin over the devices, \
         at most {WINDOW} (and {WINDOW_PER_DEVICE} per device) sent and not yet reported \
         DELIVERED; each frame is forwarded, acked by its device (acks batched up to \
         {ACK_EVERY} or {} ms) and reported to the server; the bodies are opaque bytes (the \
         relay never opens them; sealing is `bramble bench seal`); relay, server, devices and \
         their TLS all share this machine's {} cores",
        size.frames,
        ACK_DELAY.as_millis(),
        crate::Machine::current().cores
    ));
    notes.push(format!(
        "latency: {} frames one at a time, from the server's send to the device's receipt",
        size.samples
    ));
    Ok(Report {
        bench: "relay".into(),
        quick: opts.quick,
        machine: crate::Machine::current(),
        rows,
        notes,
    })
}

/// A frame from the server to `pin`, its body stamped with the send time.
fn frame(srp: SrpId, pin: Pin, seq: u64, epoch: Instant, probe: bool) -> Frame {
    let mut body = vec![0x3Cu8; FRAME_LEN];
    let ns = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    body[..8].copy_from_slice(&ns.to_be_bytes());
    body[8] = u8::from(probe) * PROBE;
    Frame::new(
        Header {
            kind: FrameKind::Sealed,
            src: Address::Srp(srp),
            dst: Address::Pin(pin),
            seq,
        },
        body,
    )
}

/// The send time stamped in a frame (bounded: a short body has none).
fn stamped(f: &Frame, epoch: Instant) -> Option<(Duration, bool)> {
    let ns = u64::from_be_bytes(f.body.get(..8)?.try_into().ok()?);
    let now = u64::try_from(epoch.elapsed().as_nanos()).ok()?;
    let probe = f.body.get(8).copied() == Some(PROBE);
    Some((Duration::from_nanos(now.saturating_sub(ns)), probe))
}

/// One device: takes frames, acks them, reports probes' latencies.
async fn device_loop(
    mut link: Link,
    epoch: Instant,
    received: Arc<AtomicU64>,
    probes: mpsc::UnboundedSender<Duration>,
) {
    let mut pending: Vec<FrameRef> = Vec::with_capacity(ACK_EVERY);
    loop {
        let ev = if pending.is_empty() {
            link.recv().await
        } else {
            match tokio::time::timeout(ACK_DELAY, link.recv()).await {
                Ok(ev) => ev,
                Err(_) => {
                    if link.ack(std::mem::take(&mut pending)).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        };
        match ev {
            Ok(LinkEvent::Sealed(f)) => {
                received.fetch_add(1, Ordering::Relaxed);
                pending.push(frame_ref(&f));
                let probe = match stamped(&f, epoch) {
                    Some((lat, true)) => probes.send(lat).is_ok(),
                    _ => false,
                };
                if (probe || pending.len() >= ACK_EVERY)
                    && link.ack(std::mem::take(&mut pending)).await.is_err()
                {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// What the server counts from its delivery reports.
#[derive(Debug, Default)]
struct Reports {
    delivered: u64,
    other: u64,
}

impl Reports {
    fn take(&mut self, ev: LinkEvent) {
        if let LinkEvent::Report(r) = ev {
            if r.status == DeliveryStatus::Delivered as i32 {
                self.delivered += 1;
            } else {
                self.other += 1;
            }
        }
    }
}

async fn one_count(n: usize, size: &Size) -> Result<Measured, BenchError> {
    let dir = tempfile::tempdir()
        .map_err(|e| BenchError::Setup(format!("no temporary directory: {e}")))?;
    let mut cfg = bramble_relay::RelayConfig::with_data_dir(dir.path());
    cfg.server_listen = ([127, 0, 0, 1], 0).into();
    cfg.device_listen = ([127, 0, 0, 1], 0).into();
    cfg.name = "bench-relay".into();
    let relay = bramble_relay::start(cfg)
        .await
        .map_err(|e| BenchError::Setup(format!("the relay did not start: {e}")))?;
    let result = drive(&relay, dir.path(), n, size).await;
    relay.shutdown().await;
    result
}

async fn drive(
    relay: &bramble_relay::RelayHandle,
    dir: &std::path::Path,
    n: usize,
    size: &Size,
) -> Result<Measured, BenchError> {
    let (srp, key) = bramble_relay::srp_add(dir, None)
        .await
        .map_err(|e| BenchError::Setup(format!("registering an SRP id failed: {e}")))?;
    let pin = CertPin::expect(relay.fingerprint());
    let server_addr = relay.server_addr().to_string();
    let device_addr = relay.device_addr().to_string();
    let mut server = Link::connect(&server_addr, &pin, Credentials::Server { srp, key: &key })
        .await
        .map_err(|e| BenchError::Setup(format!("the server's SRP login failed: {e}")))?;

    let label = format!("relay: {n} device logins");
    let bar = progress::bar(n as u64, &label);
    let identities: Vec<DeviceIdentity> = (0..n)
        .map(|_| DeviceIdentity::generate())
        .collect::<Result<_, _>>()
        .map_err(|e| BenchError::Setup(format!("making a device identity failed: {e}")))?;
    let pins: Vec<Pin> = identities.iter().map(DeviceIdentity::pin).collect();
    let epoch = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let links: Vec<Result<Link, String>> = futures::stream::iter(identities.iter())
        .map(|id| {
            let (addr, pin, bar) = (device_addr.clone(), pin.clone(), bar.clone());
            async move {
                let r = Link::connect(&addr, &pin, Credentials::Device { identity: id }).await;
                bar.inc(1);
                r.map_err(|e| format!("a device login (PIN {}) failed: {e}", id.pin()))
            }
        })
        .buffer_unordered(CONNECTING)
        .collect()
        .await;
    let connect = started.elapsed();
    bar.finish_and_clear();
    let mut devices = JoinSet::new();
    for l in links {
        let link = l.map_err(BenchError::Setup)?;
        devices.spawn(device_loop(link, epoch, received.clone(), probe_tx.clone()));
    }

    // Throughput: keep the window full, count DELIVERED reports.
    let window = WINDOW.min(WINDOW_PER_DEVICE * n as u64);
    let bar = progress::bar(size.frames, &format!("relay: frames, {n} devices"));
    let mut reports = Reports::default();
    let mut sent = 0u64;
    let mut seq = 0u64;
    let start = Instant::now();
    while reports.delivered < size.frames {
        let room = window
            .saturating_sub(sent - reports.delivered.min(sent))
            .min(size.frames - sent)
            .min(BATCH);
        if room > 0 {
            let batch: Vec<Frame> = (0..room)
                .map(|_| {
                    seq += 1;
                    let to = pins[(seq % n as u64) as usize];
                    frame(srp, to, seq, epoch, false)
                })
                .collect();
            server
                .send_all(batch)
                .await
                .map_err(|e| BenchError::Run(format!("the server's link failed: {e}")))?;
            sent += room;
            // Take the reports that are already here, without waiting.
            while let Some(ev) = server.recv().now_or_never() {
                reports.take(ev.map_err(|e| BenchError::Run(format!("server link: {e}")))?);
            }
        } else {
            let ev = tokio::time::timeout(STALL, server.recv())
                .await
                .map_err(|_| {
                    BenchError::Run(format!(
                        "no delivery report for {STALL:?} ({} of {} frames delivered)",
                        reports.delivered, size.frames
                    ))
                })?
                .map_err(|e| BenchError::Run(format!("the server's link failed: {e}")))?;
            reports.take(ev);
        }
        bar.set_position(reports.delivered);
    }
    let rate = size.frames as f64 / start.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // Latency: one probe at a time, round-robin over the devices.
    let bar = progress::bar(size.samples as u64, &format!("relay: latency, {n} devices"));
    let mut latency = Latencies::new();
    for i in 0..size.samples {
        seq += 1;
        let to = pins[i % n];
        server
            .send(frame(srp, to, seq, epoch, true))
            .await
            .map_err(|e| BenchError::Run(format!("the server's link failed: {e}")))?;
        let deadline = tokio::time::sleep(STALL);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                l = probe_rx.recv() => {
                    match l {
                        Some(l) => latency.record(l),
                        None => return Err(BenchError::Run("every device stopped".into())),
                    }
                    break;
                }
                ev = server.recv() => {
                    reports.take(ev.map_err(|e| BenchError::Run(format!("server link: {e}")))?);
                }
                _ = &mut deadline => {
                    return Err(BenchError::Run(format!("a latency probe did not arrive within {STALL:?}")));
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    server.close().await;
    drop(probe_tx);
    // The devices end when the relay shuts down (the caller does that next); do not wait here.
    devices.detach_all();
    Ok(Measured {
        rate,
        latency,
        connect,
        not_live: reports.other,
    })
}

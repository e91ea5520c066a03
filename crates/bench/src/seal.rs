//! `bramble bench seal`: generated mail through bramble-proto's real [`Sealer`] on one thread,
//! against zstd level 1 alone on the same messages in the same run.
//!
//! Owns: the sealing benchmark's procedure (generate, warm up, alternate timed passes of the
//! sealer and of the baseline, take the median) and its rows. Must not touch: the sealer's
//! code or its parameters (it measures what the protocol does), the network, files.

use std::time::{Duration, Instant};

use bramble_proto::{Address, Direction, MasterKey, Pin, Sealer, SrpId};

use crate::corpus::Corpus;
use crate::progress;
use crate::report::{Report, Row};
use crate::{BenchError, Options};

/// The corpus seed: fixed, so every run seals the same mail.
pub const SEED: u64 = 0x00B2_A3B1_E5EA_1000;
/// The sealing goal: at least this share of zstd-1's message rate.
pub const RATE_GOAL: f64 = 0.90;
/// The compression goal: plaintext bytes over bytes on the wire.
pub const RATIO_GOAL: f64 = 3.5;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Size {
    messages: usize,
    /// Timed passes of each side (alternating); the median pass counts.
    rounds: usize,
}

impl Size {
    fn of(opts: &Options) -> Size {
        if opts.quick {
            Size {
                messages: 200,
                rounds: 3,
            }
        } else {
            Size {
                messages: 4000,
                rounds: 15,
            }
        }
    }
}

/// Runs the sealing benchmark on the calling thread (one core).
///
/// # Errors
/// When the sealer or zstd cannot be set up or refuse a message.
pub fn run(opts: &Options) -> Result<Report, BenchError> {
    let size = Size::of(opts);
    let gen_bar = progress::bar(size.messages as u64, "seal: generating mail");
    let mut corpus = Corpus::new(SEED);
    let mut messages = Vec::with_capacity(size.messages);
    for _ in 0..size.messages {
        messages.extend(corpus.messages(1));
        gen_bar.inc(1);
    }
    gen_bar.finish_and_clear();
    let plain_bytes: usize = messages.iter().map(Vec::len).sum();

    let key = MasterKey::from_bytes([0x5E; 32]);
    let src = Address::Srp(
        SrpId::new(40_012_345).ok_or(BenchError::Setup("S40012345 is not an SRP id".into()))?,
    );
    let dst = Address::Pin(Pin(0x2A4F_9C01));
    let mut sealer = Sealer::new(&key, Direction::ToDevice, 1..u64::MAX)
        .map_err(|e| BenchError::Setup(format!("the sealer cannot be set up: {e}")))?;
    let mut zstd = zstd::bulk::Compressor::new(1)
        .map_err(|e| BenchError::Setup(format!("zstd cannot be set up: {e}")))?;

    // Bytes on the wire: each sealed frame as the relay carries it (length prefix, routing
    // header, codec byte, ciphertext, tag). zstd's output alone for the baseline.
    let mut wire_bytes = 0usize;
    let mut zstd_bytes = 0usize;
    let mut seal_pass = |wire: &mut usize| -> Result<Duration, BenchError> {
        let t = Instant::now();
        let mut total = 0usize;
        for m in &messages {
            let f = sealer
                .seal(src, dst, m)
                .map_err(|e| BenchError::Run(format!("sealing a message failed: {e}")))?;
            total += f.encoded_len();
        }
        let d = t.elapsed();
        *wire = total;
        Ok(d)
    };
    let mut zstd_pass = |out: &mut usize| -> Result<Duration, BenchError> {
        let t = Instant::now();
        let mut total = 0usize;
        for m in &messages {
            let c = zstd
                .compress(m)
                .map_err(|e| BenchError::Run(format!("zstd failed on a message: {e}")))?;
            total += c.len();
        }
        let d = t.elapsed();
        *out = total;
        Ok(d)
    };

    // One untimed pass of each warms caches and the allocator.
    seal_pass(&mut wire_bytes)?;
    zstd_pass(&mut zstd_bytes)?;
    let bar = progress::bar(size.rounds as u64, "seal: timed passes");
    let mut seal_times = Vec::with_capacity(size.rounds);
    let mut zstd_times = Vec::with_capacity(size.rounds);
    for round in 0..size.rounds {
        // Alternate which goes first, so neither always runs on a warmer cache.
        if round % 2 == 0 {
            seal_times.push(seal_pass(&mut wire_bytes)?);
            zstd_times.push(zstd_pass(&mut zstd_bytes)?);
        } else {
            zstd_times.push(zstd_pass(&mut zstd_bytes)?);
            seal_times.push(seal_pass(&mut wire_bytes)?);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let n = messages.len() as f64;
    let seal_rate = n / median(&mut seal_times).as_secs_f64();
    let zstd_rate = n / median(&mut zstd_times).as_secs_f64();
    let seal_ratio = plain_bytes as f64 / wire_bytes.max(1) as f64;
    let zstd_ratio = plain_bytes as f64 / zstd_bytes.max(1) as f64;
    let rate_row = Row::new(
        "seal rate (zstd + mail dictionary + AES-256-GCM, 1 thread)",
        seal_rate,
        "msg/s",
        "zstd-1 alone",
        zstd_rate,
        format!(">= {RATE_GOAL:.2}× baseline"),
        Some(seal_rate >= RATE_GOAL * zstd_rate),
    );
    let ratio_row = Row::new(
        "compression (plaintext / bytes on the wire)",
        seal_ratio,
        "×",
        "zstd-1 alone",
        zstd_ratio,
        format!(">= {RATIO_GOAL} (figure)"),
        Some(seal_ratio >= RATIO_GOAL),
    );
    let mean = plain_bytes as f64 / n;
    let notes = vec![
        format!(
            "{} generated messages (seed {SEED:#x}), 2–8 KiB each, {:.0} B on average, {:.1} MiB \
             in all: plain text, HTML and multipart/alternative, quoted replies, signatures",
            messages.len(),
            mean,
            plain_bytes as f64 / (1 << 20) as f64
        ),
        format!(
            "median of {} alternating passes each; {:.0} MB/s sealed, {:.0} MB/s zstd-1 (of \
             plaintext)",
            size.rounds,
            seal_rate * mean / 1e6,
            zstd_rate * mean / 1e6
        ),
        format!(
            "the sealer compresses with zstd level {} and bramble-proto's mail dictionary ({} \
             bytes), trained by `bramble bench-dict` on {} messages of the same generator with \
             another seed ({:#x}): none of these messages, but the same vocabulary and \
             templates, so on mail written elsewhere expect less (docs/benchmarks.md)",
            bramble_proto::ZSTD_LEVEL,
            bramble_proto::MAIL_DICTIONARY.len(),
            crate::dict::TRAIN_MESSAGES,
            crate::dict::TRAIN_SEED
        ),
        format!(
            "bytes on the wire: {:.0} B per message on average (frame with 4-byte length, \
             20-byte header, codec byte, 16-byte tag)",
            wire_bytes as f64 / n
        ),
    ];
    Ok(Report {
        bench: "seal".into(),
        quick: opts.quick,
        machine: crate::Machine::current(),
        rows: vec![rate_row, ratio_row],
        notes,
    })
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times
        .get(times.len() / 2)
        .copied()
        .unwrap_or(Duration::from_nanos(1))
        .max(Duration::from_nanos(1))
}

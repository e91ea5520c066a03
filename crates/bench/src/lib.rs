//! Bramble's benchmarks, run by `bramble bench`. Benchmarks, never timed tests: each prints
//! its figures, each against a baseline measured in the same run on the same machine, their
//! ratio and whether the goal is met.
//!
//! Owns: the report type ([`Report`], [`Row`]: name, figure and unit, baseline name and
//! figure, ratio, goal text, goal met) and its renderings (an aligned table, JSON with
//! serde), the machine description ([`Machine`]), progress bars, and the benchmark runners
//! ([`run`]). Must not touch: the code it measures (it calls the real sealer and starts a
//! real relay through their public APIs, never a copy or a mock), the network beyond
//! 127.0.0.1, files outside the temporary directories it makes.

pub mod activation;
pub mod corpus;
pub mod dict;
pub mod idle;
pub mod latency;
pub mod limits;
pub mod machine;
pub mod mailboxes;
pub mod nats;
pub mod progress;
pub mod push;
pub mod relay;
pub mod report;
pub mod seal;
pub mod site;
pub mod worker;

pub use machine::Machine;
pub use report::{Baseline, Report, Row};

/// How a benchmark runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// A small size, so a smoke test finishes in seconds; the figures are then rough.
    pub quick: bool,
}

/// The benchmarks there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bench {
    /// Generated mail through the real sealer against zstd-1 alone, on one thread.
    Seal,
    /// 1 KiB frames through a real relay to 1, 100 and 10,000 devices against NATS.
    Relay,
    /// Enterprise Activation end to end with 1, 50 and 500 devices at once, against the
    /// OPAQUE server side alone.
    Activation,
    /// Idle device connections to one relay: memory per connection and connects/s, against
    /// nats-server with as many idle clients.
    Idle,
    /// Push latency from SMTP acceptance to the device, 1,000 devices on Dovecot, against
    /// Dovecot's own push callback and IMAP IDLE.
    Push,
    /// The server watching 1,000 and 10,000 mailboxes on Dovecot: time to watch, memory and
    /// CPU while idle, push latency at that size, against raw IMAP IDLE clients.
    Mailboxes,
}

impl Bench {
    /// Every benchmark, in the order `bramble bench all` runs them.
    pub const ALL: &'static [Bench] = &[
        Bench::Seal,
        Bench::Relay,
        Bench::Activation,
        Bench::Idle,
        Bench::Push,
        Bench::Mailboxes,
    ];

    /// The benchmark's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bench::Seal => "seal",
            Bench::Relay => "relay",
            Bench::Activation => "activation",
            Bench::Idle => "idle",
            Bench::Push => "push",
            Bench::Mailboxes => "mailboxes",
        }
    }
}

/// Runs one benchmark. The sealing benchmark runs on a thread of its own (one core); the
/// others on the caller's tokio runtime.
///
/// # Errors
/// A [`BenchError`] saying what could not be set up or failed while running.
pub async fn run(bench: Bench, opts: Options) -> Result<Report, BenchError> {
    match bench {
        Bench::Seal => tokio::task::spawn_blocking(move || seal::run(&opts))
            .await
            .map_err(|e| BenchError::Run(format!("the sealing benchmark's thread failed: {e}")))?,
        Bench::Relay => relay::run(&opts).await,
        Bench::Activation => activation::run(&opts).await,
        Bench::Idle => idle::run(&opts).await,
        Bench::Push => push::run(&opts).await,
        Bench::Mailboxes => mailboxes::run(&opts).await,
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Something the benchmark needs is missing or could not be started.
    #[error("{0}")]
    Setup(String),
    /// The benchmark failed while running.
    #[error("{0}")]
    Run(String),
}

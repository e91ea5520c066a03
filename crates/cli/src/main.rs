//! `bramble`: one binary for the enterprise server, the relay, the administration client,
//! the device, the demo and the benchmarks. Flag parsing and printing live here; the
//! libraries do the work.
//!
//! Exit codes: 0 success, 1 failure (the message says what to do), 2 wrong usage.

mod admin;
mod bench;
mod config;
mod demo;
mod device;
mod output;
mod relay;
mod serve;
mod tui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bramble: a self-hosted enterprise push server for phones.
#[derive(Debug, Parser)]
#[command(name = "bramble", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the enterprise server (with an in-process relay unless [server.uplink] names one).
    Serve(serve::Args),
    /// Run a relay, or manage its SRP identifiers.
    Relay(relay::Args),
    /// Administer a running server through its API.
    Admin(admin::Args),
    /// Act as a phone: identity, relay connection, status.
    Device(device::Args),
    /// Relay, server and a simulated device in one process, showing what happens.
    Demo(demo::Args),
    /// Run a benchmark (or `all`): each figure against a baseline measured in the same run.
    Bench(bench::Args),
    /// The other side of a benchmark, started by `bramble bench` in a child process.
    #[command(hide = true)]
    BenchWorker(bench::WorkerArgs),
    /// Train the mail dictionary of the sealer again (bramble-proto's dict/mail-1.zdict).
    #[command(hide = true)]
    BenchDict(bench::DictArgs),
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    bramble_net::tls::install_default_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bramble: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(a) => serve::run(a).await,
            Command::Relay(a) => relay::run(a).await,
            Command::Admin(a) => admin::run(a).await,
            Command::Device(a) => device::run(a).await,
            Command::Demo(a) => demo::run(a).await,
            Command::Bench(a) => bench::run(a).await,
            Command::BenchWorker(a) => bench::worker(a).await,
            Command::BenchDict(a) => bench::dict(a),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("bramble: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `bramble … | head` closes standard output early: `println!` then panics with "failed
/// printing to stdout". That is the reader's choice, not a bug: end quietly, as a closed pipe
/// returned as an error does below. Every other panic is reported as before.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Logs to stderr, filtered by `BRAMBLE_LOG` (or `RUST_LOG`), else `default`.
pub(crate) fn init_logging(default: &str) {
    let filter = std::env::var("BRAMBLE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The default data directory of the server.
pub(crate) fn default_data_dir() -> PathBuf {
    PathBuf::from("bramble-data")
}

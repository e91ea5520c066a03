//! `bramble bench NAME [--json] [--quick]` and `bramble bench all`: runs benchmarks from
//! `bramble-bench` and prints their reports (a table each, or JSON).
//!
//! Owns: the flags and the printing. Must not touch: how anything is measured (that is
//! `bramble-bench`), or any data directory (benchmarks run in temporary ones).

use anyhow::{Result, bail};
use bramble_bench::{Bench, Options, Report};

/// Flags of `bramble bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The benchmark to run, or `all`.
    name: String,
    /// Print the report as JSON (an array of reports for `all`).
    #[arg(long)]
    json: bool,
    /// A small size that finishes in seconds (rough figures, for smoke tests).
    #[arg(long)]
    quick: bool,
}

/// Flags of the hidden `bramble bench-worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The spec the parent benchmark wrote (JSON).
    spec: std::path::PathBuf,
}

/// Flags of the hidden `bramble bench-dict`.
#[derive(Debug, clap::Args)]
pub struct DictArgs {
    /// Where to write the dictionary (crates/proto/dict/mail-1.zdict to replace the shipped
    /// one; a new version needs a new codec number, see docs/protocol.md).
    #[arg(long)]
    out: std::path::PathBuf,
}

/// Trains the sealer's mail dictionary as `bramble_bench::dict` says and writes it.
pub fn dict(args: DictArgs) -> Result<()> {
    let d = bramble_bench::dict::train()?;
    std::fs::write(&args.out, &d)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.out.display()))?;
    let same = d == bramble_proto::MAIL_DICTIONARY;
    println!(
        "Wrote {} bytes to {} ({} the shipped dictionary).",
        d.len(),
        args.out.display(),
        if same {
            "the same as"
        } else {
            "NOT the same as"
        }
    );
    Ok(())
}

/// The child side of a benchmark: answers on standard output, as the parent expects.
pub async fn worker(args: WorkerArgs) -> Result<()> {
    crate::init_logging("error");
    Ok(bramble_bench::worker::run(&args.spec).await?)
}

pub async fn run(args: Args) -> Result<()> {
    // What the programs measured log goes to standard error: errors only, unless
    // BRAMBLE_LOG asks for more.
    crate::init_logging("error");
    let benches: Vec<Bench> = if args.name == "all" {
        Bench::ALL.to_vec()
    } else {
        match Bench::ALL.iter().find(|b| b.name() == args.name) {
            Some(b) => vec![*b],
            None => {
                let names: Vec<&str> = Bench::ALL.iter().map(|b| b.name()).collect();
                bail!(
                    "there is no benchmark named {:?}; choose one of: {}, or all",
                    args.name,
                    names.join(", ")
                );
            }
        }
    };
    let opts = Options { quick: args.quick };
    let mut reports: Vec<Report> = Vec::new();
    for b in benches {
        let report = bramble_bench::run(b, opts).await?;
        if !args.json {
            print!("{}", report.table());
            println!();
        }
        reports.push(report);
    }
    if args.json {
        if args.name == "all" {
            crate::output::json(&reports)?;
        } else if let Some(r) = reports.first() {
            crate::output::json(r)?;
        }
    }
    Ok(())
}

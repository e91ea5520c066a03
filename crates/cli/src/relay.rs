//! `bramble relay`: run a relay, or manage its SRP identifiers.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use bramble_proto::SrpId;
use bramble_relay::SrpEntry;

use crate::config;
use crate::output;

/// Flags of `bramble relay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file (TOML, `[relay]` section).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// The relay's data directory (default ./bramble-relay).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Where enterprise servers connect (default 0.0.0.0:3101).
    #[arg(long)]
    server_listen: Option<SocketAddr>,
    /// Where devices connect (default 0.0.0.0:4101).
    #[arg(long)]
    device_listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Manage the SRP identifiers enterprise servers log in with.
    Srp {
        #[command(subcommand)]
        command: SrpCmd,
    },
}

#[derive(Debug, clap::Subcommand)]
enum SrpCmd {
    /// Make a new SRP id and key (the key is shown once).
    Add {
        /// A chosen id (S and 8 digits); random when absent.
        #[arg(long)]
        id: Option<SrpId>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List SRP ids and their state.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enable an id again after a conflict or after it was disabled.
    Enable { id: SrpId },
    /// Refuse logins with an id.
    Disable { id: SrpId },
    /// Forget an id.
    Remove { id: SrpId },
}

pub async fn run(args: Args) -> Result<()> {
    let file = config::load(args.config.as_deref())?;
    let mut cfg = file
        .relay
        .unwrap_or_else(|| bramble_relay::RelayConfig::with_data_dir("bramble-relay"));
    if let Some(d) = args.data {
        cfg.data_dir = d;
    }
    match args.command {
        None => {
            crate::init_logging("info");
            if let Some(a) = args.server_listen {
                cfg.server_listen = a;
            }
            if let Some(a) = args.device_listen {
                cfg.device_listen = a;
            }
            let relay = bramble_relay::start(cfg.clone())
                .await
                .context("cannot start the relay")?;
            println!("Bramble relay is running.");
            println!("  servers connect to   {}", relay.server_addr());
            println!("  devices connect to   {}", relay.device_addr());
            println!(
                "  certificate          {}{}",
                relay.fingerprint(),
                if relay.cert_created() {
                    "  (new: pin this fingerprint on servers and devices)"
                } else {
                    ""
                }
            );
            println!("  data                 {}", cfg.data_dir.display());
            println!(
                "Add a server's identity with: bramble relay --data {} srp add",
                cfg.data_dir.display()
            );
            println!("Press Ctrl-C to stop.");
            crate::serve::wait_for_signal().await;
            eprintln!("Stopping… (queued frames are kept on disk)");
            relay.shutdown().await;
            Ok(())
        }
        Some(Cmd::Srp { command }) => srp(&cfg.data_dir, command).await,
    }
}

async fn srp(dir: &std::path::Path, cmd: SrpCmd) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match cmd {
        SrpCmd::Add { id, json } => {
            let (id, key) = bramble_relay::srp_add(dir, id).await?;
            if json {
                output::json(&serde_json::json!({ "srp_id": id.to_string(), "srp_key": key }))?;
            } else {
                println!("SRP id   {id}");
                println!("SRP key  {key}");
                println!(
                    "The key is shown only now. Give both to the enterprise server ([server.uplink] srp_id, srp_key_file)."
                );
            }
        }
        SrpCmd::List { json } => {
            let list = bramble_relay::srp_list(dir).await?;
            if json {
                output::json(&list)?;
            } else if list.is_empty() {
                println!(
                    "No SRP ids yet. Add one with: bramble relay --data {} srp add",
                    dir.display()
                );
            } else {
                output::table(
                    &["SRP ID", "STATE", "SINCE", "LAST LOGIN", "REASON"],
                    &list.iter().map(row).collect::<Vec<_>>(),
                );
            }
        }
        SrpCmd::Enable { id } => {
            bramble_relay::srp_enable(dir, id).await?;
            println!("{id} is enabled; servers may log in with it again.");
        }
        SrpCmd::Disable { id } => {
            bramble_relay::srp_disable(dir, id).await?;
            println!("{id} is disabled; logins with it are refused.");
        }
        SrpCmd::Remove { id } => {
            if bramble_relay::srp_remove(dir, id).await? {
                println!("{id} removed.");
            } else {
                anyhow::bail!("there is no SRP id {id} at this relay");
            }
        }
    }
    Ok(())
}

fn row(e: &SrpEntry) -> Vec<String> {
    vec![
        e.id.to_string(),
        e.state.to_string(),
        output::time_ms(Some(e.state_at_ms)),
        output::time_ms(e.last_login_ms),
        e.state_reason.clone().unwrap_or_default(),
    ]
}

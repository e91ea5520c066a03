//! `bramble device`: the phone, on the command line. Its identity and local store live in
//! `--home DIR`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bramble_device::{Device, Incoming};
use bramble_net::Fingerprint;
use bramble_proto::schema::envelope::Body;

use crate::output;

/// The relay's device port on the same machine.
pub const DEFAULT_RELAY: &str = "127.0.0.1:4101";

/// Flags of `bramble device`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device's home: its identity key and local store.
    #[arg(long, global = true, required = true)]
    home: Option<PathBuf>,
    /// The relay's device port, host:port (default 127.0.0.1:4101, or what was used before).
    #[arg(long, global = true)]
    relay: Option<String>,
    /// The relay certificate's SHA-256 fingerprint; without it the first one seen is trusted
    /// and pinned.
    #[arg(long, global = true)]
    fingerprint: Option<Fingerprint>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Print this device's PIN.
    Pin,
    /// Show the device's state: PIN, relay, pinned certificate, server, counters.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Connect to the relay and show what arrives, until Ctrl-C (or --for).
    Connect {
        /// Stop after this long (e.g. 10s).
        #[arg(long, value_parser = humantime::parse_duration)]
        r#for: Option<Duration>,
    },
    /// Check the path to the enterprise server: send Ping, wait for Pong.
    Ping {
        /// How many.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
}

pub async fn run(args: Args) -> Result<()> {
    crate::init_logging("warn");
    let home = args.home.context("--home DIR is required")?;
    let mut device = Device::open(&home)?;
    let current = device.status();
    let wanted = args
        .relay
        .clone()
        .or_else(|| current.relay.clone())
        .unwrap_or_else(|| DEFAULT_RELAY.to_owned());
    if current.relay.as_deref() != Some(wanted.as_str())
        || (args.fingerprint.is_some() && args.fingerprint != current.relay_fingerprint)
    {
        let fp = args
            .fingerprint
            .or(if current.relay.as_deref() == Some(wanted.as_str()) {
                current.relay_fingerprint
            } else {
                None
            });
        device.set_relay(&wanted, fp)?;
    }
    match args.command {
        Cmd::Pin => println!("{}", device.pin()),
        Cmd::Status { json } => {
            let s = device.status();
            if json {
                return output::json(&s);
            }
            println!("PIN                 {}", s.pin);
            println!("Relay               {}", s.relay.as_deref().unwrap_or("-"));
            println!(
                "Relay certificate   {}",
                s.relay_fingerprint.map_or_else(
                    || "not pinned yet (trusted on first connection)".to_owned(),
                    |f| f.to_string()
                )
            );
            match s.server {
                Some(srp) => {
                    println!("Enterprise server   {srp}");
                    println!("Key generation      {}", s.key_generation);
                }
                None => println!("Enterprise server   none: this device is not activated"),
            }
            println!(
                "Sent / received     next seq {}, highest received {}",
                s.tx_next, s.rx_highest
            );
        }
        Cmd::Connect { r#for } => {
            let mut conn = device.connect().await?;
            println!(
                "Connected to the relay as PIN {}; {} frame(s) were waiting.",
                conn.device().pin(),
                conn.queued_at_login()
            );
            let deadline = r#for.map(|d| tokio::time::Instant::now() + d);
            loop {
                let next = async {
                    match deadline {
                        Some(d) => tokio::time::timeout_at(d, conn.recv()).await.ok(),
                        None => Some(conn.recv().await),
                    }
                };
                let got = tokio::select! {
                    g = next => g,
                    () = crate::serve::wait_for_signal() => None,
                };
                match got {
                    None => break,
                    Some(Ok(item)) => print_incoming(&item),
                    Some(Err(e)) => return Err(e.into()),
                }
            }
            conn.close().await;
        }
        Cmd::Ping { count } => {
            let mut conn = device.connect().await?;
            for i in 1..=count {
                let rtt = conn.ping(&format!("ping {i}")).await?;
                println!(
                    "Pong from the enterprise server in {:.1} ms",
                    rtt.as_secs_f64() * 1000.0
                );
            }
            conn.close().await;
        }
    }
    Ok(())
}

fn print_incoming(item: &Incoming) {
    match item {
        Incoming::Envelope { seq, env } => match &env.body {
            Some(Body::Ping(p)) => println!("#{seq} ping from the server: {}", p.note),
            Some(Body::Pong(p)) => println!("#{seq} pong: {}", p.note),
            Some(Body::Error(e)) => println!("#{seq} the server reports: {}", e.message),
            None => println!("#{seq} a message this version does not understand"),
        },
        Incoming::Rejected { seq, reason } => println!("#{seq} refused: {reason}"),
    }
}

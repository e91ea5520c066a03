//! `bramble device`: the phone, on the command line. Its identity and local store live in
//! `--home DIR`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use bramble_device::{Device, Incoming};
use bramble_net::Fingerprint;
use bramble_proto::schema::envelope::Body;

use crate::output;

/// The relay's device port on the same machine.
pub const DEFAULT_RELAY: &str = "127.0.0.1:4101";

/// Flags of `bramble device`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device's home: its identity key and local store (required).
    // Not `required`: clap refuses a global argument that is required (a panic when the
    // command is built); `run` reports a missing --home as a usage error instead.
    #[arg(long, global = true)]
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
    /// Enterprise Activation: bind this device to the user's enterprise server with the
    /// email address and the one-time activation password the administrator gave.
    Activate {
        /// The user's email address.
        email: String,
        /// The activation password (typed as given; it never leaves the device).
        password: String,
        /// How long to wait for the server at each stage (default 5m).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
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
    let Some(home) = args.home else {
        use clap::CommandFactory;
        crate::Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "bramble device needs --home DIR: the directory that holds the device's identity key and local store",
            )
            .exit();
    };
    let mut device = Device::open(&home)?;
    let current = device.status();
    let wanted = args
        .relay
        .clone()
        .or_else(|| current.relay.clone())
        .unwrap_or_else(|| DEFAULT_RELAY.to_owned());
    // Only a command that connects, or an explicit --relay/--fingerprint, records the relay:
    // `pin` and `status` leave the device as it was.
    let connects = matches!(
        args.command,
        Cmd::Connect { .. } | Cmd::Ping { .. } | Cmd::Activate { .. }
    );
    let explicit = args.relay.is_some() || args.fingerprint.is_some();
    if (connects || explicit)
        && (current.relay.as_deref() != Some(wanted.as_str())
            || (args.fingerprint.is_some() && args.fingerprint != current.relay_fingerprint))
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
                return output::json(
                    &serde_json::json!({ "device": s, "profile": device.profile() }),
                );
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
            if let Some(p) = device.profile() {
                println!("Email address       {}", p.email);
                println!(
                    "Activation          {}",
                    if p.activated_at_ms.is_some() {
                        "Activation Complete"
                    } else {
                        "not complete"
                    }
                );
                if let Some(pol) = &p.policy {
                    println!("IT policy           {} (version {})", pol.name, pol.version);
                }
                if !p.service_books.is_empty() {
                    let cids: Vec<&str> = p.service_books.iter().map(|(c, _)| c.as_str()).collect();
                    println!("Service books       {}", cids.join(", "));
                }
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
        Cmd::Activate {
            email,
            password,
            timeout,
        } => {
            let mut opts = bramble_device::activation::ActivateOptions::default();
            if let Some(t) = timeout {
                opts.timeout = t;
            }
            device
                .activate(&email, &password, &opts, |stage| println!("{stage}"))
                .await?;
        }
        Cmd::Ping { count } => {
            // Say so before trying the relay: unreachable or not, there is nobody to ping.
            if device.status().server.is_none() {
                return Err(bramble_device::DeviceError::NotActivated.into());
            }
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
            Some(_) => println!("#{seq} a message this command does not show"),
            None => println!("#{seq} a message this version does not understand"),
        },
        Incoming::Rejected { seq, reason } => println!("#{seq} refused: {reason}"),
        Incoming::Activation { from, .. } => println!("an activation message from {from}"),
    }
}

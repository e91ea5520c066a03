//! `bramble serve`: the enterprise server, with an in-process relay on the embedded default.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use bramble_proto::SrpId;
use bramble_relay::{RelayConfig, RelayHandle};
use bramble_server::ServerHandle;
use bramble_store::{ServerIdentity, Store};

use crate::config::{self, FileConfig};

/// Flags of `bramble serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file (TOML). Without one, the embedded defaults: SQLite and an
    /// in-process relay under the data directory.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The data directory (default ./bramble-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where the administration API listens (default 127.0.0.1:3180).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
}

/// A running server and, on the embedded default, its relay.
#[derive(Debug)]
pub struct Running {
    pub server: ServerHandle,
    pub relay: Option<RelayHandle>,
    pub database: String,
}

impl Running {
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        if let Some(r) = self.relay {
            r.shutdown().await;
        }
    }
}

pub async fn run(args: Args) -> Result<()> {
    crate::init_logging("info");
    let mut cfg = config::load(args.config.as_deref())?;
    if let Some(d) = args.data {
        cfg.server.data_dir = d;
    }
    if let Some(a) = args.admin_listen {
        cfg.server.admin.listen = a;
    }
    let running = start(&cfg).await?;
    print_banner(&running, &cfg);
    wait_for_signal().await;
    eprintln!("Stopping…");
    running.shutdown().await;
    Ok(())
}

/// The in-process relay's configuration when the file has no `[relay]` section.
pub fn embedded_relay(cfg: &FileConfig) -> RelayConfig {
    let mut relay = cfg.relay.clone().unwrap_or_else(|| {
        let mut r = RelayConfig::with_data_dir(cfg.server.data_dir.join("relay"));
        r.server_listen = SocketAddr::from(([127, 0, 0, 1], 3101));
        r
    });
    // On the embedded default the relay "mails" activation requests straight into the
    // server's Maildir store, unless it was told where to send mail.
    if relay.mail.smtp.is_none() && relay.mail.maildir.is_none() && cfg.server.mail.imap.is_none() {
        relay.mail.maildir = Some(cfg.server.mail.maildir_root(&cfg.server.data_dir));
    }
    relay
}

/// Opens the database, starts the relay (embedded default) and the server.
pub async fn start(cfg: &FileConfig) -> Result<Running> {
    std::fs::create_dir_all(&cfg.server.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            cfg.server.data_dir.display()
        )
    })?;
    let database = cfg.server.database_url();
    let store = Store::open(&database)
        .await
        .context("cannot open the configuration database")?;
    let relay = match &cfg.server.uplink {
        Some(up) => {
            let key = match (&up.srp_key, &up.srp_key_file) {
                (Some(k), _) => k.trim().to_owned(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read the SRP key file {}", f.display()))?
                    .trim()
                    .to_owned(),
                (None, None) => anyhow::bail!(
                    "[server.uplink] needs srp_key or srp_key_file (or BRAMBLE_SERVER__UPLINK__SRP_KEY)"
                ),
            };
            let srp: SrpId = up.srp_id.parse().context("[server.uplink] srp_id")?;
            if let Some(f) = &up.fingerprint {
                f.parse::<bramble_net::Fingerprint>()
                    .context("[server.uplink] fingerprint")?;
            }
            let previous = store.server_identity().await?;
            let fingerprint = up.fingerprint.clone().or_else(|| {
                previous
                    .filter(|p| p.relay_addr == up.relay)
                    .and_then(|p| p.relay_fingerprint)
            });
            store
                .set_server_identity(&ServerIdentity {
                    srp_id: srp.get(),
                    srp_key: key,
                    relay_addr: up.relay.clone(),
                    relay_fingerprint: fingerprint,
                })
                .await?;
            None
        }
        None => {
            let rcfg = embedded_relay(cfg);
            let relay = bramble_relay::start(rcfg.clone())
                .await
                .context("cannot start the in-process relay")?;
            bind_to_embedded_relay(&store, &rcfg, &relay).await?;
            Some(relay)
        }
    };
    check_mail(cfg, &store).await?;
    let server = bramble_server::start(&cfg.server, store)
        .await
        .context("cannot start the server")?;
    Ok(Running {
        server,
        relay,
        database: redact(&database),
    })
}

/// Checks the mail set-up before anything depends on it, so a wrong address or password is
/// reported now, in words, instead of as activations that never finish.
async fn check_mail(cfg: &FileConfig, store: &Store) -> Result<()> {
    use bramble_server::messaging::mailbox::{MailboxSource, Watchers};
    let mailbox = bramble_server::mailbox_config(&cfg.server, None).context("[server.mail]")?;
    if let MailboxSource::Imap(imap) = &mailbox.source {
        // With per-user passwords the CLI holds none to log in with: reachability only.
        let user = if cfg.server.mail.per_user {
            None
        } else {
            store.list_users().await?.into_iter().next()
        };
        match user {
            Some(u) => {
                Watchers::check_login(imap, &u.email).await.map_err(|e| {
                    anyhow::anyhow!(
                        "the mail server check failed for {}'s mailbox: {e}",
                        u.email
                    )
                })?;
            }
            None => {
                tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    tokio::net::TcpStream::connect(&imap.addr),
                )
                .await
                .map_err(|_| {
                    anyhow::anyhow!("the IMAP server {} does not answer within 10 s", imap.addr)
                })?
                .with_context(|| {
                    format!(
                        "the IMAP server {} in [server.mail] imap cannot be reached",
                        imap.addr
                    )
                })?;
            }
        }
    }
    if let Some(relay) = &cfg.relay
        && relay.mail.smtp.is_some()
    {
        let gw = bramble_relay::mail::MailGateway::new(&relay.mail)?;
        gw.check().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Gives the server an SRP identity at its own in-process relay (first start), or refreshes
/// the relay's address and fingerprint (later starts).
async fn bind_to_embedded_relay(
    store: &Store,
    rcfg: &RelayConfig,
    relay: &RelayHandle,
) -> Result<()> {
    let addr = relay.server_addr();
    let connect = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port())).to_string()
    } else {
        addr.to_string()
    };
    let fingerprint = Some(relay.fingerprint().to_string());
    let known = bramble_relay::srp_list(&rcfg.data_dir).await?;
    let current = store.server_identity().await?;
    let identity = match current {
        Some(id) if known.iter().any(|e| e.id.get() == id.srp_id) => ServerIdentity {
            relay_addr: connect,
            relay_fingerprint: fingerprint,
            ..id
        },
        other => {
            let wanted = other.and_then(|id| SrpId::new(id.srp_id));
            let (srp, key) = bramble_relay::srp_add(&rcfg.data_dir, wanted).await?;
            tracing::info!(%srp, "registered this server at its in-process relay");
            ServerIdentity {
                srp_id: srp.get(),
                srp_key: key,
                relay_addr: connect,
                relay_fingerprint: fingerprint,
            }
        }
    };
    store.set_server_identity(&identity).await?;
    Ok(())
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn print_banner(r: &Running, cfg: &FileConfig) {
    println!(
        "Bramble enterprise server {} is running.",
        r.server.srp_id()
    );
    println!("  configuration database  {}", r.database);
    match &r.relay {
        Some(relay) => {
            println!(
                "  relay (in-process)      servers {}, devices {}",
                relay.server_addr(),
                relay.device_addr()
            );
            println!("  relay certificate       {}", relay.fingerprint());
        }
        None => {
            if let Some(up) = &cfg.server.uplink {
                println!("  relay                   {}", up.relay);
            }
        }
    }
    println!("  administration API      http://{}", r.server.admin_addr());
    println!(
        "  administration token    {}",
        bramble_server::admin::token_path(&cfg.server).display()
    );
    println!(
        "Try: bramble admin --data {} user list",
        cfg.server.data_dir.display()
    );
    println!("Press Ctrl-C to stop.");
}

pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

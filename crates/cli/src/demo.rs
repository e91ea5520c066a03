//! `bramble demo`: a relay, an enterprise server and a simulated device in one process, on
//! the embedded defaults, narrating what happens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bramble_device::{Device, Incoming};
use bramble_proto::Pin;
use bramble_proto::schema::{self, envelope::Body};
use bramble_relay::RelayConfig;
use bramble_server::ServerEvent;
use tokio::sync::broadcast;

use crate::admin::Client;
use crate::config::FileConfig;
use crate::serve;

/// Flags of `bramble demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the demo's files here (default: a temporary directory, removed afterwards).
    #[arg(long)]
    data: Option<PathBuf>,
}

const USER: &str = "alice@example.com";

pub async fn run(args: Args) -> Result<()> {
    crate::init_logging("warn");
    let tmp;
    let dir = match args.data {
        Some(d) => d,
        None => {
            tmp = tempfile::Builder::new().prefix("bramble-demo-").tempdir()?;
            tmp.path().to_owned()
        }
    };
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let mut cfg = FileConfig::default();
    cfg.server.data_dir = dir.clone();
    cfg.server.admin.listen = loopback(0);
    let mut relay = RelayConfig::with_data_dir(dir.join("relay"));
    relay.server_listen = loopback(0);
    relay.device_listen = loopback(0);
    cfg.relay = Some(relay);

    step(
        1,
        "Starting a relay and an enterprise server (SQLite, embedded defaults)",
    );
    let running = serve::start(&cfg).await?;
    let relay = running
        .relay
        .as_ref()
        .context("the demo runs its own relay")?;
    say(&format!("configuration database  {}", running.database));
    say(&format!(
        "relay                   servers {}, devices {}",
        relay.server_addr(),
        relay.device_addr()
    ));
    say(&format!("relay certificate       {}", relay.fingerprint()));
    say(&format!(
        "administration API      http://{}",
        running.server.admin_addr()
    ));
    let mut events = running.server.events();
    if !running.server.router.wait_up(Duration::from_secs(10)).await {
        bail!(
            "the server did not reach its relay: {:?}",
            running.server.router.state()
        );
    }
    say(&format!(
        "the server logged in at the relay as SRP id {}",
        running.server.srp_id()
    ));

    step(
        2,
        &format!("The administrator adds {USER} and sets a one-time activation password"),
    );
    let admin = Client::from_data_dir(&dir)?;
    let user = admin.add_user(USER, Some("Alice Example")).await?;
    let pw = admin
        .set_activation_password(USER, None, Some("48h"), None)
        .await?;
    let password = pw
        .password
        .context("the server did not return the generated password")?;
    say(&format!("{} — status: {}", user.email, user.status));
    say(&format!(
        "activation password (shown once, given to the user by phone): {password}"
    ));

    step(
        3,
        "On the phone: Enterprise Activation with the address and the password",
    );
    let mut device = Device::open(&dir.join("device-alice"))?;
    device.set_relay(&relay.device_addr().to_string(), None)?;
    say(&format!(
        "the phone's PIN, derived from its identity key: {}",
        device.pin()
    ));
    say(
        "(the relay mails the ETP.DAT request into alice's mailbox; the server finds and removes it)",
    );
    let started = std::time::Instant::now();
    let opts = bramble_device::activation::ActivateOptions {
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    device
        .activate(USER, &password, &opts, |stage| {
            say(&format!("phone: {stage}"))
        })
        .await?;
    say(&format!(
        "activated in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    ));

    step(4, "What the administrator sees (bramble admin user show)");
    let u = admin.user(USER).await?;
    for e in &u.history {
        say(&format!(
            "{:<22} {}",
            e.status,
            e.reason.as_deref().unwrap_or("")
        ));
    }

    step(
        5,
        "The phone pings its server through the relay (sealed with the new key)",
    );
    {
        let mut conn = device.connect().await?;
        say(&format!(
            "relay certificate pinned on first use: {}",
            conn.device()
                .status()
                .relay_fingerprint
                .map_or_else(|| "-".into(), |f| f.to_string())
        ));
        for i in 1..=3 {
            let rtt = conn.ping(&format!("hello {i}")).await?;
            say(&format!(
                "Ping → server → Pong in {:.1} ms (compressed, encrypted end to end; the relay saw only sealed bytes)",
                rtt.as_secs_f64() * 1000.0
            ));
        }
        conn.close().await;
    }
    say("the phone leaves coverage (disconnects)");

    step(
        6,
        "The server pushes to the phone while it is out of coverage",
    );
    let pin = device.pin();
    let seq = running
        .server
        .dispatcher
        .send(
            pin,
            schema::Envelope {
                version: 1,
                body: Some(Body::Ping(schema::Ping {
                    note: "Are you there? (sent while you were away)".into(),
                    sent_at_ms: 0,
                })),
            },
        )
        .await?;
    wait_delivery(&mut events, pin, seq, "queued").await?;
    say(&format!(
        "the relay queued frame #{seq} on disk and told the server: QUEUED"
    ));
    {
        let mut conn = device.connect().await?;
        say(&format!(
            "the phone is back; {} frame(s) were waiting at the relay",
            conn.queued_at_login()
        ));
        match tokio::time::timeout(Duration::from_secs(10), conn.recv()).await {
            Ok(Ok(Incoming::Envelope { env, seq })) => {
                if let Some(Body::Ping(p)) = env.body {
                    say(&format!("the phone opened #{seq}: \"{}\"", p.note));
                }
            }
            Ok(Ok(Incoming::Rejected { reason, .. })) => {
                bail!("the phone refused the frame: {reason}")
            }
            Ok(Ok(Incoming::Activation { .. })) => {
                bail!("an activation message arrived instead of the queued frame")
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => bail!("the queued frame did not arrive within 10 s"),
        }
        wait_delivery(&mut events, pin, seq, "delivered").await?;
        say("the phone acknowledged it; the relay told the server: DELIVERED");
        conn.close().await;
    }

    push_mail(&dir, &admin, &running, &mut device).await?;

    running.shutdown().await;
    println!();
    println!("What to try next:");
    for (cmd, what) in [
        ("bramble serve", "run the server (data in ./bramble-data)"),
        (
            "bramble admin user add bob@example.com",
            "add a user (while the server runs)",
        ),
        (
            "bramble admin user activation-password bob@example.com --generate",
            "a one-time activation password",
        ),
        (
            "bramble device --home ./phone activate bob@example.com PASSWORD",
            "activate a phone (relay 127.0.0.1:4101)",
        ),
        (
            "bramble device --home ./phone ping",
            "a sealed round trip to the server",
        ),
        (
            "bramble admin user show bob@example.com",
            "the status timeline",
        ),
        (
            "bramble device --home ./phone inbox",
            "the mail pushed to the phone",
        ),
        (
            "bramble device --home ./phone send --to a@example.com --subject Hi --body …",
            "mail from the phone",
        ),
        (
            "bramble device --home ./phone tui",
            "use the phone in a terminal",
        ),
    ] {
        println!("  {cmd:<68} {what}");
    }
    Ok(())
}

/// Steps 7 and 8: a message arrives in alice's mailbox and is pushed to the phone; the phone
/// replies, and the reply (with the original appended by the server) lands in bob's mailbox.
async fn push_mail(
    dir: &std::path::Path,
    admin: &Client,
    running: &serve::Running,
    device: &mut Device,
) -> Result<()> {
    use bramble_device::mail::{self, MailEvent, OutboxState};
    const BOB: &str = "bob@example.com";
    step(
        7,
        "Mail arrives in alice's mailbox and is pushed to the phone (seed 002, email message flow)",
    );
    admin.add_user(BOB, Some("Bob Example")).await?;
    let store = device.mail_store().await?;
    let mut conn = device.connect().await?;
    let maildir = dir.join("mail").join(USER).join("Maildir");
    let name = format!("{}.demo.bramble", bramble_store::now_ms());
    let text = format!(
        "From: Bob Example <{BOB}>\r\nTo: Alice Example <{USER}>\r\nSubject: Quarterly figures\r\n\
         Message-ID: <figures.1@example.com>\r\nDate: Tue, 1 Dec 2026 09:30:00 +0000\r\n\r\n\
         Hi Alice,\r\n\r\nthe figures for the quarter are in: revenue is up 12 %.\r\n\
         Can you look at them before Friday?\r\n\r\nBob\r\n"
    );
    std::fs::create_dir_all(maildir.join("tmp"))?;
    std::fs::write(maildir.join("tmp").join(&name), &text)?;
    let arrived = std::time::Instant::now();
    std::fs::rename(
        maildir.join("tmp").join(&name),
        maildir.join("new").join(&name),
    )?;
    say("a mail server delivers Bob's message into alice's Maildir (new/)");
    say(
        "(the messaging agent sees it, applies the filters, gives it a RefID, the dispatcher seals it)",
    );
    let ref_id = loop {
        let item = tokio::time::timeout(Duration::from_secs(10), conn.recv())
            .await
            .context("the message did not reach the phone within 10 s")??;
        if let MailEvent::NewMessage { ref_id } =
            mail::handle_and_answer(&mut conn, &store, &item).await?
        {
            break ref_id;
        }
    };
    let m = store.message(ref_id).await?;
    say(&format!(
        "phone: new mail in {:.0} ms, RefID {ref_id}, from {}: \"{}\"",
        arrived.elapsed().as_secs_f64() * 1000.0,
        m.from,
        m.subject
    ));
    for line in m.text.lines().filter(|l| !l.trim().is_empty()).take(2) {
        say(&format!("phone:   {line}"));
    }
    say("the phone stored it and sent a delivery confirmation");
    let stats = running.server.store().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let counters = loop {
        let counters: std::collections::HashMap<String, i64> =
            stats.stats(USER).await?.into_iter().collect();
        let done = stats.mail_pending_count(USER).await? == 0
            && counters.get("forwarded").copied().unwrap_or(0) > 0
            && counters.get("delivered").copied().unwrap_or(0) > 0;
        if done {
            break counters;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the server did not record the phone's delivery confirmation within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    say(&format!(
        "server statistics for {USER}: forwarded {}, delivered {}",
        counters.get("forwarded").copied().unwrap_or(0),
        counters.get("delivered").copied().unwrap_or(0)
    ));

    step(
        8,
        "The phone replies; the server adds the original and sends it",
    );
    let draft = store
        .reply_draft(
            ref_id,
            false,
            "Thanks Bob, they look good. Alice",
            Some(USER),
        )
        .await?;
    let submit = store.compose(&draft).await?;
    say(&format!(
        "phone: reply \"{}\" to {}",
        draft.subject,
        draft.to.join(", ")
    ));
    let entry = mail::wait_for_submit(
        &mut conn,
        &store,
        submit.client_id,
        Duration::from_secs(10),
        |e| {
            say(&format!("phone: outbox: {}", e.state));
        },
    )
    .await?;
    conn.close().await;
    if entry.state != OutboxState::Sent {
        bail!("the reply was not sent: {} {}", entry.state, entry.message);
    }
    let bob = dir.join("mail").join(BOB).join("Maildir");
    let delivered = ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(bob.join(sub)).ok())
        .flatten()
        .filter_map(Result::ok)
        .find_map(|e| std::fs::read_to_string(e.path()).ok())
        .context("the reply is not in bob's mailbox")?;
    say(&format!(
        "delivered into {BOB}'s Maildir (no SMTP server is configured: local delivery):"
    ));
    for line in delivered.lines().filter(|l| {
        l.starts_with("Subject:")
            || l.starts_with("In-Reply-To:")
            || l.contains("Original Message")
            || l.contains("revenue")
    }) {
        say(&format!("  {line}"));
    }
    let sent = dir.join("mail").join(USER).join("Maildir").join(".Sent");
    let copies = ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(sent.join(sub)).ok())
        .flatten()
        .count();
    if copies == 0 {
        bail!("no copy of the reply is in {USER}'s Sent folder");
    }
    say(&format!(
        "a copy is in {USER}'s Sent folder ({})",
        sent.display()
    ));
    Ok(())
}

async fn wait_delivery(
    events: &mut broadcast::Receiver<ServerEvent>,
    pin: Pin,
    seq: u64,
    want: &str,
) -> Result<()> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(ServerEvent::Delivery {
                    pin: p,
                    seq: s,
                    status,
                }) if p == pin && s == seq && status == want => {
                    return Ok(());
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => bail!("the server stopped"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .with_context(|| format!("the relay did not report frame #{seq} {want} within 10 s"))?
}

fn step(n: u32, what: &str) {
    println!();
    println!("[{n}] {what}");
}

fn say(what: &str) {
    println!("    {what}");
}

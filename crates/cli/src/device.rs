//! `bramble device`: the phone, on the command line. Its identity and local store live in
//! `--home DIR`; its mail in `DIR/mail.db` (`bramble_device::mail` does the work: this module
//! parses flags and prints).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use bramble_device::mail::{self, Change, Draft, MailKind, OutboxState};
use bramble_device::{Device, DeviceError, Incoming, MailEvent};
use bramble_net::Fingerprint;
use bramble_organizer::Database;
use bramble_proto::schema::envelope::Body;

use crate::output;
use crate::tui::view::short;

pub(crate) mod organizer;

/// How long `read --more` waits for the server's answer.
const MORE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `attachment` waits for the server, from the request and from each piece.
const ATTACHMENT_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Connect to the relay and show what arrives (mail, IT policy, your administrator's
    /// commands, applications), until Ctrl-C (or --for). Works while the device is locked.
    #[command(alias = "listen")]
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
        /// The calendar, contacts, tasks and memos already on the device: merge them with
        /// the server's, or replace them by the server's.
        #[arg(long, value_enum, default_value_t = OrganizerChoice::Merge)]
        organizer: OrganizerChoice,
    },
    /// Check the path to the enterprise server: send Ping, wait for Pong.
    Ping {
        /// How many.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Fetch new mail from the server, then list the messages on the device.
    Inbox {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Stop fetching once nothing has arrived for this long.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
        wait: Duration,
    },
    /// Show a message (and mark it read).
    Read {
        /// The message's RefID (from `inbox`).
        ref_id: u64,
        /// Fetch the next part of the text from the server first.
        #[arg(long)]
        more: bool,
        /// Fetch all the rest of the text from the server first.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a new message and send it.
    Send {
        /// A recipient (repeat for more).
        #[arg(long, required = true)]
        to: Vec<String>,
        /// A copy recipient (repeat for more).
        #[arg(long)]
        cc: Vec<String>,
        /// A blind copy recipient (repeat for more).
        #[arg(long)]
        bcc: Vec<String>,
        /// The subject.
        #[arg(long, default_value = "")]
        subject: String,
        /// The text.
        #[arg(long, default_value = "")]
        body: String,
        /// How long to wait for the server to send it.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        wait: Duration,
    },
    /// Reply to a message (the server adds the original).
    Reply {
        /// The message's RefID.
        ref_id: u64,
        /// Reply to all its recipients.
        #[arg(long)]
        all: bool,
        /// The text.
        #[arg(long)]
        body: String,
        /// How long to wait for the server to send it.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        wait: Duration,
    },
    /// Forward a message (the server adds the original and its attachments).
    Forward {
        /// The message's RefID.
        ref_id: u64,
        /// A recipient (repeat for more).
        #[arg(long, required = true)]
        to: Vec<String>,
        /// A copy recipient (repeat for more).
        #[arg(long)]
        cc: Vec<String>,
        /// A text before the original.
        #[arg(long, default_value = "")]
        body: String,
        /// How long to wait for the server to send it.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        wait: Duration,
    },
    /// Mark a message read, unread, flagged or unflagged (here and in the mailbox).
    Mark {
        /// The message's RefID.
        ref_id: u64,
        /// What to mark it.
        how: MarkAs,
    },
    /// Delete a message (here and in the mailbox).
    Delete {
        /// The message's RefID.
        ref_id: u64,
    },
    /// Move a message to another folder of the mailbox.
    Move {
        /// The message's RefID.
        ref_id: u64,
        /// The folder.
        folder: String,
    },
    /// Download an attachment of a message into a file.
    Attachment {
        /// The message's RefID.
        ref_id: u64,
        /// The attachment's number (from `read`).
        index: u32,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// List the messages written on this device and what became of them.
    Outbox {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The phone's screen: the inbox, messages, replies and new mail as it arrives, staying
    /// connected (and reconnecting) until q.
    Tui,
    /// Fetch and answer what the server sent (mail, IT policy, commands, applications), then
    /// stop once nothing has arrived for --wait. Works while the device is locked.
    Sync {
        /// Stop once nothing has arrived for this long.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
        wait: Duration,
    },
    /// The device password.
    Password {
        #[command(subcommand)]
        action: PasswordCmd,
    },
    /// Lock the device: it asks for its password before anything else.
    Lock,
    /// Unlock the device with its password (asked for when not given). Too many wrong
    /// passwords in a row wipe the device.
    Unlock {
        /// The device password.
        #[arg(long)]
        password: Option<String>,
    },
    /// A wipe your administrator scheduled.
    Wipe {
        #[command(subcommand)]
        action: WipeCmd,
    },
    /// Cancel the wipe your administrator scheduled, when they allowed it (as `wipe cancel`).
    WipeCancel,
    /// The contacts on the device (with no subcommand: list them).
    Contacts {
        #[command(subcommand)]
        action: Option<organizer::OrgCmd>,
        /// Print JSON (for the list).
        #[arg(long)]
        json: bool,
    },
    /// The calendar's events (with no subcommand: list them).
    Calendar {
        #[command(subcommand)]
        action: Option<organizer::OrgCmd>,
        /// Print JSON (for the list).
        #[arg(long)]
        json: bool,
    },
    /// The tasks (with no subcommand: list them).
    Tasks {
        #[command(subcommand)]
        action: Option<organizer::OrgCmd>,
        /// Print JSON (for the list).
        #[arg(long)]
        json: bool,
    },
    /// The memos (with no subcommand: list them).
    Memos {
        #[command(subcommand)]
        action: Option<organizer::OrgCmd>,
        /// Print JSON (for the list).
        #[arg(long)]
        json: bool,
    },
    /// Your options (backed up to your organization's server when it says so; with no
    /// subcommand: list them).
    Options {
        #[command(subcommand)]
        action: Option<organizer::OptionsCmd>,
        /// Print JSON (for the list).
        #[arg(long)]
        json: bool,
    },
    /// The applications on the device (with no subcommand: list them).
    Apps {
        #[command(subcommand)]
        action: Option<AppsCmd>,
        /// Print JSON (for the list).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum PasswordCmd {
    /// Set or change the device password (asked for when --new is not given); it must meet
    /// your IT policy's length and complexity rules.
    Set {
        /// The new password.
        #[arg(long)]
        new: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
enum WipeCmd {
    /// Cancel the scheduled wipe, when your administrator allowed it.
    Cancel,
}

#[derive(Debug, clap::Subcommand)]
enum AppsCmd {
    /// List the installed applications and those your organization offers.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install an application of your own.
    InstallLocal {
        /// Its name.
        name: String,
        /// Its version.
        #[arg(value_name = "VERSION")]
        app_version: String,
        /// Its package file (without one, an empty placeholder package is installed).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Remove an application (not one your organization requires).
    Remove {
        /// Its name.
        name: String,
    },
}

/// `activate --organizer`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OrganizerChoice {
    Merge,
    Overwrite,
}

/// What `mark` sets.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MarkAs {
    Read,
    Unread,
    Flagged,
    Unflagged,
}

pub async fn run(args: Args) -> Result<()> {
    // The UI owns the terminal: it logs to a file, when asked to.
    if !matches!(args.command, Cmd::Tui) {
        crate::init_logging("warn");
    }
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
    if device.wiped_when_opened() {
        eprintln!(
            "bramble: {}",
            DeviceError::Wiped("by your administrator, at the time set".into())
        );
    }
    // A locked phone shows nothing and does nothing for its user until unlocked; it still
    // listens, so that its administrator's commands (a wipe!) arrive.
    let allowed_locked = matches!(
        args.command,
        Cmd::Status { .. } | Cmd::Unlock { .. } | Cmd::Connect { .. } | Cmd::Sync { .. } | Cmd::Tui
    );
    if device.is_locked() && !allowed_locked {
        return Err(DeviceError::Locked.into());
    }
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
        Cmd::Connect { .. }
            | Cmd::Ping { .. }
            | Cmd::Activate { .. }
            | Cmd::Inbox { .. }
            | Cmd::Read { more: true, .. }
            | Cmd::Read { all: true, .. }
            | Cmd::Send { .. }
            | Cmd::Reply { .. }
            | Cmd::Forward { .. }
            | Cmd::Mark { .. }
            | Cmd::Delete { .. }
            | Cmd::Move { .. }
            | Cmd::Attachment { .. }
            | Cmd::Tui
            | Cmd::Sync { .. }
            | Cmd::Contacts { .. }
            | Cmd::Calendar { .. }
            | Cmd::Tasks { .. }
            | Cmd::Memos { .. }
            | Cmd::Options { .. }
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
            // Not created by a look at the status.
            let has_organizer = device
                .home()
                .is_some_and(|h| h.join(bramble_device::organizer::ORGANIZER_DB).exists());
            let sync = if has_organizer {
                device.organizer().await?.sync_config().await?
            } else {
                None
            };
            if json {
                return output::json(&serde_json::json!({
                    "device": s,
                    "profile": device.profile(),
                    "apps": device.apps(),
                    "sync": sync,
                    "options": device.options(),
                }));
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
            print_manage_status(&device, &s);
            print_sync_config(sync.as_ref());
            println!(
                "Sent / received     next seq {}, highest received {}",
                s.tx_next, s.rx_highest
            );
        }
        Cmd::Connect { r#for } => {
            // Mail that arrives is stored and confirmed, not just shown: the relay forgets
            // what was acked.
            let store = device.mail_store().await?;
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
                    Some(Ok(item)) => {
                        let event = if conn.device().server().is_some() {
                            mail::handle_and_answer(&mut conn, &store, &item).await?
                        } else {
                            MailEvent::NotMail
                        };
                        match &event {
                            MailEvent::NotMail => print_incoming(&item),
                            MailEvent::Managed(events) => {
                                for e in events {
                                    println!("{e}");
                                }
                            }
                            MailEvent::Organizer(events) => {
                                for e in events {
                                    println!("{e}");
                                }
                            }
                            other => println!("{}", describe(other)),
                        }
                        if event.ends_session() {
                            break;
                        }
                    }
                    Some(Err(e)) => return Err(e.into()),
                }
            }
            conn.close().await;
        }
        Cmd::Activate {
            email,
            password,
            timeout,
            organizer,
        } => {
            let mut opts = bramble_device::activation::ActivateOptions::default();
            if let Some(t) = timeout {
                opts.timeout = t;
            }
            opts.organizer = match organizer {
                OrganizerChoice::Merge => bramble_device::activation::OrganizerData::Merge,
                OrganizerChoice::Overwrite => bramble_device::activation::OrganizerData::Overwrite,
            };
            device
                .activate(&email, &password, &opts, |stage| println!("{stage}"))
                .await?;
        }
        Cmd::Ping { count } => {
            // Say so before trying the relay: unreachable or not, there is nobody to ping.
            if device.status().server.is_none() {
                return Err(bramble_device::DeviceError::NotActivated.into());
            }
            let store = device.mail_store().await?;
            let mut conn = device.connect().await?;
            for i in 1..=count {
                let rtt = conn.ping(&format!("ping {i}")).await?;
                println!(
                    "Pong from the enterprise server in {:.1} ms",
                    rtt.as_secs_f64() * 1000.0
                );
            }
            // Whatever arrived meanwhile (acked already) is stored and confirmed.
            while let Ok(item) = tokio::time::timeout(Duration::from_millis(100), conn.recv()).await
            {
                let event = mail::handle_and_answer(&mut conn, &store, &item?).await?;
                if let MailEvent::Managed(events) = &event {
                    for e in events {
                        println!("{e}");
                    }
                }
                if event.ends_session() {
                    break;
                }
            }
            conn.close().await;
        }
        Cmd::Sync { wait } => {
            require_activated(&device)?;
            let store = device.mail_store().await?;
            let mut conn = device.connect().await?;
            let synced = mail::sync(&mut conn, &store, wait).await;
            conn.close().await;
            let report = synced?;
            for e in &report.managed {
                println!("{e}");
            }
            for e in &report.organizer {
                println!("{e}");
            }
            print_sync(&report);
            if !report.ended {
                store.close().await;
            }
        }
        Cmd::Password {
            action: PasswordCmd::Set { new },
        } => {
            let password = match new {
                Some(p) => p,
                None => {
                    let p = read_secret("New device password: ")?;
                    if std::io::IsTerminal::is_terminal(&std::io::stdin())
                        && read_secret("Type it again: ")? != p
                    {
                        anyhow::bail!("The two passwords differ; the password was not changed.");
                    }
                    p
                }
            };
            device.set_password(&password)?;
            println!("The device password is set.");
            report_compliance(&mut device).await?;
        }
        Cmd::Lock => {
            device.lock()?;
            println!("The device is locked. Unlock it with `bramble device unlock`.");
        }
        Cmd::Unlock { password } => {
            if !device.is_locked() {
                println!("The device is not locked.");
                return Ok(());
            }
            let password = match password {
                Some(p) => p,
                // Locked by the administrator without a password ever set: nothing to ask.
                None if !device.has_password() => String::new(),
                None => read_secret("Device password: ")?,
            };
            device.unlock(&password)?;
            println!("The device is unlocked.");
        }
        Cmd::Wipe {
            action: WipeCmd::Cancel,
        }
        | Cmd::WipeCancel => {
            let wipe = device.cancel_wipe()?;
            println!(
                "The wipe scheduled for {} is cancelled.",
                bramble_device::manage::time_text(wipe.due_at_ms)
            );
            report_compliance(&mut device).await?;
        }
        Cmd::Apps { action, json } => match action {
            None => list_apps(&device, json)?,
            Some(AppsCmd::List { json: j }) => list_apps(&device, json || j)?,
            Some(AppsCmd::InstallLocal {
                name,
                app_version: version,
                file,
            }) => {
                let package = match &file {
                    Some(f) => {
                        let meta = std::fs::metadata(f)
                            .map_err(|e| anyhow::anyhow!("Cannot read {}: {e}", f.display()))?;
                        if meta.len() > bramble_device::manage::MAX_PACKAGE {
                            return Err(DeviceError::AppRefused(format!(
                                "its package is larger than the {} MiB this device accepts",
                                bramble_device::manage::MAX_PACKAGE >> 20
                            ))
                            .into());
                        }
                        std::fs::read(f)
                            .map_err(|e| anyhow::anyhow!("Cannot read {}: {e}", f.display()))?
                    }
                    None => Vec::new(),
                };
                let app = device.install_local_app(&name, &version, &package)?;
                println!(
                    "Installed {} {} ({}).",
                    app.name,
                    app.version,
                    size_text(app.size)
                );
                report_compliance(&mut device).await?;
            }
            Some(AppsCmd::Remove { name }) => {
                let app = device.remove_app(&name)?;
                println!("Removed {} {}.", app.name, app.version);
                report_compliance(&mut device).await?;
            }
        },
        Cmd::Contacts { action, json } => {
            organizer::run(&mut device, Database::Contacts, action, json).await?;
        }
        Cmd::Calendar { action, json } => {
            organizer::run(&mut device, Database::Calendar, action, json).await?;
        }
        Cmd::Tasks { action, json } => {
            organizer::run(&mut device, Database::Tasks, action, json).await?;
        }
        Cmd::Memos { action, json } => {
            organizer::run(&mut device, Database::Memos, action, json).await?;
        }
        Cmd::Options { action, json } => organizer::options(&mut device, action, json).await?,
        Cmd::Inbox { json, wait } => inbox(&mut device, json, wait).await?,
        Cmd::Read {
            ref_id,
            more,
            all,
            json,
        } => read(&mut device, ref_id, more || all, all, json).await?,
        Cmd::Send {
            to,
            cc,
            bcc,
            subject,
            body,
            wait,
        } => {
            let draft = Draft {
                kind: MailKind::MailNew,
                original_ref_id: 0,
                to,
                cc,
                bcc,
                subject,
                body,
            };
            submit(&mut device, draft, wait).await?;
        }
        Cmd::Reply {
            ref_id,
            all,
            body,
            wait,
        } => {
            let store = device.mail_store().await?;
            let own = device.profile().map(|p| p.email.clone());
            let draft = store
                .reply_draft(ref_id, all, &body, own.as_deref())
                .await?;
            submit(&mut device, draft, wait).await?;
        }
        Cmd::Forward {
            ref_id,
            to,
            cc,
            body,
            wait,
        } => {
            let store = device.mail_store().await?;
            let draft = store.forward_draft(ref_id, &to, &cc, &body).await?;
            submit(&mut device, draft, wait).await?;
        }
        Cmd::Mark { ref_id, how } => {
            let (change, done) = match how {
                MarkAs::Read => (Change::Seen(true), "marked read"),
                MarkAs::Unread => (Change::Seen(false), "marked unread"),
                MarkAs::Flagged => (Change::Flagged(true), "flagged"),
                MarkAs::Unflagged => (Change::Flagged(false), "unflagged"),
            };
            change_message(&mut device, ref_id, change, done).await?;
        }
        Cmd::Delete { ref_id } => {
            change_message(&mut device, ref_id, Change::Deleted(true), "deleted").await?;
        }
        Cmd::Move { ref_id, folder } => {
            let done = format!("moved to {folder}");
            change_message(&mut device, ref_id, Change::MovedTo(folder), &done).await?;
        }
        Cmd::Attachment { ref_id, index, out } => {
            let store = device.mail_store().await?;
            let saved = if store.attachment_ready(ref_id, index).await? {
                store.save_attachment(ref_id, index, &out).await?
            } else {
                require_activated(&device)?;
                // Refuse at once what cannot be fetched, before trying the relay.
                let m = store.message(ref_id).await?;
                if !m.attachments.iter().any(|a| a.index == index) {
                    return Err(DeviceError::NoSuchAttachment { ref_id, index }.into());
                }
                let mut conn = device.connect().await?;
                mail::send_pending(&mut conn, &store).await?;
                let saved = mail::fetch_attachment(
                    &mut conn,
                    &store,
                    ref_id,
                    index,
                    &out,
                    ATTACHMENT_TIMEOUT,
                )
                .await;
                conn.close().await;
                saved?
            };
            println!(
                "Saved {} ({}, {}) to {}",
                saved.name,
                size_text(saved.size),
                if saved.content_type.is_empty() {
                    "unknown type"
                } else {
                    &saved.content_type
                },
                saved.path.display()
            );
        }
        Cmd::Tui => crate::tui::run(&mut device).await?,
        Cmd::Outbox { json } => {
            let store = device.mail_store().await?;
            let entries = store.outbox().await?;
            if json {
                return output::json(&entries);
            }
            if entries.is_empty() {
                println!("The outbox is empty.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        e.client_id.to_string(),
                        e.kind.to_owned(),
                        e.state.to_string(),
                        short(&e.to.join(", "), 30),
                        short(&e.subject, 40),
                        output::time_ms(Some(e.updated_ms)),
                        short(&e.message, 60),
                    ]
                })
                .collect();
            output::table(
                &[
                    "ID",
                    "KIND",
                    "STATE",
                    "TO",
                    "SUBJECT",
                    "UPDATED",
                    "SERVER SAYS",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

/// Mail needs an enterprise server: say so before trying the relay.
fn require_activated(device: &Device) -> Result<(), DeviceError> {
    if device.server().is_none() {
        return Err(DeviceError::NotActivated);
    }
    Ok(())
}

/// `inbox`: fetch (when the relay can be reached), then list what is on the device.
async fn inbox(device: &mut Device, json: bool, wait: Duration) -> Result<()> {
    require_activated(device)?;
    let store = device.mail_store().await?;
    let mut report = None;
    match device.connect().await {
        Ok(mut conn) => {
            let synced = mail::sync(&mut conn, &store, wait).await;
            conn.close().await;
            match synced {
                Ok(r) => report = Some(r),
                Err(e) if e.is_transient() => {
                    eprintln!("bramble: {e} Showing what is on the device.");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) if e.is_transient() => eprintln!("bramble: {e} Showing what is on the device."),
        Err(e) => return Err(e.into()),
    }
    if let Some(r) = &report
        && r.ended
    {
        for e in &r.managed {
            println!("{e}");
        }
        return Ok(());
    }
    let messages = store.inbox().await?;
    if json {
        return output::json(&serde_json::json!({
            "online": report.is_some(),
            "new_messages": report.as_ref().map_or(0, |r| r.new_messages),
            "messages": messages,
        }));
    }
    if let Some(r) = &report {
        print_sync(r);
    }
    if messages.is_empty() {
        println!("No messages.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            let mut state = vec![if m.seen { "read" } else { "new" }];
            if m.flagged {
                state.push("flagged");
            }
            if m.priority {
                state.push("priority");
            }
            vec![
                m.ref_id.to_string(),
                state.join(","),
                output::time_ms(m.date_ms.or(Some(m.received_ms))),
                short(&m.from, 30),
                short(&m.subject, 50),
                if m.attachments > 0 {
                    m.attachments.to_string()
                } else {
                    String::new()
                },
                if m.more { "more".into() } else { String::new() },
                if m.folder == mail::INBOX {
                    String::new()
                } else {
                    short(&m.folder, 20)
                },
            ]
        })
        .collect();
    output::table(
        &[
            "REFID", "STATE", "DATE", "FROM", "SUBJECT", "ATT", "TEXT", "FOLDER",
        ],
        &rows,
    );
    Ok(())
}

/// The policy service's part of `status`.
fn print_manage_status(device: &Device, s: &bramble_device::DeviceStatus) {
    println!(
        "Locked              {}",
        match (s.locked, device.locked_by_admin()) {
            (true, true) => "yes, by your administrator (`bramble device unlock`)",
            (true, false) => "yes (`bramble device unlock`)",
            (false, _) => "no",
        }
    );
    println!(
        "Device password     {}",
        if s.password_set {
            if s.failed_password_attempts > 0 {
                format!(
                    "set ({} wrong in a row; the device wipes itself at {})",
                    s.failed_password_attempts, s.max_password_attempts
                )
            } else {
                "set".to_owned()
            }
        } else {
            "not set".to_owned()
        }
    );
    if let (Some(name), Some(version)) = (&s.policy_name, s.policy_version) {
        println!("Policy in force     {name} (version {version})");
        if s.compliance_problems.is_empty() {
            println!("Compliance          the device complies with its IT policy");
        } else {
            for (i, p) in s.compliance_problems.iter().enumerate() {
                let label = if i == 0 { "Not compliant" } else { "" };
                println!("{label:<20}{p}");
            }
        }
        let mut settings = Vec::new();
        if s.camera_disabled {
            settings.push("camera disabled".to_owned());
        }
        if s.bluetooth_disabled {
            settings.push("Bluetooth disabled".to_owned());
        }
        if s.content_protection {
            settings.push("content protection on".to_owned());
        }
        if s.inactivity_lock_minutes > 0 {
            settings.push(format!(
                "locks after {} idle minute(s)",
                s.inactivity_lock_minutes
            ));
        }
        if let Some(max) = s.max_attachment_bytes {
            settings.push(format!("attachments up to {} KB", max / 1024));
        }
        if !settings.is_empty() {
            println!("Device settings     {}", settings.join(", "));
        }
    }
    if let Some(w) = s.scheduled_wipe {
        println!(
            "Scheduled wipe      at {}{}",
            bramble_device::manage::time_text(w.due_at_ms),
            if w.may_cancel {
                " (`bramble device wipe-cancel` cancels it)"
            } else {
                " (your administrator does not allow cancelling it)"
            }
        );
    }
    if s.key_regeneration_pending {
        println!("New key             agreed; in use once the server uses it");
    }
    println!(
        "Applications        {} installed{}",
        s.installed_apps,
        device
            .software_configuration()
            .map(|n| format!(" (software configuration {n})"))
            .unwrap_or_default()
    );
}

/// `apps list`.
fn list_apps(device: &Device, json: bool) -> Result<()> {
    let installed = device.apps();
    let available = device.available_apps();
    if json {
        return output::json(&serde_json::json!({
            "installed": installed,
            "available": available,
        }));
    }
    if installed.is_empty() {
        println!("No applications are installed.");
    } else {
        let rows: Vec<Vec<String>> = installed
            .iter()
            .map(|a| {
                vec![
                    short(&a.name, 40),
                    short(&a.version, 20),
                    a.source.to_string(),
                    size_text(a.size),
                    a.sha256.get(..16).unwrap_or(&a.sha256).to_owned(),
                ]
            })
            .collect();
        output::table(&["NAME", "VERSION", "SOURCE", "SIZE", "SHA-256"], &rows);
    }
    if !available.is_empty() {
        println!();
        println!("Offered by your organization:");
        let rows: Vec<Vec<String>> = available
            .iter()
            .map(|a| vec![short(&a.name, 40), short(&a.version, 20), size_text(a.size)])
            .collect();
        output::table(&["NAME", "VERSION", "SIZE"], &rows);
    }
    Ok(())
}

/// After a change the server should hear of (compliance, a cancelled wipe): tells it now
/// when the relay can be reached, or says it will on the next connection.
async fn report_compliance(device: &mut Device) -> Result<()> {
    for p in device.compliance_problems() {
        println!("Not compliant: {p}");
    }
    if device.server().is_none() || device.pending_replies() == 0 {
        return Ok(());
    }
    let later = "Your administrator will be told on the next connection.";
    match device.connect().await {
        Ok(mut conn) => {
            let sent = bramble_device::manage::send_pending(&mut conn).await;
            conn.close().await;
            match sent {
                Ok(_) => Ok(()),
                Err(e) if e.is_transient() => {
                    println!("Not connected: {e}\n{later}");
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) if e.is_transient() => {
            println!("Not connected: {e}\n{later}");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads a password: without echo on a terminal, a line of standard input otherwise.
fn read_secret(prompt: &str) -> Result<String> {
    use crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers};
    use std::io::{IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    crossterm::terminal::enable_raw_mode()?;
    let typed = (|| -> Result<String> {
        let mut s = String::new();
        loop {
            if let Event::Key(k) = crossterm::event::read()? {
                if k.kind == KeyEventKind::Release {
                    continue;
                }
                match k.code {
                    KeyCode::Enter => return Ok(s),
                    KeyCode::Backspace => {
                        s.pop();
                    }
                    KeyCode::Esc => anyhow::bail!("Cancelled."),
                    KeyCode::Char('c' | 'd') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        anyhow::bail!("Cancelled.")
                    }
                    KeyCode::Char(c) => s.push(c),
                    _ => {}
                }
            }
        }
    })();
    let _ = crossterm::terminal::disable_raw_mode();
    eprintln!();
    typed
}

/// The synchronization configuration, in a line.
fn print_sync_config(c: Option<&bramble_device::organizer::SyncConfig>) {
    let text = match c {
        None => "not configured by your organization".to_owned(),
        Some(c) if !c.enabled => "off".to_owned(),
        Some(c) => {
            let dbs: Vec<String> = c
                .databases
                .iter()
                .filter(|d| d.enabled)
                .map(|d| match d.direction {
                    bramble_device::organizer::Direction::Bidirectional => {
                        d.database.title().to_owned()
                    }
                    bramble_device::organizer::Direction::ServerToDevice => {
                        format!("{} (from the server)", d.database.title())
                    }
                })
                .collect();
            if dbs.is_empty() {
                "on, for no database".to_owned()
            } else {
                dbs.join(", ")
            }
        }
    };
    println!("Synchronization     {text}");
    if c.is_some_and(|c| c.backup) {
        println!("Wireless backup     on");
    }
}

/// What a sync did, in a line or two (nothing when nothing happened).
fn print_sync(r: &mail::SyncReport) {
    let mut parts = Vec::new();
    if r.new_messages > 0 {
        parts.push(format!("{} new message(s)", r.new_messages));
    }
    if r.sent > 0 {
        parts.push(format!("{} sent", r.sent));
    }
    if r.failed > 0 {
        parts.push(format!("{} failed to send (see `outbox`)", r.failed));
    }
    if r.changes_received > 0 {
        parts.push(format!("{} change(s) from the mailbox", r.changes_received));
    }
    if !parts.is_empty() {
        println!("{}.", parts.join(", "));
    }
}

/// `read`: optionally fetch more text, mark read, print.
async fn read(device: &mut Device, ref_id: u64, more: bool, all: bool, json: bool) -> Result<()> {
    let store = device.mail_store().await?;
    let m = store.message(ref_id).await?;
    if !m.seen {
        // Marked here at once; the mailbox learns it on the next connection.
        store.mark(ref_id, Change::Seen(true)).await?;
    }
    let m = if more && m.more {
        require_activated(device)?;
        let mut conn = device.connect().await?;
        let fetched = async {
            mail::send_pending(&mut conn, &store).await?;
            mail::request_more(&mut conn, &store, ref_id, all, MORE_TIMEOUT).await
        }
        .await;
        conn.close().await;
        fetched?
    } else {
        store.message(ref_id).await?
    };
    if json {
        return output::json(&m);
    }
    println!("From:        {}", m.from);
    if !m.to.is_empty() {
        println!("To:          {}", m.to.join(", "));
    }
    if !m.cc.is_empty() {
        println!("Cc:          {}", m.cc.join(", "));
    }
    if !m.reply_to.is_empty() {
        println!("Reply-To:    {}", m.reply_to);
    }
    println!("Subject:     {}", m.subject);
    println!(
        "Date:        {}",
        output::time_ms(m.date_ms.or(Some(m.received_ms)))
    );
    if m.folder != mail::INBOX {
        println!("Folder:      {}", m.folder);
    }
    let mut flags = Vec::new();
    if m.flagged {
        flags.push("flagged".to_owned());
    }
    if m.priority {
        flags.push("priority".to_owned());
    }
    if m.importance != "normal" {
        flags.push(format!("{} importance", m.importance));
    }
    if !flags.is_empty() {
        println!("Flags:       {}", flags.join(", "));
    }
    println!("RefID:       {}", m.ref_id);
    println!();
    println!("{}", m.text);
    if m.more {
        println!();
        println!(
            "[More: {} of {} bytes are on the device. `bramble device read {} --more` fetches \
             the next part, --all the rest.]",
            m.text.len(),
            m.text_total,
            m.ref_id
        );
    } else if m.truncated {
        println!();
        println!(
            "[The rest of this message ({} bytes in all) is more than the device keeps.]",
            m.text_total
        );
    }
    if !m.attachments.is_empty() {
        println!();
        println!("Attachments:");
        for a in &m.attachments {
            println!(
                "  {}  {}  ({}, {})",
                a.index,
                a.name,
                if a.content_type.is_empty() {
                    "unknown type"
                } else {
                    &a.content_type
                },
                size_text(a.size)
            );
        }
        println!(
            "  (`bramble device attachment {} N --out FILE` downloads one)",
            m.ref_id
        );
    }
    if !m.notes.is_empty() {
        println!();
        for n in &m.notes {
            println!("Note: {n}");
        }
    }
    Ok(())
}

/// `send`, `reply`, `forward`: into the outbox, then to the server, waiting up to `wait` for
/// it to be sent.
async fn submit(device: &mut Device, draft: Draft, wait: Duration) -> Result<()> {
    require_activated(device)?;
    let store = device.mail_store().await?;
    let submit = store.compose(&draft).await?;
    let id = submit.client_id;
    let kept = "The message is kept in the outbox and will be sent on the next connection.";
    let mut conn = match device.connect().await {
        Ok(c) => c,
        Err(e) if e.is_transient() => {
            println!("Not sent yet: {e}");
            println!("{kept}");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let waited = mail::wait_for_submit(&mut conn, &store, id, wait, |e| match e.state {
        OutboxState::Accepted => println!("Accepted by the server"),
        OutboxState::Sent => println!("Sent"),
        OutboxState::Failed => println!("Failed: {}", e.message),
        OutboxState::Queued => {}
    })
    .await;
    conn.close().await;
    match waited {
        Ok(entry) => match entry.state {
            OutboxState::Sent => Ok(()),
            OutboxState::Failed => Err(anyhow::anyhow!("the message was not sent")),
            OutboxState::Accepted => {
                println!(
                    "Not sent yet after {}: the server will send it (`bramble device outbox` \
                     shows what became of it).",
                    humantime::format_duration(wait)
                );
                Ok(())
            }
            OutboxState::Queued => {
                println!(
                    "No answer from the enterprise server within {}.",
                    humantime::format_duration(wait)
                );
                println!("{kept}");
                Ok(())
            }
        },
        Err(e) if e.is_transient() => {
            println!("Not sent yet: {e}");
            println!("{kept}");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `mark`, `delete`, `move`: on the device at once, then to the server when it can be reached.
async fn change_message(
    device: &mut Device,
    ref_id: u64,
    change: Change,
    done: &str,
) -> Result<()> {
    let store = device.mail_store().await?;
    store.mark(ref_id, change).await?;
    println!("Message {ref_id} {done}.");
    if device.server().is_none() {
        return Ok(());
    }
    let later = "The mailbox will be updated on the next connection.";
    match device.connect().await {
        Ok(mut conn) => {
            let sent = mail::send_pending(&mut conn, &store).await;
            conn.close().await;
            match sent {
                Ok(_) => Ok(()),
                Err(e) if e.is_transient() => {
                    println!("Not connected: {e}\n{later}");
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) if e.is_transient() => {
            println!("Not connected: {e}\n{later}");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// A sentence about what a mail envelope did, for `connect`.
fn describe(event: &MailEvent) -> String {
    match event {
        MailEvent::NewMessage { ref_id } => format!("new message {ref_id}"),
        MailEvent::Duplicate { ref_id } => {
            format!("message {ref_id} again (already on the device; confirmed again)")
        }
        MailEvent::MoreText {
            ref_id,
            have,
            total,
            ..
        } => format!("more text of message {ref_id}: {have} of {total} bytes"),
        MailEvent::MoreFailed { ref_id, error } => {
            format!("no more text of message {ref_id}: {error}")
        }
        MailEvent::AttachmentPiece {
            ref_id,
            index,
            received,
            total,
            ..
        } => format!("attachment {index} of message {ref_id}: {received} of {total} bytes"),
        MailEvent::AttachmentFailed {
            ref_id,
            index,
            error,
        } => format!("attachment {index} of message {ref_id} failed: {error}"),
        MailEvent::Submitted {
            client_id,
            state,
            message,
        } => {
            if message.is_empty() {
                format!("outbox message {client_id}: {state}")
            } else {
                format!("outbox message {client_id}: {state}: {message}")
            }
        }
        MailEvent::Changed { ref_id, applied } => {
            if *applied {
                format!("message {ref_id} changed in the mailbox")
            } else {
                format!("a change to message {ref_id}, which is not on the device")
            }
        }
        MailEvent::Refused { reason } => format!("a mail message was refused: {reason}"),
        MailEvent::Managed(events) => events
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        MailEvent::Organizer(events) => events
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        MailEvent::NotMail => "not mail".into(),
    }
}

/// A size in bytes, KiB or MiB.
fn size_text(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let f = n as f64;
    if n < 1024 {
        format!("{n} bytes")
    } else if n < 1 << 20 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{:.1} MiB", f / (1024.0 * 1024.0))
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn device_commands_are_well_formed() {
        // clap checks its definitions only when a command is used: check them all here.
        use clap::CommandFactory;
        crate::Cli::command().debug_assert();
    }
}

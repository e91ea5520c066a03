//! `bramble admin command …`: IT admin commands to a user's device (lock, wipe, remove the
//! organization's data, …), their receipts, and waiting for the device's answer.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bramble_server::admin::views::{CommandEventView, CommandView, NewCommand};
use reqwest::Method;

use super::{Client, aligned, encode, print_text};
use crate::output;

/// How often `--wait` asks about the command.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, clap::Subcommand)]
pub enum CommandCmd {
    /// Lock the device; with --new-password, set a new device password first (BES: "Specify
    /// new device password and lock device").
    Lock {
        /// The user whose device it is.
        email: String,
        /// The new device password the user must type to unlock it.
        #[arg(long, value_name = "PASSWORD")]
        new_password: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Erase every piece of data on the device, the user's and the organization's, and
    /// disable it (BES: "Delete all device data and disable device").
    Wipe {
        /// The user whose device it is.
        email: String,
        /// Hours the device waits before it wipes itself.
        #[arg(long, value_name = "N")]
        delay_hours: Option<u32>,
        /// The phone's user may cancel the delayed wipe on the device.
        #[arg(long, requires = "delay_hours")]
        user_may_cancel: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Erase only the organization's data (mail, contacts, calendar, IT policy, service
    /// books) and keep the user's own (BES: "Delete only the organization data and remove
    /// device").
    RemoveOrgData {
        /// The user whose device it is.
        email: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Make a new encryption key with the device (BES: "Regenerate device encryption key").
    RegenerateKey {
        /// The user whose device it is.
        email: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Send the IT policy in force to the device again (BES: "Resend IT policy to device").
    ResendPolicy {
        /// The user whose device it is.
        email: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Send the service books again: the device's settings for reaching this server.
    ResendServiceBooks {
        /// The user whose device it is.
        email: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// List IT admin commands, newest first.
    List {
        /// Only this user's commands.
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// Only commands not finished yet (queued, sent or pending).
        #[arg(long)]
        open: bool,
        /// At most this many.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Show a command's receipt and every state it went through.
    Show {
        /// The command's number, as `command list` shows it.
        id: i64,
    },
    /// Cancel a command that has not been sent to the device yet.
    Cancel {
        /// The command's number, as `command list` shows it.
        id: i64,
    },
}

/// `--wait [SECS]`.
#[derive(Debug, clap::Args)]
pub struct Wait {
    /// Wait for the device's answer, showing each state as it happens, for at most SECS
    /// seconds (default 60). Fails if the command fails or is not finished in time.
    #[arg(
        long,
        value_name = "SECS",
        num_args = 0..=1,
        default_missing_value = "60"
    )]
    wait: Option<u64>,
}

/// Whether a command has got as far as it goes: done, failed, cancelled; for a wipe, also
/// pending (the device has it and counts down its delay).
fn settled(c: &CommandView) -> bool {
    matches!(c.state.as_str(), "done" | "failed" | "cancelled")
        || (c.command == "wipe" && c.state == "pending")
}

/// "Command 12 (lock) for alice@example.com: queued", with what was said last, if anything.
pub(super) fn receipt(c: &CommandView) -> String {
    let mut line = format!(
        "Command {} ({}) for {}: {}",
        c.id, c.command, c.user, c.state
    );
    if let Some(d) = &c.detail {
        line.push_str(&format!(" ({d})"));
    }
    line
}

/// One state of a command's timeline.
fn event_row(e: &CommandEventView) -> Vec<String> {
    vec![
        e.at.clone(),
        e.state.clone(),
        e.detail.clone().unwrap_or_default(),
    ]
}

/// `command show`: the receipt, its particulars, the timeline.
pub(super) fn render_command(c: &CommandView) -> String {
    let mut out = format!("{}\n", receipt(c));
    let mut rows = vec![vec![
        "Device".to_owned(),
        c.pin
            .as_ref()
            .map_or_else(|| "none".to_owned(), |p| format!("PIN {p}")),
    ]];
    if !c.parameters.is_empty() {
        rows.push(vec!["Parameters".to_owned(), c.parameters.clone()]);
    }
    rows.push(vec![
        "Given".to_owned(),
        match &c.created_by {
            Some(b) => format!("{} by {b}", c.created_at),
            None => c.created_at.clone(),
        },
    ]);
    rows.push(vec![
        "Sent".to_owned(),
        match c.attempts {
            0 => "not yet".to_owned(),
            1 => "once".to_owned(),
            n => format!("{n} times"),
        },
    ]);
    out.push_str(&aligned("", &rows));
    if !c.history.is_empty() {
        out.push_str("Timeline\n");
        let rows: Vec<Vec<String>> = c.history.iter().map(event_row).collect();
        out.push_str(&aligned("  ", &rows));
    }
    out
}

/// Why `--wait` gave up, in a sentence.
pub(super) fn timeout_text(c: &CommandView, secs: u64) -> String {
    let what = format!("command {} ({}) for {}", c.id, c.command, c.user);
    match c.state.as_str() {
        "queued" => format!(
            "{what} is still queued after {secs} s; it will be sent when the device is in coverage."
        ),
        "sent" => format!(
            "{what} was sent but the device has not answered after {secs} s; the answer will show in: bramble admin command show {}",
            c.id
        ),
        other => format!(
            "{what} is {other} after {secs} s; see how it goes with: bramble admin command show {}",
            c.id
        ),
    }
}

impl Client {
    async fn command(&self, id: i64) -> Result<CommandView> {
        self.get(&format!("/commands/{id}")).await
    }
}

/// Polls the command until it settles or `secs` pass, printing (unless `json`) each new state
/// as it happens; the last view seen.
async fn wait_for(
    client: &Client,
    json: bool,
    first: CommandView,
    secs: u64,
) -> Result<CommandView> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen = first.history.len();
    let mut state = first.state.clone();
    let mut c = first;
    while !settled(&c) && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        c = client.command(c.id).await?;
        if !json {
            let new: Vec<Vec<String>> = c.history.iter().skip(seen).map(event_row).collect();
            if !new.is_empty() {
                print_text(&aligned("  ", &new))?;
            } else if c.state != state {
                println!("  {}", c.state);
            }
        }
        seen = c.history.len();
        state.clone_from(&c.state);
    }
    Ok(c)
}

/// `command lock|wipe|…`: gives the command, prints its receipt, and waits if asked.
async fn give(
    client: &Client,
    json: bool,
    email: &str,
    body: NewCommand,
    wait: Option<u64>,
) -> Result<()> {
    let c: CommandView = client
        .with_body(
            Method::POST,
            &format!("/users/{}/commands", encode(email)),
            &body,
        )
        .await?;
    let Some(secs) = wait else {
        if json {
            return output::json(&c);
        }
        println!("{}", receipt(&c));
        return Ok(());
    };
    if !json {
        println!("{}", receipt(&c));
    }
    let c = wait_for(client, json, c, secs).await?;
    if json {
        output::json(&c)?;
    }
    match c.state.as_str() {
        "done" | "cancelled" => {}
        "failed" => bail!(
            "command {} ({}) for {} failed{}",
            c.id,
            c.command,
            c.user,
            c.detail
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ),
        "pending" if c.command == "wipe" => {
            if !json {
                println!(
                    "The device has the wipe and waits out its delay ({}); cancel it with: bramble admin command cancel {}",
                    c.parameters, c.id
                );
            }
        }
        _ => bail!("{}", timeout_text(&c, secs)),
    }
    Ok(())
}

pub(super) async fn run(client: &Client, json: bool, command: CommandCmd) -> Result<()> {
    let kind = |k: &str| NewCommand {
        command: k.to_owned(),
        ..NewCommand::default()
    };
    match command {
        CommandCmd::Lock {
            email,
            new_password,
            wait,
        } => {
            let body = NewCommand {
                new_password,
                ..kind("lock")
            };
            give(client, json, &email, body, wait.wait).await?;
        }
        CommandCmd::Wipe {
            email,
            delay_hours,
            user_may_cancel,
            wait,
        } => {
            let body = NewCommand {
                delay_hours,
                user_may_cancel: user_may_cancel.then_some(true),
                ..kind("wipe")
            };
            give(client, json, &email, body, wait.wait).await?;
        }
        CommandCmd::RemoveOrgData { email, wait } => {
            give(client, json, &email, kind("remove-org-data"), wait.wait).await?;
        }
        CommandCmd::RegenerateKey { email, wait } => {
            give(client, json, &email, kind("regenerate-key"), wait.wait).await?;
        }
        CommandCmd::ResendPolicy { email, wait } => {
            give(client, json, &email, kind("resend-policy"), wait.wait).await?;
        }
        CommandCmd::ResendServiceBooks { email, wait } => {
            give(
                client,
                json,
                &email,
                kind("resend-service-books"),
                wait.wait,
            )
            .await?;
        }
        CommandCmd::List { user, open, limit } => {
            let mut query = Vec::new();
            if let Some(u) = &user {
                query.push(format!("user={}", encode(u)));
            }
            if open {
                query.push("open=true".to_owned());
            }
            let path = if query.is_empty() {
                "/commands".to_owned()
            } else {
                format!("/commands?{}", query.join("&"))
            };
            let list: Vec<CommandView> = client
                .get_all(&path, Some(limit.map_or(100, |n| n as usize)))
                .await?;
            if json {
                return output::json(&list);
            }
            if list.is_empty() {
                println!(
                    "No {}IT admin commands{}.",
                    if open { "open " } else { "" },
                    user.map(|u| format!(" for {u}")).unwrap_or_default()
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| {
                    vec![
                        c.id.to_string(),
                        c.user.clone(),
                        c.command.clone(),
                        c.state.clone(),
                        c.updated_at.clone(),
                        c.detail.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(
                &["ID", "USER", "COMMAND", "STATE", "CHANGED", "DETAIL"],
                &rows,
            );
        }
        CommandCmd::Show { id } => {
            let c = client.command(id).await?;
            if json {
                return output::json(&c);
            }
            print_text(&render_command(&c))?;
        }
        CommandCmd::Cancel { id } => {
            let c: CommandView = client
                .call(Method::POST, &format!("/commands/{id}/cancel"), None)
                .await?
                .context("empty answer")?;
            if json {
                return output::json(&c);
            }
            println!("{}", receipt(&c));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(state: &str, at: &str, detail: Option<&str>) -> CommandEventView {
        CommandEventView {
            state: state.into(),
            at: at.into(),
            detail: detail.map(str::to_owned),
        }
    }

    fn lock() -> CommandView {
        CommandView {
            id: 12,
            user: "alice@example.com".into(),
            pin: Some("2a3b4c5d".into()),
            command: "lock".into(),
            parameters: "new device password (not shown)".into(),
            state: "done".into(),
            detail: None,
            created_at: "2024-05-01T10:00:00Z".into(),
            created_by: Some("admin".into()),
            updated_at: "2024-05-01T10:00:03Z".into(),
            attempts: 1,
            history: vec![
                event("queued", "2024-05-01T10:00:00Z", None),
                event("sent", "2024-05-01T10:00:01Z", None),
                event("done", "2024-05-01T10:00:03Z", Some("the device is locked")),
            ],
        }
    }

    #[test]
    fn a_receipt_is_one_line() {
        let mut c = lock();
        c.state = "queued".into();
        assert_eq!(
            receipt(&c),
            "Command 12 (lock) for alice@example.com: queued"
        );
        c.state = "failed".into();
        c.detail = Some("the device refused".into());
        assert_eq!(
            receipt(&c),
            "Command 12 (lock) for alice@example.com: failed (the device refused)"
        );
    }

    #[test]
    fn show_has_the_timeline() {
        assert_eq!(
            render_command(&lock()),
            "Command 12 (lock) for alice@example.com: done\n\
             Device      PIN 2a3b4c5d\n\
             Parameters  new device password (not shown)\n\
             Given       2024-05-01T10:00:00Z by admin\n\
             Sent        once\n\
             Timeline\n  \
             2024-05-01T10:00:00Z  queued\n  \
             2024-05-01T10:00:01Z  sent\n  \
             2024-05-01T10:00:03Z  done    the device is locked\n"
        );
    }

    #[test]
    fn a_delayed_wipe_settles_at_pending() {
        let mut c = lock();
        c.state = "pending".into();
        assert!(!settled(&c));
        c.command = "wipe".into();
        assert!(settled(&c));
        c.state = "sent".into();
        assert!(!settled(&c));
        for s in ["done", "failed", "cancelled"] {
            c.state = s.into();
            assert!(settled(&c));
        }
    }

    #[test]
    fn a_timeout_says_the_command_waits_for_coverage() {
        let mut c = lock();
        c.state = "queued".into();
        let t = timeout_text(&c, 60);
        assert!(
            t.starts_with("command 12 (lock) for alice@example.com is still queued after 60 s"),
            "{t}"
        );
        assert!(
            t.contains("it will be sent when the device is in coverage"),
            "{t}"
        );
        c.state = "sent".into();
        assert!(timeout_text(&c, 5).contains("has not answered after 5 s"));
    }
}

//! IT admin commands (seed 002): what an administrator may ask, checked; how a command is
//! described on its receipt (never showing a password); and the `ItCommand` a device gets.
//!
//! The commands: specify a new device password and lock (`lock`), delete all device data and
//! disable the device (`wipe`, optionally after a delay and cancellable by the user), delete
//! only the organization's data and remove the device (`remove-org-data`), regenerate the
//! encryption key (`regenerate-key`), resend the IT policy (`resend-policy`), resend the
//! service books (`resend-service-books`). The service sends them and records the answers.
//!
//! Owns: the commands' parameters and their checks. Must not touch: sending, the database.

use bramble_proto::schema::{self, it_command::Command as Cmd};
use bramble_store::CommandRow;
use serde::{Deserialize, Serialize};

use crate::admin::views::{COMMAND_KINDS, CommandEventView, CommandView, NewCommand};

/// The longest delay a wipe may have (30 days).
pub const MAX_WIPE_DELAY_HOURS: u32 = 30 * 24;

/// A command's parameters as stored with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// lock: the new device password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_password: Option<String>,
    /// wipe: hours to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_hours: Option<u32>,
    /// wipe: whether the user may cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_may_cancel: Option<bool>,
}

impl Params {
    /// Read back from the database (damaged text gives no parameters).
    pub fn from_json(text: &str) -> Params {
        serde_json::from_str(text).unwrap_or_default()
    }

    /// As stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// Checks what an administrator asked for; the kind and its parameters, or a sentence saying
/// what is wrong.
///
/// # Errors
/// An unknown command, a parameter that does not belong to the command, a password that
/// cannot be a device password, a delay out of range.
pub fn check(new: &NewCommand) -> Result<(&'static str, Params), String> {
    let asked = new.command.trim().to_ascii_lowercase().replace('_', "-");
    let Some(kind) = COMMAND_KINDS.iter().copied().find(|k| *k == asked) else {
        return Err(format!(
            "there is no IT admin command called {:?}; the commands are {}",
            new.command,
            COMMAND_KINDS.join(", ")
        ));
    };
    if kind != "lock" && new.new_password.is_some() {
        return Err(format!("new_password belongs to lock, not to {kind}"));
    }
    if kind != "wipe" && (new.delay_hours.is_some() || new.user_may_cancel.is_some()) {
        return Err(format!(
            "delay_hours and user_may_cancel belong to wipe, not to {kind}"
        ));
    }
    let mut params = Params::default();
    if let Some(pw) = &new.new_password {
        let n = pw.chars().count();
        if !(4..=64).contains(&n) {
            return Err(format!(
                "a device password has 4 to 64 characters; this one has {n}"
            ));
        }
        if pw.chars().any(char::is_control) {
            return Err("a device password cannot contain control characters".into());
        }
        params.new_password = Some(pw.clone());
    }
    if kind == "wipe" {
        let delay = new.delay_hours.unwrap_or(0);
        if delay > MAX_WIPE_DELAY_HOURS {
            return Err(format!(
                "a wipe may wait at most {MAX_WIPE_DELAY_HOURS} hours; {delay} is too long"
            ));
        }
        if delay == 0 && new.user_may_cancel == Some(true) {
            return Err(
                "only a delayed wipe can be cancelled by the user: give delay_hours too".into(),
            );
        }
        params.delay_hours = Some(delay);
        params.user_may_cancel = Some(new.user_may_cancel.unwrap_or(false));
    }
    Ok((kind, params))
}

/// The parameters in words, for the receipt: never the password itself.
pub fn describe(kind: &str, params: &Params) -> String {
    match kind {
        "lock" if params.new_password.is_some() => "with a new device password".into(),
        "lock" => "with the device's current password".into(),
        "wipe" => {
            let delay = params.delay_hours.unwrap_or(0);
            let cancel = if params.user_may_cancel.unwrap_or(false) {
                "; the user may cancel"
            } else {
                ""
            };
            if delay == 0 {
                "now".into()
            } else {
                format!("after {delay} h{cancel}")
            }
        }
        _ => String::new(),
    }
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The receipt of a command, as the API shows it.
pub fn view(row: CommandRow) -> CommandView {
    let params = Params::from_json(&row.params_json);
    CommandView {
        id: row.id,
        user: row.email,
        pin: row.pin.map(|p| bramble_proto::Pin(p).to_string()),
        parameters: describe(&row.kind, &params),
        command: row.kind,
        state: row.state,
        detail: row.detail,
        created_at: time(row.created_at_ms),
        created_by: row.created_by,
        updated_at: time(row.updated_at_ms),
        attempts: row.attempts,
        history: row
            .history
            .into_iter()
            .map(|e| CommandEventView {
                state: e.state,
                at: time(e.at_ms),
                detail: e.detail,
            })
            .collect(),
    }
}

/// The `ItCommand` for a command the device carries out itself (lock, wipe, remove-org-data);
/// none for the others, which the service handles (regenerate-key needs its exchange).
pub fn it_command(id: i64, kind: &str, params: &Params) -> Option<schema::ItCommand> {
    let command = match kind {
        "lock" => Cmd::Lock(schema::LockDevice {
            new_password: params.new_password.clone().unwrap_or_default(),
        }),
        "wipe" => Cmd::Wipe(schema::WipeDevice {
            delay_hours: params.delay_hours.unwrap_or(0),
            user_may_cancel: params.user_may_cancel.unwrap_or(false),
        }),
        "remove-org-data" => Cmd::RemoveOrgData(schema::RemoveOrgData {}),
        _ => return None,
    };
    Some(schema::ItCommand {
        command_id: u64::try_from(id).ok()?,
        command: Some(command),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(command: &str) -> NewCommand {
        NewCommand {
            command: command.into(),
            ..NewCommand::default()
        }
    }

    #[test]
    fn commands_are_checked_in_an_administrators_words() {
        assert_eq!(check(&new("lock")).map(|c| c.0), Ok("lock"));
        assert_eq!(
            check(&new("Remove_Org_Data")).map(|c| c.0),
            Ok("remove-org-data")
        );
        assert!(
            check(&new("explode"))
                .expect_err("unknown")
                .contains("lock, wipe")
        );
        let mut lock = new("lock");
        lock.new_password = Some("abc".into());
        assert!(check(&lock).expect_err("short").contains("4 to 64"));
        lock.new_password = Some("s3cret!x".into());
        assert_eq!(
            check(&lock).map(|c| c.1.new_password),
            Ok(Some("s3cret!x".into()))
        );
        let mut wipe = new("wipe");
        wipe.user_may_cancel = Some(true);
        assert!(check(&wipe).expect_err("not delayed").contains("delayed"));
        wipe.delay_hours = Some(24);
        let (_, p) = check(&wipe).expect("a delayed wipe");
        assert_eq!(describe("wipe", &p), "after 24 h; the user may cancel");
        wipe.delay_hours = Some(MAX_WIPE_DELAY_HOURS + 1);
        assert!(check(&wipe).is_err());
        let mut odd = new("regenerate-key");
        odd.delay_hours = Some(1);
        assert!(
            check(&odd)
                .expect_err("misplaced")
                .contains("belong to wipe")
        );
    }

    #[test]
    fn a_receipt_never_shows_the_password() {
        let p = Params {
            new_password: Some("hunter22".into()),
            ..Params::default()
        };
        assert!(!describe("lock", &p).contains("hunter22"));
        let back = Params::from_json(&p.to_json());
        assert_eq!(back, p);
        assert_eq!(Params::from_json("damaged"), Params::default());
    }
}

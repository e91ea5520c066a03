//! IT admin commands: lock, wipe (now or later), remove the organization's data, regenerate
//! the key. Each `command_id` is carried out once; a repeat is answered with the result given.

use bramble_proto::rekey::KeyExchange;
use bramble_proto::schema::{self, CommandState, envelope::Body, it_command::Command};

use super::state::{CommandRecord, ManageState, PendingKey, ScheduledWipe};
use super::{ManageEvent, Outcome, Then, envelope, finish};
use crate::mail::MailStore;
use crate::{Connection, Device, DeviceError};

/// The longest wipe delay honoured, hours (a year); longer ones are shortened to it.
pub const MAX_WIPE_DELAY_HOURS: u32 = 24 * 366;

fn state_word(s: CommandState) -> &'static str {
    match s {
        CommandState::CommandPending => "pending",
        CommandState::CommandDone => "done",
        CommandState::CommandFailed => "failed",
        CommandState::CommandCancelled => "cancelled",
        CommandState::CommandUnspecified => "unspecified",
    }
}

fn state_of(word: &str) -> CommandState {
    match word {
        "pending" => CommandState::CommandPending,
        "done" => CommandState::CommandDone,
        "failed" => CommandState::CommandFailed,
        "cancelled" => CommandState::CommandCancelled,
        _ => CommandState::CommandUnspecified,
    }
}

fn record(command_id: u64, state: CommandState, detail: &str) -> CommandRecord {
    CommandRecord {
        command_id,
        state: state_word(state).to_owned(),
        detail: detail.to_owned(),
        due_at_ms: 0,
        device_public: String::new(),
        server_public: String::new(),
    }
}

/// The `CommandResult` a record answers.
fn answer(rec: &CommandRecord) -> schema::Envelope {
    envelope(Body::CommandResult(schema::CommandResult {
        command_id: rec.command_id,
        state: state_of(&rec.state).into(),
        detail: rec.detail.clone(),
        device_public: hex::decode(&rec.device_public).unwrap_or_default().into(),
        due_at_ms: rec.due_at_ms,
    }))
}

/// Whether a scheduled wipe is due at `now_ms`.
pub(crate) fn is_due(wipe: &ScheduledWipe, now_ms: i64) -> bool {
    now_ms >= wipe.due_at_ms
}

/// When a wipe asked for at `now_ms` with `delay_hours` is due.
pub(crate) fn due_at(now_ms: i64, delay_hours: u32) -> i64 {
    let hours = i64::from(delay_hours.min(MAX_WIPE_DELAY_HOURS));
    now_ms.saturating_add(hours * 3_600_000)
}

/// Carries out a scheduled wipe when it is due at `now_ms` (pass the clock, so a test can
/// pass a later one): `CommandResult{DONE}` is sent first, then the mail store is closed and
/// everything but the identity deleted, as for a wipe without delay. `None` when no wipe is
/// due.
///
/// [`handle`](super::handle) and the mail receive path call it with the current time before
/// each envelope; a device opened after the due time wipes itself at once
/// ([`Device::wipe_if_due`]).
///
/// # Errors
/// When the state cannot be written or files deleted.
pub async fn run_due(
    conn: &mut Connection<'_>,
    store: &MailStore,
    now_ms: i64,
) -> Result<Option<Vec<ManageEvent>>, DeviceError> {
    let Some(wipe) = conn.device().scheduled_wipe() else {
        return Ok(None);
    };
    if !is_due(&wipe, now_ms) {
        return Ok(None);
    }
    tracing::info!(command_id = wipe.command_id, "a scheduled wipe is due");
    let done = record(
        wipe.command_id,
        CommandState::CommandDone,
        "The device was wiped at the time set.",
    );
    let out = Outcome {
        events: Vec::new(),
        direct: vec![answer(&done)],
        then: Some(Then::Wipe),
    };
    finish(conn, store, out).await.map(Some)
}

impl Device {
    /// The wipe the administrator scheduled, if one is.
    pub fn scheduled_wipe(&self) -> Option<ScheduledWipe> {
        self.manage().scheduled_wipe
    }

    /// The generation of the master key in use (0: not activated).
    pub fn key_generation(&self) -> u32 {
        self.status().key_generation
    }

    /// Wipes the device when a scheduled wipe is due at `now_ms`, without telling the server
    /// (there is no connection here; [`run_due`] tells it first). Whether it wiped.
    ///
    /// # Errors
    /// When the state cannot be written or files deleted.
    pub fn wipe_if_due(&mut self, now_ms: i64) -> Result<bool, DeviceError> {
        match self.scheduled_wipe() {
            Some(w) if is_due(&w, now_ms) => {
                self.factory_reset()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The phone user cancels the scheduled wipe, when the administrator allowed it; the
    /// server is told (`CommandResult{CANCELLED}`) on the next connection
    /// ([`super::send_pending`]). Returns the wipe cancelled.
    ///
    /// # Errors
    /// [`DeviceError::Locked`], [`DeviceError::NoWipeScheduled`],
    /// [`DeviceError::WipeNotCancellable`], or when the state cannot be written.
    pub fn cancel_wipe(&mut self) -> Result<ScheduledWipe, DeviceError> {
        if self.is_locked() {
            return Err(DeviceError::Locked);
        }
        let wipe = self.scheduled_wipe().ok_or(DeviceError::NoWipeScheduled)?;
        if !wipe.may_cancel {
            return Err(DeviceError::WipeNotCancellable {
                due_at_ms: wipe.due_at_ms,
            });
        }
        let rec = CommandRecord {
            due_at_ms: wipe.due_at_ms,
            ..record(
                wipe.command_id,
                CommandState::CommandCancelled,
                "The phone user cancelled the wipe.",
            )
        };
        self.update_manage(|m| {
            m.scheduled_wipe = None;
            m.queue(&answer(&rec));
            m.record(rec);
        })?;
        tracing::info!(command_id = wipe.command_id, "scheduled wipe cancelled");
        Ok(wipe)
    }

    /// The organization's data goes: mail store, profile (policy, service books), the
    /// organization's applications and the binding; the identity, the relay settings, the
    /// device password and the user's own applications stay.
    pub(crate) fn remove_organization_data(&mut self) -> Result<(), DeviceError> {
        let files = super::software::organization_files(self.manage());
        self.remove_organization(|m| ManageState {
            password: m.password.clone(),
            locked: m.locked,
            locked_by_admin: m.locked_by_admin,
            failed_attempts: m.failed_attempts,
            apps: m
                .apps
                .iter()
                .filter(|a| a.source == super::AppSource::User)
                .cloned()
                .collect(),
            ..ManageState::default()
        })?;
        let mut names: Vec<String> = [
            crate::mail::MAIL_DB.to_owned(),
            format!("{}-wal", crate::mail::MAIL_DB),
            format!("{}-shm", crate::mail::MAIL_DB),
            "attachments".to_owned(),
            crate::organizer::ORGANIZER_DB.to_owned(),
            format!("{}-wal", crate::organizer::ORGANIZER_DB),
            format!("{}-shm", crate::organizer::ORGANIZER_DB),
        ]
        .into();
        self.drop_organizer();
        for f in &files {
            names.push(format!("{}/{f}", super::software::APPS_DIR));
            self.runtime.memory_packages.remove(f);
        }
        // The options are the phone user's and stay; their backup went with the server.
        self.update_options(|o| {
            o.backup = false;
            o.backup_due = false;
        })?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.home_store().remove(&names)
    }

    /// An IT admin command.
    pub(crate) fn it_command(
        &mut self,
        cmd: &schema::ItCommand,
        out: &mut Outcome,
    ) -> Result<(), DeviceError> {
        let id = cmd.command_id;
        if let Some(rec) = self.manage().result(id).cloned() {
            let new_exchange = matches!(&cmd.command, Some(Command::RegenerateKey(rk))
                if hex::encode(&rk.server_public) != rec.server_public);
            if !new_exchange {
                tracing::debug!(command_id = id, "IT admin command repeated");
                self.update_manage(|m| m.queue(&answer(&rec)))?;
                out.events
                    .push(ManageEvent::CommandRepeated { command_id: id });
                return Ok(());
            }
        }
        match &cmd.command {
            None => self.command_failed(
                id,
                "This device does not know that command (it may need an update).",
                out,
            ),
            Some(Command::Lock(lock)) => {
                let new = (!lock.new_password.is_empty()).then_some(lock.new_password.as_str());
                match self.lock_by_admin(new) {
                    Ok(()) => {}
                    Err(DeviceError::PasswordRefused(why)) => {
                        return self.command_failed(
                            id,
                            &format!("The new device password cannot be used: {why}."),
                            out,
                        );
                    }
                    Err(e) => return Err(e),
                }
                let rec = record(id, CommandState::CommandDone, "The device is locked.");
                self.update_manage(|m| {
                    m.queue(&answer(&rec));
                    m.record(rec);
                })?;
                out.events.push(ManageEvent::Locked {
                    new_password: new.is_some(),
                });
                Ok(())
            }
            Some(Command::Wipe(w)) if w.delay_hours == 0 => {
                let rec = record(id, CommandState::CommandDone, "The device is being wiped.");
                out.direct.push(answer(&rec));
                out.then = Some(Then::Wipe);
                Ok(())
            }
            Some(Command::Wipe(w)) => {
                let due_at_ms = due_at(super::now_ms(), w.delay_hours);
                let wipe = ScheduledWipe {
                    command_id: id,
                    due_at_ms,
                    may_cancel: w.user_may_cancel,
                };
                let rec = CommandRecord {
                    due_at_ms,
                    ..record(
                        id,
                        CommandState::CommandPending,
                        &format!(
                            "The device will be wiped at {}.",
                            super::time_text(due_at_ms)
                        ),
                    )
                };
                self.update_manage(|m| {
                    // The earlier of two scheduled wipes is the one that counts.
                    if m.scheduled_wipe.is_none_or(|old| old.due_at_ms > due_at_ms) {
                        m.scheduled_wipe = Some(wipe);
                    }
                    m.queue(&answer(&rec));
                    m.record(rec);
                })?;
                out.events.push(ManageEvent::WipeScheduled {
                    due_at_ms,
                    may_cancel: w.user_may_cancel,
                });
                Ok(())
            }
            Some(Command::RemoveOrgData(_)) => {
                let rec = record(
                    id,
                    CommandState::CommandDone,
                    "The organization's data is being removed from the device.",
                );
                out.direct.push(answer(&rec));
                out.then = Some(Then::RemoveOrganization);
                Ok(())
            }
            Some(Command::RegenerateKey(rk)) => self.regenerate_key(id, rk, out),
        }
    }

    fn command_failed(
        &mut self,
        id: u64,
        detail: &str,
        out: &mut Outcome,
    ) -> Result<(), DeviceError> {
        let rec = record(id, CommandState::CommandFailed, detail);
        self.update_manage(|m| {
            m.queue(&answer(&rec));
            m.record(rec);
        })?;
        out.events.push(ManageEvent::CommandFailed {
            command_id: id,
            detail: detail.to_owned(),
        });
        Ok(())
    }

    /// "Regenerate the encryption key": the next key is derived from the current one and
    /// kept as pending; the answer (under the current key) carries the device's public key.
    fn regenerate_key(
        &mut self,
        id: u64,
        rk: &schema::RegenerateKey,
        out: &mut Outcome,
    ) -> Result<(), DeviceError> {
        let Some(current) = self.master_key().cloned() else {
            return self.command_failed(id, "The device is not activated.", out);
        };
        let generation = self.key_generation();
        if rk.key_generation <= generation {
            return self.command_failed(
                id,
                &format!(
                    "The new key's generation ({}) is not above the one in use ({generation}).",
                    rk.key_generation
                ),
                out,
            );
        }
        let exchange = KeyExchange::new().map_err(|e| DeviceError::Crypto(e.to_string()))?;
        let device_public = exchange.public_key();
        let next =
            match exchange.next_key(&rk.server_public, &current, self.pin(), rk.key_generation) {
                Ok(k) => k,
                Err(e) => {
                    return self.command_failed(id, &format!("No new key was made: {e}."), out);
                }
            };
        let rec = CommandRecord {
            device_public: hex::encode(device_public),
            server_public: hex::encode(&rk.server_public),
            ..record(
                id,
                CommandState::CommandDone,
                "The device has made its half of the new key; it switches when the server uses it.",
            )
        };
        let pending = PendingKey {
            command_id: id,
            key_generation: rk.key_generation,
            master_key: hex::encode(next.as_bytes()),
        };
        self.update_manage(|m| {
            m.pending_key = Some(pending);
            m.queue(&answer(&rec));
            m.record(rec);
        })?;
        tracing::info!(
            command_id = id,
            key_generation = rk.key_generation,
            "next key agreed"
        );
        out.events.push(ManageEvent::KeyExchanged {
            key_generation: rk.key_generation,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wipe_is_due_at_its_time_and_after() {
        let w = ScheduledWipe {
            command_id: 1,
            due_at_ms: due_at(1_000, 2),
            may_cancel: true,
        };
        assert_eq!(w.due_at_ms, 1_000 + 2 * 3_600_000);
        assert!(!is_due(&w, 1_000));
        assert!(!is_due(&w, w.due_at_ms - 1));
        assert!(is_due(&w, w.due_at_ms));
        assert!(is_due(&w, i64::MAX));
    }

    #[test]
    fn huge_delays_are_bounded_and_never_overflow() {
        assert_eq!(
            due_at(0, u32::MAX),
            i64::from(MAX_WIPE_DELAY_HOURS) * 3_600_000
        );
        assert_eq!(due_at(i64::MAX - 5, 1), i64::MAX);
    }

    #[test]
    fn results_round_trip_through_their_records() {
        for s in [
            CommandState::CommandPending,
            CommandState::CommandDone,
            CommandState::CommandFailed,
            CommandState::CommandCancelled,
        ] {
            assert_eq!(state_of(state_word(s)), s);
        }
        let rec = CommandRecord {
            device_public: hex::encode([7u8; 32]),
            due_at_ms: 5,
            ..record(9, CommandState::CommandDone, "ok")
        };
        let Some(Body::CommandResult(r)) = answer(&rec).body else {
            panic!("a command result");
        };
        assert_eq!(
            (r.command_id, r.state, r.detail.as_str(), r.due_at_ms),
            (9, CommandState::CommandDone as i32, "ok", 5)
        );
        assert_eq!(r.device_public.as_ref(), [7u8; 32]);
    }
}

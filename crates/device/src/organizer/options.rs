//! The phone user's options (a small key → value map in `state.json`) and their wireless
//! backup: a `DeviceBackup` is due whenever they change while backup is on, and after
//! activation; `BackupRestore` puts a backup's options back.

use std::collections::BTreeMap;

use bramble_proto::schema::DeviceBackup;
use serde::{Deserialize, Serialize};

use crate::{Device, DeviceError};

/// The most options a device keeps.
pub const MAX_OPTIONS: usize = 256;
/// The longest option name, bytes.
pub const MAX_OPTION_KEY: usize = 64;
/// The longest option value, bytes.
pub const MAX_OPTION_VALUE: usize = 4096;
/// The largest backup the device sends or takes, bytes (the protocol's limit).
const MAX_BACKUP: usize = 256 * 1024;

/// The `options` section of the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OptionsState {
    /// The options, by name.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// The synchronization configuration's `backup` (kept here so a change of an option
    /// knows without the organizer store).
    #[serde(default)]
    pub backup: bool,
    /// A backup is due.
    #[serde(default)]
    pub backup_due: bool,
}

/// What a backup holds (JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Backup {
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    applications: Vec<BackupApp>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BackupApp {
    name: String,
    version: String,
}

fn check(key: &str, value: &str) -> Result<(), DeviceError> {
    let refused = |why: String| Err(DeviceError::OptionRefused(why));
    if key.is_empty() {
        return refused("its name is empty".into());
    }
    if key.len() > MAX_OPTION_KEY {
        return refused(format!("its name is longer than {MAX_OPTION_KEY} bytes"));
    }
    if key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return refused("its name holds spaces or control characters".into());
    }
    if value.len() > MAX_OPTION_VALUE {
        return refused(format!("its value is longer than {MAX_OPTION_VALUE} bytes"));
    }
    if value.chars().any(char::is_control) {
        return refused("its value holds control characters".into());
    }
    Ok(())
}

impl Device {
    /// The phone user's options.
    pub fn options(&self) -> &BTreeMap<String, String> {
        &self.state.options.values
    }

    /// Sets option `key` to `value` (a backup is then due, when wireless backup is on).
    ///
    /// # Errors
    /// [`DeviceError::OptionRefused`], or when the state cannot be written.
    pub fn set_option(&mut self, key: &str, value: &str) -> Result<(), DeviceError> {
        let key = key.trim();
        check(key, value)?;
        if !self.options().contains_key(key) && self.options().len() >= MAX_OPTIONS {
            return Err(DeviceError::OptionRefused(format!(
                "the device keeps at most {MAX_OPTIONS} options"
            )));
        }
        self.update_options(|o| {
            o.values.insert(key.to_owned(), value.to_owned());
            o.backup_due |= o.backup;
        })
    }

    /// Removes option `key`; whether it was set.
    ///
    /// # Errors
    /// When the state cannot be written.
    pub fn unset_option(&mut self, key: &str) -> Result<bool, DeviceError> {
        let key = key.trim();
        if !self.options().contains_key(key) {
            return Ok(false);
        }
        self.update_options(|o| {
            o.values.remove(key);
            o.backup_due |= o.backup;
        })?;
        Ok(true)
    }

    /// Whether wireless backup is on (as the last synchronization configuration said).
    pub fn backup_enabled(&self) -> bool {
        self.state.options.backup
    }

    /// Records the configuration's `backup`; turning it on makes a backup due.
    pub(crate) fn set_backup_enabled(&mut self, on: bool) -> Result<(), DeviceError> {
        if self.state.options.backup == on {
            return Ok(());
        }
        self.update_options(|o| {
            o.backup = on;
            o.backup_due = on;
        })
    }

    /// Makes a backup due (after activation), when backup is on.
    pub(crate) fn backup_now(&mut self) -> Result<(), DeviceError> {
        if !self.state.options.backup || self.state.options.backup_due {
            return Ok(());
        }
        self.update_options(|o| o.backup_due = true)
    }

    /// The backup to send, when one is due.
    pub(crate) fn due_backup(&self) -> Option<DeviceBackup> {
        let o = &self.state.options;
        if !(o.backup && o.backup_due) {
            return None;
        }
        let backup = Backup {
            options: o.values.clone(),
            applications: self
                .apps()
                .iter()
                .filter(|a| a.source == crate::manage::AppSource::User)
                .map(|a| BackupApp {
                    name: a.name.clone(),
                    version: a.version.clone(),
                })
                .collect(),
        };
        let settings = serde_json::to_vec(&backup).ok()?;
        if settings.len() > MAX_BACKUP {
            tracing::warn!(len = settings.len(), "the backup is too large to send");
            return None;
        }
        Some(DeviceBackup {
            settings: settings.into(),
            taken_ms: crate::manage::now_ms(),
        })
    }

    pub(crate) fn backup_sent(&mut self) -> Result<(), DeviceError> {
        self.update_options(|o| o.backup_due = false)
    }

    /// Puts back the options of a backup (the device's own stay where the backup has none);
    /// returns how many were taken. A backup of its own is then due.
    pub(crate) fn restore_options(&mut self, settings: &[u8]) -> Result<usize, String> {
        if settings.len() > MAX_BACKUP {
            return Err(format!("it is larger than {MAX_BACKUP} bytes"));
        }
        let backup: Backup =
            serde_json::from_slice(settings).map_err(|e| format!("it is not readable ({e})"))?;
        let mut values = self.options().clone();
        let mut taken = 0;
        for (k, v) in backup.options {
            let k = k.trim().to_owned();
            if check(&k, &v).is_err() || (!values.contains_key(&k) && values.len() >= MAX_OPTIONS) {
                continue;
            }
            values.insert(k, v);
            taken += 1;
        }
        self.update_options(|o| {
            o.values = values;
            o.backup_due |= o.backup;
        })
        .map_err(|e| e.to_string())?;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_backed_up_and_restored_over_the_devices_own() {
        let mut dev = Device::in_memory().expect("device");
        dev.set_option("ringtone", "Bells").expect("sets");
        assert!(dev.due_backup().is_none(), "backup is off");
        assert!(matches!(
            dev.set_option("has space", "x"),
            Err(DeviceError::OptionRefused(_))
        ));
        dev.set_backup_enabled(true).expect("on");
        let b = dev.due_backup().expect("due once turned on");
        let json: serde_json::Value = serde_json::from_slice(&b.settings).expect("json");
        assert_eq!(json["options"]["ringtone"], "Bells");
        dev.backup_sent().expect("sent");
        assert!(dev.due_backup().is_none());
        dev.set_option("font", "large").expect("sets");
        assert!(dev.due_backup().is_some(), "a change makes one due");

        let taken = dev
            .restore_options(br#"{"options": {"ringtone": "Chimes", "wallpaper": "sea"}}"#)
            .expect("restores");
        assert_eq!(taken, 2);
        assert_eq!(dev.options()["ringtone"], "Chimes");
        assert_eq!(dev.options()["font"], "large", "the device's own stay");
        assert!(dev.restore_options(b"not json").is_err());
        assert!(dev.unset_option("font").expect("unsets"));
        assert!(!dev.unset_option("font").expect("unsets"));
    }
}

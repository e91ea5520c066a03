//! The device password (an Argon2id hash) and the lock.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::policy::PasswordFacts;
use super::state::PasswordRecord;
use crate::{Device, DeviceError};

/// The longest device password accepted, in bytes.
pub const MAX_PASSWORD: usize = 256;

fn hash(password: &str) -> Result<PasswordRecord, DeviceError> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| DeviceError::Crypto("the system's random source failed".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| DeviceError::Crypto(e.to_string()))?;
    let phc = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| DeviceError::Crypto(e.to_string()))?
        .to_string();
    let f = PasswordFacts::of(password);
    Ok(PasswordRecord {
        hash: phc,
        length: f.length,
        letters: f.letters,
        digits: f.digits,
        symbols: f.symbols,
    })
}

fn matches(record: &PasswordRecord, password: &str) -> bool {
    PasswordHash::new(&record.hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

fn usable(password: &str) -> Result<(), DeviceError> {
    if password.len() > MAX_PASSWORD {
        return Err(DeviceError::PasswordRefused(format!(
            "it is longer than {MAX_PASSWORD} bytes"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(DeviceError::PasswordRefused(
            "it contains control characters".into(),
        ));
    }
    Ok(())
}

impl Device {
    /// Whether the device is locked: it shows nothing until its password is typed
    /// ([`Device::unlock`]).
    pub fn is_locked(&self) -> bool {
        self.manage().locked
    }

    /// Whether the administrator locked it (rather than the user or the idle timer).
    pub fn locked_by_admin(&self) -> bool {
        self.manage().locked && self.manage().locked_by_admin
    }

    /// Whether a device password is set.
    pub fn has_password(&self) -> bool {
        self.manage().password.is_some()
    }

    /// Wrong passwords still allowed before the device wipes itself.
    pub fn password_attempts_left(&self) -> u32 {
        self.policy_settings()
            .max_password_attempts
            .saturating_sub(self.manage().failed_attempts)
    }

    /// Sets (or changes) the device password, after checking it against the IT policy's
    /// length and complexity rules. Stored as an Argon2id hash; a compliance change is
    /// queued for the server.
    ///
    /// # Errors
    /// [`DeviceError::Locked`] (unlock first), [`DeviceError::PasswordRefused`] with the rule
    /// it breaks, or when the state cannot be written.
    pub fn set_password(&mut self, password: &str) -> Result<(), DeviceError> {
        if self.is_locked() {
            return Err(DeviceError::Locked);
        }
        usable(password)?;
        self.policy_settings()
            .check_password(password)
            .map_err(DeviceError::PasswordRefused)?;
        let record = hash(password)?;
        self.update_manage(|m| {
            m.password = Some(record);
            m.failed_attempts = 0;
        })?;
        tracing::info!("device password set");
        self.refresh_compliance()?;
        Ok(())
    }

    /// Locks the device (the user, or the idle timer). It needs a password to unlock with.
    ///
    /// # Errors
    /// [`DeviceError::NoPassword`], or when the state cannot be written.
    pub fn lock(&mut self) -> Result<(), DeviceError> {
        if !self.has_password() {
            return Err(DeviceError::NoPassword);
        }
        if self.is_locked() {
            return Ok(());
        }
        self.update_manage(|m| {
            m.locked = true;
            m.locked_by_admin = false;
        })
    }

    /// The administrator's lock: the password set when `new_password` is given (not checked
    /// against the policy: the administrator chose it), then locked.
    pub(crate) fn lock_by_admin(&mut self, new_password: Option<&str>) -> Result<(), DeviceError> {
        let record = match new_password {
            Some(p) => {
                usable(p)?;
                Some(hash(p)?)
            }
            None => None,
        };
        self.update_manage(|m| {
            if let Some(r) = record {
                m.password = Some(r);
                m.failed_attempts = 0;
            }
            m.locked = true;
            m.locked_by_admin = true;
        })?;
        self.refresh_compliance()?;
        Ok(())
    }

    /// Unlocks the device with its password. A wrong password is counted (durably); at the
    /// IT policy's `max_password_attempts` wrong passwords in a row the device wipes itself,
    /// as a wipe command does (a [`crate::MailStore`] open on it must then be closed: its
    /// file is gone). An unlocked device stays as it is (nothing is checked or counted).
    ///
    /// A device locked without a password (the administrator locked it and none was ever
    /// set) unlocks with any password.
    ///
    /// # Errors
    /// [`DeviceError::WrongDevicePassword`] with the attempts left,
    /// [`DeviceError::Wiped`] when that was the last one, or when the state cannot be
    /// written.
    pub fn unlock(&mut self, password: &str) -> Result<(), DeviceError> {
        if !self.is_locked() {
            return Ok(());
        }
        let Some(record) = self.manage().password.clone() else {
            return self.update_manage(|m| {
                m.locked = false;
                m.locked_by_admin = false;
            });
        };
        if password.len() <= MAX_PASSWORD && matches(&record, password) {
            return self.update_manage(|m| {
                m.locked = false;
                m.locked_by_admin = false;
                m.failed_attempts = 0;
            });
        }
        let max = self.policy_settings().max_password_attempts;
        let failed = self.update_manage(|m| {
            m.failed_attempts = m.failed_attempts.saturating_add(1);
            m.failed_attempts
        })?;
        tracing::info!(failed, max, "wrong device password");
        if failed >= max {
            let reason = format!("{failed} wrong device passwords in a row");
            // The answer the server was waiting for cannot be sent: there is no connection
            // here, and after the wipe no key to seal it with.
            self.factory_reset()?;
            return Err(DeviceError::Wiped(reason));
        }
        Err(DeviceError::WrongDevicePassword {
            attempts_left: max - failed,
        })
    }
}

//! The device's local store: its home directory, or nothing at all (in memory).
//!
//! ```text
//! HOME/identity.pkcs8   the Ed25519 identity key, PKCS#8 DER, mode 0600
//! HOME/state.json       relay, pinned fingerprint, binding, counters; mode 0600 (holds the
//!                       master key); replaced atomically (temp file, fsync, rename, fsync dir)
//! HOME/lock             held (flock) while a `Device` has the home open
//! HOME/mail.db          the mail store (see `mail`)
//! HOME/organizer.db     calendar, contacts, tasks, memos (see `organizer`)
//! HOME/apps/            installed application packages (see `manage`)
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bramble_net::Fingerprint;
use bramble_proto::{DeviceIdentity, MasterKey, Pin, SrpId};
use serde::{Deserialize, Serialize};

use crate::error::DeviceError;

/// The identity key's file name.
pub const IDENTITY_FILE: &str = "identity.pkcs8";
/// The state file's name.
pub const STATE_FILE: &str = "state.json";
/// The lock file's name.
pub const LOCK_FILE: &str = "lock";
/// The state file format this build writes and reads.
const FORMAT: u32 = 1;

/// Where the device keeps what must survive a restart.
#[derive(Debug)]
pub(crate) enum Store {
    /// Nothing is written (tests, benchmarks).
    Memory,
    /// A home directory, held locked.
    Home {
        dir: PathBuf,
        /// Held for the lock; released when dropped.
        _lock: File,
    },
}

/// The relay the device connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relay {
    pub addr: String,
    /// Pinned; `None` until the first successful connection (trust on first use).
    pub fingerprint: Option<Fingerprint>,
}

/// The device's binding to its enterprise server.
#[derive(Debug)]
pub(crate) struct Binding {
    pub srp: SrpId,
    pub master: MasterKey,
    pub key_generation: u32,
    /// The highest sequence number accepted from the server under this key.
    pub rx_highest: u64,
}

/// Everything in the state file, typed.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub relay: Option<Relay>,
    pub binding: Option<Binding>,
    /// Transmit sequence numbers below this may have been used. Never goes down, not even for
    /// a new binding, so this device never seals two frames with one number.
    pub tx_reserved: u64,
    /// What Enterprise Activation gave the device: its address, the pinned domain key, the IT
    /// policy and the service books.
    pub profile: Option<crate::activation::Profile>,
    /// What the policy service left: the device password, lock, IT admin commands carried
    /// out, a scheduled wipe, a pending next key, installed applications, replies to send.
    pub manage: crate::manage::ManageState,
    /// The phone user's options and whether their backup is due.
    pub options: crate::organizer::OptionsState,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    format: u32,
    pin: String,
    #[serde(default)]
    relay: Option<RelayFile>,
    #[serde(default)]
    binding: Option<BindingFile>,
    #[serde(default)]
    tx_reserved: u64,
    #[serde(default)]
    profile: Option<crate::activation::Profile>,
    #[serde(default)]
    manage: crate::manage::ManageState,
    #[serde(default)]
    options: crate::organizer::OptionsState,
}

#[derive(Serialize, Deserialize)]
struct RelayFile {
    address: String,
    #[serde(default)]
    fingerprint: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct BindingFile {
    server: String,
    master_key: String,
    key_generation: u32,
    #[serde(default)]
    rx_highest: u64,
}

impl Store {
    /// Opens (creating when new) and locks the home directory `dir`; returns the store, the
    /// identity and the state.
    pub fn open(dir: &Path) -> Result<(Store, DeviceIdentity, State), DeviceError> {
        create_private_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(DeviceError::file("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DeviceError::InUse {
                    home: dir.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(DeviceError::file("lock", &lock_path)(e));
            }
        }
        let store = Store::Home {
            dir: dir.to_owned(),
            _lock: lock,
        };

        let key_path = dir.join(IDENTITY_FILE);
        let state_path = dir.join(STATE_FILE);
        let state_exists = state_path.exists();
        let identity = if key_path.exists() {
            let bytes = std::fs::read(&key_path).map_err(DeviceError::file("read", &key_path))?;
            DeviceIdentity::from_pkcs8(&bytes).map_err(|_| DeviceError::DamagedIdentity {
                path: key_path.clone(),
            })?
        } else if state_exists {
            // A new key would be a new PIN, and the state (binding, pinned relay) belongs to the
            // old one: refuse rather than silently become another device.
            let expected = read_state_file(&state_path)?.pin;
            return Err(DeviceError::IdentityMismatch {
                key: key_path,
                state: state_path,
                expected,
            });
        } else {
            let id = DeviceIdentity::generate().map_err(|e| DeviceError::Crypto(e.to_string()))?;
            write_atomic(dir, IDENTITY_FILE, id.pkcs8())?;
            id
        };

        let state = if state_exists {
            let file = read_state_file(&state_path)?;
            if file.pin != identity.pin().to_string() {
                return Err(DeviceError::IdentityMismatch {
                    key: key_path,
                    state: state_path,
                    expected: file.pin,
                });
            }
            State::from_file(file, &state_path)?
        } else {
            let state = State::default();
            store.save(identity.pin(), &state)?;
            state
        };
        Ok((store, identity, state))
    }

    /// The home directory, if there is one.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Store::Memory => None,
            Store::Home { dir, .. } => Some(dir),
        }
    }

    /// Writes `state` durably (atomically replacing the file); nothing in memory mode.
    pub fn save(&self, pin: Pin, state: &State) -> Result<(), DeviceError> {
        let Store::Home { dir, .. } = self else {
            return Ok(());
        };
        let file = state.to_file(pin);
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| DeviceError::File {
            action: "write",
            path: dir.join(STATE_FILE),
            source: std::io::Error::other(e),
        })?;
        bytes.push(b'\n');
        write_atomic(dir, STATE_FILE, &bytes)
    }
}

impl State {
    fn to_file(&self, pin: Pin) -> StateFile {
        StateFile {
            format: FORMAT,
            pin: pin.to_string(),
            relay: self.relay.as_ref().map(|r| RelayFile {
                address: r.addr.clone(),
                fingerprint: r.fingerprint.map(|f| f.to_string()),
            }),
            binding: self.binding.as_ref().map(|b| BindingFile {
                server: b.srp.to_string(),
                master_key: hex::encode(b.master.as_bytes()),
                key_generation: b.key_generation,
                rx_highest: b.rx_highest,
            }),
            tx_reserved: self.tx_reserved,
            profile: self.profile.clone(),
            manage: self.manage.clone(),
            options: self.options.clone(),
        }
    }

    fn from_file(file: StateFile, path: &Path) -> Result<State, DeviceError> {
        let damaged = |reason: String| DeviceError::DamagedState {
            path: path.to_owned(),
            reason,
        };
        let relay = match file.relay {
            None => None,
            Some(r) => Some(Relay {
                fingerprint: r
                    .fingerprint
                    .as_deref()
                    .map(Fingerprint::from_str)
                    .transpose()
                    .map_err(|e| damaged(format!("relay fingerprint: {e}")))?,
                addr: r.address,
            }),
        };
        let binding = match file.binding {
            None => None,
            Some(b) => {
                let srp = SrpId::from_str(&b.server).map_err(|e| damaged(e.to_string()))?;
                let master = hex::decode(&b.master_key)
                    .ok()
                    .and_then(|k| MasterKey::from_slice(&k))
                    .ok_or_else(|| damaged("the master key is not 64 hex digits".into()))?;
                Some(Binding {
                    srp,
                    master,
                    key_generation: b.key_generation,
                    rx_highest: b.rx_highest,
                })
            }
        };
        Ok(State {
            relay,
            binding,
            tx_reserved: file.tx_reserved,
            profile: file.profile,
            manage: file.manage,
            options: file.options,
        })
    }
}

fn read_state_file(path: &Path) -> Result<StateFile, DeviceError> {
    let bytes = std::fs::read(path).map_err(DeviceError::file("read", path))?;
    let file: StateFile =
        serde_json::from_slice(&bytes).map_err(|e| DeviceError::DamagedState {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if file.format != FORMAT {
        return Err(DeviceError::DamagedState {
            path: path.to_owned(),
            reason: format!(
                "it is in format {}, and this build reads format {FORMAT} (was it written by \
                 another version of Bramble?)",
                file.format
            ),
        });
    }
    Ok(file)
}

fn create_private_dir(dir: &Path) -> Result<(), DeviceError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(DeviceError::file("create", dir))
}

/// Replaces `dir/name` with `bytes`: written to a temporary file readable by the owner only,
/// flushed to disk, renamed over the old file, and the directory flushed, so a crash leaves
/// either the old file or the new one, never a mix.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), DeviceError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(DeviceError::file("create", &tmp))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(DeviceError::file("protect", &tmp))?;
    }
    f.write_all(bytes)
        .map_err(DeviceError::file("write", &tmp))?;
    f.sync_all().map_err(DeviceError::file("flush", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(DeviceError::file("replace", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(DeviceError::file("flush", dir))
}

impl Store {
    /// Deletes everything in the home but the files named in `keep` (and the lock, which
    /// this store holds): files and folders alike. Nothing in memory mode.
    pub fn clear(&self, keep: &[&str]) -> Result<(), DeviceError> {
        let Store::Home { dir, .. } = self else {
            return Ok(());
        };
        let entries = std::fs::read_dir(dir).map_err(DeviceError::file("list", dir))?;
        for entry in entries {
            let entry = entry.map_err(DeviceError::file("list", dir))?;
            let name = entry.file_name();
            let keep_it = name
                .to_str()
                .is_some_and(|n| n == LOCK_FILE || keep.contains(&n));
            if keep_it {
                continue;
            }
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let removed = if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DeviceError::file("delete", &path)(e)),
            }
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(DeviceError::file("flush", dir))
    }

    /// Deletes these files or folders of the home, when they are there.
    pub fn remove(&self, names: &[&str]) -> Result<(), DeviceError> {
        let Store::Home { dir, .. } = self else {
            return Ok(());
        };
        for name in names {
            let path = dir.join(name);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DeviceError::file("delete", &path)(e)),
            }
        }
        Ok(())
    }
}

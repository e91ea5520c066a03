//! The device: its identity, its state, its session with its enterprise server.

use std::path::Path;

use bramble_net::Fingerprint;
use bramble_proto::schema::Envelope;
use bramble_proto::seal::{MAX_PLAINTEXT, MAX_SEAL_INPUT};
use bramble_proto::{
    Address, DeviceIdentity, Frame, FrameKind, MasterKey, Pin, SealError, Session, SrpId,
};
use serde::Serialize;

use crate::Incoming;
use crate::error::DeviceError;
use crate::home::{Binding, Relay, State, Store};

/// How many transmit sequence numbers are reserved (and persisted) at a time. A crash wastes
/// at most this many; each block costs one write of the state file.
pub const TX_BLOCK: u64 = 64;

/// A handheld: its identity key (and so its PIN), its local store, and its session keys with
/// the enterprise server it is bound to.
///
/// Made with [`Device::open`] (a home directory) or [`Device::in_memory`]. Connect to the relay
/// with [`Device::connect`]; [`Device::seal`] and [`Device::unseal`] do the end-to-end part
/// without a network, for other transports and for benchmarks.
pub struct Device {
    store: Store,
    identity: DeviceIdentity,
    pub(crate) state: State,
    /// Built from the binding on first use, kept across connections.
    session: Option<Session>,
    /// What the policy service keeps in memory only.
    pub(crate) runtime: crate::manage::Runtime,
    /// The organizer store, opened on first use.
    pub(crate) organizer: tokio::sync::OnceCell<crate::organizer::OrganizerStore>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("pin", &self.pin())
            .field("home", &self.store.dir())
            .field("relay", &self.state.relay.as_ref().map(|r| &r.addr))
            .field("server", &self.state.binding.as_ref().map(|b| b.srp))
            .finish_non_exhaustive()
    }
}

/// What `bramble device status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceStatus {
    /// The device's PIN (8 hex digits).
    #[serde(serialize_with = "as_text")]
    pub pin: Pin,
    /// The relay's address, when set.
    pub relay: Option<String>,
    /// The relay certificate's pinned SHA-256 fingerprint (none until the first connection
    /// when trusting on first use).
    #[serde(serialize_with = "opt_as_text")]
    pub relay_fingerprint: Option<Fingerprint>,
    /// The enterprise server's SRP id (`S` and 8 digits), or none when not activated.
    #[serde(serialize_with = "opt_as_text")]
    pub server: Option<SrpId>,
    /// The generation of the master key (1 at activation, +1 per key regeneration); 0 when
    /// not activated.
    pub key_generation: u32,
    /// The next transmit sequence number.
    pub tx_next: u64,
    /// Transmit sequence numbers below this are reserved on disk.
    pub tx_reserved: u64,
    /// The highest sequence number received from the server under the current key.
    pub rx_highest: u64,
    /// Whether a regenerated key is agreed and waits for the server's first frame under it.
    pub key_regeneration_pending: bool,
    /// Whether the device is locked: it asks for its password before anything else.
    pub locked: bool,
    /// Whether a device password is set.
    pub password_set: bool,
    /// Wrong passwords typed in a row.
    pub failed_password_attempts: u32,
    /// How many wrong passwords in a row wipe the device.
    pub max_password_attempts: u32,
    /// The IT policy in force: its name.
    pub policy_name: Option<String>,
    /// The IT policy in force: its version.
    pub policy_version: Option<u64>,
    /// Why the device does not comply with its IT policy (empty: it does).
    pub compliance_problems: Vec<String>,
    /// The IT policy turned the camera off.
    pub camera_disabled: bool,
    /// The IT policy turned Bluetooth off.
    pub bluetooth_disabled: bool,
    /// The IT policy asks for content protection.
    pub content_protection: bool,
    /// Idle minutes before the screen locks (0: never).
    pub inactivity_lock_minutes: u32,
    /// The largest attachment the device downloads, bytes, when the IT policy says.
    pub max_attachment_bytes: Option<u64>,
    /// A wipe the administrator scheduled.
    pub scheduled_wipe: Option<crate::manage::ScheduledWipe>,
    /// Applications installed.
    pub installed_apps: usize,
}

fn as_text<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn opt_as_text<T: std::fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

impl Device {
    /// Opens the device whose home is `home`, creating the folder, the identity key and the
    /// state on first use. The home stays locked against other programs until the device is
    /// dropped.
    ///
    /// # Errors
    /// [`DeviceError::InUse`], a damaged or mismatched file (named), or a file system error.
    pub fn open(home: &Path) -> Result<Device, DeviceError> {
        let (store, identity, state) = Store::open(home)?;
        tracing::debug!(pin = %identity.pin(), home = %home.display(), "device opened");
        let mut device = Device {
            store,
            identity,
            state,
            session: None,
            runtime: crate::manage::Runtime::default(),
            organizer: tokio::sync::OnceCell::new(),
        };
        // A wipe that came due while the device was off is carried out before anything else.
        if device.wipe_if_due(crate::manage::now_ms())? {
            device.runtime.wiped_at_open = true;
        }
        Ok(device)
    }

    /// A device that keeps everything in memory and writes no file: a new identity, no relay,
    /// not activated.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn in_memory() -> Result<Device, DeviceError> {
        let identity =
            DeviceIdentity::generate().map_err(|e| DeviceError::Crypto(e.to_string()))?;
        Ok(Device {
            store: Store::Memory,
            identity,
            state: State::default(),
            session: None,
            runtime: crate::manage::Runtime::default(),
            organizer: tokio::sync::OnceCell::new(),
        })
    }

    /// This device's PIN.
    pub fn pin(&self) -> Pin {
        self.identity.pin()
    }

    /// The Ed25519 identity public key (32 bytes) whose hash is the PIN; the server records it
    /// at activation.
    pub fn identity_public_key(&self) -> [u8; 32] {
        self.identity.public_key()
    }

    /// The home directory; `None` in memory.
    pub fn home(&self) -> Option<&Path> {
        self.store.dir()
    }

    /// The enterprise server this device is bound to, if any.
    pub fn server(&self) -> Option<SrpId> {
        self.state.binding.as_ref().map(|b| b.srp)
    }

    /// What the device knows about itself.
    pub fn status(&self) -> DeviceStatus {
        let relay = self.state.relay.as_ref();
        let binding = self.state.binding.as_ref();
        let policy = self.policy();
        let settings = self.policy_settings();
        DeviceStatus {
            pin: self.pin(),
            relay: relay.map(|r| r.addr.clone()),
            relay_fingerprint: relay.and_then(|r| r.fingerprint),
            server: binding.map(|b| b.srp),
            key_generation: binding.map_or(0, |b| b.key_generation),
            tx_next: self
                .session
                .as_ref()
                .map_or(self.state.tx_reserved.max(1), |s| s.sealer.next_seq()),
            tx_reserved: self.state.tx_reserved,
            rx_highest: binding.map_or(0, |b| b.rx_highest),
            key_regeneration_pending: self.state.manage.pending_key.is_some(),
            locked: self.is_locked(),
            password_set: self.has_password(),
            failed_password_attempts: self.state.manage.failed_attempts,
            max_password_attempts: settings.max_password_attempts,
            policy_name: policy.map(|p| p.name.clone()),
            policy_version: policy.map(|p| p.version),
            compliance_problems: self.compliance_problems(),
            camera_disabled: settings.disable_camera,
            bluetooth_disabled: settings.disable_bluetooth,
            content_protection: settings.content_protection,
            inactivity_lock_minutes: settings.inactivity_lock_minutes,
            max_attachment_bytes: settings.max_attachment_bytes(),
            scheduled_wipe: self.scheduled_wipe(),
            installed_apps: self.state.manage.apps.len(),
        }
    }

    /// Sets the relay to connect to (`host:port`). With a fingerprint, only the certificate
    /// with that SHA-256 fingerprint is accepted; without one, the first certificate seen is
    /// trusted and remembered. Replaces any relay and fingerprint set before.
    ///
    /// # Errors
    /// [`DeviceError::BadRelayAddress`], or when the state cannot be written.
    pub fn set_relay(
        &mut self,
        addr: &str,
        fingerprint: Option<Fingerprint>,
    ) -> Result<(), DeviceError> {
        let addr = addr.trim();
        let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok()
        });
        if !valid {
            return Err(DeviceError::BadRelayAddress(addr.to_owned()));
        }
        let new = Some(Relay {
            addr: addr.to_owned(),
            fingerprint,
        });
        let old = std::mem::replace(&mut self.state.relay, new);
        self.save().inspect_err(|_| self.state.relay = old)
    }

    /// Binds the device to the enterprise server `srp` with the master key both hold: what
    /// Enterprise Activation ends with. The server's side must hold the same key.
    ///
    /// A new key for the server the device is already bound to is a key regeneration (the key
    /// generation goes up by one); another server starts at generation 1; the same server and
    /// key again changes nothing. The highest received sequence number starts again at 0
    /// with a new key; transmit numbers carry on from where they were, so no number is used
    /// twice.
    ///
    /// # Errors
    /// When the state cannot be written (the device stays as it was).
    pub fn provision(&mut self, srp: SrpId, master: MasterKey) -> Result<(), DeviceError> {
        let key_generation = match &self.state.binding {
            Some(b) if b.srp == srp && b.master == master => return Ok(()),
            Some(b) if b.srp == srp => b.key_generation.saturating_add(1),
            _ => 1,
        };
        let new = Some(Binding {
            srp,
            master,
            key_generation,
            rx_highest: 0,
        });
        let old = std::mem::replace(&mut self.state.binding, new);
        match self.save() {
            Ok(()) => {
                self.session = None;
                tracing::info!(pin = %self.pin(), server = %srp, key_generation, "device bound");
                Ok(())
            }
            Err(e) => {
                self.state.binding = old;
                Err(e)
            }
        }
    }

    /// Forgets the enterprise server and its key (the device is no longer activated). The
    /// relay settings and the PIN stay.
    ///
    /// # Errors
    /// When the state cannot be written.
    pub fn unbind(&mut self) -> Result<(), DeviceError> {
        let old = self.state.binding.take();
        self.session = None;
        self.save().inspect_err(|_| self.state.binding = old)
    }

    /// Back to factory settings: forgets the enterprise server, its key, the relay and its
    /// pinned certificate. The identity (and so the PIN) stays, like a phone's hardware PIN.
    ///
    /// # Errors
    /// When the state cannot be written.
    pub fn reset(&mut self) -> Result<(), DeviceError> {
        let binding = self.state.binding.take();
        let relay = self.state.relay.take();
        self.session = None;
        self.save().inspect_err(|_| {
            self.state.binding = binding;
            self.state.relay = relay;
        })
    }

    /// Seals `env` into a frame for the enterprise server, with the next transmit sequence
    /// number. When the reserved numbers run out, another block is reserved and written to
    /// disk before any of it is used.
    ///
    /// # Errors
    /// [`DeviceError::NotActivated`], [`DeviceError::TooLarge`], or a failure to persist the
    /// reservation.
    pub fn seal(&mut self, env: &Envelope) -> Result<Frame, DeviceError> {
        let plaintext = prost::Message::encode_to_vec(env);
        if plaintext.len() > MAX_SEAL_INPUT {
            return Err(DeviceError::TooLarge {
                len: plaintext.len(),
                max: MAX_SEAL_INPUT,
            });
        }
        let srp = self.server().ok_or(DeviceError::NotActivated)?;
        self.reserve_if_needed()?;
        let me = Address::Pin(self.pin());
        let session = self.session()?;
        session
            .sealer
            .seal(me, Address::Srp(srp), &plaintext)
            .map_err(|e| match e {
                SealError::TooLarge { len, max } => DeviceError::TooLarge { len, max },
                SealError::SeqExhausted { .. } => DeviceError::SequenceExhausted,
                other => DeviceError::Crypto(other.to_string()),
            })
    }

    /// Opens a sealed frame from the enterprise server. When it opens, the highest received
    /// sequence number is written to disk before this returns, so that after a restart the
    /// frame cannot be replayed. A frame that does not open (not from this device's server,
    /// wrong key, replayed, altered, malformed) is returned as [`Incoming::Rejected`].
    ///
    /// # Errors
    /// Only when the received sequence number cannot be persisted; the frame then counts as
    /// not received (the relay delivers it again).
    pub fn unseal(&mut self, frame: &Frame) -> Result<Incoming, DeviceError> {
        let seq = frame.header.seq;
        let rejected = |reason: String| {
            tracing::warn!(seq, %reason, "frame rejected");
            Ok(Incoming::Rejected { seq, reason })
        };
        if frame.header.kind != FrameKind::Sealed {
            return rejected("not a sealed frame".into());
        }
        let Some(srp) = self.server() else {
            return rejected(format!(
                "a frame from {} arrived, but this device is not activated",
                frame.header.src
            ));
        };
        if frame.header.src != Address::Srp(srp) || frame.header.dst != Address::Pin(self.pin()) {
            return rejected(format!(
                "a frame from {} to {} is not from this device's server {srp}",
                frame.header.src, frame.header.dst
            ));
        }
        let session = self.session()?;
        // A frame that does not open leaves the replay window as it was: nothing to persist.
        let plaintext = match session.opener.open(frame) {
            Ok(p) => {
                self.persist_rx()?;
                p
            }
            // After a key regeneration, the first frame that opens only with the next key
            // makes it the key (and from then on the old one opens nothing).
            Err(e) => match self.open_with_pending_key(frame)? {
                Some(p) => p,
                None => return rejected(e.to_string()),
            },
        };
        match bramble_proto::decode_message::<Envelope>(&plaintext, MAX_PLAINTEXT) {
            Ok(env) => Ok(Incoming::Envelope { seq, env }),
            Err(e) => rejected(format!("the message inside is not readable: {e}")),
        }
    }

    /// What activation gave this device, if it was activated.
    pub fn profile(&self) -> Option<&crate::activation::Profile> {
        self.state.profile.as_ref()
    }

    /// Replaces the activation profile and writes the state.
    pub(crate) fn set_profile(
        &mut self,
        profile: Option<crate::activation::Profile>,
    ) -> Result<(), DeviceError> {
        let old = std::mem::replace(&mut self.state.profile, profile);
        self.save().inspect_err(|_| self.state.profile = old)
    }

    /// Writes the state; nothing in memory.
    fn save(&self) -> Result<(), DeviceError> {
        self.store.save(self.pin(), &self.state)
    }

    /// The policy service's state.
    pub(crate) fn manage(&self) -> &crate::manage::ManageState {
        &self.state.manage
    }

    /// Changes the policy service's state and writes it; on failure the change is undone.
    pub(crate) fn update_manage<R>(
        &mut self,
        f: impl FnOnce(&mut crate::manage::ManageState) -> R,
    ) -> Result<R, DeviceError> {
        let old = self.state.manage.clone();
        let r = f(&mut self.state.manage);
        match self.save() {
            Ok(()) => Ok(r),
            Err(e) => {
                self.state.manage = old;
                Err(e)
            }
        }
    }

    /// Changes the phone user's options (and their backup's state) and writes them; on
    /// failure the change is undone.
    pub(crate) fn update_options<R>(
        &mut self,
        f: impl FnOnce(&mut crate::organizer::OptionsState) -> R,
    ) -> Result<R, DeviceError> {
        let old = self.state.options.clone();
        let r = f(&mut self.state.options);
        match self.save() {
            Ok(()) => Ok(r),
            Err(e) => {
                self.state.options = old;
                Err(e)
            }
        }
    }

    /// Changes the profile and the policy service's state together and writes them; on
    /// failure both are undone.
    pub(crate) fn update_profile_and_manage<R>(
        &mut self,
        f: impl FnOnce(&mut Option<crate::activation::Profile>, &mut crate::manage::ManageState) -> R,
    ) -> Result<R, DeviceError> {
        let old_profile = self.state.profile.clone();
        let old_manage = self.state.manage.clone();
        let r = f(&mut self.state.profile, &mut self.state.manage);
        match self.save() {
            Ok(()) => Ok(r),
            Err(e) => {
                self.state.profile = old_profile;
                self.state.manage = old_manage;
                Err(e)
            }
        }
    }

    /// The master key in use, when bound.
    pub(crate) fn master_key(&self) -> Option<&MasterKey> {
        self.state.binding.as_ref().map(|b| &b.master)
    }

    /// The home's files.
    pub(crate) fn home_store(&self) -> &Store {
        &self.store
    }

    /// Everything but the identity goes: the state is written as a new device's first (the
    /// binding and its key, the profile, the relay, the password and applications are gone),
    /// then every other file of the home is deleted (mail store, packages, attachments). The
    /// transmit numbers stay reserved, so none is ever used twice.
    pub(crate) fn factory_reset(&mut self) -> Result<(), DeviceError> {
        let fresh = State {
            tx_reserved: self.state.tx_reserved,
            ..State::default()
        };
        let old = std::mem::replace(&mut self.state, fresh);
        if let Err(e) = self.save() {
            self.state = old;
            return Err(e);
        }
        self.session = None;
        self.runtime = crate::manage::Runtime::default();
        self.drop_organizer();
        drop(old);
        self.store
            .clear(&[crate::home::IDENTITY_FILE, crate::home::STATE_FILE])?;
        tracing::info!(pin = %self.pin(), "device wiped: back to factory settings");
        Ok(())
    }

    /// The organization's part goes: the binding and its key, the profile (policy, service
    /// books), and what `keep` does not keep of the policy service's state. Written first;
    /// the caller deletes the files.
    pub(crate) fn remove_organization(
        &mut self,
        keep: impl FnOnce(&crate::manage::ManageState) -> crate::manage::ManageState,
    ) -> Result<(), DeviceError> {
        let manage = keep(&self.state.manage);
        let old_manage = std::mem::replace(&mut self.state.manage, manage);
        let old_profile = self.state.profile.take();
        let old_binding = self.state.binding.take();
        if let Err(e) = self.save() {
            self.state.manage = old_manage;
            self.state.profile = old_profile;
            self.state.binding = old_binding;
            return Err(e);
        }
        self.session = None;
        tracing::info!(pin = %self.pin(), "organization data removed; the device is no longer activated");
        Ok(())
    }

    /// Opens `frame` with the next key of a key regeneration, if there is one and it opens;
    /// then switches to it: the next key becomes the binding's (its generation, a new replay
    /// window holding this frame's number), written before this returns.
    fn open_with_pending_key(&mut self, frame: &Frame) -> Result<Option<Vec<u8>>, DeviceError> {
        let Some(pending) = self.state.manage.pending_key.clone() else {
            return Ok(None);
        };
        let Some(master) = hex::decode(&pending.master_key)
            .ok()
            .and_then(|k| MasterKey::from_slice(&k))
        else {
            return Ok(None);
        };
        let mut next =
            Session::device(&master, 0..0, 0).map_err(|e| DeviceError::Crypto(e.to_string()))?;
        let Ok(plain) = next.opener.open(frame) else {
            return Ok(None);
        };
        let Some(srp) = self.server() else {
            return Ok(None);
        };
        let new = Some(Binding {
            srp,
            master,
            key_generation: pending.key_generation,
            rx_highest: next.opener.highest_seq(),
        });
        let old_binding = std::mem::replace(&mut self.state.binding, new);
        let old_pending = self.state.manage.pending_key.take();
        if let Err(e) = self.save() {
            self.state.binding = old_binding;
            self.state.manage.pending_key = old_pending;
            return Err(e);
        }
        self.session = None;
        self.runtime.key_switched = Some(pending.key_generation);
        tracing::info!(
            pin = %self.pin(),
            key_generation = pending.key_generation,
            "switched to the regenerated key"
        );
        Ok(Some(plain))
    }

    /// The session of the current binding, built on first use.
    fn session(&mut self) -> Result<&mut Session, DeviceError> {
        let Some(binding) = &self.state.binding else {
            return Err(DeviceError::NotActivated);
        };
        if self.session.is_none() {
            let tx = self.state.tx_reserved..self.state.tx_reserved;
            let s = Session::device(&binding.master, tx, binding.rx_highest)
                .map_err(|e| DeviceError::Crypto(e.to_string()))?;
            self.session = Some(s);
        }
        self.session.as_mut().ok_or(DeviceError::NotActivated)
    }

    /// Reserves the next block of transmit numbers, on disk first, when the sealer has none left.
    fn reserve_if_needed(&mut self) -> Result<(), DeviceError> {
        let reserved = self.state.tx_reserved;
        let session = self.session()?;
        if session.sealer.remaining() > 0 {
            return Ok(());
        }
        let start = session.sealer.next_seq().max(reserved).max(1);
        let end = start
            .checked_add(TX_BLOCK)
            .ok_or(DeviceError::SequenceExhausted)?;
        self.state.tx_reserved = end;
        if let Err(e) = self.save() {
            self.state.tx_reserved = reserved;
            return Err(e);
        }
        tracing::debug!(start, end, "transmit numbers reserved");
        self.session()?.sealer.extend(start..end);
        Ok(())
    }

    /// Writes the opener's highest accepted number. On failure the session is dropped, so it
    /// is rebuilt from what is on disk and the unpersisted frame can arrive again.
    fn persist_rx(&mut self) -> Result<(), DeviceError> {
        let (Some(session), Some(binding)) = (&self.session, &mut self.state.binding) else {
            return Ok(());
        };
        let old = binding.rx_highest;
        binding.rx_highest = session.opener.highest_seq();
        if let Err(e) = self.save() {
            if let Some(b) = &mut self.state.binding {
                b.rx_highest = old;
            }
            self.session = None;
            return Err(e);
        }
        Ok(())
    }

    pub(crate) fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    pub(crate) fn relay(&self) -> Option<&Relay> {
        self.state.relay.as_ref()
    }

    /// Remembers the fingerprint seen on the first connection (trust on first use).
    pub(crate) fn pin_relay(&mut self, seen: Fingerprint) -> Result<(), DeviceError> {
        let Some(relay) = &mut self.state.relay else {
            return Ok(());
        };
        if relay.fingerprint.is_some() {
            return Ok(());
        }
        relay.fingerprint = Some(seen);
        if let Err(e) = self.save() {
            if let Some(r) = &mut self.state.relay {
                r.fingerprint = None;
            }
            return Err(e);
        }
        tracing::info!(fingerprint = %seen, "relay certificate pinned on first use");
        Ok(())
    }
}

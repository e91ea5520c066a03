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
    state: State,
    /// Built from the binding on first use, kept across connections.
    session: Option<Session>,
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
        Ok(Device {
            store,
            identity,
            state,
            session: None,
        })
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
            Ok(p) => p,
            Err(e) => return rejected(e.to_string()),
        };
        self.persist_rx()?;
        match bramble_proto::decode_message::<Envelope>(&plaintext, MAX_PLAINTEXT) {
            Ok(env) => Ok(Incoming::Envelope { seq, env }),
            Err(e) => rejected(format!("the message inside is not readable: {e}")),
        }
    }

    /// Writes the state; nothing in memory.
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

    fn save(&self) -> Result<(), DeviceError> {
        self.store.save(self.pin(), &self.state)
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

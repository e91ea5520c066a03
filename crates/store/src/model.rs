//! The values the store hands out and takes in, and the raw rows they are read from.

use std::fmt;
use std::str::FromStr;

use crate::StoreError;

/// Where a user is in Enterprise Activation, with BES's own texts.
///
/// `Display` (and serde) give the texts an administrator knows from BES ("Verifying
/// Encryption"); the database keeps the snake_case name ([`UserStatus::as_db_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserStatus {
    /// Added, with or without an activation password; no device has asked yet.
    Initializing,
    /// A device has sent an activation request for this user.
    Activating,
    /// The server has answered and the key exchange is under way.
    VerifyingEncryption,
    /// Keys agreed; the device waits for IT policy and service books.
    WaitingForServices,
    /// Service books delivered; mail flows; organizer data is still synchronizing.
    ServicesReceived,
    /// Activation finished.
    Completed,
    /// Activation stopped with an error (the reason says which).
    Failed,
}

impl UserStatus {
    /// Every status, in the order activation goes through them.
    pub const ALL: [UserStatus; 7] = [
        UserStatus::Initializing,
        UserStatus::Activating,
        UserStatus::VerifyingEncryption,
        UserStatus::WaitingForServices,
        UserStatus::ServicesReceived,
        UserStatus::Completed,
        UserStatus::Failed,
    ];

    /// BES's text for this status, e.g. "Waiting for Services".
    pub fn as_text(self) -> &'static str {
        match self {
            UserStatus::Initializing => "Initializing",
            UserStatus::Activating => "Activating",
            UserStatus::VerifyingEncryption => "Verifying Encryption",
            UserStatus::WaitingForServices => "Waiting for Services",
            UserStatus::ServicesReceived => "Services Received",
            UserStatus::Completed => "Completed",
            UserStatus::Failed => "Failed",
        }
    }

    /// The snake_case name kept in the database, e.g. "waiting_for_services".
    pub fn as_db_str(self) -> &'static str {
        match self {
            UserStatus::Initializing => "initializing",
            UserStatus::Activating => "activating",
            UserStatus::VerifyingEncryption => "verifying_encryption",
            UserStatus::WaitingForServices => "waiting_for_services",
            UserStatus::ServicesReceived => "services_received",
            UserStatus::Completed => "completed",
            UserStatus::Failed => "failed",
        }
    }

    pub(crate) fn from_db(s: &str) -> Result<UserStatus, StoreError> {
        UserStatus::ALL
            .into_iter()
            .find(|st| st.as_db_str() == s)
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("unknown user status {s:?}"),
            })
    }
}

impl fmt::Display for UserStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_text())
    }
}

/// The text given to [`UserStatus::from_str`] names no status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a user status; use one of Initializing, Activating, Verifying Encryption, \
     Waiting for Services, Services Received, Completed, Failed"
)]
pub struct ParseUserStatusError(pub String);

impl FromStr for UserStatus {
    type Err = ParseUserStatusError;

    /// Accepts BES's texts in any case ("verifying encryption") and the snake_case names
    /// ("verifying_encryption").
    fn from_str(s: &str) -> Result<UserStatus, ParseUserStatusError> {
        let t = s.trim();
        UserStatus::ALL
            .into_iter()
            .find(|st| {
                st.as_text().eq_ignore_ascii_case(t) || st.as_db_str().eq_ignore_ascii_case(t)
            })
            .ok_or_else(|| ParseUserStatusError(s.to_owned()))
    }
}

impl serde::Serialize for UserStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_text())
    }
}

impl<'de> serde::Deserialize<'de> for UserStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A user of the server, as the administrator sees them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// The email address, lower-cased.
    pub email: String,
    /// The name to show, if one was given.
    pub display_name: Option<String>,
    /// Where the user is in activation.
    pub status: UserStatus,
    /// Why the status was last set, if a reason was given.
    pub status_reason: Option<String>,
    /// When the status was last set (unix ms).
    pub status_at_ms: i64,
    /// When the user was added (unix ms).
    pub created_at_ms: i64,
    /// Whether an activation password (its OPAQUE record) is stored for the user. It may have
    /// expired or run out of attempts: see [`Activation`].
    pub has_activation_password: bool,
    /// The stable identifier of the directory entry the user was added from (LDAP), if any.
    pub directory_id: Option<String>,
}

/// One entry of a user's status timeline.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StatusEvent {
    /// The status entered.
    pub status: UserStatus,
    /// Why, if a reason was given.
    pub reason: Option<String>,
    /// When (unix ms).
    pub at_ms: i64,
}

/// A user's pending activation: the OPAQUE registration record of the one-time activation
/// password. The password itself is never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Activation {
    /// The OPAQUE registration record.
    pub record: Vec<u8>,
    /// When the password stops being accepted (unix ms).
    pub expires_at_ms: i64,
    /// Wrong passwords tried so far.
    pub failed_attempts: u32,
    /// Wrong passwords allowed before the password is void.
    pub max_attempts: u32,
    /// When the password was set (unix ms).
    pub created_at_ms: i64,
}

impl fmt::Debug for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activation")
            .field("record", &Redacted(self.record.len()))
            .field("expires_at_ms", &self.expires_at_ms)
            .field("failed_attempts", &self.failed_attempts)
            .field("max_attempts", &self.max_attempts)
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

/// What [`Store::put_device`](crate::Store::put_device) stores for a newly activated device.
#[derive(Clone)]
pub struct NewDevice {
    /// The user the device belongs to.
    pub email: String,
    /// The device's PIN.
    pub pin: u32,
    /// The device's identity public key.
    pub identity_key: Vec<u8>,
    /// The master key agreed at activation.
    pub master_key: Vec<u8>,
}

impl fmt::Debug for NewDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewDevice")
            .field("email", &self.email)
            .field("pin", &PinHex(self.pin))
            .field("identity_key", &Hex(&self.identity_key))
            .field("master_key", &Redacted(self.master_key.len()))
            .finish()
    }
}

/// A user's current device. `Debug` never prints the master key.
#[derive(Clone)]
pub struct Device {
    /// The user the device belongs to (lower-cased).
    pub email: String,
    /// The device's PIN.
    pub pin: u32,
    /// The device's identity public key.
    pub identity_key: Vec<u8>,
    /// The master key shared with the device.
    pub master_key: Vec<u8>,
    /// 1 for the key agreed at the user's first activation; one more on every re-activation
    /// and every key regeneration.
    pub key_generation: u32,
    /// The highest transmit sequence number handed out so far (0: none yet).
    pub tx_seq_reserved: u64,
    /// The highest sequence number received from the device so far (0: none yet).
    pub rx_seq_highest: u64,
    /// When the device was activated (unix ms).
    pub activated_at_ms: i64,
    /// When the device was last heard from (unix ms), if ever.
    pub last_seen_ms: Option<i64>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("email", &self.email)
            .field("pin", &PinHex(self.pin))
            .field("identity_key", &Hex(&self.identity_key))
            .field("master_key", &Redacted(self.master_key.len()))
            .field("key_generation", &self.key_generation)
            .field("tx_seq_reserved", &self.tx_seq_reserved)
            .field("rx_seq_highest", &self.rx_seq_highest)
            .field("activated_at_ms", &self.activated_at_ms)
            .field("last_seen_ms", &self.last_seen_ms)
            .finish()
    }
}

/// The server's own identity at the relay. `Debug` never prints the SRP key.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    /// The SRP identifier the relay addresses this server by.
    pub srp_id: u32,
    /// The SRP authentication key (a secret).
    pub srp_key: String,
    /// Where the relay listens (host:port).
    pub relay_addr: String,
    /// The relay's pinned certificate fingerprint, if pinned.
    pub relay_fingerprint: Option<String>,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("srp_id", &self.srp_id)
            .field("srp_key", &Redacted(self.srp_key.len()))
            .field("relay_addr", &self.relay_addr)
            .field("relay_fingerprint", &self.relay_fingerprint)
            .finish()
    }
}

struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0)
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

struct PinHex(u32);

impl fmt::Debug for PinHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}", self.0)
    }
}

// ---- raw rows, decoded the same way from both backends ----

fn to_u32(what: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        what: format!("{what} = {v}, expected 0..=4294967295"),
    })
}

fn to_u64(what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        what: format!("{what} = {v}, expected a non-negative number"),
    })
}

pub(crate) fn pin_from_db(v: i64) -> Result<u32, StoreError> {
    to_u32("devices.pin", v)
}

crate::row_struct! {
    pub(crate) struct UserRow {
        email: String,
        display_name: Option<String>,
        status: String,
        status_reason: Option<String>,
        status_at: i64,
        created_at: i64,
        has_activation: bool,
        directory_id: Option<String>,
    }
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(r: UserRow) -> Result<User, StoreError> {
        Ok(User {
            status: UserStatus::from_db(&r.status)?,
            email: r.email,
            display_name: r.display_name,
            status_reason: r.status_reason,
            status_at_ms: r.status_at,
            created_at_ms: r.created_at,
            has_activation_password: r.has_activation,
            directory_id: r.directory_id,
        })
    }
}

crate::row_struct! {
    pub(crate) struct StatusRow {
        status: String,
        reason: Option<String>,
        at: i64,
    }
}

impl TryFrom<StatusRow> for StatusEvent {
    type Error = StoreError;

    fn try_from(r: StatusRow) -> Result<StatusEvent, StoreError> {
        Ok(StatusEvent {
            status: UserStatus::from_db(&r.status)?,
            reason: r.reason,
            at_ms: r.at,
        })
    }
}

crate::row_struct! {
    pub(crate) struct ActivationRow {
        record: Vec<u8>,
        expires_at: i64,
        failed_attempts: i64,
        max_attempts: i64,
        created_at: i64,
    }
}

impl TryFrom<ActivationRow> for Activation {
    type Error = StoreError;

    fn try_from(r: ActivationRow) -> Result<Activation, StoreError> {
        Ok(Activation {
            record: r.record,
            expires_at_ms: r.expires_at,
            failed_attempts: to_u32("activation.failed_attempts", r.failed_attempts)?,
            max_attempts: to_u32("activation.max_attempts", r.max_attempts)?,
            created_at_ms: r.created_at,
        })
    }
}

crate::row_struct! {
    pub(crate) struct DeviceRow {
        email: String,
        pin: i64,
        identity_key: Vec<u8>,
        master_key: Vec<u8>,
        key_generation: i64,
        tx_seq_reserved: i64,
        rx_seq_highest: i64,
        activated_at: i64,
        last_seen: Option<i64>,
    }
}

impl TryFrom<DeviceRow> for Device {
    type Error = StoreError;

    fn try_from(r: DeviceRow) -> Result<Device, StoreError> {
        Ok(Device {
            email: r.email,
            pin: pin_from_db(r.pin)?,
            identity_key: r.identity_key,
            master_key: r.master_key,
            key_generation: to_u32("devices.key_generation", r.key_generation)?,
            tx_seq_reserved: to_u64("devices.tx_seq_reserved", r.tx_seq_reserved)?,
            rx_seq_highest: to_u64("devices.rx_seq_highest", r.rx_seq_highest)?,
            activated_at_ms: r.activated_at,
            last_seen_ms: r.last_seen,
        })
    }
}

crate::row_struct! {
    pub(crate) struct ServerIdentityRow {
        srp_id: i64,
        srp_key: String,
        relay_addr: String,
        relay_fingerprint: Option<String>,
    }
}

impl TryFrom<ServerIdentityRow> for ServerIdentity {
    type Error = StoreError;

    fn try_from(r: ServerIdentityRow) -> Result<ServerIdentity, StoreError> {
        Ok(ServerIdentity {
            srp_id: to_u32("server_identity.srp_id", r.srp_id)?,
            srp_key: r.srp_key,
            relay_addr: r.relay_addr,
            relay_fingerprint: r.relay_fingerprint,
        })
    }
}

pub(crate) fn try_collect<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

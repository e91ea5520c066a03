//! What can go wrong on the device, in a phone user's words.

use std::path::PathBuf;
use std::time::Duration;

use bramble_net::link::Refusal;
use bramble_net::{Fingerprint, LinkError, TlsError};

/// Why the device could not do what was asked.
///
/// Every message is a sentence a phone user can act on; [`DeviceError::is_transient`] tells a
/// reconnect loop whether trying again later can help.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A file or folder of the device's home could not be read or written.
    #[error("Could not {action} {path}: {source}")]
    File {
        /// What was being done ("read", "write", "create", …).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state file is not one this device can read.
    #[error(
        "The device's state file {path} is damaged: {reason}. Restore it from a backup, or \
         delete it to set this device up again (relay and activation)."
    )]
    DamagedState {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The identity key file is not an Ed25519 PKCS#8 key.
    #[error(
        "The device's identity key {path} is damaged (not an Ed25519 PKCS#8 key). Restore it \
         from a backup; without it this device cannot prove its PIN."
    )]
    DamagedIdentity {
        /// The key file.
        path: PathBuf,
    },
    /// The state file belongs to another identity key than the one beside it, or the key is
    /// missing while the state is there.
    #[error(
        "The device's identity key {key} does not belong to its state file {state} (which is \
         for PIN {expected}). Restore the original key, or delete the state file to set this \
         device up again as a new device."
    )]
    IdentityMismatch {
        /// The key file.
        key: PathBuf,
        /// The state file.
        state: PathBuf,
        /// The PIN the state file was written for.
        expected: String,
    },
    /// Another program holds this home directory open.
    #[error("Another program is using the device in {home}; close it first.")]
    InUse {
        /// The home directory.
        home: PathBuf,
    },
    /// The relay address is not `host:port`.
    #[error("{0:?} is not a relay address: write it as host:port, such as 127.0.0.1:4101.")]
    BadRelayAddress(String),
    /// No relay address has been set.
    #[error("No relay is set for this device: set the relay's address first.")]
    NoRelay,
    /// The relay could not be reached (no route, refused, timed out, TLS failed).
    #[error(
        "No connection to the relay at {addr}: {reason}. Check the relay address or try again \
         when in coverage."
    )]
    NoConnection {
        /// The relay's address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The relay presented another certificate than the one pinned.
    #[error(
        "The relay's certificate changed (pinned {pinned}, but the relay at {addr} now presents \
         {seen}); if that was intended, pin the new fingerprint by setting the relay again with \
         fingerprint {seen}. Otherwise someone may be intercepting the connection: do not \
         connect."
    )]
    RelayCertificateChanged {
        /// The relay's address.
        addr: String,
        /// The fingerprint the device remembered.
        pinned: Fingerprint,
        /// The fingerprint presented now.
        seen: Fingerprint,
    },
    /// The relay refused the login or ended the connection with a reason.
    #[error("The relay at {addr} refused this device ({reason}): {detail}")]
    RelayRefused {
        /// The relay's address.
        addr: String,
        /// The relay's reason code.
        reason: Refusal,
        /// The relay's sentence.
        detail: String,
    },
    /// The connection was lost or the relay broke the protocol after login.
    #[error(
        "The connection to the relay at {addr} was lost: {reason}. Try again when in coverage."
    )]
    ConnectionLost {
        /// The relay's address.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// Sending needs an enterprise server, and there is none.
    #[error("This device is not activated: there is no enterprise server to send to.")]
    NotActivated,
    /// The message does not fit in one sealed frame.
    #[error("This message is too large to send ({len} bytes; at most {max} fit in one frame).")]
    TooLarge {
        /// Bytes of the encoded message.
        len: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// Every transmit sequence number of this binding has been used.
    #[error(
        "This device has used up its message numbers for this enterprise server; it must be \
         activated again."
    )]
    SequenceExhausted,
    /// Sealing failed inside the cryptography (random source, compressor); not expected.
    #[error("Encrypting the message failed: {0}")]
    Crypto(String),
    /// The enterprise server did not answer a ping in time.
    #[error(
        "No answer from the enterprise server within {0:?}: it may be down or not connected to \
         the relay."
    )]
    NoAnswer(Duration),
    /// The relay would not mail the activation request.
    #[error("The activation request could not be sent: {0}")]
    ActivationMailRefused(String),
    /// Nothing came back from an enterprise server in time.
    #[error(
        "No answer to the activation request for {email} within {waited:?}. Check that the \
         email address is right, that your administrator added you to the server and set an \
         activation password, and that the server can read your mailbox; then try again."
    )]
    ActivationTimeout {
        /// The address typed.
        email: String,
        /// How long the device waited.
        waited: Duration,
    },
    /// The enterprise server stopped the activation, with its reason for the user.
    #[error("{0}")]
    ActivationFailed(String),
    /// The activation password did not verify on the device.
    #[error(
        "The activation password is not correct. Check it with your administrator and try again."
    )]
    WrongPassword,
    /// The IT policy did not verify or came from another domain.
    #[error("The IT policy was refused: {0}")]
    PolicyRefused(String),
    /// The mail store is not a database this build can read, or holds something unreadable.
    #[error("The mail store on this device is damaged: {0}")]
    MailStoreDamaged(String),
    /// The mail store could not be read or written (disk full, permissions, …).
    #[error("The mail store on this device could not be used: {0}")]
    MailStore(String),
    /// No message with this RefID is on the device (never arrived, deleted, or dropped as old).
    #[error("This message is no longer on the device (RefID {0}).")]
    MessageNotFound(u64),
    /// The message has no attachment with this number.
    #[error("Message {ref_id} has no attachment number {index}.")]
    NoSuchAttachment {
        /// The message.
        ref_id: u64,
        /// The number asked for.
        index: u32,
    },
    /// An attachment could not be downloaded or saved.
    #[error("The attachment could not be downloaded: {0}")]
    AttachmentFailed(String),
    /// An attachment is larger than the device keeps.
    #[error("This attachment is too large for the device ({size} bytes; it keeps at most {max}).")]
    AttachmentTooLarge {
        /// Its size, bytes.
        size: u64,
        /// The most the device keeps, bytes.
        max: u64,
    },
    /// The rest of a message's text could not be fetched.
    #[error("The rest of the message could not be fetched: {0}")]
    MoreFailed(String),
    /// A message the user wrote cannot be sent as it is.
    #[error("This message cannot be sent: {0}.")]
    BadDraft(String),
    /// The IT policy does not allow an attachment this large on the device.
    #[error("{}", attachment_forbidden(*size, *max))]
    AttachmentForbidden {
        /// Its size, bytes.
        size: u64,
        /// The most the IT policy allows, bytes.
        max: u64,
    },
    /// The device is locked: only unlocking (and listening) works.
    #[error("This device is locked. Unlock it with `bramble device unlock`.")]
    Locked,
    /// The device password typed is not the device's.
    #[error(
        "That is not the device password. {attempts_left} more wrong {} and the device wipes \
         itself (all its data is erased).",
        if *attempts_left == 1 { "password" } else { "passwords" }
    )]
    WrongDevicePassword {
        /// Wrong passwords still allowed before the device wipes itself.
        attempts_left: u32,
    },
    /// The device wiped itself or was wiped: everything on it is gone.
    #[error(
        "This device was wiped ({0}): its mail, settings and applications are gone and it is \
         back to factory settings. Activate it again to use it."
    )]
    Wiped(String),
    /// The administrator removed the organization's data: the device is no longer activated.
    #[error(
        "Your administrator removed this device from the organization: its mail, IT policy and \
         the organization's applications are gone, and it is no longer activated."
    )]
    OrganizationRemoved,
    /// The password cannot be the device password.
    #[error("That password cannot be used: {0}.")]
    PasswordRefused(String),
    /// Locking needs a password to unlock with.
    #[error("This device has no password: set one first with `bramble device password set`.")]
    NoPassword,
    /// There is no wipe to cancel.
    #[error("No wipe is scheduled on this device.")]
    NoWipeScheduled,
    /// The administrator did not allow this wipe to be cancelled.
    #[error(
        "Your administrator does not allow this wipe to be cancelled: the device will be wiped \
         at {}.",
        crate::manage::time_text(*due_at_ms)
    )]
    WipeNotCancellable {
        /// When the wipe is due (unix ms).
        due_at_ms: i64,
    },
    /// An application cannot be installed.
    #[error("This application cannot be installed: {0}.")]
    AppRefused(String),
    /// An application cannot be removed.
    #[error("This application cannot be removed: {0}.")]
    AppRemoveRefused(String),
    /// The organizer store is not a database this build can read, or holds something
    /// unreadable.
    #[error(
        "The organizer store (calendar, contacts, tasks, memos) on this device is damaged: {0}"
    )]
    OrganizerStoreDamaged(String),
    /// The organizer store could not be read or written.
    #[error("The organizer store on this device could not be used: {0}")]
    OrganizerStore(String),
    /// No such organizer record on the device.
    #[error("There is no {what} {uid:?} on this device.")]
    NoSuchRecord {
        /// "contact", "event", "task" or "memo".
        what: &'static str,
        /// The UID asked for.
        uid: String,
    },
    /// An organizer record cannot be stored as it is.
    #[error("This record cannot be stored: {0}.")]
    RecordRefused(String),
    /// An option cannot be set as given.
    #[error("This option cannot be set: {0}.")]
    OptionRefused(String),
    /// No application of that name is installed.
    #[error("No application called {0:?} is installed on this device.")]
    NoSuchApp(String),
}

fn attachment_forbidden(size: u64, max: u64) -> String {
    if max == 0 {
        return "Your IT policy does not allow attachments to be downloaded to this device."
            .to_owned();
    }
    format!(
        "Your IT policy does not allow attachments larger than {} KB on this device; this one \
         is {} KB.",
        max / 1024,
        size.div_ceil(1024)
    )
}

impl DeviceError {
    /// Whether trying again later, without changing anything, can help (coverage, a relay
    /// restarting, a server that is down).
    pub fn is_transient(&self) -> bool {
        match self {
            DeviceError::NoConnection { .. }
            | DeviceError::ConnectionLost { .. }
            | DeviceError::NoAnswer(_) => true,
            DeviceError::RelayRefused { reason, .. } => {
                matches!(reason, Refusal::Shutdown | Refusal::Protocol)
            }
            _ => false,
        }
    }

    pub(crate) fn file(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> DeviceError {
        let path = path.to_owned();
        move |source| DeviceError::File {
            action,
            path,
            source,
        }
    }

    /// A failed or ended relay link, as the user should read it.
    pub(crate) fn from_link(addr: &str, e: LinkError, connecting: bool) -> DeviceError {
        let addr = addr.to_owned();
        match e {
            LinkError::Tls(TlsError::FingerprintMismatch { seen, pinned, .. }) => {
                DeviceError::RelayCertificateChanged { addr, pinned, seen }
            }
            LinkError::Tls(TlsError::Connect { source, .. }) => DeviceError::NoConnection {
                addr,
                reason: io_reason(&source),
            },
            LinkError::Refused {
                reason: Refusal::Shutdown,
                ..
            } if !connecting => DeviceError::ConnectionLost {
                addr,
                reason: "the relay is shutting down".into(),
            },
            LinkError::Refused { reason, detail } => DeviceError::RelayRefused {
                addr,
                reason,
                detail,
            },
            LinkError::Timeout(t) if connecting => DeviceError::NoConnection {
                addr,
                reason: format!("no answer within {t:?}"),
            },
            LinkError::Io(e) if connecting => DeviceError::NoConnection {
                addr,
                reason: io_reason(&e),
            },
            LinkError::Closed if connecting => DeviceError::NoConnection {
                addr,
                reason: "the relay closed the connection during login".into(),
            },
            other if connecting => DeviceError::NoConnection {
                addr,
                reason: other.to_string(),
            },
            LinkError::Io(e) => DeviceError::ConnectionLost {
                addr,
                reason: io_reason(&e),
            },
            other => DeviceError::ConnectionLost {
                addr,
                reason: other.to_string(),
            },
        }
    }
}

/// The short words for common network failures ("connection refused"), the full error
/// otherwise.
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::TimedOut
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::AddrNotAvailable
        | K::NotConnected
        | K::BrokenPipe
        | K::UnexpectedEof => e.kind().to_string(),
        _ => e.to_string(),
    }
}

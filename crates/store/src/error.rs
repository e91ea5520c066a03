//! The store's one error type.

/// Why a call to the configuration database failed, in words an administrator can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL has a form the store does not accept.
    #[error(
        "the database URL {url:?} is not one Bramble accepts ({reason}); use postgres://…, \
         postgresql://…, sqlite://PATH, sqlite:PATH or a plain file path"
    )]
    InvalidUrl {
        /// The URL as given, with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The database could not be reached or opened.
    #[error(
        "the database at {url} could not be opened: {source}; check the URL and that the \
         server is running"
    )]
    Open {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// What the driver reported.
        #[source]
        source: sqlx::Error,
    },

    /// The database was opened, but bringing its schema up to date failed.
    #[error(
        "the database at {url} could not be brought up to date: {source}; if it was written \
         by a newer Bramble, use that version"
    )]
    Migrate {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// What the migrator reported.
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// The email address is not one the store accepts.
    #[error("{email:?} is not a valid email address: {reason}")]
    InvalidEmail {
        /// The address as given.
        email: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A user with this email address already exists.
    #[error("a user with address {email} already exists")]
    UserExists {
        /// The (lower-cased) address.
        email: String,
    },

    /// Another user was already added from this directory entry.
    #[error("the directory entry {directory_id} is already the user {email}")]
    DirectoryIdInUse {
        /// The entry's identifier.
        directory_id: String,
        /// The user it belongs to.
        email: String,
    },

    /// No user has this email address.
    #[error("no user with address {email}")]
    NoSuchUser {
        /// The (lower-cased) address.
        email: String,
    },

    /// The user exists but has no activation password set.
    #[error("no activation password is set for {email}")]
    NoActivation {
        /// The (lower-cased) address.
        email: String,
    },

    /// No device has this PIN.
    #[error("no device with PIN {pin:08X}")]
    NoSuchDevice {
        /// The PIN (shown as eight hex digits, as on the device's status screen).
        pin: u32,
    },

    /// The PIN already belongs to the device of another user.
    #[error("PIN {pin:08X} already belongs to the device of {email}")]
    PinInUse {
        /// The PIN.
        pin: u32,
        /// The user whose device holds it.
        email: String,
    },

    /// A device has used up every transmit sequence number the database can hold.
    #[error("the device with PIN {pin:08X} has no transmit sequence numbers left; re-activate it")]
    SequenceExhausted {
        /// The PIN.
        pin: u32,
    },

    /// A push-mail filter's name, pattern, importance or position is not one the store keeps.
    #[error("the filter cannot be saved: {reason}")]
    InvalidFilter {
        /// What is wrong, and what is allowed.
        reason: String,
    },

    /// The scope already has a filter of this name (names are compared in any case).
    #[error("{scope} already have one named {name:?}; choose another name")]
    FilterExists {
        /// The name asked for.
        name: String,
        /// The scope in words: "the global filters", "the filters of alice@example.com".
        scope: String,
    },

    /// No push-mail filter has this id.
    #[error("no filter with id {id}")]
    NoSuchFilter {
        /// The id asked for.
        id: i64,
    },

    /// No forwarded message has this RefID (or it is another user's).
    #[error("no forwarded message has RefID {ref_id}")]
    NoSuchMailItem {
        /// The RefID asked for.
        ref_id: i64,
    },

    /// A forwarded message cannot be moved to a mailbox position another one already holds.
    #[error(
        "cannot move message RefID {ref_id} to {source_key} in folder {folder:?}: message RefID \
         {existing} is already recorded there; forget one of the two first"
    )]
    MailItemExists {
        /// The message being moved.
        ref_id: i64,
        /// The folder it was to go to.
        folder: String,
        /// The source key it was to get.
        source_key: String,
        /// The message that already has that folder and source key.
        existing: i64,
    },

    /// An outbox row was to be put in a state the outbox does not have.
    #[error("{state:?} is not an outbox state; use queued, sending, sent or failed")]
    InvalidOutboxState {
        /// The state asked for.
        state: String,
    },

    /// A number is larger than the database can hold (it keeps 64-bit signed integers).
    #[error("{what} {value} is too large for the database (at most 9223372036854775807)")]
    OutOfRange {
        /// What the number is, e.g. "sequence number".
        what: &'static str,
        /// The number.
        value: u64,
    },

    /// No group has this name.
    #[error("no group named {name:?}; `bramble admin group list` shows the groups")]
    NoSuchGroup {
        /// The name as given.
        name: String,
    },

    /// A group with this name (in any case) exists.
    #[error("a group named {name:?} already exists")]
    GroupExists {
        /// The name as given.
        name: String,
    },

    /// No IT policy has this name.
    #[error("no IT policy named {name:?}; `bramble admin policy list` shows the policies")]
    NoSuchPolicy {
        /// The name as given.
        name: String,
    },

    /// An IT policy with this name (in any case) exists.
    #[error("an IT policy named {name:?} already exists")]
    PolicyExists {
        /// The name as given.
        name: String,
    },

    /// No IT admin command has this number.
    #[error("no IT admin command {id}; `bramble admin command list` shows the commands")]
    NoSuchCommand {
        /// Its number.
        id: i64,
    },

    /// The application repository holds no such package.
    #[error(
        "the application repository has no package {name} {version}; upload it first (the console's Software page, or `bramble admin software upload`)"
    )]
    NoSuchPackage {
        /// The application.
        name: String,
        /// The version.
        version: String,
    },

    /// This version of this application is in the repository already.
    #[error("the application repository already holds {name} {version}")]
    PackageExists {
        /// The application.
        name: String,
        /// The version.
        version: String,
    },

    /// No software configuration has this name.
    #[error(
        "no software configuration named {name:?}; `bramble admin software config list`          shows them"
    )]
    NoSuchSoftwareConfig {
        /// The name as given.
        name: String,
    },

    /// A software configuration with this name (in any case) exists.
    #[error("a software configuration named {name:?} already exists")]
    SoftwareConfigExists {
        /// The name as given.
        name: String,
    },

    /// No administrator role by that name.
    #[error("no role named {name:?}; `bramble admin role list` shows the roles")]
    NoSuchRole {
        /// The name as given.
        name: String,
    },

    /// A role by that name exists already.
    #[error("a role named {name:?} already exists")]
    RoleExists {
        /// The name as given.
        name: String,
    },

    /// The presets are the server's: they are neither edited nor deleted.
    #[error(
        "{name:?} is a preset role, which cannot be changed or deleted; make a custom role instead"
    )]
    PresetRole {
        /// The preset's name.
        name: String,
    },

    /// No administrator account by that name.
    #[error("no administrator account named {name:?}; `bramble admin account list` shows them")]
    NoSuchAccount {
        /// The name as given.
        name: String,
    },

    /// An administrator account by that name exists already.
    #[error("an administrator account named {name:?} already exists")]
    AccountExists {
        /// The name as given.
        name: String,
    },

    /// No API token with that number.
    #[error("no API token {id}; `bramble admin token list` shows them")]
    NoSuchToken {
        /// The number given.
        id: i64,
    },

    /// A name (of a group, policy, configuration, application, version) the store does not
    /// accept.
    #[error("{name:?} cannot be the name of {what}: {reason}")]
    InvalidName {
        /// What it was to name ("a group", …).
        what: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A state or a disposition this store does not know.
    #[error("{value:?} is not a {what}; use one of {allowed}")]
    InvalidValue {
        /// What it was meant to be ("command state", …).
        what: &'static str,
        /// The value given.
        value: String,
        /// The values allowed, listed.
        allowed: String,
    },

    /// The database holds a value this version of Bramble did not write and cannot read.
    #[error(
        "the database holds a value Bramble cannot read ({what}); was it edited by hand or \
         written by a newer version?"
    )]
    Corrupt {
        /// Which value, and what it is.
        what: String,
    },

    /// Any other failure of the database or of the connection to it.
    #[error("the configuration database failed: {0}")]
    Database(#[from] sqlx::Error),
}

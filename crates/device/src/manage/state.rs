//! What the policy service keeps in the device's state file (`state.json`, section `manage`):
//! written atomically with the rest of the state before anything is answered.

use serde::{Deserialize, Serialize};

/// How many IT admin commands' results are remembered (to answer a repeat with the result
/// given); the oldest are forgotten first.
pub(crate) const MAX_RESULTS: usize = 256;
/// How many replies may wait to be sent; the oldest are dropped first.
pub(crate) const MAX_QUEUE: usize = 64;

/// The policy service's part of the device state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ManageState {
    /// The device password, when one is set.
    #[serde(default)]
    pub(crate) password: Option<PasswordRecord>,
    /// Whether the device is locked (asks for its password before anything else).
    #[serde(default)]
    pub(crate) locked: bool,
    /// Wrong passwords typed in a row.
    #[serde(default)]
    pub(crate) failed_attempts: u32,
    /// Why it was locked, for the lock screen ("by your administrator").
    #[serde(default)]
    pub(crate) locked_by_admin: bool,
    /// IT admin commands answered, oldest first.
    #[serde(default)]
    pub(crate) results: Vec<CommandRecord>,
    /// A wipe to carry out later.
    #[serde(default)]
    pub(crate) scheduled_wipe: Option<ScheduledWipe>,
    /// The next master key, agreed and not yet in use.
    #[serde(default)]
    pub(crate) pending_key: Option<PendingKey>,
    /// The compliance problems last reported to the server for the policy in force.
    #[serde(default)]
    pub(crate) reported_problems: Option<Vec<String>>,
    /// Installed applications.
    #[serde(default)]
    pub(crate) apps: Vec<InstalledApp>,
    /// The software configuration job in force (and its report, once made).
    #[serde(default)]
    pub(crate) software: Option<SoftwareJob>,
    /// Envelopes to send to the server (encoded, hex), oldest first: answers and reports made
    /// while not connected, or not yet sent.
    #[serde(default)]
    pub(crate) outbox: Vec<String>,
}

/// The device password: an Argon2id hash, and what the compliance check needs to know of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PasswordRecord {
    /// PHC string.
    pub hash: String,
    /// Characters.
    pub length: u32,
    pub letters: bool,
    pub digits: bool,
    pub symbols: bool,
}

/// An IT admin command carried out (or scheduled), and what it was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CommandRecord {
    pub command_id: u64,
    /// "pending", "done", "failed", "cancelled".
    pub state: String,
    pub detail: String,
    #[serde(default)]
    pub due_at_ms: i64,
    /// Hex; a key regeneration's answer.
    #[serde(default)]
    pub device_public: String,
    /// Hex; the server key a key regeneration answered (a new one is a new exchange).
    #[serde(default)]
    pub server_public: String,
}

/// A wipe the administrator asked for, to be carried out at `due_at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledWipe {
    /// The command that asked for it.
    pub command_id: u64,
    /// When (unix ms).
    pub due_at_ms: i64,
    /// Whether the phone user may cancel it.
    pub may_cancel: bool,
}

/// The next master key, made by a key regeneration and not yet used by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingKey {
    pub command_id: u64,
    pub key_generation: u32,
    /// Hex, 32 bytes.
    pub master_key: String,
}

/// Where an application came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppSource {
    /// Installed by a software configuration.
    Organization,
    /// Installed by the phone user.
    User,
}

impl std::fmt::Display for AppSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AppSource::Organization => "organization",
            AppSource::User => "user",
        })
    }
}

/// An application installed on the device; its package is `HOME/apps/<file>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledApp {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of its package, hex.
    pub sha256: String,
    /// Bytes of its package.
    pub size: u64,
    /// Who installed it.
    pub source: AppSource,
    /// When (unix ms).
    #[serde(default)]
    pub installed_at_ms: i64,
}

/// One rule of a software configuration, as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RuleRecord {
    pub name: String,
    pub version: String,
    /// "required", "optional", "not permitted", "unspecified".
    pub disposition: String,
    pub size: u64,
    /// Hex.
    pub sha256: String,
}

/// What became of one application in a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ResultRecord {
    pub name: String,
    pub version: String,
    /// "installed", "present", "removed", "available", "failed".
    pub state: String,
    pub detail: String,
}

/// A software configuration job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SoftwareJob {
    pub job_id: u64,
    pub name: String,
    pub allow_unlisted: bool,
    pub rules: Vec<RuleRecord>,
    /// Settled applications.
    pub results: Vec<ResultRecord>,
    /// Required applications still to fetch (name, version), the first being fetched.
    pub to_fetch: Vec<(String, String)>,
    /// The report, once every application is settled (encoded SoftwareReport, hex).
    #[serde(default)]
    pub report: Option<String>,
}

impl ManageState {
    /// The result given to `command_id`, if it was answered.
    pub(crate) fn result(&self, command_id: u64) -> Option<&CommandRecord> {
        self.results
            .iter()
            .rev()
            .find(|r| r.command_id == command_id)
    }

    /// Records (or replaces) the result of a command, forgetting the oldest beyond the limit.
    pub(crate) fn record(&mut self, rec: CommandRecord) {
        self.results.retain(|r| r.command_id != rec.command_id);
        self.results.push(rec);
        if self.results.len() > MAX_RESULTS {
            let extra = self.results.len() - MAX_RESULTS;
            self.results.drain(..extra);
        }
    }

    /// Queues an envelope to send, dropping the oldest beyond the limit.
    pub(crate) fn queue(&mut self, env: &bramble_proto::schema::Envelope) {
        self.queue_encoded(hex::encode(prost::Message::encode_to_vec(env)));
    }

    /// Queues an envelope already encoded (hex).
    pub(crate) fn queue_encoded(&mut self, hex_env: String) {
        self.outbox.push(hex_env);
        if self.outbox.len() > MAX_QUEUE {
            let extra = self.outbox.len() - MAX_QUEUE;
            self.outbox.drain(..extra);
        }
    }
}

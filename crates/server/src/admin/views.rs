//! The JSON shapes of the policy service's part of the API (IT policies, groups, IT admin
//! commands, software configurations): what the server answers and what it takes, shared with
//! `bramble admin` so both sides agree on them.
//!
//! Owns: those shapes. Must not touch: the database, the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /api/v1/policy-rules`: one rule of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleView {
    /// Its name, e.g. `password_min_length`.
    pub name: String,
    /// "on or off", "a number from 4 to 14", "one of: none, letters and digits, …".
    pub takes: String,
    /// The default, as text.
    pub default: String,
    /// What it does.
    pub description: String,
}

/// `GET /api/v1/policy-presets`: one of BES 5's preset policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PresetView {
    /// "Basic Password Security", …
    pub name: String,
    /// What it is for.
    pub description: String,
    /// The rules it sets away from their defaults, as text.
    pub overrides: BTreeMap<String, String>,
}

/// One rule of a policy, with its value as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyRuleView {
    /// The rule's name.
    pub name: String,
    /// Its value as text ("true", "6", "letters and digits").
    pub value: String,
    /// Whether the value is the catalogue's default.
    pub is_default: bool,
}

/// One version of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyVersionView {
    /// 1, 2, …
    pub version: u32,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// Who made it.
    pub created_by: Option<String>,
    /// Why, as they said.
    pub note: Option<String>,
}

/// A policy: `GET /api/v1/policies` (without `rules` and `versions`) and
/// `GET /api/v1/policies/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyView {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// The current version.
    pub version: u32,
    /// When the last version was made (RFC 3339).
    pub updated_at: String,
    /// The current version's rules, in catalogue order.
    #[serde(default)]
    pub rules: Vec<PolicyRuleView>,
    /// Every version, oldest first.
    #[serde(default)]
    pub versions: Vec<PolicyVersionView>,
    /// Users it is assigned to directly.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups it is assigned to.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `POST /api/v1/policies`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewPolicy {
    /// Its name (not one of the presets' names, which exist already).
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Start from this preset or existing policy (default: the catalogue's defaults).
    #[serde(default)]
    pub from: Option<String>,
    /// Rules to set, as text (`"password_min_length": "8"`).
    #[serde(default)]
    pub rules: BTreeMap<String, String>,
}

/// `PATCH /api/v1/policies/{name}`: makes a new version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyEdit {
    /// Rules to set, as text.
    #[serde(default)]
    pub rules: BTreeMap<String, String>,
    /// Rules to put back to their defaults.
    #[serde(default)]
    pub reset: Vec<String>,
    /// Why (kept with the version).
    #[serde(default)]
    pub note: Option<String>,
    /// A new description (no new version when only this changes).
    #[serde(default)]
    pub description: Option<String>,
}

/// One difference between two versions of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleChangeView {
    /// The rule.
    pub rule: String,
    /// Its value in the first version (none: not there).
    pub from: Option<String>,
    /// Its value in the second version (none: not there).
    pub to: Option<String>,
    /// The change in a sentence.
    pub text: String,
}

/// `GET /api/v1/policies/{name}/diff?from=V1&to=V2`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyDiffView {
    /// The policy.
    pub name: String,
    /// The first version.
    pub from: u32,
    /// The second version.
    pub to: u32,
    /// What changed, in catalogue order.
    pub changes: Vec<RuleChangeView>,
}

/// `PUT /api/v1/users/{email}/policy`, `PUT /api/v1/groups/{name}/policy`: `null` removes the
/// assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyAssignment {
    /// The policy's name, or none.
    pub policy: Option<String>,
}

/// One assignment considered when resolving a user's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TraceStep {
    /// "user", "group Sales", or "default".
    pub source: String,
    /// The policy assigned there.
    pub policy: String,
    /// Whether this is the one in force.
    pub won: bool,
    /// Why it won or lost, in a sentence.
    pub why: String,
}

/// What a user's device was sent and answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DevicePolicyView {
    /// The device's PIN.
    pub pin: String,
    /// The policy sent.
    pub policy: String,
    /// Its version.
    pub version: u32,
    /// When it was last sent (RFC 3339).
    pub sent_at: String,
    /// How many times it was sent.
    pub send_count: u32,
    /// Whether the device applied it.
    pub applied: bool,
    /// When (RFC 3339).
    pub applied_at: Option<String>,
    /// Whether the device said it complies (applied and no problems).
    pub compliant: bool,
    /// What the device said it does not comply with.
    pub problems: Vec<String>,
}

/// The `policy` member of `GET /api/v1/users/{email}`: the policy in force and how it was
/// chosen (user over group over Default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserPolicyView {
    /// The policy in force.
    pub policy: String,
    /// Its current version.
    pub version: u32,
    /// Where it came from: "user", "group Sales", "default".
    pub source: String,
    /// Every assignment considered, the winner marked.
    pub trace: Vec<TraceStep>,
    /// The device's side, when the user has a device.
    pub device: Option<DevicePolicyView>,
}

/// `GET/POST /api/v1/groups`, `GET /api/v1/groups/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupView {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its members' addresses.
    pub members: Vec<String>,
    /// The IT policy assigned to it.
    pub policy: Option<String>,
    /// The software configuration assigned to it.
    pub software: Option<String>,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

/// `POST /api/v1/groups`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewGroup {
    /// Its name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
}

/// The IT admin commands, by the name the API and the CLI use.
pub const COMMAND_KINDS: [&str; 6] = [
    "lock",
    "wipe",
    "remove-org-data",
    "regenerate-key",
    "resend-policy",
    "resend-service-books",
];

/// `POST /api/v1/users/{email}/commands`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewCommand {
    /// One of [`COMMAND_KINDS`].
    pub command: String,
    /// lock: the new device password (none: lock with the password the device has).
    #[serde(default)]
    pub new_password: Option<String>,
    /// wipe: hours to wait first.
    #[serde(default)]
    pub delay_hours: Option<u32>,
    /// wipe: whether the phone user may cancel a delayed wipe.
    #[serde(default)]
    pub user_may_cancel: Option<bool>,
}

/// One state a command went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandEventView {
    /// queued, sent, pending, done, failed, cancelled.
    pub state: String,
    /// When (RFC 3339).
    pub at: String,
    /// What was said.
    pub detail: Option<String>,
}

/// A command and its receipt: `GET /api/v1/commands`, `GET /api/v1/commands/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandView {
    /// Its number.
    pub id: i64,
    /// The user.
    pub user: String,
    /// The device's PIN.
    pub pin: Option<String>,
    /// One of [`COMMAND_KINDS`].
    pub command: String,
    /// Its parameters in words ("delay 24 h, the user may cancel"; a password is never shown).
    pub parameters: String,
    /// queued, sent, pending, done, failed, cancelled.
    pub state: String,
    /// What the device or the server said last.
    pub detail: Option<String>,
    /// When it was given (RFC 3339).
    pub created_at: String,
    /// Who gave it.
    pub created_by: Option<String>,
    /// When its state last changed (RFC 3339).
    pub updated_at: String,
    /// How many times it was sent.
    pub attempts: u32,
    /// Every state, oldest first.
    pub history: Vec<CommandEventView>,
}

/// A package in the application repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackageView {
    /// The application's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// When it was uploaded (RFC 3339).
    pub uploaded_at: String,
}

/// One application line of a software configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigAppView {
    /// The application.
    pub name: String,
    /// Its version (none for not-permitted).
    pub version: Option<String>,
    /// required, optional, not-permitted.
    pub disposition: String,
}

/// A software configuration: `GET /api/v1/software/configs[/{name}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SoftwareConfigView {
    /// Its name.
    pub name: String,
    /// Whether applications it does not list may stay on the device.
    pub allow_unlisted: bool,
    /// Its applications.
    pub apps: Vec<ConfigAppView>,
    /// Users it is assigned to directly.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups it is assigned to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// `POST /api/v1/software/configs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewSoftwareConfig {
    /// Its name.
    pub name: String,
    /// Whether applications it does not list may stay on the device (default no).
    #[serde(default)]
    pub allow_unlisted: bool,
}

/// `PATCH /api/v1/software/configs/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SoftwareConfigEdit {
    /// Whether unlisted applications may stay.
    #[serde(default)]
    pub allow_unlisted: Option<bool>,
}

/// `PUT /api/v1/software/configs/{name}/apps/{app}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigAppEdit {
    /// The version (a package in the repository; not needed for not-permitted).
    #[serde(default)]
    pub version: Option<String>,
    /// required, optional, not-permitted.
    pub disposition: String,
}

/// `PUT /api/v1/users/{email}/software`, `PUT /api/v1/groups/{name}/software`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SoftwareAssignment {
    /// The configuration's name, or none.
    pub config: Option<String>,
}

/// What a deployment job did to one application on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobAppView {
    /// The application.
    pub name: String,
    /// Its version.
    pub version: String,
    /// installed, present, removed, available, failed.
    pub state: String,
    /// Why, when it failed.
    pub detail: Option<String>,
}

/// A deployment job: `GET /api/v1/software/jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    /// Its number.
    pub id: i64,
    /// The user.
    pub user: String,
    /// The device's PIN.
    pub pin: String,
    /// The configuration deployed.
    pub config: String,
    /// queued, sent, done, failed, superseded.
    pub state: String,
    /// What was said last.
    pub detail: Option<String>,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When its state last changed (RFC 3339).
    pub updated_at: String,
    /// What the device did, per application (once it reported).
    pub apps: Vec<JobAppView>,
    /// What the device has installed after the job, "name version".
    pub installed: Vec<String>,
}

/// The `software` member of `GET /api/v1/users/{email}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserSoftwareView {
    /// The configuration in force.
    pub config: String,
    /// Where it came from: "user" or "group Sales".
    pub source: String,
    /// The newest deployment job to the user's device.
    pub job: Option<JobView>,
}

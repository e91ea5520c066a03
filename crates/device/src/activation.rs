//! Enterprise Activation, device side (seeds 000-002): the user types an email address and
//! the activation password; the device sends its request (ETP.DAT) through the relay to the
//! user's mailbox, proves the password to the enterprise server with OPAQUE (the password
//! never leaves the device), derives the master key, confirms it, applies the domain-signed
//! IT policy (pinning the domain's key), installs the service books, asks for the
//! synchronization configuration and, when it is on, runs the slow synchronization of the
//! organizer databases (merging with the server's or, as the user chose, overwriting the
//! device's), takes a backup to restore, and is done. Each stage
//! is reported with the status text a BlackBerry showed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bramble_proto::activation::{self as act, verify_policy};
use bramble_proto::pake;
use bramble_proto::schema::{self, activation::Msg as Act, envelope::Body, policy_rule::Value};
use serde::{Deserialize, Serialize};

use crate::{Device, DeviceError, Incoming};

/// How long a device waits for its server by default, at each stage.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// What activation left on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The address this device is enabled for.
    pub email: String,
    /// The domain's policy-signing key, pinned at activation (hex).
    pub domain_key: String,
    /// The IT policy in force.
    pub policy: Option<AppliedPolicy>,
    /// Installed service books: content id and name.
    pub service_books: Vec<(String, String)>,
    /// When activation completed (unix ms), if it did.
    pub activated_at_ms: Option<i64>,
}

/// An IT policy as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPolicy {
    /// Its name ("Default", …).
    pub name: String,
    /// Its version.
    pub version: u64,
    /// Rules as text.
    pub rules: BTreeMap<String, String>,
    /// SHA-256 of the signed policy bytes (hex): what `PolicyApplied` names it by.
    #[serde(default)]
    pub hash: String,
}

/// A stage of activation, shown with BES's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// The request was handed to the relay for mailing.
    Activating,
    /// The server answered; the password exchange is under way.
    VerifyingEncryption,
    /// Both sides proved they hold the master key.
    EncryptionVerified,
    /// The IT policy is applied and the service books are installed.
    ServicesReceived {
        /// The address now enabled.
        email: String,
    },
    /// The slow synchronization: the device's records of a database are on their way.
    SlowSync {
        /// The database.
        database: bramble_organizer::Database,
        /// How many records the device sent of it.
        records: usize,
    },
    /// The slow synchronization is complete.
    SlowSyncDone,
    /// Done.
    Complete,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Activating => f.write_str("Activating"),
            Stage::VerifyingEncryption => f.write_str("Verifying Encryption"),
            Stage::EncryptionVerified => f.write_str("Encryption Verified. Waiting for Services."),
            Stage::ServicesReceived { email } => {
                write!(
                    f,
                    "Services Received. Your email address, {email} is now enabled."
                )
            }
            Stage::SlowSync { database, records } => write!(
                f,
                "Slow synchronization: {} ({records} record{} sent)",
                database.title(),
                if *records == 1 { "" } else { "s" }
            ),
            Stage::SlowSyncDone => f.write_str("Slow synchronization complete"),
            Stage::Complete => f.write_str("Activation Complete"),
        }
    }
}

/// Options of [`Device::activate`].
#[derive(Debug, Clone)]
pub struct ActivateOptions {
    /// How long to wait for the server at each stage.
    pub timeout: Duration,
    /// What the device says about itself.
    pub facts: schema::DeviceFacts,
    /// What becomes of the organizer records already on the device in the slow
    /// synchronization.
    pub organizer: OrganizerData,
}

/// The phone user's choice for the organizer records already on the device when it is
/// activated with wireless synchronization on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrganizerData {
    /// Keep them and merge them with the server's (sent in the slow synchronization).
    #[default]
    Merge,
    /// Drop them and take the server's instead.
    Overwrite,
}

impl Default for ActivateOptions {
    fn default() -> Self {
        ActivateOptions {
            timeout: DEFAULT_TIMEOUT,
            facts: schema::DeviceFacts {
                model: "Bramble simulated device".into(),
                os: std::env::consts::OS.into(),
                agent: format!("bramble-device/{}", env!("CARGO_PKG_VERSION")),
            },
            organizer: OrganizerData::Merge,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn rule_text(v: &Option<Value>) -> String {
    match v {
        Some(Value::Flag(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Text(t)) => t.clone(),
        None => String::new(),
    }
}

impl Device {
    /// Installs what a completed Enterprise Activation leaves (the address, the pinned domain
    /// key, the IT policy and the service books) without running it: for tests and tools
    /// that play the server's side themselves, as [`Device::provision`] is for the key. The
    /// policy is applied as one sent later would be (what it forbids goes, compliance is
    /// worked out and recorded as reported).
    ///
    /// # Errors
    /// When the state cannot be written.
    pub fn install_profile(&mut self, profile: Profile) -> Result<(), DeviceError> {
        self.set_profile(Some(profile))?;
        let mut events = Vec::new();
        self.enforce_policy(&mut events)?;
        Ok(())
    }

    /// Activates this device for `email` with the one-time `password`, calling `progress` at
    /// each stage. The relay must be set ([`Device::set_relay`]).
    ///
    /// # Errors
    /// [`DeviceError::WrongPassword`], [`DeviceError::ActivationFailed`] (the server's reason),
    /// [`DeviceError::ActivationTimeout`], [`DeviceError::PolicyRefused`], or a connection
    /// failure.
    pub async fn activate(
        &mut self,
        email: &str,
        password: &str,
        opts: &ActivateOptions,
        mut progress: impl FnMut(&Stage),
    ) -> Result<(), DeviceError> {
        let email = email.trim().to_owned();
        let pw = password.as_bytes();
        let pin = self.pin();
        let identity_key = self.identity_public_key();
        let (client_state, ke1) =
            pake::client_start(pw).map_err(|e| DeviceError::Crypto(e.to_string()))?;
        let etp = act::build_etp_dat(self.identity(), &email, &ke1, opts.facts.clone(), now_ms())
            .map_err(|e| DeviceError::Crypto(e.to_string()))?;
        let request_hash = act::sha256(&etp);

        let mut conn = self.connect().await?;
        conn.send_activation_mail(&email, etp).await?;
        progress(&Stage::Activating);

        let timeout = |email: &str| DeviceError::ActivationTimeout {
            email: email.to_owned(),
            waited: opts.timeout,
        };
        // 1. The server's answer to the request: OPAQUE KE2.
        let (server, challenge) = loop {
            let item = tokio::time::timeout(opts.timeout, conn.recv())
                .await
                .map_err(|_| timeout(&email))??;
            match item {
                Incoming::Activation {
                    from,
                    msg: Act::Challenge(c),
                } if c.request_hash.as_ref() == request_hash => {
                    break (from, c);
                }
                Incoming::Activation {
                    msg: Act::Error(e), ..
                } if e.request_hash.is_empty() || e.request_hash.as_ref() == request_hash => {
                    return Err(DeviceError::ActivationFailed(e.message));
                }
                other => tracing::debug!(?other, "ignored while waiting for the activation answer"),
            }
        };
        progress(&Stage::VerifyingEncryption);
        // Argon2id stretches the password here (tens of milliseconds of one core): off the
        // async threads, so a program running many devices keeps its connections moving.
        let finished = {
            let (state, pw, ke2) = (client_state, pw.to_vec(), challenge.ke2.to_vec());
            tokio::task::spawn_blocking(move || pake::client_finish(&state, &pw, &ke2))
                .await
                .map_err(|_| {
                    DeviceError::ActivationFailed("the password exchange task failed".into())
                })?
        };
        let (ke3, session_key) = match finished {
            Ok(v) => v,
            Err(pake::PakeError::WrongPassword) => {
                let rejected = schema::ActivationProof {
                    ke3: Default::default(),
                    request_hash: request_hash.to_vec().into(),
                    password_rejected: true,
                };
                let _ = conn.send_activation(server, Act::Proof(rejected)).await;
                conn.close().await;
                return Err(DeviceError::WrongPassword);
            }
            Err(e) => {
                return Err(DeviceError::ActivationFailed(format!(
                    "The server's answer could not be used: {e}"
                )));
            }
        };
        let master = act::master_key(&session_key, pin, &identity_key);
        conn.device_mut().provision(server, master)?;
        conn.send_activation(
            server,
            Act::Proof(schema::ActivationProof {
                ke3: ke3.into(),
                request_hash: request_hash.to_vec().into(),
                password_rejected: false,
            }),
        )
        .await?;

        // 2. Sealed from here on.
        let done = sealed_stages(&mut conn, &email, &request_hash, opts, &mut progress).await;
        conn.close().await;
        done
    }
}

/// The sealed half of Enterprise Activation, on a connection of a device already bound to
/// its server (as [`Device::activate`] leaves it after the key exchange, or as
/// [`Device::provision`] does for a test playing the server): key confirmation, the IT
/// policy, the service books, then the synchronization service (the configuration, the slow
/// synchronization, a backup to restore), until `ActivationComplete`. Each stage is reported
/// to `progress`; the connection stays open.
///
/// # Errors
/// [`DeviceError::ActivationFailed`], [`DeviceError::ActivationTimeout`],
/// [`DeviceError::PolicyRefused`], or a connection or store failure.
pub async fn complete_activation(
    conn: &mut crate::Connection<'_>,
    email: &str,
    opts: &ActivateOptions,
    mut progress: impl FnMut(&Stage),
) -> Result<(), DeviceError> {
    sealed_stages(conn, email, &[], opts, &mut progress).await
}

async fn sealed_stages(
    conn: &mut crate::Connection<'_>,
    email: &str,
    request_hash: &[u8],
    opts: &ActivateOptions,
    progress: &mut impl FnMut(&Stage),
) -> Result<(), DeviceError> {
    let email = email.to_owned();
    let timeout = |email: &str| DeviceError::ActivationTimeout {
        email: email.to_owned(),
        waited: opts.timeout,
    };
    // 2. Sealed from here on: key confirmation, IT policy, service books, then the
    // synchronization service (configuration, slow synchronization, a backup to restore).
    let organizer = conn.device().organizer().await?;
    let mut asked_sync_config = false;
    let mut profile = Profile {
        email: email.clone(),
        domain_key: String::new(),
        policy: None,
        service_books: Vec::new(),
        activated_at_ms: None,
    };
    loop {
        let item = tokio::time::timeout(opts.timeout, conn.recv())
            .await
            .map_err(|_| timeout(&email))??;
        let (seq, env) = match item {
            Incoming::Envelope { seq, env } => (seq, env),
            Incoming::Activation {
                msg: Act::Error(e), ..
            } if e.request_hash.is_empty() || e.request_hash.as_ref() == request_hash => {
                return Err(DeviceError::ActivationFailed(e.message));
            }
            Incoming::Rejected { reason, .. } => {
                tracing::warn!("a frame during activation was refused: {reason}");
                continue;
            }
            Incoming::Activation { .. } => continue,
        };
        let answer = match env.body {
            Some(Body::KeyConfirmation(k)) => {
                progress(&Stage::EncryptionVerified);
                Some(Body::KeyConfirmation(k))
            }
            Some(Body::ItPolicy(signed)) => {
                let (policy, hash) = verify_policy(&signed, None)
                    .map_err(|e| DeviceError::PolicyRefused(e.to_string()))?;
                profile.domain_key = hex::encode(&signed.domain_key);
                profile.policy = Some(AppliedPolicy {
                    name: policy.name.clone(),
                    version: policy.version,
                    rules: policy
                        .rules
                        .iter()
                        .map(|r| (r.name.clone(), rule_text(&r.value)))
                        .collect(),
                    hash: hex::encode(hash),
                });
                conn.device_mut().set_profile(Some(profile.clone()))?;
                // Applied as a policy update is: what it forbids goes, and what keeps the
                // device from complying is reported (and again whenever that changes).
                let mut events = Vec::new();
                let problems = conn.device_mut().enforce_policy(&mut events)?;
                for e in &events {
                    tracing::info!("{e}");
                }
                Some(Body::PolicyApplied(schema::PolicyApplied {
                    policy_hash: hash.to_vec().into(),
                    version: policy.version,
                    applied: true,
                    problems,
                }))
            }
            Some(Body::ServiceBooks(books)) => {
                profile.service_books = books
                    .books
                    .iter()
                    .map(|b| (b.cid.clone(), b.name.clone()))
                    .collect();
                conn.device_mut().set_profile(Some(profile.clone()))?;
                let cids = books.books.into_iter().map(|b| b.cid).collect();
                progress(&Stage::ServicesReceived {
                    email: email.clone(),
                });
                Some(Body::ServiceBooksReceived(schema::ServiceBooksReceived {
                    cids,
                }))
            }
            Some(Body::ActivationComplete(_)) => {
                profile.activated_at_ms = Some(now_ms());
                conn.device_mut().set_profile(Some(profile.clone()))?;
                // The options are backed up after activation, when backup is on.
                conn.device_mut().backup_now()?;
                if let Err(e) = crate::organizer::send_backup(conn).await {
                    tracing::warn!("the backup goes on the next connection: {e}");
                }
                progress(&Stage::Complete);
                return Ok(());
            }
            // A server without a synchronization service does not know the request.
            Some(Body::Error(e))
                if asked_sync_config && e.code == schema::ErrorCode::Unsupported as i32 =>
            {
                tracing::info!("the server has no synchronization service: {}", e.message);
                None
            }
            Some(Body::Error(e)) => return Err(DeviceError::ActivationFailed(e.message)),
            Some(body @ Body::SyncConfiguration(_)) => {
                let enabled = matches!(&body, Body::SyncConfiguration(c) if c.enabled);
                let (events, replies) =
                    crate::organizer::handle_body(conn.device_mut(), &organizer, seq, &body)
                        .await?;
                for e in &events {
                    tracing::info!("{e}");
                }
                for r in &replies {
                    conn.send(r).await?;
                }
                if enabled {
                    let overwrite = opts.organizer == OrganizerData::Overwrite;
                    crate::organizer::start_slow_sync(
                        conn,
                        &organizer,
                        overwrite,
                        |database, records| {
                            progress(&Stage::SlowSync { database, records });
                        },
                    )
                    .await?;
                }
                None
            }
            Some(
                body @ (Body::OrganizerBatch(_)
                | Body::OrganizerBatchResult(_)
                | Body::SlowSyncDone(_)
                | Body::BackupRestore(_)),
            ) => {
                let done = matches!(body, Body::SlowSyncDone(_));
                let (events, replies) =
                    crate::organizer::handle_body(conn.device_mut(), &organizer, seq, &body)
                        .await?;
                for e in &events {
                    tracing::info!("{e}");
                }
                for r in &replies {
                    conn.send(r).await?;
                }
                if done {
                    progress(&Stage::SlowSyncDone);
                }
                None
            }
            _ => None,
        };
        if let Some(body) = answer {
            let books = matches!(body, Body::ServiceBooksReceived(_));
            conn.send(&schema::Envelope {
                version: 1,
                body: Some(body),
            })
            .await?;
            // Step 13: with the service books in, ask for the synchronization
            // configuration.
            if books && !asked_sync_config {
                asked_sync_config = true;
                conn.send(&schema::Envelope {
                    version: 1,
                    body: Some(Body::SyncConfigRequest(schema::SyncConfigRequest {})),
                })
                .await?;
            }
        }
    }
}

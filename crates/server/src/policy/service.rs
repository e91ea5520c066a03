//! The policy service's task: keeps every activated device on the IT policy, the commands and
//! the software configuration an administrator decided.
//!
//! - **IT policy.** When a policy, an assignment or a group changes, each affected device's
//!   policy is resolved again and, when its hash differs from what the device was last sent,
//!   signed and sent. The policy in force is sent again every `resend_every`, and again after
//!   `retry_after` when a device never answered. A device's `PolicyApplied` (also sent by the
//!   device whenever its compliance changes) is recorded with its problems.
//! - **IT admin commands** are sent until the device gives a final answer (every
//!   `retry_after`); each answer moves the command's receipt on (queued → sent → pending →
//!   done | failed | cancelled). A wipe or a removal that is done removes the device from this
//!   server. Key regeneration: an X25519 exchange sealed under the current key
//!   ([`bramble_proto::rekey`]); when the device answers, the new key is stored and a
//!   `KeyConfirmation` goes out under it, and frames under the old key no longer open.
//! - **Software**: when the configuration in force for a device differs from the one its
//!   newest job carried, a new job is made and sent; package requests are answered in
//!   chunks; the device's report closes the job.
//!
//! Every answer from a device is handed over by the dispatcher without waiting, and may be
//! lost when this task is overloaded or the server stops before recording it; what was not
//! recorded is asked again by the resend (a device answers a repeat with what it answered
//! before), so nothing an administrator asked is lost.
//!
//! Owns: the in-memory halves of key exchanges under way. Must not touch: sealing (the
//! dispatcher does it), mailboxes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bramble_proto::activation::DomainKey;
use bramble_proto::rekey::KeyExchange;
use bramble_proto::schema::{self, CommandState, Envelope, envelope::Body};
use bramble_proto::{MasterKey, Pin, SrpId};
use bramble_store::{CommandRow, SoftwareJob, Store, StoreError, UserStatus, now_ms};
use tokio::sync::{broadcast, mpsc};

use super::commands::{self, Params};
use super::software::{self, Snapshot};
use super::{PolicyConfig, resolve};
use crate::ServerEvent;
use crate::dispatcher::Dispatcher;

/// What the service is told.
#[derive(Debug)]
pub enum Input {
    /// A device's answer: PolicyApplied, ServiceBooksReceived (after activation),
    /// CommandResult, AppPackageRequest, SoftwareReport.
    Device(Pin, Envelope),
    /// Activation completed on this device.
    Activated(Pin, String),
    /// Something about this user changed (an assignment, a group membership).
    UserChanged(String),
    /// A policy, a group's assignment or a software configuration changed: every device is
    /// looked at again.
    EverythingChanged,
    /// A command was given.
    Wake,
}

/// How other components reach the service. Never waits: when the service is overloaded the
/// message is dropped with a warning, and the periodic pass catches up.
#[derive(Debug, Clone)]
pub struct PolicyHandle {
    tx: mpsc::Sender<Input>,
}

impl PolicyHandle {
    /// Whether the service's task still runs (it holds the other end of the channel).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// A handle and the receiver to give [`PolicyService::run`].
    pub fn channel() -> (PolicyHandle, mpsc::Receiver<Input>) {
        let (tx, rx) = mpsc::channel(4096);
        (PolicyHandle { tx }, rx)
    }

    fn give(&self, input: Input) {
        if let Err(e) = self.tx.try_send(input) {
            tracing::warn!(
                "the policy service is overloaded; it will catch up at its next pass: {e}"
            );
        }
    }

    /// A device's answer.
    pub fn device(&self, pin: Pin, env: Envelope) {
        self.give(Input::Device(pin, env));
    }

    /// Activation completed.
    pub fn activated(&self, pin: Pin, email: &str) {
        self.give(Input::Activated(pin, email.to_owned()));
    }

    /// A user's assignments or groups changed.
    pub fn user_changed(&self, email: &str) {
        self.give(Input::UserChanged(email.to_owned()));
    }

    /// Policies, groups or software configurations changed.
    pub fn everything_changed(&self) {
        self.give(Input::EverythingChanged);
    }

    /// A command was given.
    pub fn wake(&self) {
        self.give(Input::Wake);
    }
}

/// The service's task.
pub struct PolicyService {
    store: Store,
    dispatcher: Dispatcher,
    domain: Arc<DomainKey>,
    srp: SrpId,
    cfg: PolicyConfig,
    events: broadcast::Sender<ServerEvent>,
    /// Regenerate-key commands under way: the server's half and the generation it replaces.
    exchanges: HashMap<i64, (KeyExchange, u32)>,
}

impl std::fmt::Debug for PolicyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyService")
            .field("exchanges", &self.exchanges.len())
            .finish_non_exhaustive()
    }
}

fn envelope(body: Body) -> Envelope {
    Envelope {
        version: u32::from(bramble_proto::PROTOCOL_VERSION),
        body: Some(body),
    }
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "an unknown time".into())
}

impl PolicyService {
    /// A service ready to run.
    pub fn new(
        store: Store,
        dispatcher: Dispatcher,
        domain: Arc<DomainKey>,
        srp: SrpId,
        cfg: PolicyConfig,
        events: broadcast::Sender<ServerEvent>,
    ) -> PolicyService {
        PolicyService {
            store,
            dispatcher,
            domain,
            srp,
            cfg,
            events,
            exchanges: HashMap::new(),
        }
    }

    /// Runs until the input channel closes.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let every =
            (self.cfg.retry_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = rx.recv() => {
                    let Some(first) = input else { return };
                    // Take what else waits, so many changes make one pass over the devices.
                    let mut batch = vec![first];
                    while batch.len() < 256 {
                        match rx.try_recv() {
                            Ok(i) => batch.push(i),
                            Err(_) => break,
                        }
                    }
                    let mut everything = false;
                    let mut wake = false;
                    for input in batch {
                        match input {
                            Input::EverythingChanged => everything = true,
                            Input::Wake => wake = true,
                            other => self.handle(other).await,
                        }
                    }
                    if everything && let Err(e) = self.refresh_all().await {
                        tracing::warn!("the policy service could not look at every device: {e}");
                    }
                    if wake && let Err(e) = self.send_commands().await {
                        tracing::warn!("the policy service could not send commands: {e}");
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.periodic().await {
                        tracing::warn!("the policy service's periodic pass failed: {e}");
                    }
                }
            }
        }
    }

    async fn handle(&mut self, input: Input) {
        let result = match input {
            Input::Device(pin, env) => self.on_device(pin, env).await,
            Input::Activated(pin, email) => self.refresh_device(pin, &email).await,
            Input::UserChanged(email) => match self.store.device_for_user(&email).await {
                Ok(Some(d)) => self.refresh_device(Pin(d.pin), &d.email).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            Input::EverythingChanged | Input::Wake => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!("the policy service could not record or send something: {e}");
        }
    }

    fn event(&self, ev: ServerEvent) {
        let _ = self.events.send(ev);
    }

    async fn send(&self, pin: Pin, body: Body) -> bool {
        match self.dispatcher.send(pin, envelope(body)).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(%pin, "the policy service could not send to the device: {e}");
                false
            }
        }
    }

    /// Whether this user's device is past activation (the handshake sends its own policy).
    async fn activated(&self, email: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .user(email)
            .await?
            .is_some_and(|u| u.status == UserStatus::Completed))
    }

    async fn refresh_all(&mut self) -> Result<(), StoreError> {
        for d in self.store.list_devices().await? {
            self.refresh_device(Pin(d.pin), &d.email).await?;
        }
        Ok(())
    }

    /// The policy and the software configuration of one device, sent when they changed.
    async fn refresh_device(&mut self, pin: Pin, email: &str) -> Result<(), StoreError> {
        if !self.activated(email).await? {
            return Ok(());
        }
        self.push_policy(pin, email, false).await?;
        self.refresh_software(pin, email).await
    }

    /// Sends the policy in force when the device was last sent another (or always, with
    /// `force`); returns its hash when it was sent.
    async fn push_policy(
        &self,
        pin: Pin,
        email: &str,
        force: bool,
    ) -> Result<Option<[u8; 32]>, StoreError> {
        let (resolved, signed, hash) =
            resolve::signed_policy(&self.store, &self.domain, email).await?;
        let last = self.store.device_policy(pin.0).await?;
        if !force && last.as_ref().is_some_and(|s| s.hash == hash) {
            return Ok(None);
        }
        self.store
            .record_policy_sent(pin.0, &resolved.name, resolved.version, &hash)
            .await?;
        tracing::info!(%pin, user = %email, policy = %resolved.name, version = resolved.version, "IT policy sent");
        self.send(pin, Body::ItPolicy(signed)).await;
        Ok(Some(hash))
    }

    async fn periodic(&mut self) -> Result<(), StoreError> {
        let now = now_ms();
        let resend = i64::try_from(self.cfg.resend_every.as_millis()).unwrap_or(i64::MAX);
        let retry = i64::try_from(self.cfg.retry_after.as_millis()).unwrap_or(i64::MAX);
        for s in self
            .store
            .device_policies_sent_before(now.saturating_sub(retry), 500)
            .await?
        {
            let due = s.sent_at_ms < now.saturating_sub(resend);
            let unanswered = !s.applied && s.reported_at_ms.is_none();
            if (due || unanswered) && self.activated(&s.email).await? {
                self.push_policy(Pin(s.pin), &s.email, true).await?;
            }
        }
        self.send_commands().await?;
        for job in self
            .store
            .software_jobs_to_send(now.saturating_sub(retry), 200)
            .await?
        {
            self.send_job(job).await?;
        }
        Ok(())
    }

    // ---- IT admin commands

    async fn send_commands(&mut self) -> Result<(), StoreError> {
        let retry = i64::try_from(self.cfg.retry_after.as_millis()).unwrap_or(i64::MAX);
        for row in self
            .store
            .commands_to_send(now_ms().saturating_sub(retry), 200)
            .await?
        {
            self.send_command(row).await?;
        }
        Ok(())
    }

    async fn set_state(
        &self,
        row: &CommandRow,
        state: &str,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let changed = self
            .store
            .set_command_state(row.id, state, Some(detail))
            .await?;
        if changed {
            tracing::info!(command = row.id, kind = %row.kind, user = %row.email, %state, "{detail}");
            self.event(ServerEvent::Command {
                id: row.id,
                email: row.email.clone(),
                state: state.to_owned(),
            });
        }
        Ok(changed)
    }

    async fn send_command(&mut self, row: CommandRow) -> Result<(), StoreError> {
        let device = match row.pin {
            Some(pin) => self.store.device_by_pin(pin).await?,
            None => None,
        };
        let Some(device) = device.filter(|d| d.email.eq_ignore_ascii_case(&row.email)) else {
            self.set_state(
                &row,
                "failed",
                "the user has no activated device any more; nothing was sent",
            )
            .await?;
            return Ok(());
        };
        let pin = Pin(device.pin);
        let params = Params::from_json(&row.params_json);
        let sent = match row.kind.as_str() {
            "resend-policy" => {
                self.push_policy(pin, &row.email, true).await?;
                true
            }
            "resend-service-books" => {
                let books = super::service_books(self.srp, &row.email);
                self.send(pin, Body::ServiceBooks(books)).await
            }
            "regenerate-key" => {
                let exchange = match KeyExchange::new() {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::error!("cannot start a key exchange: {e}");
                        return Ok(());
                    }
                };
                let generation = device.key_generation.saturating_add(1);
                let body = Body::ItCommand(schema::ItCommand {
                    command_id: u64::try_from(row.id).unwrap_or(0),
                    command: Some(schema::it_command::Command::RegenerateKey(
                        schema::RegenerateKey {
                            key_generation: generation,
                            server_public: exchange.public_key().to_vec().into(),
                        },
                    )),
                });
                // a resend replaces an earlier exchange: the device answers the newest one
                self.exchanges
                    .insert(row.id, (exchange, device.key_generation));
                self.send(pin, body).await
            }
            kind => match commands::it_command(row.id, kind, &params) {
                Some(c) => self.send(pin, Body::ItCommand(c)).await,
                None => {
                    self.set_state(
                        &row,
                        "failed",
                        &format!("the server does not know how to send {kind:?}"),
                    )
                    .await?;
                    return Ok(());
                }
            },
        };
        if sent && self.store.mark_command_sent(row.id).await? {
            let first = row.state == "queued";
            if first {
                self.event(ServerEvent::Command {
                    id: row.id,
                    email: row.email.clone(),
                    state: "sent".into(),
                });
            }
        }
        Ok(())
    }

    async fn on_device(&mut self, pin: Pin, env: Envelope) -> Result<(), StoreError> {
        let Some(device) = self.store.device_by_pin(pin.0).await? else {
            return Ok(());
        };
        let email = device.email.clone();
        match env.body {
            Some(Body::PolicyApplied(a)) => self.on_policy_applied(pin, &email, a).await,
            Some(Body::ServiceBooksReceived(r)) => self.on_books(&email, r).await,
            Some(Body::CommandResult(r)) => self.on_result(pin, &email, device, r).await,
            Some(Body::AppPackageRequest(r)) => {
                self.on_package_request(pin, r);
                Ok(())
            }
            Some(Body::SoftwareReport(r)) => self.on_report(pin, &email, r).await,
            _ => Ok(()),
        }
    }

    async fn open_commands(&self, email: &str, kind: &str) -> Result<Vec<CommandRow>, StoreError> {
        Ok(self
            .store
            .commands(Some(email), true, 100)
            .await?
            .into_iter()
            .filter(|c| c.kind == kind && c.state == "sent")
            .collect())
    }

    async fn on_policy_applied(
        &mut self,
        pin: Pin,
        email: &str,
        a: schema::PolicyApplied,
    ) -> Result<(), StoreError> {
        let problems: Vec<String> = a
            .problems
            .iter()
            .take(50)
            .map(|p| p.chars().take(500).collect())
            .collect();
        let current = self
            .store
            .record_policy_applied(pin.0, &a.policy_hash, a.applied, &problems)
            .await?;
        if !current {
            tracing::debug!(%pin, "an answer about an IT policy the device was not last sent; ignored");
            return Ok(());
        }
        tracing::info!(%pin, user = %email, version = a.version, applied = a.applied, ?problems, "the device answered the IT policy");
        self.event(ServerEvent::PolicyReport {
            email: email.to_owned(),
            pin,
            version: a.version,
            applied: a.applied,
            problems: problems.clone(),
        });
        let detail = match (a.applied, problems.is_empty()) {
            (true, true) => format!("version {} applied; the device complies", a.version),
            (true, false) => format!(
                "version {} applied; the device does not comply: {}",
                a.version,
                problems.join("; ")
            ),
            (false, _) => format!("the device refused the IT policy: {}", problems.join("; ")),
        };
        for c in self.open_commands(email, "resend-policy").await? {
            let state = if a.applied { "done" } else { "failed" };
            self.set_state(&c, state, &detail).await?;
        }
        Ok(())
    }

    async fn on_books(
        &mut self,
        email: &str,
        r: schema::ServiceBooksReceived,
    ) -> Result<(), StoreError> {
        let cids: Vec<String> = r
            .cids
            .iter()
            .take(50)
            .map(|c| c.chars().take(50).collect())
            .collect();
        for c in self.open_commands(email, "resend-service-books").await? {
            self.set_state(
                &c,
                "done",
                &format!("service books installed: {}", cids.join(", ")),
            )
            .await?;
        }
        Ok(())
    }

    async fn on_result(
        &mut self,
        pin: Pin,
        email: &str,
        device: bramble_store::Device,
        r: schema::CommandResult,
    ) -> Result<(), StoreError> {
        let Ok(id) = i64::try_from(r.command_id) else {
            return Ok(());
        };
        let Some(row) = self.store.command(id).await? else {
            tracing::debug!(%pin, id, "a result for a command this server does not know; ignored");
            return Ok(());
        };
        if row.pin != Some(pin.0) {
            tracing::warn!(%pin, id, "a device answered a command given to another device; ignored");
            return Ok(());
        }
        let detail: String = r.detail.chars().take(500).collect();
        match CommandState::try_from(r.state) {
            Ok(CommandState::CommandPending) => {
                let text = if r.due_at_ms > 0 {
                    format!("the device will carry it out at {}", when(r.due_at_ms))
                } else if detail.is_empty() {
                    "the device will carry it out later".to_owned()
                } else {
                    detail
                };
                self.set_state(&row, "pending", &text).await?;
            }
            Ok(CommandState::CommandDone) => match row.kind.as_str() {
                "regenerate-key" => self.rekey(&row, pin, &device, &r.device_public).await?,
                "wipe" | "remove-org-data" => {
                    let what = if row.kind == "wipe" {
                        "all device data deleted; the device is disabled"
                    } else {
                        "the organization's data deleted; the device is removed"
                    };
                    // The device goes before the receipt says done, so whoever sees "done"
                    // finds the device gone; a repeat of a final answer changes nothing.
                    if !matches!(row.state.as_str(), "done" | "failed" | "cancelled") {
                        self.remove_device(pin, email, &row).await?;
                    }
                    self.set_state(&row, "done", what).await?;
                }
                _ => {
                    let text = if detail.is_empty() {
                        "done".to_owned()
                    } else {
                        detail
                    };
                    self.set_state(&row, "done", &text).await?;
                }
            },
            Ok(CommandState::CommandFailed) => {
                let text = if detail.is_empty() {
                    "the device could not carry it out".to_owned()
                } else {
                    detail
                };
                self.set_state(&row, "failed", &text).await?;
            }
            Ok(CommandState::CommandCancelled) => {
                self.set_state(&row, "cancelled", "the user cancelled it on the device")
                    .await?;
            }
            _ => tracing::debug!(%pin, id, "a command result with no state; ignored"),
        }
        Ok(())
    }

    /// After a wipe or a removal: the device no longer belongs to this server.
    async fn remove_device(
        &self,
        pin: Pin,
        email: &str,
        row: &CommandRow,
    ) -> Result<(), StoreError> {
        self.store.delete_device(pin.0).await?;
        self.dispatcher.forget(pin).await;
        let reason = format!(
            "device PIN {pin} removed by IT admin command {} ({}); set an activation password to activate a device again",
            row.id, row.kind
        );
        self.store
            .set_user_status(email, UserStatus::Initializing, Some(&reason))
            .await?;
        self.event(ServerEvent::Activation {
            email: email.to_owned(),
            status: UserStatus::Initializing.to_string(),
        });
        Ok(())
    }

    async fn rekey(
        &mut self,
        row: &CommandRow,
        pin: Pin,
        device: &bramble_store::Device,
        device_public: &[u8],
    ) -> Result<(), StoreError> {
        let Some((exchange, generation)) = self.exchanges.remove(&row.id) else {
            // the server restarted since it sent its half: send a new one
            self.store
                .set_command_state(
                    row.id,
                    "queued",
                    Some("the server restarted during the key exchange; sending it again"),
                )
                .await?;
            return Ok(());
        };
        if device.key_generation != generation {
            tracing::warn!(%pin, "the key changed during the exchange; ignored");
            return Ok(());
        }
        let Some(current) = MasterKey::from_slice(&device.master_key) else {
            self.set_state(
                row,
                "failed",
                "the device's stored key is damaged; activate the device again",
            )
            .await?;
            return Ok(());
        };
        let next =
            match exchange.next_key(device_public, &current, pin, generation.saturating_add(1)) {
                Ok(k) => k,
                Err(e) => {
                    self.set_state(row, "failed", &format!("{e}; the key was not changed"))
                        .await?;
                    return Ok(());
                }
            };
        let new_generation = self.store.rotate_master_key(pin.0, next.as_bytes()).await?;
        self.dispatcher.forget(pin).await;
        self.send(
            pin,
            Body::KeyConfirmation(schema::KeyConfirmation {
                key_generation: new_generation,
            }),
        )
        .await;
        self.set_state(
            row,
            "done",
            &format!("new encryption key, generation {new_generation}; the previous key is refused from now on"),
        )
        .await?;
        Ok(())
    }

    // ---- software

    async fn refresh_software(&mut self, pin: Pin, email: &str) -> Result<(), StoreError> {
        let Some((config, _)) = software::desired(&self.store, email).await? else {
            return Ok(());
        };
        let Some(snap) = software::snapshot(&self.store, &config).await? else {
            return Ok(());
        };
        let json = serde_json::to_string(&snap).unwrap_or_default();
        if let Some(last) = self.store.latest_software_job(pin.0).await?
            && last.snapshot_json == json
            && matches!(last.state.as_str(), "queued" | "sent" | "done")
        {
            return Ok(());
        }
        let job = self
            .store
            .add_software_job(pin.0, email, &snap.name, &json)
            .await?;
        tracing::info!(%pin, user = %email, config = %snap.name, job = job.id, "software configuration deployed");
        self.send_job(job).await
    }

    async fn send_job(&mut self, job: SoftwareJob) -> Result<(), StoreError> {
        let Ok(snap) = serde_json::from_str::<Snapshot>(&job.snapshot_json) else {
            self.store
                .finish_software_job(job.id, "failed", Some("the stored job is damaged"), None)
                .await?;
            return Ok(());
        };
        let pin = Pin(job.pin);
        if self
            .send(pin, Body::SoftwareConfig(snap.to_proto(job.id)))
            .await
            && self.store.mark_software_job_sent(job.id).await?
            && job.state == "queued"
        {
            self.event(ServerEvent::SoftwareJob {
                id: job.id,
                email: job.email.clone(),
                state: "sent".into(),
            });
        }
        Ok(())
    }

    /// Sends a package from the asked offset on, in chunks, from a task of its own (a big
    /// package must not hold up commands).
    fn on_package_request(&self, pin: Pin, r: schema::AppPackageRequest) {
        let store = self.store.clone();
        let dispatcher = self.dispatcher.clone();
        tokio::spawn(async move {
            if let Err(e) = send_package(&store, &dispatcher, pin, r).await {
                tracing::warn!(%pin, "could not send a package: {e}");
            }
        });
    }

    async fn on_report(
        &mut self,
        pin: Pin,
        email: &str,
        r: schema::SoftwareReport,
    ) -> Result<(), StoreError> {
        let Ok(id) = i64::try_from(r.job_id) else {
            return Ok(());
        };
        let Some(job) = self.store.software_job(id).await? else {
            return Ok(());
        };
        if job.pin != pin.0 {
            tracing::warn!(%pin, id, "a device reported on another device's software job; ignored");
            return Ok(());
        }
        let (results, failed, summary) = software::results_of(&r);
        let state = if failed { "failed" } else { "done" };
        let json = serde_json::to_string(&results).unwrap_or_default();
        if self
            .store
            .finish_software_job(id, state, Some(&summary), Some(&json))
            .await?
        {
            tracing::info!(%pin, user = %email, job = id, "software job {state}: {summary}");
            self.event(ServerEvent::SoftwareJob {
                id,
                email: email.to_owned(),
                state: state.to_owned(),
            });
        }
        Ok(())
    }
}

async fn send_package(
    store: &Store,
    dispatcher: &Dispatcher,
    pin: Pin,
    r: schema::AppPackageRequest,
) -> Result<(), crate::dispatcher::DispatchError> {
    let chunk = |offset: u64, total: u64, data: Vec<u8>, error: String| {
        envelope(Body::AppPackageChunk(schema::AppPackageChunk {
            job_id: r.job_id,
            name: r.name.clone(),
            version: r.version.clone(),
            offset,
            total,
            data: data.into(),
            error,
        }))
    };
    let job = match i64::try_from(r.job_id) {
        Ok(id) => store.software_job(id).await?,
        Err(_) => None,
    };
    let offered = job.as_ref().is_some_and(|j| {
        j.pin == pin.0
            && serde_json::from_str::<Snapshot>(&j.snapshot_json)
                .is_ok_and(|s| s.offers(&r.name, &r.version))
    });
    let package = if offered {
        store.package(&r.name, &r.version).await?
    } else {
        None
    };
    let Some(package) = package else {
        let why = format!(
            "{} {} is not offered to this device by its software configuration.",
            r.name, r.version
        );
        dispatcher
            .send(pin, chunk(r.offset, 0, Vec::new(), why))
            .await?;
        return Ok(());
    };
    let total = package.size;
    let mut offset = r.offset.min(total);
    loop {
        let data = store
            .package_content(&package.name, &package.version, offset, software::CHUNK)
            .await?
            .unwrap_or_default();
        let len = data.len() as u64;
        dispatcher
            .send(pin, chunk(offset, total, data, String::new()))
            .await?;
        offset += len;
        if offset >= total || len == 0 {
            return Ok(());
        }
    }
}

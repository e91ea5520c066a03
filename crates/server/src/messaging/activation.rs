//! The activation handshake, server side (seeds 000-003; DESIGN.md "Activation, step by
//! step", stages 4-8):
//!
//! 1. An ETP.DAT arrives from a watched mailbox ([`super::mailbox`] removed the mail). It is
//!    checked as hostile input: signature, PIN, the address it names against the mailbox it
//!    was in, a replay (same ETP.DAT seen before), an activation password set, not expired, not
//!    void. Status **Activating**.
//! 2. OPAQUE KE2 goes to the device's PIN in an ACTIVATION frame (the attempt is counted now,
//!    so a device that never answers still uses one up). Status **Verifying Encryption**.
//! 3. KE3 comes back: the password is proven, both sides hold the OPAQUE session key and derive
//!    the master key from it. The device is stored (replacing the user's old one, whose key
//!    stops working), the one-time password is spent, and a sealed `KeyConfirmation` goes out.
//! 4. The device's sealed `KeyConfirmation` proves it holds the key. Status **Waiting for
//!    Services**; the policy service's signed IT policy goes out.
//! 5. `PolicyApplied` (hash checked): the service books go out. Status **Services Received**.
//! 6. `ServiceBooksReceived`: status **Completed**; `ActivationComplete` goes out. When
//!    organizer data is synchronized for the user, the status stays **Services Received**
//!    and the synchronization service completes the activation after the slow sync
//!    ([`crate::sync`]).
//!
//! Any failure: an `ActivationError` to the device, status **Failed** with the reason.
//!
//! Activations run side by side: [`ActivationService::run`] checks each ETP.DAT's signature
//! and hands every input to one of `[server.activation] shards` tasks (default [`SHARDS`])
//! chosen by the device's PIN, so one device's steps stay in order while other devices'
//! steps (each a few database commits) proceed at the same time.
//!
//! Owns: the per-PIN handshake state (in memory: a restart mid-handshake makes the device
//! time out and try again). Must not touch: mailboxes, SQL beyond `bramble-store`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble_proto::activation::{self, DomainKey, VerifiedRequest};
use bramble_proto::pake;
use bramble_proto::schema::{self, activation::Msg as Act, envelope::Body};
use bramble_proto::{Address, Frame, Pin, SrpId};
use bramble_store::{NewDevice, Store, UserStatus, now_ms};
use tokio::sync::{broadcast, mpsc};

use super::mailbox::ActivationMail;
use crate::ServerEvent;
use crate::dispatcher::Dispatcher;
use crate::router::Router;

/// The name of the OPAQUE server setup among the server's secrets.
pub const OPAQUE_SETUP: &str = "opaque_server_setup";

/// Settings of the handshake (`[server.activation]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActivationConfig {
    /// How long a step of the device may take before the attempt is abandoned.
    #[serde(with = "crate::config::duration_text")]
    pub step_timeout: Duration,
    /// How many activations are worked on side by side (by PIN; default [`SHARDS`]).
    pub shards: usize,
}

impl Default for ActivationConfig {
    fn default() -> Self {
        ActivationConfig {
            step_timeout: Duration::from_secs(300),
            shards: SHARDS,
        }
    }
}

/// How many tasks run activations side by side (by PIN), unless configured.
pub const SHARDS: usize = 32;

/// Inputs a shard may hold waiting before the service waits for it.
const SHARD_DEPTH: usize = 256;

/// What the activation service is told.
#[derive(Debug)]
pub enum Input {
    /// An ETP.DAT found in a mailbox.
    Mail(ActivationMail),
    /// An ACTIVATION frame from a device.
    Frame(Frame),
    /// A sealed message from a device that belongs to activation.
    Sealed(Pin, schema::Envelope),
}

/// What a shard is given: the service opened the ETP.DAT already.
#[derive(Debug)]
enum Work {
    /// A well-signed request from a mailbox.
    Request(ActivationMail, Box<VerifiedRequest>),
    /// An ETP.DAT that could not be opened, and why.
    Refused(ActivationMail, String),
    /// An ACTIVATION frame from a device.
    Frame(Frame),
    /// A sealed message from a device.
    Sealed(Pin, schema::Envelope),
}

#[derive(Debug)]
enum Stage {
    /// KE2 sent; waiting for KE3.
    Proof { server_state: Vec<u8> },
    /// Key stored; waiting for the device's key confirmation.
    KeyConfirmation,
    /// Policy sent; waiting for `PolicyApplied` with this hash.
    Policy { hash: [u8; 32] },
    /// Service books sent.
    ServiceBooks,
}

#[derive(Debug)]
struct Pending {
    email: String,
    identity_key: [u8; 32],
    request_hash: [u8; 32],
    stage: Stage,
    since: Instant,
}

/// The activation service: one of these per shard, each with its own handshakes.
pub struct ActivationService {
    store: Store,
    router: Router,
    dispatcher: Dispatcher,
    me: SrpId,
    setup: Vec<u8>,
    domain: Arc<DomainKey>,
    events: broadcast::Sender<ServerEvent>,
    cfg: ActivationConfig,
    pending: HashMap<Pin, Pending>,
    policy: Option<crate::policy::PolicyHandle>,
    /// The synchronization settings: with organizer sync configured for a user, the
    /// synchronization service completes the activation after the slow sync.
    sync: crate::sync::SyncConfig,
}

impl std::fmt::Debug for ActivationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivationService")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl ActivationService {
    /// A service ready to run.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        router: Router,
        dispatcher: Dispatcher,
        me: SrpId,
        setup: Vec<u8>,
        domain: Arc<DomainKey>,
        events: broadcast::Sender<ServerEvent>,
        cfg: ActivationConfig,
    ) -> ActivationService {
        ActivationService {
            store,
            router,
            dispatcher,
            me,
            setup,
            domain,
            events,
            cfg,
            pending: HashMap::new(),
            policy: None,
            sync: crate::sync::SyncConfig::default(),
        }
    }

    /// With organizer synchronization: activations of users with a database to synchronize
    /// end with the slow sync, which the synchronization service runs and completes.
    pub fn with_sync(mut self, sync: crate::sync::SyncConfig) -> ActivationService {
        self.sync = sync;
        self
    }

    /// With the policy service, which takes over each device once it is activated.
    pub fn with_policy(mut self, policy: crate::policy::PolicyHandle) -> ActivationService {
        self.policy = Some(policy);
        self
    }

    /// Runs until the input channel closes: opens each ETP.DAT (its signature names the
    /// PIN) and passes every input to the shard of its PIN; waits for the shards to finish.
    pub async fn run(self, mut rx: mpsc::Receiver<Input>) {
        let n = self.cfg.shards.max(1);
        let mut shards = Vec::with_capacity(n);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (tx, shard_rx) = mpsc::channel(SHARD_DEPTH);
            tasks.spawn(self.shard().run_shard(shard_rx));
            shards.push(tx);
        }
        let shard_of = |key: u64| {
            // Fibonacci hashing spreads sequential PINs evenly (as the dispatcher does).
            let h = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
            &shards[h % n]
        };
        while let Some(input) = rx.recv().await {
            let (key, work) = match input {
                Input::Mail(m) => match activation::open_etp_dat(&m.etp_dat) {
                    Ok(req) => (u64::from(req.pin.0), Work::Request(m, Box::new(req))),
                    Err(e) => {
                        // No trustworthy PIN: the mailbox's user decides the shard.
                        let key = m
                            .mailbox
                            .bytes()
                            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                        (key, Work::Refused(m, e.to_string()))
                    }
                },
                Input::Frame(f) => {
                    let Address::Pin(pin) = f.header.src else {
                        continue;
                    };
                    (u64::from(pin.0), Work::Frame(f))
                }
                Input::Sealed(pin, env) => (u64::from(pin.0), Work::Sealed(pin, env)),
            };
            if shard_of(key).send(work).await.is_err() {
                tracing::error!("an activation task stopped; the activation service stops");
                break;
            }
        }
        drop(shards);
        while tasks.join_next().await.is_some() {}
    }

    /// A copy of the service with no handshakes of its own yet.
    fn shard(&self) -> ActivationService {
        ActivationService {
            store: self.store.clone(),
            router: self.router.clone(),
            dispatcher: self.dispatcher.clone(),
            me: self.me,
            setup: self.setup.clone(),
            domain: self.domain.clone(),
            events: self.events.clone(),
            cfg: self.cfg.clone(),
            pending: HashMap::new(),
            policy: self.policy.clone(),
            sync: self.sync.clone(),
        }
    }

    /// One shard: the handshakes of its PINs, one input after another.
    async fn run_shard(mut self, mut rx: mpsc::Receiver<Work>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1).min(self.cfg.step_timeout));
        loop {
            tokio::select! {
                work = rx.recv() => match work {
                    Some(Work::Request(m, req)) => self.on_request(m, *req).await,
                    Some(Work::Refused(m, why)) => self.on_refused(m, why).await,
                    Some(Work::Frame(f)) => self.on_frame(f).await,
                    Some(Work::Sealed(pin, env)) => self.on_sealed(pin, env).await,
                    None => return,
                },
                _ = tick.tick() => self.expire().await,
            }
        }
    }

    async fn status(&self, email: &str, status: UserStatus, reason: String) {
        if let Err(e) = self
            .store
            .set_user_status(email, status, Some(&reason))
            .await
        {
            tracing::warn!(user = %email, "could not record status {status}: {e}");
        }
        tracing::info!(user = %email, status = %status, "{reason}");
        let _ = self.events.send(ServerEvent::Activation {
            email: email.to_owned(),
            status: status.to_string(),
        });
    }

    /// Records the failure (status first, so an administrator looking as soon as the device
    /// reports it sees it), then tells the device.
    async fn fail(
        &mut self,
        email: &str,
        pin: Pin,
        code: schema::ActivationErrorCode,
        to_device: &str,
        reason: String,
    ) {
        let request_hash = self
            .pending
            .remove(&pin)
            .map(|p| p.request_hash.to_vec())
            .unwrap_or_default();
        self.status(email, UserStatus::Failed, reason).await;
        self.send_frame(
            pin,
            Act::Error(schema::ActivationError {
                code: code as i32,
                message: to_device.to_owned(),
                request_hash: request_hash.into(),
            }),
        )
        .await;
    }

    async fn send_frame(&self, pin: Pin, msg: Act) {
        let frame = activation::activation_frame(Address::Srp(self.me), Address::Pin(pin), msg);
        if self.router.send(frame).await.is_err() {
            tracing::warn!(%pin, "the router stopped; activation message not sent");
        }
    }

    async fn send_sealed(&mut self, pin: Pin, body: Body) -> bool {
        match self
            .dispatcher
            .send(
                pin,
                schema::Envelope {
                    version: 1,
                    body: Some(body),
                },
            )
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(%pin, "activation: could not send to the device: {e}");
                false
            }
        }
    }

    async fn on_refused(&mut self, mail: ActivationMail, why: String) {
        tracing::warn!(user = %mail.mailbox, "refused an ETP.DAT: {why}");
        if self
            .store
            .user(&mail.mailbox)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            self.status(
                &mail.mailbox,
                UserStatus::Failed,
                format!("an activation request was refused: {why}"),
            )
            .await;
        }
    }

    async fn on_request(&mut self, mail: ActivationMail, req: VerifiedRequest) {
        let pin = req.pin;
        if !req.email.trim().eq_ignore_ascii_case(&mail.mailbox) {
            tracing::warn!(%pin, user = %mail.mailbox, named = %req.email, "an ETP.DAT for another address arrived in this mailbox; ignored");
            return;
        }
        match self
            .store
            .record_activation_request(&req.hash, &mail.mailbox, pin.0)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(%pin, user = %mail.mailbox, "ignored a second copy of an activation mail (replay)");
                return;
            }
            Err(e) => {
                tracing::error!("activation: the database failed: {e}");
                return;
            }
        }
        self.start(mail.mailbox, req).await;
    }

    async fn start(&mut self, email: String, req: VerifiedRequest) {
        let pin = req.pin;
        use schema::ActivationErrorCode as C;
        let user = match self.store.user(&email).await {
            Ok(Some(u)) => u,
            Ok(None) => return,
            Err(e) => return tracing::error!("activation: the database failed: {e}"),
        };
        self.status(
            &user.email,
            UserStatus::Activating,
            format!("activation request received from PIN {pin}"),
        )
        .await;
        let act = match self.store.activation(&user.email).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                return self
                    .fail(&user.email, pin, C::PasswordMissing,
                        "No activation password is set for you. Ask your administrator to set one, then try again.",
                        format!("activation from PIN {pin} failed: no activation password is set"))
                    .await;
            }
            Err(e) => return tracing::error!("activation: the database failed: {e}"),
        };
        if act.expires_at_ms <= now_ms() {
            return self
                .fail(
                    &user.email,
                    pin,
                    C::PasswordExpired,
                    "Your activation password has expired. Ask your administrator for a new one.",
                    format!("activation from PIN {pin} failed: the activation password expired"),
                )
                .await;
        }
        if act.failed_attempts >= act.max_attempts {
            return self
                .fail(&user.email, pin, C::PasswordVoid,
                    "Your activation password was entered wrongly too many times and no longer works. Ask your administrator for a new one.",
                    format!("activation from PIN {pin} failed: the password is void after {} wrong attempts", act.failed_attempts))
                .await;
        }
        let (setup, record, who, ke1) = (
            self.setup.clone(),
            act.record.clone(),
            user.email.clone(),
            req.ke1.clone(),
        );
        let ke2 =
            tokio::task::spawn_blocking(move || pake::server_start(&setup, &record, &who, &ke1))
                .await;
        let (server_state, ke2) = match ke2 {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                return self
                    .fail(
                        &user.email,
                        pin,
                        C::RequestRefused,
                        "The activation request could not be read. Try again.",
                        format!("activation from PIN {pin} failed: {e}"),
                    )
                    .await;
            }
            Err(_) => return tracing::error!("activation: the password exchange task failed"),
        };
        // The attempt counts now: a device that never proves the password still used one up.
        if let Err(e) = self.store.count_failed_activation(&user.email).await {
            return tracing::error!("activation: the database failed: {e}");
        }
        self.pending.insert(
            pin,
            Pending {
                email: user.email.clone(),
                identity_key: req.identity_key,
                request_hash: req.hash,
                stage: Stage::Proof { server_state },
                since: Instant::now(),
            },
        );
        self.send_frame(
            pin,
            Act::Challenge(schema::ActivationChallenge {
                ke2: ke2.into(),
                request_hash: req.hash.to_vec().into(),
                email: user.email.clone(),
            }),
        )
        .await;
        self.status(
            &user.email,
            UserStatus::VerifyingEncryption,
            format!("verifying the activation password with PIN {pin}"),
        )
        .await;
    }

    async fn on_frame(&mut self, frame: Frame) {
        let Address::Pin(pin) = frame.header.src else {
            return;
        };
        let msg = match activation::read_activation(&frame) {
            Ok(m) => m,
            Err(e) => return tracing::warn!(%pin, "dropping an activation frame: {e}"),
        };
        let Act::Proof(proof) = msg else {
            return tracing::debug!(%pin, "ignoring an activation message a device should not send");
        };
        let Some(p) = self.pending.get(&pin) else {
            return tracing::info!(%pin, "an activation proof from a PIN with no activation under way; ignored");
        };
        if proof.request_hash.as_ref() != p.request_hash {
            return tracing::warn!(%pin, "an activation proof for another request; ignored");
        }
        let Stage::Proof { server_state } = &p.stage else {
            return;
        };
        let email = p.email.clone();
        use schema::ActivationErrorCode as C;
        if proof.password_rejected {
            return self.wrong_password(&email, pin).await;
        }
        let (state, ke3) = (server_state.clone(), proof.ke3.to_vec());
        let session =
            match tokio::task::spawn_blocking(move || pake::server_finish(&state, &ke3)).await {
                Ok(Ok(k)) => k,
                Ok(Err(pake::PakeError::WrongPassword)) => {
                    return self.wrong_password(&email, pin).await;
                }
                Ok(Err(e)) => {
                    return self
                        .fail(
                            &email,
                            pin,
                            C::RequestRefused,
                            "The activation could not be completed. Try again.",
                            format!("activation from PIN {pin} failed: {e}"),
                        )
                        .await;
                }
                Err(_) => return tracing::error!("activation: the password exchange task failed"),
            };
        let Some(p) = self.pending.get_mut(&pin) else {
            return;
        };
        let master = activation::master_key(&session, pin, &p.identity_key);
        // The user's previous device (re-activation) loses its key: forget its session too.
        let previous = self
            .store
            .device_for_user(&email)
            .await
            .ok()
            .flatten()
            .map(|d| Pin(d.pin));
        // The device is stored and the one-time password spent in one commit: of two devices
        // proving one password at once, the second is refused.
        let stored = self
            .store
            .activate_device(&NewDevice {
                email: email.clone(),
                pin: pin.0,
                identity_key: p.identity_key.to_vec(),
                master_key: master.as_bytes().to_vec(),
            })
            .await;
        let device = match stored {
            Ok(d) => d,
            Err(bramble_store::StoreError::NoActivation { .. }) => {
                // The user's status is the other device's activation, under way: only this
                // device is told.
                tracing::warn!(user = %email, %pin, "activation refused: another device spent the activation password first");
                let request_hash = self
                    .pending
                    .remove(&pin)
                    .map(|p| p.request_hash.to_vec())
                    .unwrap_or_default();
                return self
                    .send_frame(
                        pin,
                        Act::Error(schema::ActivationError {
                            code: C::PasswordMissing as i32,
                            message: "Your activation password was used by another device a moment ago. Ask your administrator for a new one.".to_owned(),
                            request_hash: request_hash.into(),
                        }),
                    )
                    .await;
            }
            Err(e) => {
                return self
                    .fail(
                        &email,
                        pin,
                        C::ServerFailed,
                        "The server could not store your device. Try again later.",
                        format!("activation from PIN {pin} failed: {e}"),
                    )
                    .await;
            }
        };
        p.stage = Stage::KeyConfirmation;
        p.since = Instant::now();
        self.dispatcher.forget(pin).await;
        if let Some(old) = previous.filter(|old| *old != pin) {
            self.dispatcher.forget(old).await;
            tracing::info!(user = %email, old = %old, new = %pin, "re-activation: the previous device's key no longer works");
        }
        self.send_sealed(
            pin,
            Body::KeyConfirmation(schema::KeyConfirmation {
                key_generation: device.key_generation,
            }),
        )
        .await;
    }

    async fn wrong_password(&mut self, email: &str, pin: Pin) {
        let (attempts, max) = match self.store.activation(email).await {
            Ok(Some(a)) => (a.failed_attempts, a.max_attempts),
            _ => (0, 0),
        };
        let left = max.saturating_sub(attempts);
        let to_device = if left == 0 {
            "The activation password is not correct, and it no longer works after too many attempts. Ask your administrator for a new one.".to_owned()
        } else {
            format!("The activation password is not correct. {left} attempt(s) left.")
        };
        self.fail(email, pin, schema::ActivationErrorCode::PasswordWrong, &to_device,
            format!("activation from PIN {pin} failed: wrong activation password (attempt {attempts} of {max})"))
            .await;
    }

    async fn on_sealed(&mut self, pin: Pin, env: schema::Envelope) {
        let Some(p) = self.pending.get_mut(&pin) else {
            // After activation, a policy answer or service books receipt is the policy
            // service's (an IT policy update, a resend of the books).
            return match &self.policy {
                Some(policy) => policy.device(pin, env),
                None => {
                    tracing::debug!(%pin, "an activation message from a device with no activation under way")
                }
            };
        };
        let email = p.email.clone();
        match (&p.stage, env.body) {
            (Stage::KeyConfirmation, Some(Body::KeyConfirmation(_))) => {
                let (resolved, signed, hash) = match crate::policy::signed_policy(
                    &self.store,
                    &self.domain,
                    &email,
                )
                .await
                {
                    Ok(v) => v,
                    Err(e) => {
                        return self
                                .fail(
                                    &email,
                                    pin,
                                    schema::ActivationErrorCode::ServerFailed,
                                    "The server could not prepare your IT policy. Try again later.",
                                    format!("activation from PIN {pin} failed: the IT policy could not be resolved: {e}"),
                                )
                                .await;
                    }
                };
                if let Err(e) = self
                    .store
                    .record_policy_sent(pin.0, &resolved.name, resolved.version, &hash)
                    .await
                {
                    tracing::warn!(%pin, "could not record the IT policy sent: {e}");
                }
                let Some(p) = self.pending.get_mut(&pin) else {
                    return;
                };
                p.stage = Stage::Policy { hash };
                p.since = Instant::now();
                self.status(
                    &email,
                    UserStatus::WaitingForServices,
                    format!("encryption verified with PIN {pin}; IT policy sent"),
                )
                .await;
                self.send_sealed(pin, Body::ItPolicy(signed)).await;
            }
            (Stage::Policy { hash }, Some(Body::PolicyApplied(a))) => {
                if a.policy_hash.as_ref() != hash || !a.applied {
                    let why = if a.problems.is_empty() {
                        "no reason given".to_owned()
                    } else {
                        a.problems.join("; ")
                    };
                    return self
                        .fail(
                            &email,
                            pin,
                            schema::ActivationErrorCode::RequestRefused,
                            "The IT policy could not be applied; activation stopped.",
                            format!("PIN {pin} did not apply the IT policy: {why}"),
                        )
                        .await;
                }
                if let Err(e) = self
                    .store
                    .record_policy_applied(pin.0, &a.policy_hash, true, &a.problems)
                    .await
                {
                    tracing::warn!(%pin, "could not record the IT policy applied: {e}");
                }
                let Some(p) = self.pending.get_mut(&pin) else {
                    return;
                };
                p.stage = Stage::ServiceBooks;
                p.since = Instant::now();
                let books = crate::policy::service_books(self.me, &email);
                self.status(
                    &email,
                    UserStatus::ServicesReceived,
                    format!("IT policy applied on PIN {pin}; service books sent"),
                )
                .await;
                self.send_sealed(pin, Body::ServiceBooks(books)).await;
            }
            (Stage::ServiceBooks, Some(Body::ServiceBooksReceived(r))) => {
                let missing: Vec<&str> = crate::policy::SERVICE_BOOKS
                    .iter()
                    .copied()
                    .filter(|c| !r.cids.iter().any(|x| x == c))
                    .collect();
                if !missing.is_empty() {
                    tracing::warn!(%pin, "the device did not confirm service books {missing:?}");
                }
                self.pending.remove(&pin);
                let slow_sync = match crate::sync::settings::resolve(
                    &self.store,
                    &self.sync,
                    &email,
                )
                .await
                {
                    Ok(s) => s.enabled(),
                    Err(e) => {
                        tracing::warn!(user = %email, "cannot resolve the synchronization settings: {e}");
                        false
                    }
                };
                if slow_sync {
                    // Steps 13-15: the device asks for its synchronization configuration and
                    // the slow sync follows; the synchronization service completes the
                    // activation when it is done.
                    self.status(
                        &email,
                        UserStatus::ServicesReceived,
                        format!("service books received on PIN {pin}; slow synchronization of organizer data"),
                    )
                    .await;
                } else {
                    self.status(
                        &email,
                        UserStatus::Completed,
                        format!("activation complete on PIN {pin}"),
                    )
                    .await;
                    self.send_sealed(
                        pin,
                        Body::ActivationComplete(schema::ActivationComplete {
                            email: email.clone(),
                        }),
                    )
                    .await;
                }
                if let Some(policy) = &self.policy {
                    policy.activated(pin, &email);
                }
            }
            (_, _) => tracing::debug!(%pin, "an activation message out of order; ignored"),
        }
    }

    async fn expire(&mut self) {
        let limit = self.cfg.step_timeout;
        let late: Vec<Pin> = self
            .pending
            .iter()
            .filter(|(_, p)| p.since.elapsed() > limit)
            .map(|(pin, _)| *pin)
            .collect();
        for pin in late {
            if let Some(p) = self.pending.get(&pin) {
                let email = p.email.clone();
                let step = match p.stage {
                    Stage::Proof { .. } => "prove the activation password",
                    Stage::KeyConfirmation => "confirm the encryption key",
                    Stage::Policy { .. } => "apply the IT policy",
                    Stage::ServiceBooks => "confirm the service books",
                };
                self.fail(&email, pin, schema::ActivationErrorCode::RequestRefused,
                    "Activation took too long and was stopped. Try again.",
                    format!("activation from PIN {pin} stopped: the device did not {step} within {limit:?}"))
                    .await;
            }
        }
    }
}

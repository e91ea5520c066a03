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
}

impl Default for ActivationConfig {
    fn default() -> Self {
        ActivationConfig {
            step_timeout: Duration::from_secs(300),
        }
    }
}

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

/// The activation service's task.
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

    /// Runs until the input channel closes.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1).min(self.cfg.step_timeout));
        loop {
            tokio::select! {
                input = rx.recv() => match input {
                    Some(Input::Mail(m)) => self.on_mail(m).await,
                    Some(Input::Frame(f)) => self.on_frame(f).await,
                    Some(Input::Sealed(pin, env)) => self.on_sealed(pin, env).await,
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

    async fn on_mail(&mut self, mail: ActivationMail) {
        let req = match activation::open_etp_dat(&mail.etp_dat) {
            Ok(r) => r,
            Err(e) => {
                // No trustworthy PIN to answer: record it on the mailbox's user.
                tracing::warn!(user = %mail.mailbox, "refused an ETP.DAT: {e}");
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
                        format!("an activation request was refused: {e}"),
                    )
                    .await;
                }
                return;
            }
        };
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
        let stored = self
            .store
            .put_device(&NewDevice {
                email: email.clone(),
                pin: pin.0,
                identity_key: p.identity_key.to_vec(),
                master_key: master.as_bytes().to_vec(),
            })
            .await;
        let device = match stored {
            Ok(d) => d,
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
        // The password was one-time: spent now.
        if let Err(e) = self.store.clear_activation(&email).await {
            tracing::warn!(user = %email, "could not clear the spent activation password: {e}");
        }
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

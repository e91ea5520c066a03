//! The dispatcher: seals everything the server sends to a device and opens everything a
//! device sends, with that device's key, then hands the opened message to the component it
//! is for: activation messages to the activation service; delivery confirmations, messages to
//! send and changes to messages are stored here (before the frame is acknowledged) for the
//! messaging agent to act on; More and attachment requests go to the messaging agent; Ping is
//! answered here.
//!
//! Devices are spread over shards by PIN; each shard is one task that owns its devices'
//! sessions outright, so no lock is held around sealing or opening and frames of one device
//! are handled in order. Transmit sequence numbers are reserved in the configuration database
//! a block at a time before use; the highest received number is stored before the frame is
//! acknowledged to the relay, so neither a nonce nor a replay slips through a restart.
//!
//! Owns: per-device sessions. Must not touch: the relay link beyond handing frames to the
//! router, mailboxes, policies (answers for the policy service are handed to it).

use std::collections::HashMap;
use std::sync::Arc;

use bramble_net::link::frame_ref;
use bramble_proto::schema::{self, Envelope, control::Msg, envelope::Body};
use bramble_proto::seal::{MAX_PLAINTEXT, OpenError, Session};
use bramble_proto::{Address, Frame, MasterKey, Pin, SrpId};
use bramble_store::{Store, now_ms};
use prost::Message;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::ServerEvent;
use crate::config::DispatcherConfig;
use crate::messaging::activation::Input as ActivationInput;
use crate::router::Router;

/// Commands waiting for one shard, at most.
const SHARD_DEPTH: usize = 256;
/// The most RefIDs one delivery confirmation may name.
const MAX_CONFIRMATIONS: usize = 1000;

/// A device's request for the messaging agent: More, or an attachment.
#[derive(Debug)]
pub struct MailRequest {
    /// The device.
    pub pin: Pin,
    /// Its user.
    pub email: String,
    /// The frame it came in.
    pub seq: u64,
    /// The request.
    pub env: Envelope,
}

/// Where the dispatcher hands what it opened, besides answering itself.
#[derive(Debug, Clone)]
pub struct Routes {
    /// The activation service.
    pub activation: mpsc::Sender<ActivationInput>,
    /// The messaging agent's requests (More, attachments).
    pub mail: mpsc::Sender<MailRequest>,
    /// Woken when a device's message to send was stored in the outbox.
    pub outbox: Arc<Notify>,
    /// Woken when a device's change to a message was stored in the queue.
    pub changes: Arc<Notify>,
    /// The policy service: command results, package requests, software reports.
    pub policy: crate::policy::PolicyHandle,
    /// The synchronization service: configuration requests, slow sync, organizer batches,
    /// wireless backups.
    pub sync: crate::sync::SyncHandle,
}

/// Why a payload could not be sent to a device.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// No device with that PIN belongs to this server.
    #[error("no device with PIN {0} is activated on this server")]
    UnknownDevice(Pin),
    /// The configuration database failed.
    #[error(transparent)]
    Store(#[from] bramble_store::StoreError),
    /// Sealing failed.
    #[error("sealing the payload failed: {0}")]
    Seal(String),
    /// The stored key is damaged.
    #[error("the stored key of device {0} is damaged; re-activate the device")]
    BadKey(Pin),
    /// The server is stopping.
    #[error("the server is stopping")]
    Stopped,
}

enum Command {
    Inbound(Frame),
    Send {
        pin: Pin,
        env: Envelope,
        reply: oneshot::Sender<Result<u64, DispatchError>>,
    },
    Forget(Pin),
}

/// A handle on the dispatcher's shards.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    shards: Arc<[mpsc::Sender<Command>]>,
    activation: mpsc::Sender<ActivationInput>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Inbound(fr) => write!(f, "Inbound({:?})", fr.header),
            Command::Send { pin, .. } => write!(f, "Send({pin})"),
            Command::Forget(pin) => write!(f, "Forget({pin})"),
        }
    }
}

impl Dispatcher {
    /// Starts the shards. They run until every clone of the returned handle is dropped; the
    /// join handles let the caller wait for them to finish what they hold.
    pub fn spawn(
        store: Store,
        router: Router,
        srp: SrpId,
        events: broadcast::Sender<ServerEvent>,
        cfg: &DispatcherConfig,
        routes: Routes,
    ) -> (Dispatcher, Vec<tokio::task::JoinHandle<()>>) {
        let n = cfg.shards.max(1);
        let mut shards = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = mpsc::channel(SHARD_DEPTH);
            let shard = Shard {
                store: store.clone(),
                router: router.clone(),
                me: Address::Srp(srp),
                events: events.clone(),
                sessions: HashMap::new(),
                seq_block: cfg.seq_block.max(1),
                activation: routes.activation.clone(),
                mail: routes.mail.clone(),
                outbox: routes.outbox.clone(),
                changes: routes.changes.clone(),
                policy: routes.policy.clone(),
                sync: routes.sync.clone(),
            };
            tasks.push(tokio::spawn(shard.run(rx)));
            shards.push(tx);
        }
        (
            Dispatcher {
                shards: shards.into(),
                activation: routes.activation,
            },
            tasks,
        )
    }

    fn shard(&self, pin: Pin) -> &mpsc::Sender<Command> {
        // Fibonacci hashing spreads sequential PINs evenly.
        let h = (u64::from(pin.0).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
        &self.shards[h % self.shards.len()]
    }

    /// Moves frames from the router to the shards until the router's channel closes.
    pub fn pump(self, mut inbound: mpsc::Receiver<Frame>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Some(frame) = inbound.recv().await {
                if frame.header.kind == bramble_proto::FrameKind::Activation {
                    if self
                        .activation
                        .send(ActivationInput::Frame(frame))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
                let Address::Pin(pin) = frame.header.src else {
                    tracing::warn!(src = %frame.header.src, "dropping a sealed frame that is not from a device");
                    continue;
                };
                if self.shard(pin).send(Command::Inbound(frame)).await.is_err() {
                    return;
                }
            }
        })
    }

    /// Seals `env` for the device and hands it to the router; returns its sequence number.
    ///
    /// # Errors
    /// A [`DispatchError`].
    pub async fn send(&self, pin: Pin, env: Envelope) -> Result<u64, DispatchError> {
        let (reply, rx) = oneshot::channel();
        self.shard(pin)
            .send(Command::Send { pin, env, reply })
            .await
            .map_err(|_| DispatchError::Stopped)?;
        rx.await.map_err(|_| DispatchError::Stopped)?
    }

    /// Drops the cached session of a device (after re-activation or a key change).
    pub async fn forget(&self, pin: Pin) {
        let _ = self.shard(pin).send(Command::Forget(pin)).await;
    }
}

struct DeviceSession {
    session: Session,
    key_generation: u32,
    email: String,
}

struct Shard {
    store: Store,
    router: Router,
    me: Address,
    events: broadcast::Sender<ServerEvent>,
    sessions: HashMap<Pin, DeviceSession>,
    seq_block: u64,
    activation: mpsc::Sender<ActivationInput>,
    mail: mpsc::Sender<MailRequest>,
    outbox: Arc<Notify>,
    changes: Arc<Notify>,
    policy: crate::policy::PolicyHandle,
    sync: crate::sync::SyncHandle,
}

impl Shard {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::Inbound(frame) => self.inbound(frame).await,
                Command::Send { pin, env, reply } => {
                    let _ = reply.send(self.send(pin, &env).await);
                }
                Command::Forget(pin) => {
                    self.sessions.remove(&pin);
                }
            }
        }
    }

    /// Loads (or reloads) a device's session from the database.
    async fn load(&mut self, pin: Pin) -> Result<&mut DeviceSession, DispatchError> {
        if !self.sessions.contains_key(&pin) {
            let dev = self
                .store
                .device_by_pin(pin.0)
                .await?
                .ok_or(DispatchError::UnknownDevice(pin))?;
            let key = MasterKey::from_slice(&dev.master_key).ok_or(DispatchError::BadKey(pin))?;
            // The sealer starts with nothing reserved: the first send reserves a block.
            let session = Session::server(&key, 0..0, dev.rx_seq_highest)
                .map_err(|e| DispatchError::Seal(e.to_string()))?;
            self.sessions.insert(
                pin,
                DeviceSession {
                    session,
                    key_generation: dev.key_generation,
                    email: dev.email,
                },
            );
        }
        self.sessions
            .get_mut(&pin)
            .ok_or(DispatchError::UnknownDevice(pin))
    }

    async fn send(&mut self, pin: Pin, env: &Envelope) -> Result<u64, DispatchError> {
        let block = self.seq_block;
        let me = self.me;
        let store = self.store.clone();
        let dev = self.load(pin).await?;
        if dev.session.sealer.remaining() == 0 {
            let range = store.reserve_tx_seq(pin.0, block).await?;
            dev.session.sealer.extend(range);
        }
        let frame = dev
            .session
            .sealer
            .seal(me, Address::Pin(pin), &env.encode_to_vec())
            .map_err(|e| DispatchError::Seal(e.to_string()))?;
        let seq = frame.header.seq;
        let email = dev.email.clone();
        self.router
            .send(frame)
            .await
            .map_err(|_| DispatchError::Stopped)?;
        self.count(&email, "frames_sent").await;
        Ok(seq)
    }

    async fn inbound(&mut self, frame: Frame) {
        let Address::Pin(pin) = frame.header.src else {
            return;
        };
        let seq = frame.header.seq;
        let opened = self.open(pin, &frame).await;
        match opened {
            Ok((plain, email)) => {
                // What the frame asks for is made durable first (each handler is idempotent,
                // so a frame handled but not yet recorded as received may come again), then the
                // sequence number, and only then is the relay told to forget the frame.
                if let Err(e) = self.handle(pin, seq, &plain, &email).await {
                    tracing::error!(%pin, seq, "could not store what the device sent, so the frame stays with the relay: {e}");
                    // the opener marked it seen: start again from the stored window, so the
                    // relay's next delivery of it is accepted
                    self.sessions.remove(&pin);
                    return;
                }
                // The sequence number, the time last heard from and the counters in one
                // commit (it was four, and frames come by the thousand).
                let counters = [
                    ("global", "frames_received", 1),
                    (email.as_str(), "frames_received", 1),
                ];
                if let Err(e) = self
                    .store
                    .record_frame_received(pin.0, seq, now_ms(), &counters)
                    .await
                {
                    tracing::error!(%pin, seq, "could not record the frame as received, so it stays with the relay: {e}");
                    self.sessions.remove(&pin);
                    return;
                }
            }
            Err(Rejection::UnknownDevice) => {
                tracing::warn!(%pin, seq, "dropping a frame from a PIN that has no device on this server");
                self.reject(pin, seq, "unknown device");
            }
            Err(Rejection::Replay(e)) => {
                tracing::debug!(%pin, seq, "dropping a replayed frame: {e}");
                self.reject(pin, seq, &e);
            }
            Err(Rejection::CannotOpen(reason)) => {
                tracing::warn!(%pin, seq, "a frame from this device could not be opened: {reason}");
                self.reject(pin, seq, &reason);
                let report = error_envelope(
                    schema::ErrorCode::CannotDecrypt,
                    "The server could not decrypt a message from this device. If this keeps happening, \
                     the device's encryption key is out of date: activate the device again.",
                    seq,
                );
                if let Err(e) = self.send(pin, &report).await {
                    tracing::warn!(%pin, "could not tell the device: {e}");
                }
            }
        }
        self.ack(&frame).await;
    }

    async fn open(&mut self, pin: Pin, frame: &Frame) -> Result<(Vec<u8>, String), Rejection> {
        for attempt in 0..2 {
            let dev = match self.load(pin).await {
                Ok(d) => d,
                Err(DispatchError::UnknownDevice(_)) => return Err(Rejection::UnknownDevice),
                Err(e) => return Err(Rejection::CannotOpen(e.to_string())),
            };
            match dev.session.opener.open(frame) {
                Ok(plain) => return Ok((plain, dev.email.clone())),
                Err(OpenError::Replay(e)) => return Err(Rejection::Replay(e.to_string())),
                Err(OpenError::Authentication) if attempt == 0 => {
                    // The key may have changed under us (re-activation): reload once.
                    let current = dev.key_generation;
                    let fresh = self
                        .store
                        .device_by_pin(pin.0)
                        .await
                        .ok()
                        .flatten()
                        .map(|d| d.key_generation);
                    if fresh.is_some_and(|g| g != current) {
                        self.sessions.remove(&pin);
                        continue;
                    }
                    return Err(Rejection::CannotOpen(OpenError::Authentication.to_string()));
                }
                Err(e) => return Err(Rejection::CannotOpen(e.to_string())),
            }
        }
        Err(Rejection::CannotOpen(OpenError::Authentication.to_string()))
    }

    /// Handles one opened frame. `Err` only when what it asks for could not be stored (the
    /// frame is then not acknowledged, so the relay delivers it again).
    async fn handle(
        &mut self,
        pin: Pin,
        seq: u64,
        plain: &[u8],
        email: &str,
    ) -> Result<(), bramble_store::StoreError> {
        let env = match bramble_proto::decode_message::<Envelope>(plain, MAX_PLAINTEXT) {
            Ok(env) => env,
            Err(e) => {
                self.event(ServerEvent::Received {
                    pin,
                    seq,
                    kind: "malformed",
                });
                let report = error_envelope(
                    schema::ErrorCode::BadRequest,
                    &format!("The server could not read that message: {e}"),
                    seq,
                );
                let _ = self.send(pin, &report).await;
                return Ok(());
            }
        };
        let (kind, reply) = match env.body {
            Some(Body::Ping(p)) => (
                "ping",
                Some(Envelope {
                    version: 1,
                    body: Some(Body::Pong(schema::Pong {
                        note: p.note,
                        ping_sent_at_ms: p.sent_at_ms,
                    })),
                }),
            ),
            Some(Body::Pong(_)) => ("pong", None),
            Some(
                body @ (Body::KeyConfirmation(_)
                | Body::PolicyApplied(_)
                | Body::ServiceBooksReceived(_)),
            ) => {
                let env = Envelope {
                    version: env.version,
                    body: Some(body),
                };
                // Never wait here: the activation service may itself be waiting on this shard.
                if self
                    .activation
                    .try_send(ActivationInput::Sealed(pin, env))
                    .is_err()
                {
                    tracing::warn!(%pin, "the activation service is overloaded; an activation message was dropped");
                }
                ("activation", None)
            }
            Some(Body::Error(e)) => {
                tracing::info!(%pin, code = e.code, "the device reported an error: {}", e.message);
                ("error", None)
            }
            Some(Body::MailReceived(r)) => {
                ("mail received", self.mail_received(email, seq, r).await?)
            }
            Some(Body::MailSubmit(submit)) => (
                "mail submit",
                Some(self.mail_submit(pin, email, seq, submit).await?),
            ),
            Some(Body::MailChange(change)) => {
                ("mail change", self.mail_change(email, seq, &change).await?)
            }
            Some(
                body @ (Body::CommandResult(_)
                | Body::AppPackageRequest(_)
                | Body::SoftwareReport(_)),
            ) => {
                // Not stored here: the policy service sends again what is not answered, and
                // the device answers a repeat as before.
                let kind = match &body {
                    Body::CommandResult(_) => "command result",
                    Body::AppPackageRequest(_) => "package request",
                    _ => "software report",
                };
                self.policy.device(
                    pin,
                    Envelope {
                        version: env.version,
                        body: Some(body),
                    },
                );
                (kind, None)
            }
            Some(
                body @ (Body::SyncConfigRequest(_)
                | Body::SlowSyncStart(_)
                | Body::OrganizerBatch(_)
                | Body::OrganizerBatchResult(_)
                | Body::DeviceBackup(_)),
            ) => {
                // Not stored here: the device sends again what is not answered.
                let kind = match &body {
                    Body::SyncConfigRequest(_) => "sync config request",
                    Body::SlowSyncStart(_) => "slow sync start",
                    Body::OrganizerBatch(_) => "organizer batch",
                    Body::OrganizerBatchResult(_) => "organizer batch result",
                    _ => "device backup",
                };
                self.sync.device(
                    pin,
                    Envelope {
                        version: env.version,
                        body: Some(body),
                    },
                );
                (kind, None)
            }
            Some(body @ (Body::MoreRequest(_) | Body::AttachmentRequest(_))) => {
                let env = Envelope {
                    version: env.version,
                    body: Some(body),
                };
                (self.pass_to_agent(pin, email, seq, env).await?, None)
            }
            Some(_) | None => (
                "unknown",
                Some(error_envelope(
                    schema::ErrorCode::Unsupported,
                    "This server does not support that kind of message yet.",
                    seq,
                )),
            ),
        };
        self.event(ServerEvent::Received { pin, seq, kind });
        if let Some(reply) = reply
            && let Err(e) = self.send(pin, &reply).await
        {
            tracing::warn!(%pin, "could not answer: {e}");
        }
        Ok(())
    }

    /// The device holds these messages (delivery confirmation): recorded, counted.
    async fn mail_received(
        &mut self,
        email: &str,
        seq: u64,
        r: schema::MailReceived,
    ) -> Result<Option<Envelope>, bramble_store::StoreError> {
        if r.ref_ids.len() > MAX_CONFIRMATIONS {
            return Ok(Some(error_envelope(
                schema::ErrorCode::BadRequest,
                &format!(
                    "A delivery confirmation names at most {MAX_CONFIRMATIONS} messages; this one named {}.",
                    r.ref_ids.len()
                ),
                seq,
            )));
        }
        let ids: Vec<i64> = r
            .ref_ids
            .iter()
            .filter_map(|&id| i64::try_from(id).ok())
            .collect();
        let confirmed = self.store.confirm_mail(email, &ids).await?;
        if confirmed > 0 {
            let n = i64::try_from(confirmed).unwrap_or(i64::MAX);
            if let Err(e) = self
                .store
                .bump_stats(&[("global", "delivered", n), (email, "delivered", n)])
                .await
            {
                tracing::warn!("could not update statistics: {e}");
            }
        }
        self.event(ServerEvent::MailConfirmed {
            email: email.to_owned(),
            ref_ids: r.ref_ids,
        });
        Ok(None)
    }

    /// A message the device wants sent: stored in the outbox (once per client id) before the
    /// device is told it was accepted; the messaging agent sends it.
    async fn mail_submit(
        &mut self,
        pin: Pin,
        email: &str,
        seq: u64,
        submit: schema::MailSubmit,
    ) -> Result<Envelope, bramble_store::StoreError> {
        let client_id = submit.client_id;
        let answer = |state: schema::SubmitState, message: String, message_id: String| Envelope {
            version: u32::from(bramble_proto::PROTOCOL_VERSION),
            body: Some(Body::MailSubmitted(schema::MailSubmitted {
                client_id,
                state: state as i32,
                message,
                message_id,
            })),
        };
        if client_id == 0 {
            return Ok(error_envelope(
                schema::ErrorCode::BadRequest,
                "A message to send needs a client id other than 0.",
                seq,
            ));
        }
        let typed = submit.body.len() + submit.subject.len();
        if typed > crate::messaging::mail::compose::MAX_BODY {
            return Ok(answer(
                schema::SubmitState::SubmitFailed,
                format!(
                    "The message is too long to send ({typed} bytes of text; at most {}).",
                    crate::messaging::mail::compose::MAX_BODY
                ),
                String::new(),
            ));
        }
        let domain = email.rsplit_once('@').map_or("bramble.invalid", |(_, d)| d);
        let message_id = format!(
            "{:016x}.{client_id}.bramble@{domain}",
            rand::random::<u64>()
        );
        let (row, new) = self
            .store
            .add_outbox(
                email,
                pin.0,
                client_id,
                &submit.encode_to_vec(),
                &message_id,
            )
            .await?;
        self.event(ServerEvent::MailSubmitted {
            email: email.to_owned(),
            client_id,
            new,
        });
        if new {
            self.outbox.notify_one();
        }
        let message_id = row.message_id.unwrap_or_default();
        Ok(match row.state.as_str() {
            "sent" => answer(schema::SubmitState::SubmitSent, String::new(), message_id),
            "failed" => answer(
                schema::SubmitState::SubmitFailed,
                row.error.unwrap_or_default(),
                message_id,
            ),
            _ => answer(
                schema::SubmitState::SubmitAccepted,
                String::new(),
                message_id,
            ),
        })
    }

    /// The device changed a message (read, flagged, deleted, moved): queued durably for the
    /// messaging agent, which makes the change in the mailbox.
    async fn mail_change(
        &mut self,
        email: &str,
        seq: u64,
        change: &schema::MailChange,
    ) -> Result<Option<Envelope>, bramble_store::StoreError> {
        let ref_id = i64::try_from(change.ref_id).unwrap_or(-1);
        match self
            .store
            .enqueue_mail_change(email, ref_id, &change.encode_to_vec())
            .await
        {
            Ok(_) => {
                self.changes.notify_one();
                Ok(None)
            }
            Err(bramble_store::StoreError::NoSuchMailItem { .. }) => Ok(Some(error_envelope(
                schema::ErrorCode::BadRequest,
                &format!(
                    "The server does not know message {}, so the change was not made in your mailbox.",
                    change.ref_id
                ),
                seq,
            ))),
            Err(e) => Err(e),
        }
    }

    /// More or an attachment: for the messaging agent, which reads the mailbox.
    async fn pass_to_agent(
        &mut self,
        pin: Pin,
        email: &str,
        seq: u64,
        env: Envelope,
    ) -> Result<&'static str, bramble_store::StoreError> {
        let request = MailRequest {
            pin,
            email: email.to_owned(),
            seq,
            env,
        };
        let kind = match &request.env.body {
            Some(Body::MoreRequest(_)) => "more",
            _ => "attachment",
        };
        // never wait here: the agent's answers go through this shard
        if let Err(e) = self.mail.try_send(request) {
            tracing::warn!(%pin, "the messaging agent is overloaded; a {kind} request was dropped (the device asks again)");
            drop(e);
        }
        Ok(kind)
    }

    async fn ack(&self, frame: &Frame) {
        let msg = schema::Control {
            msg: Some(Msg::Ack(schema::Ack {
                frames: vec![frame_ref(frame)],
            })),
        };
        let _ = self
            .router
            .send(Frame::control(self.me, Address::Relay, &msg))
            .await;
    }

    fn reject(&self, pin: Pin, seq: u64, reason: &str) {
        self.event(ServerEvent::Rejected {
            pin,
            seq,
            reason: reason.to_owned(),
        });
    }

    fn event(&self, ev: ServerEvent) {
        let _ = self.events.send(ev);
    }

    /// Counts one `name` for the user and for the whole server, in one commit.
    async fn count(&self, email: &str, name: &str) {
        if let Err(e) = self
            .store
            .bump_stats(&[("global", name, 1), (email, name, 1)])
            .await
        {
            tracing::warn!("could not update statistics: {e}");
        }
    }
}

enum Rejection {
    UnknownDevice,
    Replay(String),
    CannotOpen(String),
}

fn error_envelope(code: schema::ErrorCode, message: &str, about_seq: u64) -> Envelope {
    Envelope {
        version: 1,
        body: Some(Body::Error(schema::ErrorReport {
            code: code as i32,
            message: message.to_owned(),
            about_seq,
        })),
    }
}

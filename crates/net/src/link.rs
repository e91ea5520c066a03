//! The endpoint side of a relay connection, shared by the enterprise server's router and the
//! device: TLS with a pinned certificate, the login (Challenge, then DeviceHello or
//! ServerHello, then Welcome or Refused), keepalive answers, acks and delivery reports.
//!
//! It carries frames; it does not seal or open them (that is the dispatcher's and the
//! device's job).

use std::sync::Arc;
use std::time::Duration;

use bramble_proto::identity::NONCE_LEN;
use bramble_proto::schema::{self, control::Msg};
use bramble_proto::{Address, DeviceIdentity, Frame, FrameKind, MAX_FRAME_LEN, Pin, SrpId};
use futures::{SinkExt, StreamExt};
use tokio_util::codec::Framed;

use crate::codec::{CodecError, FrameCodec};
use crate::tls::{self, CertPin, ClientStream, TlsError};

/// How long the relay may take to answer a login.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Who logs in.
#[derive(Debug)]
pub enum Credentials<'a> {
    /// A device, proving it owns its PIN with its identity key.
    Device {
        /// The device's identity.
        identity: &'a DeviceIdentity,
    },
    /// An enterprise server, with its SRP id and key.
    Server {
        /// The SRP id.
        srp: SrpId,
        /// The SRP key (a secret).
        key: &'a str,
    },
}

/// A relay connection that failed or ended, in the user's words.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// TLS or TCP failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The relay refused the login or ended the connection.
    #[error("the relay refused the connection ({reason}): {detail}")]
    Refused {
        /// Why, as the relay coded it.
        reason: Refusal,
        /// The relay's sentence.
        detail: String,
    },
    /// The relay sent something that is not the protocol.
    #[error("the relay broke the protocol: {0}")]
    Protocol(String),
    /// The relay did not answer in time.
    #[error("the relay did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection closed.
    #[error("the relay closed the connection")]
    Closed,
    /// Reading or writing failed.
    #[error("the connection to the relay failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<CodecError> for LinkError {
    fn from(e: CodecError) -> LinkError {
        match e {
            CodecError::Io(e) => LinkError::Io(e),
            CodecError::Frame(e) => LinkError::Protocol(e.to_string()),
        }
    }
}

impl LinkError {
    /// Whether retrying later can help without an operator's action.
    pub fn is_transient(&self) -> bool {
        match self {
            LinkError::Refused { reason, .. } => {
                matches!(
                    reason,
                    Refusal::Shutdown | Refusal::Protocol | Refusal::Other(_)
                )
            }
            LinkError::Tls(TlsError::FingerprintMismatch { .. }) => false,
            _ => true,
        }
    }
}

/// A refusal reason, from `schema::RefusalReason`.
pub type Refusal = RefusalText;

/// `schema::RefusalReason` with a readable `Display`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalText {
    /// See the schema.
    BadProof,
    /// See the schema.
    PinMismatch,
    /// See the schema.
    PinTaken,
    /// See the schema.
    SrpUnknown,
    /// See the schema.
    SrpBadKey,
    /// See the schema.
    SrpConflict,
    /// See the schema.
    SrpDisabled,
    /// See the schema.
    Protocol,
    /// See the schema.
    Shutdown,
    /// A reason this build does not know.
    Other(i32),
}

impl From<i32> for RefusalText {
    fn from(v: i32) -> RefusalText {
        use schema::RefusalReason as R;
        match R::try_from(v) {
            Ok(R::BadProof) => RefusalText::BadProof,
            Ok(R::PinMismatch) => RefusalText::PinMismatch,
            Ok(R::PinTaken) => RefusalText::PinTaken,
            Ok(R::SrpUnknown) => RefusalText::SrpUnknown,
            Ok(R::SrpBadKey) => RefusalText::SrpBadKey,
            Ok(R::SrpConflict) => RefusalText::SrpConflict,
            Ok(R::SrpDisabled) => RefusalText::SrpDisabled,
            Ok(R::Protocol) => RefusalText::Protocol,
            Ok(R::Shutdown) => RefusalText::Shutdown,
            _ => RefusalText::Other(v),
        }
    }
}

impl std::fmt::Display for RefusalText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            RefusalText::BadProof => "bad proof of identity",
            RefusalText::PinMismatch => "PIN does not match the identity key",
            RefusalText::PinTaken => "PIN held by another device",
            RefusalText::SrpUnknown => "unknown SRP id",
            RefusalText::SrpBadKey => "wrong SRP key",
            RefusalText::SrpConflict => "SRP id in conflict",
            RefusalText::SrpDisabled => "SRP id disabled",
            RefusalText::Protocol => "protocol error",
            RefusalText::Shutdown => "relay shutting down",
            RefusalText::Other(v) => return write!(f, "reason {v}"),
        };
        f.write_str(s)
    }
}

/// What arrives on a link.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// A sealed frame for this endpoint.
    Sealed(Frame),
    /// What became of a frame this server sent (servers only).
    Report(schema::DeliveryReport),
    /// An activation handshake frame (unsealed; before device and server share a key).
    Activation(Frame),
    /// The relay's answer to an activation mail request (devices only).
    ActivationMailResult(schema::ActivationMailResult),
}

/// A logged-in connection to a relay.
#[derive(Debug)]
pub struct Link {
    framed: Framed<ClientStream, FrameCodec>,
    me: Address,
    welcome: schema::Welcome,
}

impl Link {
    /// Connects to the relay at `addr`, checks its certificate against `pin`, and logs in.
    ///
    /// # Errors
    /// A [`LinkError`]: connection, certificate, refusal, timeout.
    pub async fn connect(
        addr: &str,
        pin: &Arc<CertPin>,
        creds: Credentials<'_>,
    ) -> Result<Link, LinkError> {
        let stream = tokio::time::timeout(LOGIN_TIMEOUT, tls::connect(addr, pin))
            .await
            .map_err(|_| LinkError::Timeout(LOGIN_TIMEOUT))??;
        let binding = tls::channel_binding_client(&stream)?;
        let mut framed = Framed::new(stream, FrameCodec::with_max_len(MAX_FRAME_LEN));
        let login = async {
            let challenge = match next_control(&mut framed).await? {
                Msg::Challenge(c) => c,
                Msg::Refused(r) => return Err(refused(r)),
                other => {
                    return Err(LinkError::Protocol(format!(
                        "expected a challenge, got {other:?}"
                    )));
                }
            };
            if challenge.nonce.len() != NONCE_LEN {
                return Err(LinkError::Protocol(
                    "the challenge nonce has the wrong length".into(),
                ));
            }
            let (me, hello) = match creds {
                Credentials::Device { identity } => {
                    let signature = identity
                        .prove(&challenge.nonce, &binding)
                        .map_err(|e| LinkError::Protocol(e.to_string()))?;
                    let pin = identity.pin();
                    (
                        Address::Pin(pin),
                        Msg::DeviceHello(schema::DeviceHello {
                            pin: pin.0,
                            identity_key: identity.public_key().to_vec().into(),
                            signature: signature.into(),
                            agent: agent("device"),
                        }),
                    )
                }
                Credentials::Server { srp, key } => (
                    Address::Srp(srp),
                    Msg::ServerHello(schema::ServerHello {
                        srp_id: srp.get(),
                        srp_key: key.to_owned(),
                        agent: agent("server"),
                    }),
                ),
            };
            framed
                .send(Frame::control(
                    me,
                    Address::Relay,
                    &schema::Control { msg: Some(hello) },
                ))
                .await?;
            match next_control(&mut framed).await? {
                Msg::Welcome(w) => Ok((me, w)),
                Msg::Refused(r) => Err(refused(r)),
                other => Err(LinkError::Protocol(format!(
                    "expected welcome, got {other:?}"
                ))),
            }
        };
        let (me, welcome) = tokio::time::timeout(LOGIN_TIMEOUT, login)
            .await
            .map_err(|_| LinkError::Timeout(LOGIN_TIMEOUT))??;
        Ok(Link {
            framed,
            me,
            welcome,
        })
    }

    /// This endpoint's address (its PIN or SRP id).
    pub fn address(&self) -> Address {
        self.me
    }

    /// The relay's welcome (frames queued for this endpoint, largest frame accepted).
    pub fn welcome(&self) -> &schema::Welcome {
        &self.welcome
    }

    /// Sends one frame.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn send(&mut self, frame: Frame) -> Result<(), LinkError> {
        Ok(self.framed.send(frame).await?)
    }

    /// Queues frames and writes them together (one flush).
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn send_all(
        &mut self,
        frames: impl IntoIterator<Item = Frame>,
    ) -> Result<(), LinkError> {
        for f in frames {
            self.framed.feed(f).await?;
        }
        Ok(SinkExt::<Frame>::flush(&mut self.framed).await?)
    }

    /// Tells the relay these frames arrived, so it stops holding them.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn ack(&mut self, frames: Vec<schema::FrameRef>) -> Result<(), LinkError> {
        if frames.is_empty() {
            return Ok(());
        }
        let msg = schema::Control {
            msg: Some(Msg::Ack(schema::Ack { frames })),
        };
        self.send(Frame::control(self.me, Address::Relay, &msg))
            .await
    }

    /// The next sealed frame or delivery report. Keepalives are answered here.
    ///
    /// Cancel-safe: a frame is never half-read.
    ///
    /// # Errors
    /// [`LinkError::Closed`] when the relay hung up, [`LinkError::Refused`] when it ended the
    /// connection with a reason, others on failure.
    pub async fn recv(&mut self) -> Result<LinkEvent, LinkError> {
        loop {
            let Some(frame) = self.framed.next().await else {
                return Err(LinkError::Closed);
            };
            let frame = frame?;
            match frame.header.kind {
                FrameKind::Sealed => return Ok(LinkEvent::Sealed(frame)),
                FrameKind::Activation => return Ok(LinkEvent::Activation(frame)),
                FrameKind::Control => {
                    let msg = frame
                        .to_control()
                        .map_err(|e| LinkError::Protocol(e.to_string()))?;
                    match msg.msg {
                        Some(Msg::Keepalive(k)) if !k.reply => {
                            let reply = schema::Control {
                                msg: Some(Msg::Keepalive(schema::Keepalive {
                                    nonce: k.nonce,
                                    reply: true,
                                })),
                            };
                            self.send(Frame::control(self.me, Address::Relay, &reply))
                                .await?;
                        }
                        Some(Msg::DeliveryReport(r)) => return Ok(LinkEvent::Report(r)),
                        Some(Msg::ActivationMailResult(r)) => {
                            return Ok(LinkEvent::ActivationMailResult(r));
                        }
                        Some(Msg::Refused(r)) => return Err(refused(r)),
                        _ => tracing::debug!("ignoring a control message from the relay"),
                    }
                }
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = SinkExt::<Frame>::close(&mut self.framed).await;
    }
}

/// The reference an endpoint acks a frame by.
pub fn frame_ref(frame: &Frame) -> schema::FrameRef {
    let (srp_id, pin) = match frame.header.src {
        Address::Srp(s) => (s.get(), 0),
        Address::Pin(Pin(p)) => (0, p),
        Address::Relay => (0, 0),
    };
    schema::FrameRef {
        srp_id,
        seq: frame.header.seq,
        pin,
    }
}

fn agent(kind: &str) -> String {
    format!("bramble-{kind}/{}", env!("CARGO_PKG_VERSION"))
}

fn refused(r: schema::Refused) -> LinkError {
    LinkError::Refused {
        reason: RefusalText::from(r.reason),
        detail: r.detail,
    }
}

async fn next_control(framed: &mut Framed<ClientStream, FrameCodec>) -> Result<Msg, LinkError> {
    let Some(frame) = framed.next().await else {
        return Err(LinkError::Closed);
    };
    let frame = frame?;
    frame
        .to_control()
        .map_err(|e| LinkError::Protocol(e.to_string()))?
        .msg
        .ok_or_else(|| LinkError::Protocol("an empty control message".into()))
}

//! The device's connection to its relay: TLS with the pinned (or first-seen) certificate, the
//! login as its PIN, and sealed envelopes both ways.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bramble_net::link::frame_ref;
use bramble_net::{CertPin, Credentials, Link, LinkEvent};
use bramble_proto::schema::{self, Envelope, envelope::Body};
use tracing::Instrument;

use crate::device::Device;
use crate::error::DeviceError;

/// How long [`Connection::ping`] waits for the Pong.
pub const PING_TIMEOUT: Duration = Duration::from_secs(30);

/// What arrived from the enterprise server.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A sealed envelope that opened.
    Envelope {
        /// Its sequence number.
        seq: u64,
        /// What it carries.
        env: Envelope,
    },
    /// An activation handshake message (unsealed) from an enterprise server.
    Activation {
        /// The server that sent it.
        from: bramble_proto::SrpId,
        /// What it says.
        msg: bramble_proto::schema::activation::Msg,
    },
    /// A frame that did not open: not from this device's server, sealed with another key,
    /// replayed, altered or malformed. It was acked all the same, so the relay stops holding it.
    Rejected {
        /// Its sequence number.
        seq: u64,
        /// Why, in words.
        reason: String,
    },
}

/// A logged-in connection to the relay. Borrows the device, whose state (reservations,
/// received numbers, pinned certificate) it keeps up to date.
pub struct Connection<'d> {
    device: &'d mut Device,
    link: Link,
    addr: String,
    span: tracing::Span,
    /// Opened and persisted, not yet handed to the caller.
    ready: VecDeque<Incoming>,
    /// Opened (or rejected) and persisted, not yet acked to the relay.
    unacked: Vec<schema::FrameRef>,
    /// The relay's answers to activation mail requests, not yet taken.
    mail_results: VecDeque<schema::ActivationMailResult>,
}

impl std::fmt::Debug for Connection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("pin", &self.device.pin())
            .field("relay", &self.addr)
            .field("ready", &self.ready.len())
            .field("unacked", &self.unacked.len())
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Connects to the relay over TLS and logs in as this device's PIN. On the first
    /// successful connection to a relay without a pinned fingerprint, the certificate's
    /// fingerprint is pinned and written to disk.
    ///
    /// Connecting does not need an enterprise server: frames queued at the relay arrive on
    /// [`Connection::recv`] either way.
    ///
    /// # Errors
    /// [`DeviceError::NoRelay`], [`DeviceError::NoConnection`],
    /// [`DeviceError::RelayCertificateChanged`], [`DeviceError::RelayRefused`], or a failure
    /// to write the pinned fingerprint.
    pub async fn connect(&mut self) -> Result<Connection<'_>, DeviceError> {
        let relay = self.relay().cloned().ok_or(DeviceError::NoRelay)?;
        let span = tracing::info_span!("device", pin = %self.pin(), relay = %relay.addr);
        let cert = CertPin::new(relay.fingerprint);
        let creds = Credentials::Device {
            identity: self.identity(),
        };
        let link = Link::connect(&relay.addr, &cert, creds)
            .instrument(span.clone())
            .await
            .map_err(|e| DeviceError::from_link(&relay.addr, e, true))?;
        if relay.fingerprint.is_none()
            && let Some(seen) = cert.seen()
        {
            span.in_scope(|| self.pin_relay(seen))?;
        }
        span.in_scope(|| {
            tracing::info!(queued = link.welcome().queued, "connected to the relay");
        });
        self.runtime.epoch = self.runtime.epoch.wrapping_add(1);
        Ok(Connection {
            device: self,
            link,
            addr: relay.addr,
            span,
            ready: VecDeque::new(),
            unacked: Vec::new(),
            mail_results: VecDeque::new(),
        })
    }
}

impl Connection<'_> {
    /// The device this connection belongs to.
    pub fn device(&self) -> &Device {
        self.device
    }

    /// How many frames the relay said were queued for this device when it logged in.
    pub fn queued_at_login(&self) -> u32 {
        self.link.welcome().queued
    }

    /// Seals `env` for the enterprise server and sends it; returns its sequence number.
    ///
    /// # Errors
    /// [`DeviceError::NotActivated`], [`DeviceError::TooLarge`], a failure to persist a
    /// reservation, or [`DeviceError::ConnectionLost`].
    pub async fn send(&mut self, env: &Envelope) -> Result<u64, DeviceError> {
        let span = self.span.clone();
        async {
            let frame = self.device.seal(env)?;
            let seq = frame.header.seq;
            self.link.send(frame).await.map_err(|e| self.lost(e))?;
            tracing::trace!(seq, "sent");
            Ok(seq)
        }
        .instrument(span)
        .await
    }

    /// The next frame from the enterprise server, opened. Its received sequence number is
    /// written to disk, then it is acked to the relay; a frame that does not open is acked too
    /// and returned as [`Incoming::Rejected`].
    ///
    /// A Ping from the server is answered with a Pong here (and still returned); an envelope
    /// of a kind this build does not know is answered with an `ErrorReport` of code
    /// UNSUPPORTED, as the schema asks.
    ///
    /// Cancel-safe: what was opened before a cancellation is returned by the next call.
    ///
    /// # Errors
    /// [`DeviceError::ConnectionLost`] or [`DeviceError::RelayRefused`] when the connection
    /// ends; a failure to persist the received number.
    pub async fn recv(&mut self) -> Result<Incoming, DeviceError> {
        let span = self.span.clone();
        async {
            loop {
                self.flush_acks().await?;
                if let Some(incoming) = self.ready.pop_front() {
                    return Ok(incoming);
                }
                self.receive_one().await?;
            }
        }
        .instrument(span)
        .await
    }

    /// Sends a Ping through the relay to the enterprise server and waits (up to
    /// [`PING_TIMEOUT`]) for its Pong; returns the round trip. What else arrives meanwhile is
    /// kept for [`Connection::recv`].
    ///
    /// # Errors
    /// As [`Connection::send`] and [`Connection::recv`], and [`DeviceError::NoAnswer`].
    pub async fn ping(&mut self, note: &str) -> Result<Duration, DeviceError> {
        let started = Instant::now();
        let sent_at_ms = unix_ms();
        let ping = Envelope {
            version: u32::from(bramble_proto::PROTOCOL_VERSION),
            body: Some(Body::Ping(schema::Ping {
                note: note.to_owned(),
                sent_at_ms,
            })),
        };
        self.send(&ping).await?;
        let span = self.span.clone();
        let wait = async {
            loop {
                let pong = self.ready.iter().position(|i| {
                    matches!(i, Incoming::Envelope { env: Envelope { body: Some(Body::Pong(p)), .. }, .. }
                        if p.note == note && p.ping_sent_at_ms == sent_at_ms)
                });
                if let Some(at) = pong {
                    self.ready.remove(at);
                    return Ok(started.elapsed());
                }
                self.flush_acks().await?;
                self.receive_one().await?;
            }
        };
        let rtt = tokio::time::timeout(PING_TIMEOUT, wait.instrument(span))
            .await
            .map_err(|_| DeviceError::NoAnswer(PING_TIMEOUT))??;
        tracing::debug!(parent: &self.span, ?rtt, "pong");
        Ok(rtt)
    }

    /// Asks the relay to mail `etp_dat` to `email` as an activation request (seed 002,
    /// steps 4-5) and waits for its answer. Other frames arriving meanwhile are kept for
    /// [`Connection::recv`].
    ///
    /// # Errors
    /// [`DeviceError::ActivationMailRefused`] with the relay's reason, or a connection failure.
    pub async fn send_activation_mail(
        &mut self,
        email: &str,
        etp_dat: Vec<u8>,
    ) -> Result<(), DeviceError> {
        let me = bramble_proto::Address::Pin(self.device.pin());
        let msg = schema::Control {
            msg: Some(schema::control::Msg::ActivationMail(
                schema::ActivationMail {
                    email: email.to_owned(),
                    etp_dat: etp_dat.into(),
                },
            )),
        };
        let frame = bramble_proto::Frame::control(me, bramble_proto::Address::Relay, &msg);
        self.link.send(frame).await.map_err(|e| self.lost(e))?;
        let wait = async {
            loop {
                if let Some(r) = self.mail_results.pop_front() {
                    return Ok(r);
                }
                self.receive_one().await?;
            }
        };
        let result = tokio::time::timeout(PING_TIMEOUT, wait)
            .await
            .map_err(|_| DeviceError::NoAnswer(PING_TIMEOUT))??;
        if result.sent {
            Ok(())
        } else {
            Err(DeviceError::ActivationMailRefused(result.detail))
        }
    }

    /// Sends an activation handshake message (unsealed) to the server `to`.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn send_activation(
        &mut self,
        to: bramble_proto::SrpId,
        msg: schema::activation::Msg,
    ) -> Result<(), DeviceError> {
        let frame = bramble_proto::activation::activation_frame(
            bramble_proto::Address::Pin(self.device.pin()),
            bramble_proto::Address::Srp(to),
            msg,
        );
        self.link.send(frame).await.map_err(|e| self.lost(e))
    }

    /// The device, mutably: to unlock it, set its password or install an application while
    /// connected (activation binds it while connected). What such a change leaves to tell
    /// the server goes with the next [`crate::mail::send_pending`] (or
    /// [`crate::manage::send_pending`]).
    pub fn device_mut(&mut self) -> &mut Device {
        self.device
    }

    /// Acks what is still unacked and closes the connection.
    pub async fn close(mut self) {
        let _ = self.flush_acks().await;
        let span = self.span.clone();
        self.link.close().await;
        tracing::debug!(parent: &span, "disconnected");
    }

    /// Reads one event from the relay; a sealed frame is opened, persisted, queued for the
    /// caller and acked.
    async fn receive_one(&mut self) -> Result<(), DeviceError> {
        let event = self.link.recv().await.map_err(|e| self.lost(e))?;
        let frame = match event {
            LinkEvent::Sealed(frame) => frame,
            LinkEvent::Activation(frame) => {
                let item = match (
                    frame.header.src,
                    bramble_proto::activation::read_activation(&frame),
                ) {
                    (bramble_proto::Address::Srp(from), Ok(msg)) => {
                        Incoming::Activation { from, msg }
                    }
                    (_, Err(e)) => Incoming::Rejected {
                        seq: frame.header.seq,
                        reason: e.to_string(),
                    },
                    (src, Ok(_)) => Incoming::Rejected {
                        seq: frame.header.seq,
                        reason: format!("an activation message from {src}, not from a server"),
                    },
                };
                self.ready.push_back(item);
                self.unacked.push(frame_ref(&frame));
                return self.flush_acks().await;
            }
            LinkEvent::ActivationMailResult(r) => {
                self.mail_results.push_back(r);
                return Ok(());
            }
            // Delivery reports are for enterprise servers.
            LinkEvent::Report(_) => return Ok(()),
        };
        // Nothing below awaits until the frame is in `ready` and `unacked`, so a cancelled
        // call loses nothing.
        let incoming = self.device.unseal(&frame)?;
        let answer = match &incoming {
            Incoming::Envelope { seq, env } => answer_to(*seq, env),
            Incoming::Rejected { .. } | Incoming::Activation { .. } => None,
        };
        if let Incoming::Envelope { seq, .. } = &incoming {
            tracing::trace!(seq, "received");
        }
        self.ready.push_back(incoming);
        self.unacked.push(frame_ref(&frame));
        self.flush_acks().await?;
        if let Some(reply) = answer {
            let frame = self.device.seal(&reply)?;
            self.link.send(frame).await.map_err(|e| self.lost(e))?;
        }
        Ok(())
    }

    async fn flush_acks(&mut self) -> Result<(), DeviceError> {
        if self.unacked.is_empty() {
            return Ok(());
        }
        // Cleared only once sent: a cancelled ack is sent again (the relay ignores repeats).
        self.link
            .ack(self.unacked.clone())
            .await
            .map_err(|e| self.lost(e))?;
        self.unacked.clear();
        Ok(())
    }

    fn lost(&self, e: bramble_net::LinkError) -> DeviceError {
        let err = DeviceError::from_link(&self.addr, e, false);
        tracing::info!(parent: &self.span, error = %err, "connection ended");
        err
    }
}

/// What the device answers by itself: a Pong to a Ping, UNSUPPORTED to an unknown body.
fn answer_to(seq: u64, env: &Envelope) -> Option<Envelope> {
    let body = match &env.body {
        Some(Body::Ping(p)) => Body::Pong(schema::Pong {
            note: p.note.clone(),
            ping_sent_at_ms: p.sent_at_ms,
        }),
        None => Body::Error(schema::ErrorReport {
            code: schema::ErrorCode::Unsupported.into(),
            message: "This device does not know that kind of message; it may need an update."
                .into(),
            about_seq: seq,
        }),
        Some(_) => return None,
    };
    Some(Envelope {
        version: u32::from(bramble_proto::PROTOCOL_VERSION),
        body: Some(body),
    })
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

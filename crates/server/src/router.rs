//! The router: the server's one connection to the relay, under its SRP id.
//!
//! It connects out (so no inbound firewall hole is needed, as in the seeds' port 3101), logs
//! in with the SRP id and key, and reconnects with exponential back-off and jitter when the
//! link drops. Frames to devices come in on a bounded channel (back-pressure: senders wait
//! while the relay is away); frames from devices go out to the dispatcher; delivery reports
//! become [`ServerEvent::Delivery`].
//!
//! Owns: the relay link and its certificate pin. Must not touch: payloads (it never seals or
//! opens), user data.

use std::sync::Arc;
use std::time::Duration;

use bramble_net::link::RefusalText;
use bramble_net::tls::{CertPin, Fingerprint};
use bramble_net::{Credentials, Link, LinkError, LinkEvent};
use bramble_proto::schema::DeliveryStatus;
use bramble_proto::{Frame, Pin, SrpId};
use bramble_store::Store;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::ServerEvent;

/// Frames waiting to go to the relay, at most.
const OUTBOUND_DEPTH: usize = 1024;
/// Frames from devices waiting for the dispatcher, at most.
const INBOUND_DEPTH: usize = 1024;
/// Frames written to the relay in one go, at most.
const BATCH: usize = 64;

/// How the router reaches the relay.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// `host:port` of the relay's server port.
    pub relay_addr: String,
    /// The pinned relay certificate; `None` trusts the first one and pins it.
    pub fingerprint: Option<Fingerprint>,
    /// This server's SRP id.
    pub srp: SrpId,
    /// Its key.
    pub srp_key: String,
    /// First reconnection delay.
    pub backoff_min: Duration,
    /// Longest reconnection delay.
    pub backoff_max: Duration,
}

/// The state of the relay link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LinkState {
    /// Connecting or logging in.
    Connecting,
    /// Logged in.
    Up,
    /// Not connected; a retry is scheduled.
    Down {
        /// The last failure, in an operator's words.
        reason: String,
    },
    /// Stopped.
    Stopped,
}

/// A handle on the router task.
#[derive(Debug, Clone)]
pub struct Router {
    tx: mpsc::Sender<Frame>,
    state: watch::Receiver<LinkState>,
    cancel: CancellationToken,
    done: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// The router has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the router has stopped")]
pub struct RouterStopped;

impl Router {
    /// Starts the router. The receiver yields sealed frames from devices. When `store` is
    /// given, a certificate trusted on first use is pinned in it.
    pub fn spawn(
        cfg: RouterConfig,
        events: broadcast::Sender<ServerEvent>,
        store: Option<Store>,
    ) -> (Router, mpsc::Receiver<Frame>) {
        let (tx, outbound) = mpsc::channel(OUTBOUND_DEPTH);
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_DEPTH);
        let (state_tx, state) = watch::channel(LinkState::Connecting);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            cfg,
            outbound,
            inbound_tx,
            state_tx,
            events,
            store,
            cancel.clone(),
        ));
        let router = Router {
            tx,
            state,
            cancel,
            done: Arc::new(tokio::sync::Mutex::new(Some(task))),
        };
        (router, inbound)
    }

    /// Queues a frame for the relay; waits while the queue is full.
    ///
    /// # Errors
    /// [`RouterStopped`] after shutdown.
    pub async fn send(&self, frame: Frame) -> Result<(), RouterStopped> {
        self.tx.send(frame).await.map_err(|_| RouterStopped)
    }

    /// The link's state now.
    pub fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// Waits until the link is up, at most `timeout`; returns whether it is.
    pub async fn wait_up(&self, timeout: Duration) -> bool {
        let mut rx = self.state.clone();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s == LinkState::Up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops the router and closes the link.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        if let Some(task) = self.done.lock().await.take() {
            let _ = task.await;
        }
    }
}

async fn run(
    cfg: RouterConfig,
    mut outbound: mpsc::Receiver<Frame>,
    inbound: mpsc::Sender<Frame>,
    state: watch::Sender<LinkState>,
    events: broadcast::Sender<ServerEvent>,
    store: Option<Store>,
    cancel: CancellationToken,
) {
    let mut pin = CertPin::new(cfg.fingerprint);
    let mut delay = cfg.backoff_min;
    loop {
        let _ = state.send(LinkState::Connecting);
        let creds = Credentials::Server {
            srp: cfg.srp,
            key: &cfg.srp_key,
        };
        let attempt = tokio::select! {
            r = Link::connect(&cfg.relay_addr, &pin, creds) => r,
            () = cancel.cancelled() => break,
        };
        let reason = match attempt {
            Ok(link) => {
                delay = cfg.backoff_min;
                if pin.expected().is_none()
                    && let Some(seen) = pin.seen()
                {
                    tracing::info!(fingerprint = %seen, "pinned the relay's certificate (first use)");
                    remember_fingerprint(store.as_ref(), seen).await;
                    pin = CertPin::expect(seen);
                }
                tracing::info!(relay = %cfg.relay_addr, srp = %cfg.srp, "connected to the relay");
                let _ = state.send(LinkState::Up);
                let _ = events.send(ServerEvent::RelayUp);
                let reason = serve(link, &mut outbound, &inbound, &events, &cancel).await;
                let _ = events.send(ServerEvent::RelayDown {
                    reason: reason.clone(),
                });
                if cancel.is_cancelled() {
                    break;
                }
                tracing::warn!(relay = %cfg.relay_addr, "lost the relay: {reason}; reconnecting");
                reason
            }
            Err(e) => {
                let permanent = !e.is_transient();
                let reason = explain(&e, cfg.srp);
                if permanent {
                    tracing::error!(relay = %cfg.relay_addr, "{reason}");
                    delay = cfg.backoff_max;
                } else {
                    tracing::warn!(relay = %cfg.relay_addr, "cannot reach the relay: {reason}; retrying in about {delay:?}");
                }
                reason
            }
        };
        let _ = state.send(LinkState::Down { reason });
        tokio::select! {
            () = tokio::time::sleep(jitter(delay)) => {}
            () = cancel.cancelled() => break,
        }
        delay = (delay * 2).min(cfg.backoff_max);
    }
    let _ = state.send(LinkState::Stopped);
}

/// Carries frames until the link fails; returns why it ended.
async fn serve(
    mut link: Link,
    outbound: &mut mpsc::Receiver<Frame>,
    inbound: &mpsc::Sender<Frame>,
    events: &broadcast::Sender<ServerEvent>,
    cancel: &CancellationToken,
) -> String {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            ev = link.recv() => match ev {
                Ok(LinkEvent::Sealed(frame) | LinkEvent::Activation(frame)) => {
                    if inbound.send(frame).await.is_err() {
                        return "the dispatcher stopped".into();
                    }
                }
                Ok(LinkEvent::Report(r)) => {
                    let status = match DeliveryStatus::try_from(r.status) {
                        Ok(DeliveryStatus::Delivered) => "delivered",
                        Ok(DeliveryStatus::Queued) => "queued",
                        Ok(DeliveryStatus::Expired) => "expired",
                        Ok(DeliveryStatus::QueueFull) => "queue full",
                        _ => "unknown",
                    };
                    tracing::debug!(pin = %Pin(r.pin), seq = r.seq, status, "delivery report");
                    let _ = events.send(ServerEvent::Delivery { pin: Pin(r.pin), seq: r.seq, status });
                }
                Ok(LinkEvent::ActivationMailResult(_)) => {}
                Err(e) => return e.to_string(),
            },
            n = outbound.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return "the server is stopping".into();
                }
                if let Err(e) = link.send_all(batch.drain(..)).await {
                    return e.to_string();
                }
            }
            () = cancel.cancelled() => {
                link.close().await;
                return "the server is stopping".into();
            }
        }
    }
}

async fn remember_fingerprint(store: Option<&Store>, fp: Fingerprint) {
    let Some(store) = store else { return };
    match store.server_identity().await {
        Ok(Some(mut id)) if id.relay_fingerprint.is_none() => {
            id.relay_fingerprint = Some(fp.to_string());
            if let Err(e) = store.set_server_identity(&id).await {
                tracing::warn!("could not store the relay's fingerprint: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("could not store the relay's fingerprint: {e}"),
    }
}

fn explain(e: &LinkError, srp: SrpId) -> String {
    match e {
        LinkError::Refused {
            reason: RefusalText::SrpConflict,
            detail,
        } => format!(
            "the relay disabled SRP id {srp} because two servers used it at once ({detail}); \
             stop the other server, then have the relay operator run `bramble relay srp enable {srp}`"
        ),
        LinkError::Refused {
            reason: RefusalText::SrpBadKey | RefusalText::SrpUnknown,
            detail,
        } => {
            format!(
                "the relay does not accept SRP id {srp} with this key ({detail}); check [uplink] srp_id and srp_key"
            )
        }
        other => other.to_string(),
    }
}

/// `d` scaled by a random factor in [0.5, 1.5), so many servers do not retry in step.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>())
}

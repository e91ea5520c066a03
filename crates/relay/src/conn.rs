//! One connection: TLS, the login, then a reader (this task) and a writer (its own task).
//!
//! The reader checks and routes what the peer sends; the writer takes what is handed to the
//! connection from a bounded channel, coalesces whatever is waiting into one buffer and one
//! write, and sends what the disk queue holds for the peer when woken.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bramble_net::FrameCodec;
use bramble_net::codec::CodecError;
use bramble_net::tls::{ServerStream, channel_binding_server};
use bramble_proto::identity::{IdentityError, NONCE_LEN, verify_proof};
use bramble_proto::schema::{self, RefusalReason, control::Msg};
use bramble_proto::{Address, Frame, FrameKind, MAX_FRAME_LEN, Pin, SrpId};
use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{Framed, FramedRead};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, debug, error, info, trace, warn};

use crate::db::{self, DbOp};
use crate::route::{Conn, Held, Out, Shared, lock, report, route};
use crate::srp;

/// The longest a login (TLS, challenge, hello, checks) may take.
pub(crate) const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames coalesced into one write at most.
const WRITE_BATCH: usize = 128;
/// Queued frames or reports read from disk at a time.
const DRAIN_PAGE: usize = 128;
/// A write buffer grown past this is given back after the write.
const KEEP_BUF: usize = 64 << 10;
/// How long a farewell may take to write.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Port 4101: phones.
    Device,
    /// Port 3101: enterprise servers.
    Server,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Device => "device",
            Role::Server => "server",
        }
    }
}

/// The detail of an SRP_CONFLICT refusal.
pub(crate) fn conflict_detail(srp: SrpId) -> String {
    format!(
        "SRP id {srp} was used by two live enterprise servers at once and is disabled; make \
         sure only one server uses it, then run 'bramble relay srp enable {srp}' on the relay"
    )
}

/// Accepts connections until the relay shuts down.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    role: Role,
    acceptor: TlsAcceptor,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let span = tracing::info_span!(
                    "conn",
                    %peer,
                    role = role.name(),
                    pin = tracing::field::Empty,
                    srp = tracing::field::Empty
                );
                tracker.spawn(
                    serve(shared.clone(), tcp, peer, role, acceptor.clone()).instrument(span),
                );
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                warn!(role = role.name(), error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

type Wire = Framed<ServerStream, FrameCodec>;

/// A refusal to send.
fn refusal(reason: RefusalReason, detail: impl Into<String>) -> schema::Refused {
    schema::Refused {
        reason: reason as i32,
        detail: detail.into(),
    }
}

fn control(msg: Msg) -> Frame {
    Frame::control(
        Address::Relay,
        Address::Relay,
        &schema::Control { msg: Some(msg) },
    )
}

/// A control frame from the relay to `to`.
fn control_to(to: Address, msg: Msg) -> Frame {
    Frame::control(Address::Relay, to, &schema::Control { msg: Some(msg) })
}

/// Sends a refusal during the login and closes. Logged by the caller.
async fn refuse(wire: &mut Wire, r: schema::Refused) {
    let frame = control(Msg::Refused(r));
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
        let _ = wire.send(frame).await;
        let _ = wire.get_mut().shutdown().await;
    })
    .await;
}

async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    role: Role,
    acceptor: TlsAcceptor,
) {
    let _ = tcp.set_nodelay(true);
    let login = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(LOGIN_TIMEOUT, login(&shared, tcp, peer, role, acceptor)) => r,
    };
    let Ok(login) = login else {
        warn!(
            "closed: the login did not complete within {}s",
            LOGIN_TIMEOUT.as_secs()
        );
        return;
    };
    let Some((wire, conn, rx, welcome)) = login else {
        return;
    };
    run(shared, wire, conn, rx, welcome, role).await;
}

/// TLS, challenge, hello, checks, registration. `None` when refused or failed (already
/// logged and answered).
async fn login(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    role: Role,
    acceptor: TlsAcceptor,
) -> Option<(Wire, Arc<Conn>, mpsc::Receiver<Out>, schema::Welcome)> {
    let tls = match acceptor.accept(tcp).await {
        Ok(t) => t,
        Err(e) => {
            debug!(error = %e, "TLS handshake failed");
            return None;
        }
    };
    let binding = match channel_binding_server(&tls) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "no TLS channel binding");
            return None;
        }
    };
    let mut wire = Framed::new(tls, FrameCodec::with_max_len(MAX_FRAME_LEN));
    let mut nonce = [0u8; NONCE_LEN];
    if shared.random(&mut nonce).is_err() {
        error!("the system random number generator failed; closing");
        return None;
    }
    let challenge = control(Msg::Challenge(schema::Challenge {
        nonce: nonce.to_vec().into(),
        protocol_version: u32::from(bramble_proto::PROTOCOL_VERSION),
        relay_name: shared.cfg.name.clone(),
    }));
    if wire.send(challenge).await.is_err() {
        return None;
    }

    let hello = match wire.next().await {
        None => {
            debug!("closed before its hello");
            return None;
        }
        Some(Err(CodecError::Io(e))) => {
            debug!(error = %e, "connection failed before its hello");
            return None;
        }
        Some(Err(CodecError::Frame(e))) => {
            let detail = format!("the hello is not a valid frame: {e}");
            warn!("refused (PROTOCOL): {detail}");
            refuse(&mut wire, refusal(RefusalReason::Protocol, detail)).await;
            return None;
        }
        Some(Ok(f)) => f,
    };
    let expected = match role {
        Role::Device => "DeviceHello",
        Role::Server => "ServerHello",
    };
    let msg = if hello.header.kind == FrameKind::Control {
        hello.to_control().ok().and_then(|c| c.msg)
    } else {
        None
    };
    let refused = |reason: RefusalReason, detail: String| {
        warn!(reason = reason.as_str_name(), "refused: {detail}");
        refusal(reason, detail)
    };
    let outcome = match (role, msg) {
        (Role::Device, Some(Msg::DeviceHello(h))) => {
            device_login(shared, &nonce, &binding, h, &refused).await
        }
        (Role::Server, Some(Msg::ServerHello(h))) => server_login(shared, peer, h, &refused).await,
        _ => Err(refused(
            RefusalReason::Protocol,
            format!(
                "expected a {expected} answering the challenge on the {} port",
                role.name()
            ),
        )),
    };
    match outcome {
        Ok((addr, agent, guard)) => {
            let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue WHERE dst = ?")
                .bind(db::addr_to_db(addr))
                .fetch_one(&shared.pool)
                .await
                .unwrap_or(0);
            // Nothing awaits between here and `run`, so a registered connection is served.
            let (conn, rx) = Conn::new(shared, addr, peer);
            if let Some(old) = shared.routes.insert(conn.clone()) {
                info!(old_peer = %old.peer, "replaces the connection from {}", old.peer);
                old.close(None);
            }
            drop(guard);
            let welcome = schema::Welcome {
                queued: u32::try_from(queued).unwrap_or(u32::MAX),
                max_frame_len: u32::try_from(MAX_FRAME_LEN).unwrap_or(u32::MAX),
            };
            info!(agent = %agent, queued, "{} logged in", role.name());
            Some((wire, conn, rx, welcome))
        }
        Err(r) => {
            refuse(&mut wire, r).await;
            None
        }
    }
}

type Refuser<'a> = dyn Fn(RefusalReason, String) -> schema::Refused + Send + Sync + 'a;
type LoginOk = (Address, String, Option<tokio::sync::OwnedMutexGuard<()>>);

async fn device_login(
    shared: &Shared,
    nonce: &[u8],
    binding: &[u8],
    h: schema::DeviceHello,
    refused: &Refuser<'_>,
) -> Result<LoginOk, schema::Refused> {
    let claimed = Pin(h.pin);
    Span::current().record("pin", tracing::field::display(claimed));
    match verify_proof(claimed, &h.identity_key, nonce, binding, &h.signature) {
        Ok(_) => {}
        Err(IdentityError::PinMismatch { claimed, actual }) => {
            return Err(refused(
                RefusalReason::PinMismatch,
                format!(
                    "PIN {claimed} is not the PIN of the identity key presented (that key's PIN is {actual})"
                ),
            ));
        }
        Err(e) => {
            return Err(refused(
                RefusalReason::BadProof,
                format!("the proof of identity for PIN {claimed} did not verify ({e})"),
            ));
        }
    }
    let (tx, rx) = oneshot::channel();
    let op = DbOp::DeviceLogin {
        pin: claimed,
        key: h.identity_key.clone(),
        reply: tx,
    };
    let taken = if shared.db.send(op).await.is_ok() {
        rx.await.unwrap_or(Err(()))
    } else {
        Err(())
    };
    match taken {
        Ok(false) => Ok((Address::Pin(claimed), h.agent, None)),
        Ok(true) => Err(refused(
            RefusalReason::PinTaken,
            format!("PIN {claimed} is already held by another identity key at this relay"),
        )),
        Err(()) => Err(refused(
            RefusalReason::RefusalUnspecified,
            "the relay could not record the login (its database failed); try again later"
                .to_owned(),
        )),
    }
}

async fn server_login(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    h: schema::ServerHello,
    refused: &Refuser<'_>,
) -> Result<LoginOk, schema::Refused> {
    let Some(srp) = SrpId::new(h.srp_id) else {
        return Err(refused(
            RefusalReason::SrpUnknown,
            format!("{} is not an SRP id (at most 8 digits)", h.srp_id),
        ));
    };
    Span::current().record("srp", tracing::field::display(srp));
    let row = match srp::load(&shared.pool, srp).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            return Err(refused(
                RefusalReason::SrpUnknown,
                format!("SRP id {srp} is not registered at this relay"),
            ));
        }
        Err(e) => {
            error!(error = %e, "could not read the SRP id from relay.db");
            return Err(refused(
                RefusalReason::RefusalUnspecified,
                "the relay could not check the SRP id (its database failed); try again later"
                    .to_owned(),
            ));
        }
    };
    let key_ok =
        srp::parse_key(&h.srp_key).is_some_and(|k| srp::ct_eq(&srp::key_hash(&k), &row.key_hash));
    if !key_ok {
        return Err(refused(
            RefusalReason::SrpBadKey,
            format!("the SRP key given for {srp} is not its key"),
        ));
    }
    match row.state {
        srp::SrpState::Enabled => {}
        srp::SrpState::Conflict => {
            return Err(refused(RefusalReason::SrpConflict, conflict_detail(srp)));
        }
        srp::SrpState::Disabled => {
            return Err(refused(
                RefusalReason::SrpDisabled,
                format!("SRP id {srp} is disabled by the relay's operator"),
            ));
        }
    }

    // One login per SRP id at a time: the duplicate check and the registration go together.
    let guard = shared.srp_lock(srp).lock_owned().await;
    if let Some(old) = shared.routes.get(Address::Srp(srp)) {
        let nonce = shared.random_u64();
        if old.probe(nonce, shared.cfg.failover_probe).await {
            let reason = format!(
                "two live servers used SRP id {srp} at once: {} and {}",
                old.peer, peer
            );
            if let Err(e) = srp::set_conflict(&shared.pool, srp, &reason).await {
                error!(error = %e, "could not record the SRP conflict in relay.db");
            }
            error!(
                "SRP {srp} is used by two live servers ({} and {peer}): disabled until an operator runs 'bramble relay srp enable {srp}'",
                old.peer
            );
            let r = refusal(RefusalReason::SrpConflict, conflict_detail(srp));
            old.close(Some(r.clone()));
            return Err(r);
        }
        warn!(
            old_peer = %old.peer,
            "SRP {srp}: the connection from {} did not answer a keepalive within {}; taking it as gone and accepting the new login (failover)",
            old.peer,
            humantime::format_duration(shared.cfg.failover_probe)
        );
        old.close(None);
    }
    let recorded = sqlx::query("UPDATE srp SET last_login = ? WHERE id = ?")
        .bind(db::now_ms())
        .bind(i64::from(srp.get()))
        .execute(&shared.pool)
        .await;
    if let Err(e) = recorded {
        warn!(error = %e, "could not record the login time in relay.db");
    }
    Ok((Address::Srp(srp), h.agent, Some(guard)))
}

/// Why a connection ended, for the logout line.
type Ended = String;

/// Serves a logged-in connection until it ends, then puts back what it held.
async fn run(
    shared: Arc<Shared>,
    wire: Wire,
    conn: Arc<Conn>,
    rx: mpsc::Receiver<Out>,
    welcome: schema::Welcome,
    role: Role,
) {
    let parts = wire.into_parts();
    let (r, w) = tokio::io::split(parts.io);
    let mut reader = FramedRead::new(r, FrameCodec::with_max_len(MAX_FRAME_LEN));
    reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
    let welcome = control_to(conn.addr, Msg::Welcome(welcome));
    let writer = tokio::spawn(
        write_loop(shared.clone(), conn.clone(), w, rx, welcome).instrument(Span::current()),
    );
    let ended = read_loop(&shared, &conn, role, &mut reader).await;
    conn.close(None);
    let rx = writer.await.ok();
    drop(reader);
    let ended = cleanup(&shared, &conn, rx, ended).await;
    info!(
        after = %humantime::format_duration(Duration::from_secs(conn.since.elapsed().as_secs())),
        "{} logged out: {ended}",
        role.name()
    );
}

/// Takes the connection out of the routing table and queues what it did not deliver.
async fn cleanup(
    shared: &Shared,
    conn: &Conn,
    rx: Option<mpsc::Receiver<Out>>,
    ended: Ended,
) -> Ended {
    shared.routes.remove(conn);
    conn.drop_probe();
    let mut frames: Vec<Frame> = lock(&conn.in_flight)
        .take_all()
        .into_iter()
        .filter_map(|h| h.frame)
        .collect();
    let mut reports = Vec::new();
    if let Some(mut rx) = rx {
        rx.close();
        while let Ok(out) = rx.try_recv() {
            match out {
                Out::Frame(f) => frames.push(f),
                Out::Control(Msg::DeliveryReport(r)) => reports.push(r),
                Out::Control(_) => {}
            }
        }
    }
    if !frames.is_empty() {
        debug!(
            frames = frames.len(),
            "queueing the frames it did not acknowledge"
        );
    }
    for f in frames {
        shared.spool(f, None).await;
    }
    if let Address::Srp(srp) = conn.addr {
        for r in reports {
            shared.report(srp, r).await;
        }
    }
    ended
}

/// Reads and routes until the connection ends; returns why.
async fn read_loop(
    shared: &Shared,
    conn: &Conn,
    role: Role,
    reader: &mut FramedRead<ReadHalf<ServerStream>, FrameCodec>,
) -> Ended {
    let idle = shared.cfg.keepalive.max(Duration::from_millis(100));
    let mut awaiting: Option<u64> = None;
    loop {
        let next = tokio::select! {
            biased;
            _ = conn.closing.cancelled() => {
                return if shared.shutdown.is_cancelled() {
                    "the relay is shutting down".to_owned()
                } else {
                    "closed by the relay".to_owned()
                };
            }
            r = tokio::time::timeout(idle, reader.next()) => r,
        };
        let frame = match next {
            Err(_) if awaiting.is_some() => {
                warn!(
                    "no answer to a keepalive within {}; closing",
                    humantime::format_duration(idle)
                );
                return "silent (no keepalive answer)".to_owned();
            }
            Err(_) => {
                let nonce = shared.random_u64();
                awaiting = Some(nonce);
                let ka = Msg::Keepalive(schema::Keepalive {
                    nonce,
                    reply: false,
                });
                let _ = conn.tx.try_send(Out::Control(ka));
                continue;
            }
            Ok(None) => return "the peer closed the connection".to_owned(),
            Ok(Some(Err(CodecError::Io(e)))) => return format!("connection failed: {e}"),
            Ok(Some(Err(CodecError::Frame(e)))) => {
                return protocol(conn, format!("a malformed frame: {e}"));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        awaiting = None;
        if let Err(ended) = handle(shared, conn, role, frame).await {
            return ended;
        }
    }
}

/// Refuses with PROTOCOL and closes; returns the reason for the logout line.
fn protocol(conn: &Conn, detail: String) -> Ended {
    warn!("closing (PROTOCOL): {detail}");
    conn.close(Some(refusal(RefusalReason::Protocol, detail.clone())));
    format!("protocol error: {detail}")
}

/// One frame from a logged-in peer.
async fn handle(shared: &Shared, conn: &Conn, role: Role, frame: Frame) -> Result<(), Ended> {
    let h = frame.header;
    if h.src != conn.addr {
        return Err(protocol(
            conn,
            format!(
                "a frame with source {} on the connection of {}",
                h.src, conn.addr
            ),
        ));
    }
    match h.kind {
        FrameKind::Sealed | FrameKind::Activation => {
            let dst_ok = matches!(
                (role, h.dst),
                (Role::Device, Address::Srp(_)) | (Role::Server, Address::Pin(_))
            );
            if !dst_ok {
                return Err(protocol(
                    conn,
                    format!(
                        "a sealed frame for {}: a {} sends sealed frames only to {}",
                        h.dst,
                        role.name(),
                        match role {
                            Role::Device => "an SRP id",
                            Role::Server => "a PIN",
                        }
                    ),
                ));
            }
            if h.seq == 0 {
                return Err(protocol(
                    conn,
                    "a sealed frame with sequence number 0".to_owned(),
                ));
            }
            trace!(dst = %h.dst, seq = h.seq, len = frame.body.len(), "routing a sealed frame");
            route(shared, frame).await;
            Ok(())
        }
        FrameKind::Control => {
            let msg = match frame.to_control() {
                Ok(c) => c.msg,
                Err(e) => {
                    return Err(protocol(
                        conn,
                        format!("a control message that does not decode: {e}"),
                    ));
                }
            };
            match msg {
                Some(Msg::Ack(ack)) => {
                    on_ack(shared, conn, role, ack).await;
                }
                Some(Msg::Keepalive(k)) if !k.reply => {
                    let reply = Msg::Keepalive(schema::Keepalive {
                        nonce: k.nonce,
                        reply: true,
                    });
                    if conn.tx.try_send(Out::Control(reply)).is_err() {
                        debug!("a keepalive answer was skipped: the connection is not keeping up");
                    }
                }
                Some(Msg::Keepalive(k)) => conn.answer_probe(k.nonce),
                Some(Msg::ActivationMail(m)) if role == Role::Device => {
                    if let Address::Pin(pin) = conn.addr {
                        let (gateway, tx) = (shared.mail.clone(), conn.tx.clone());
                        // Mail can take seconds: off the connection's reader.
                        tokio::spawn(async move {
                            let result = gateway.send_activation(pin, &m.email, &m.etp_dat).await;
                            match &result {
                                Ok(()) => info!(%pin, "mailed an activation request"),
                                Err(why) => {
                                    info!(%pin, "did not mail an activation request: {why}")
                                }
                            }
                            let answer = Msg::ActivationMailResult(schema::ActivationMailResult {
                                sent: result.is_ok(),
                                detail: result.err().unwrap_or_default(),
                            });
                            let _ = tx.send(Out::Control(answer)).await;
                        });
                    }
                }
                Some(_) => debug!("ignoring a control message that has no use after login"),
                None => debug!("ignoring an empty or unknown control message"),
            }
            Ok(())
        }
    }
}

/// The peer has these frames: forget them, delete them from disk, tell their servers.
async fn on_ack(shared: &Shared, conn: &Conn, role: Role, ack: schema::Ack) {
    let mut rowids = Vec::new();
    let mut delivered: Vec<(SrpId, u64)> = Vec::new();
    {
        let mut held = lock(&conn.in_flight);
        for r in &ack.frames {
            let src = match role {
                Role::Device => match SrpId::new(r.srp_id) {
                    Some(s) => Address::Srp(s),
                    None => continue,
                },
                Role::Server => Address::Pin(Pin(r.pin)),
            };
            let Some(h) = held.remove(&(src, r.seq)) else {
                trace!(src = %src, seq = r.seq, "an ack for a frame not in flight");
                continue;
            };
            rowids.extend(h.rowid);
            if let Address::Srp(s) = src {
                delivered.push((s, r.seq));
            }
        }
    }
    let wake = {
        let state = lock(&conn.in_flight);
        state.backlog && state.room() > 0
    };
    if wake {
        conn.kick.notify_one();
    }
    if !rowids.is_empty() {
        let _ = shared.db.send(DbOp::Delete(rowids)).await;
    }
    if let Address::Pin(pin) = conn.addr {
        for (srp, seq) in delivered {
            trace!(%srp, seq, "delivered");
            let r = report(pin, seq, schema::DeliveryStatus::Delivered, String::new());
            shared.report(srp, r).await;
        }
    }
}

/// Why a write stopped.
enum WriteEnd {
    /// Asked to close: the stream is clean, a farewell may follow.
    Closing,
    /// The stream failed or was cut mid-frame.
    Broken,
}

/// Writes `buf` (then clears it) unless the connection closes or the peer stops reading.
async fn flush<W: AsyncWrite + Unpin>(
    conn: &Conn,
    w: &mut W,
    buf: &mut BytesMut,
    limit: Duration,
) -> Result<(), WriteEnd> {
    if buf.is_empty() {
        return Ok(());
    }
    let io = async {
        w.write_all(buf).await?;
        w.flush().await
    };
    let r = tokio::select! {
        _ = conn.closing.cancelled() => return Err(WriteEnd::Broken),
        r = tokio::time::timeout(limit, io) => r,
    };
    match r {
        Ok(Ok(())) => {
            if buf.capacity() > KEEP_BUF {
                *buf = BytesMut::new();
            } else {
                buf.clear();
            }
            Ok(())
        }
        Ok(Err(e)) => {
            debug!(error = %e, "write failed");
            Err(WriteEnd::Broken)
        }
        Err(_) => {
            warn!(
                "the peer has not read for {}; closing",
                humantime::format_duration(limit)
            );
            Err(WriteEnd::Broken)
        }
    }
}

/// The writer: the welcome, what waits on disk, then whatever is handed over. Returns its
/// channel so the connection's cleanup can queue what is still in it.
async fn write_loop(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    mut w: WriteHalf<ServerStream>,
    mut rx: mpsc::Receiver<Out>,
    welcome: Frame,
) -> mpsc::Receiver<Out> {
    let limit = shared.cfg.keepalive.max(Duration::from_millis(100));
    let mut buf = BytesMut::new();
    // Grows with a burst and is let go after it: an idle connection holds no batch (128
    // slots of `Out` were 12 KiB a connection, the largest thing an idle device held).
    let mut batch: Vec<Out> = Vec::new();
    let mut cursors = Cursors::default();
    let mut drain_now = true;
    let end = 'run: {
        if welcome.encode(&mut buf).is_err() {
            break 'run WriteEnd::Broken;
        }
        if let Err(e) = flush(&conn, &mut w, &mut buf, limit).await {
            break 'run e;
        }
        loop {
            if drain_now {
                drain_now = false;
                if let Err(e) = drain(&shared, &conn, &mut w, &mut buf, &mut cursors, limit).await {
                    break 'run e;
                }
            }
            tokio::select! {
                biased;
                _ = conn.closing.cancelled() => break 'run WriteEnd::Closing,
                _ = conn.kick.notified() => drain_now = true,
                n = rx.recv_many(&mut batch, WRITE_BATCH) => {
                    if n == 0 {
                        break 'run WriteEnd::Closing;
                    }
                    for out in batch.drain(..) {
                        let frame = match out {
                            Out::Frame(f) => {
                                let len = f.encoded_len();
                                let key = (f.header.src, f.header.seq);
                                let _ = f.encode(&mut buf);
                                lock(&conn.in_flight).insert(key, Held { frame: Some(f), rowid: None, len, order: 0 });
                                continue;
                            }
                            Out::Control(msg) => control_to(conn.addr, msg),
                        };
                        let _ = frame.encode(&mut buf);
                    }
                    if batch.capacity() > 16 {
                        batch = Vec::new();
                    }
                    if let Err(e) = flush(&conn, &mut w, &mut buf, limit).await {
                        break 'run e;
                    }
                }
            }
        }
    };
    if matches!(end, WriteEnd::Closing) {
        let farewell = conn.farewell().or_else(|| {
            shared.shutdown.is_cancelled().then(|| {
                refusal(
                    RefusalReason::Shutdown,
                    "the relay is shutting down; connect again in a moment",
                )
            })
        });
        buf.clear();
        if let Some(r) = farewell {
            let _ = control_to(conn.addr, Msg::Refused(r)).encode(&mut buf);
        }
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
            let _ = w.write_all(&buf).await;
            let _ = w.shutdown().await;
        })
        .await;
    }
    // A writer that stopped on its own (the peer stopped reading, the socket failed) ends the
    // connection: the reader must not serve on alone.
    conn.close(None);
    rx
}

/// How far the writer has read this endpoint's queue and reports (row ids only grow).
#[derive(Debug, Default)]
struct Cursors {
    queue: i64,
    reports: i64,
}

/// Sends what waits on disk for this endpoint: reports first (servers), then frames, as the
/// window allows. Clears the backlog flag once the queue is empty.
async fn drain<W: AsyncWrite + Unpin>(
    shared: &Shared,
    conn: &Conn,
    w: &mut W,
    buf: &mut BytesMut,
    cursors: &mut Cursors,
    limit: Duration,
) -> Result<(), WriteEnd> {
    let page = i64::try_from(DRAIN_PAGE).unwrap_or(128);
    if let Address::Srp(srp) = conn.addr {
        loop {
            type Row = (i64, i64, i64, i64, i64, String);
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT id, pin, seq, status, at_ms, detail FROM pending_reports \
                 WHERE srp = ? AND id > ? ORDER BY id LIMIT ?",
            )
            .bind(i64::from(srp.get()))
            .bind(cursors.reports)
            .bind(page)
            .fetch_all(&shared.pool)
            .await
            .map_err(|e| db_failed(&e))?;
            if rows.is_empty() {
                break;
            }
            let mut ids = Vec::with_capacity(rows.len());
            for (id, pin, seq, status, at_ms, detail) in rows {
                cursors.reports = id;
                ids.push(id);
                let r = schema::DeliveryReport {
                    pin: u32::try_from(pin).unwrap_or(0),
                    seq: db::seq_from_db(seq),
                    status: i32::try_from(status).unwrap_or(0),
                    at_ms,
                    detail,
                };
                let _ = control_to(conn.addr, Msg::DeliveryReport(r)).encode(buf);
            }
            flush(conn, w, buf, limit).await?;
            let _ = shared.db.send(DbOp::DeletePending(ids)).await;
        }
    }
    loop {
        let room = {
            let mut state = lock(&conn.in_flight);
            let room = state.room().min(DRAIN_PAGE);
            if room == 0 {
                // The window is full: an ack makes room and, seeing the backlog, wakes us.
                state.backlog = true;
            }
            room
        };
        if room == 0 {
            return Ok(());
        }
        let rows: Vec<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, src, seq, frame FROM queue WHERE dst = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(db::addr_to_db(conn.addr))
        .bind(cursors.queue)
        .bind(i64::try_from(room).unwrap_or(page))
        .fetch_all(&shared.pool)
        .await
        .map_err(|e| db_failed(&e))?;
        if rows.is_empty() {
            // Caught up, unless frames are still on their way to disk: those would be
            // overtaken by live ones. A frame committed after this look sets the flag again
            // and wakes the writer, so clearing it here cannot strand one.
            let mut state = lock(&conn.in_flight);
            if state.spooling == 0 {
                state.backlog = false;
            }
            return Ok(());
        }
        for (id, src, seq, wire) in rows {
            cursors.queue = id;
            let Some(src) = db::addr_from_db(src) else {
                continue;
            };
            if !is_frame(&wire) {
                error!(
                    row = id,
                    "a queued frame in relay.db is damaged; skipping it"
                );
                continue;
            }
            let seq = db::seq_from_db(seq);
            buf.extend_from_slice(&wire);
            lock(&conn.in_flight).insert(
                (src, seq),
                Held {
                    frame: None,
                    rowid: Some(id),
                    len: wire.len(),
                    order: 0,
                },
            );
        }
        flush(conn, w, buf, limit).await?;
    }
}

/// Whether stored bytes hold exactly one frame (its length prefix matches).
fn is_frame(wire: &[u8]) -> bool {
    let Some(prefix) = wire.get(..4) else {
        return false;
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    len + 4 == wire.len() && len >= bramble_proto::HEADER_LEN
}

fn db_failed(e: &sqlx::Error) -> WriteEnd {
    error!(error = %e, "reading the queue from relay.db failed; closing the connection");
    WriteEnd::Broken
}

//! A relay in a temp dir, a tiny endpoint client built from bramble-net and bramble-proto, and
//! a tracing capture.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bramble_net::FrameCodec;
use bramble_net::tls::{self, CertPin, ClientStream};
use bramble_proto::schema::{self, control::Msg};
use bramble_proto::{Address, DeviceIdentity, Frame, FrameKind, MasterKey, Pin, Session, SrpId};
use bramble_relay::{RelayConfig, RelayHandle};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Framed;

/// How long a test waits for something the relay should send.
pub const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

/// Everything every relay in this test binary logged, at TRACE.
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static CAPTURE: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let sink = buf.clone();
            // BRAMBLE_TEST_LOG=FILE also writes the logs to FILE, for a test that hangs.
            let echo = std::env::var_os("BRAMBLE_TEST_LOG").and_then(|p| {
                std::fs::File::create(p)
                    .ok()
                    .map(|f| Arc::new(Mutex::new(f)))
            });
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || Capture {
                    buf: sink.clone(),
                    echo: echo.clone(),
                })
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
            buf
        })
        .clone()
}

/// The captured logs as text.
pub fn logs_text() -> String {
    let logs = logs();
    let g = logs.lock().expect("log buffer");
    String::from_utf8_lossy(&g).into_owned()
}

struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    echo: Option<Arc<Mutex<std::fs::File>>>,
}

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = &self.echo
            && let Ok(mut f) = f.lock()
        {
            let _ = f.write_all(b);
        }
        if let Ok(mut g) = self.buf.lock() {
            g.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The relay
// ---------------------------------------------------------------------------------------------

/// A relay config for tests: loopback, ephemeral ports, a short failover probe.
pub fn config(dir: &Path) -> RelayConfig {
    let mut c = RelayConfig::with_data_dir(dir);
    c.server_listen = "127.0.0.1:0".parse().expect("addr");
    c.device_listen = "127.0.0.1:0".parse().expect("addr");
    c.failover_probe = Duration::from_millis(300);
    c.name = "test-relay".into();
    c
}

/// A relay and its data directory.
pub struct TestRelay {
    pub handle: RelayHandle,
    pub dir: tempfile::TempDir,
    pub cfg: RelayConfig,
}

impl TestRelay {
    /// A relay with the test defaults.
    pub async fn start() -> TestRelay {
        TestRelay::start_with(|_| {}).await
    }

    /// A relay with the test defaults changed by `f`.
    pub async fn start_with(f: impl FnOnce(&mut RelayConfig)) -> TestRelay {
        logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = config(dir.path());
        f(&mut cfg);
        let handle = bramble_relay::start(cfg.clone())
            .await
            .expect("relay starts");
        TestRelay { handle, dir, cfg }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn server_addr(&self) -> SocketAddr {
        self.handle.server_addr()
    }

    pub fn device_addr(&self) -> SocketAddr {
        self.handle.device_addr()
    }

    /// Registers a new SRP id; returns it and its key.
    pub async fn add_srp(&self) -> (SrpId, String) {
        bramble_relay::srp_add(self.data_dir(), None)
            .await
            .expect("srp add")
    }

    /// Stops the relay and starts it again on the same data dir and the same ports.
    pub async fn restart(self) -> TestRelay {
        let TestRelay {
            handle,
            dir,
            mut cfg,
        } = self;
        cfg.server_listen = handle.server_addr();
        cfg.device_listen = handle.device_addr();
        handle.shutdown().await;
        let handle = bramble_relay::start(cfg.clone())
            .await
            .expect("relay starts again");
        TestRelay { handle, dir, cfg }
    }
}

// ---------------------------------------------------------------------------------------------
// The endpoint client
// ---------------------------------------------------------------------------------------------

/// TLS to the relay, trusting its certificate on first use.
pub async fn tls_connect(addr: SocketAddr) -> ClientStream {
    tls::connect(&addr.to_string(), &CertPin::trust_on_first_use())
        .await
        .expect("TLS connects")
}

/// Why a login failed.
#[derive(Debug)]
pub enum LoginError {
    /// The relay refused it.
    Refused(schema::RefusalReason, String),
    /// Something else.
    Other(#[allow(dead_code, reason = "shown by Debug in test failures")] String),
}

impl LoginError {
    pub fn reason(&self) -> Option<schema::RefusalReason> {
        match self {
            LoginError::Refused(r, _) => Some(*r),
            LoginError::Other(_) => None,
        }
    }
}

/// What arrives at an endpoint.
#[derive(Debug)]
pub enum Event {
    Sealed(Frame),
    Report(schema::DeliveryReport),
    Refused(schema::RefusalReason, String),
    /// Another control message (keepalives are answered, not returned).
    Control(Msg),
    Closed,
    Timeout,
}

/// A logged-in device or server.
pub struct Client {
    pub framed: Framed<ClientStream, FrameCodec>,
    pub me: Address,
    pub welcome: schema::Welcome,
}

fn ctl(from: Address, msg: Msg) -> Frame {
    Frame::control(from, Address::Relay, &schema::Control { msg: Some(msg) })
}

fn reason_of(r: &schema::Refused) -> schema::RefusalReason {
    schema::RefusalReason::try_from(r.reason).unwrap_or(schema::RefusalReason::RefusalUnspecified)
}

impl Client {
    /// Logs in with a hello made from the challenge nonce and the channel binding.
    pub async fn login(
        addr: SocketAddr,
        me: Address,
        hello: impl FnOnce(&[u8], &[u8]) -> Msg,
    ) -> Result<Client, LoginError> {
        let stream = tls_connect(addr).await;
        let binding = tls::channel_binding_client(&stream).expect("binding");
        let mut framed = Framed::new(stream, FrameCodec::default());
        let challenge = match next_msg(&mut framed).await {
            Some(Msg::Challenge(c)) => c,
            other => {
                return Err(LoginError::Other(format!(
                    "expected a challenge: {other:?}"
                )));
            }
        };
        assert_eq!(challenge.protocol_version, 1);
        assert_eq!(challenge.relay_name, "test-relay");
        assert_eq!(challenge.nonce.len(), 32);
        let msg = hello(&challenge.nonce, &binding);
        framed
            .send(ctl(me, msg))
            .await
            .map_err(|e| LoginError::Other(e.to_string()))?;
        match next_msg(&mut framed).await {
            Some(Msg::Welcome(welcome)) => Ok(Client {
                framed,
                me,
                welcome,
            }),
            Some(Msg::Refused(r)) => Err(LoginError::Refused(reason_of(&r), r.detail)),
            other => Err(LoginError::Other(format!("expected welcome: {other:?}"))),
        }
    }

    /// Logs in as the device of `id`.
    pub async fn device(addr: SocketAddr, id: &DeviceIdentity) -> Result<Client, LoginError> {
        let pin = id.pin();
        Client::login(addr, Address::Pin(pin), |nonce, binding| {
            Msg::DeviceHello(schema::DeviceHello {
                pin: pin.0,
                identity_key: id.public_key().to_vec().into(),
                signature: id.prove(nonce, binding).expect("signs").into(),
                agent: "relay-test-device".into(),
            })
        })
        .await
    }

    /// Logs in as server `srp` with `key`.
    pub async fn server(addr: SocketAddr, srp: SrpId, key: &str) -> Result<Client, LoginError> {
        Client::login(addr, Address::Srp(srp), |_, _| {
            Msg::ServerHello(schema::ServerHello {
                srp_id: srp.get(),
                srp_key: key.to_owned(),
                agent: "relay-test-server".into(),
            })
        })
        .await
    }

    pub async fn send(&mut self, f: Frame) {
        self.framed.send(f).await.expect("sends");
    }

    /// Sends raw bytes (hostile tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let io = self.framed.get_mut();
        let _ = io.write_all(bytes).await;
        let _ = io.flush().await;
    }

    /// The next event, answering keepalives on the way.
    pub async fn event(&mut self) -> Event {
        loop {
            let next = match tokio::time::timeout(WAIT, self.framed.next()).await {
                Err(_) => return Event::Timeout,
                Ok(None) | Ok(Some(Err(_))) => return Event::Closed,
                Ok(Some(Ok(f))) => f,
            };
            if next.header.kind == FrameKind::Sealed {
                return Event::Sealed(next);
            }
            match next.to_control().expect("control decodes").msg {
                Some(Msg::Keepalive(k)) if !k.reply => {
                    let reply = Msg::Keepalive(schema::Keepalive {
                        nonce: k.nonce,
                        reply: true,
                    });
                    let me = self.me;
                    if self.framed.send(ctl(me, reply)).await.is_err() {
                        return Event::Closed;
                    }
                }
                Some(Msg::DeliveryReport(r)) => return Event::Report(r),
                Some(Msg::Refused(r)) => return Event::Refused(reason_of(&r), r.detail),
                Some(m) => return Event::Control(m),
                None => {}
            }
        }
    }

    /// The next sealed frame; panics on anything else.
    pub async fn sealed(&mut self) -> Frame {
        match self.event().await {
            Event::Sealed(f) => f,
            other => panic!("expected a sealed frame, got {other:?}"),
        }
    }

    /// The next delivery report; panics on anything else.
    pub async fn report(&mut self) -> schema::DeliveryReport {
        match self.event().await {
            Event::Report(r) => r,
            other => panic!("expected a delivery report, got {other:?}"),
        }
    }

    /// `n` reports, in arrival order.
    pub async fn reports(&mut self, n: usize) -> Vec<schema::DeliveryReport> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.report().await);
        }
        v
    }

    /// Acks frames received, by the rule of the relay's docs.
    pub async fn ack(&mut self, frames: &[&Frame]) {
        let refs = frames
            .iter()
            .map(|f| match f.header.src {
                Address::Srp(s) => schema::FrameRef {
                    srp_id: s.get(),
                    seq: f.header.seq,
                    pin: 0,
                },
                Address::Pin(Pin(p)) => schema::FrameRef {
                    srp_id: 0,
                    seq: f.header.seq,
                    pin: p,
                },
                Address::Relay => panic!("acking a relay frame"),
            })
            .collect();
        let me = self.me;
        self.send(ctl(me, Msg::Ack(schema::Ack { frames: refs })))
            .await;
    }

    /// Waits for the relay to end the connection; returns its refusal if it sent one.
    pub async fn closed(&mut self) -> Option<(schema::RefusalReason, String)> {
        loop {
            match self.event().await {
                Event::Refused(r, d) => return Some((r, d)),
                Event::Closed => return None,
                Event::Timeout => panic!("the relay did not close the connection"),
                _ => {}
            }
        }
    }

    pub async fn close(mut self) {
        let _ = SinkExt::<Frame>::close(&mut self.framed).await;
    }
}

async fn next_msg(framed: &mut Framed<ClientStream, FrameCodec>) -> Option<Msg> {
    let f = tokio::time::timeout(WAIT, framed.next())
        .await
        .ok()??
        .ok()?;
    f.to_control().ok()?.msg
}

// ---------------------------------------------------------------------------------------------
// Sealing
// ---------------------------------------------------------------------------------------------

/// Both ends of one device's sealed session.
pub struct Sessions {
    pub server: Session,
    pub device: Session,
}

impl Sessions {
    pub fn new() -> Sessions {
        let master = MasterKey::generate().expect("key");
        Sessions {
            server: Session::server(&master, 1..1_000_000, 0).expect("session"),
            device: Session::device(&master, 1..1_000_000, 0).expect("session"),
        }
    }

    /// A sealed frame from server `srp` to device `pin`.
    pub fn seal_for_device(&mut self, srp: SrpId, pin: Pin, text: &str) -> Frame {
        self.server
            .sealer
            .seal(Address::Srp(srp), Address::Pin(pin), text.as_bytes())
            .expect("seals")
    }

    /// A sealed frame from device `pin` to server `srp`.
    pub fn seal_for_server(&mut self, pin: Pin, srp: SrpId, text: &str) -> Frame {
        self.device
            .sealer
            .seal(Address::Pin(pin), Address::Srp(srp), text.as_bytes())
            .expect("seals")
    }

    /// What the device reads in a frame from the server.
    pub fn open_at_device(&mut self, f: &Frame) -> String {
        String::from_utf8(self.device.opener.open(f).expect("opens")).expect("utf-8")
    }

    /// What the server reads in a frame from the device.
    pub fn open_at_server(&mut self, f: &Frame) -> String {
        String::from_utf8(self.server.opener.open(f).expect("opens")).expect("utf-8")
    }
}

/// A new device identity.
pub fn identity() -> DeviceIdentity {
    DeviceIdentity::generate().expect("keygen")
}

/// The status of a report.
pub fn status(r: &schema::DeliveryReport) -> schema::DeliveryStatus {
    schema::DeliveryStatus::try_from(r.status).expect("known status")
}

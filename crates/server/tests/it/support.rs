//! A relay, a server and devices on loopback, torn down when dropped.

use std::net::SocketAddr;
use std::time::Duration;

use bramble_device::Device;
use bramble_proto::{MasterKey, SrpId};
use bramble_relay::{RelayConfig, RelayHandle};
use bramble_server::{ServerConfig, ServerEvent, ServerHandle};
use bramble_store::{NewDevice, ServerIdentity, Store};
use bramble_testkit::TestDb;
use tokio::sync::broadcast;
use tracing_subscriber::Layer;

pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub db: TestDb,
    pub relay: Option<RelayHandle>,
    pub server: Option<ServerHandle>,
    pub cfg: ServerConfig,
    pub srp: SrpId,
}

impl World {
    pub async fn start() -> Result<World> {
        let dir = tempfile::tempdir()?;
        let db = TestDb::new().await?;
        let mut rcfg = RelayConfig::with_data_dir(dir.path().join("relay"));
        rcfg.server_listen = loopback();
        rcfg.device_listen = loopback();
        let relay = bramble_relay::start(rcfg).await?;
        let (srp, key) = bramble_relay::srp_add(&dir.path().join("relay"), None).await?;
        let store = Store::open(db.url()).await?;
        store
            .set_server_identity(&ServerIdentity {
                srp_id: srp.get(),
                srp_key: key,
                relay_addr: relay.server_addr().to_string(),
                relay_fingerprint: Some(relay.fingerprint().to_string()),
            })
            .await?;
        let mut cfg = ServerConfig::with_data_dir(dir.path().join("server"));
        cfg.database = Some(db.url().to_owned());
        cfg.admin.listen = loopback();
        cfg.uplink_backoff_min = Duration::from_millis(50);
        cfg.uplink_backoff_max = Duration::from_millis(500);
        let server = bramble_server::start(&cfg, store).await?;
        assert!(
            server.router.wait_up(Duration::from_secs(10)).await,
            "server reached the relay"
        );
        Ok(World {
            dir,
            db,
            relay: Some(relay),
            server: Some(server),
            cfg,
            srp,
        })
    }

    pub fn server(&self) -> &ServerHandle {
        self.server.as_ref().expect("server running")
    }

    pub fn relay(&self) -> &RelayHandle {
        self.relay.as_ref().expect("relay running")
    }

    /// Stops the server and starts it again on the same database.
    pub async fn restart_server(&mut self) -> Result {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        let store = Store::open(self.db.url()).await?;
        let server = bramble_server::start(&self.cfg, store).await?;
        assert!(
            server.router.wait_up(Duration::from_secs(10)).await,
            "server reached the relay again"
        );
        self.server = Some(server);
        Ok(())
    }

    /// A device for `email`, with both sides given the same master key.
    pub async fn device(&self, email: &str) -> Result<Device> {
        let store = self.server().store();
        if store.user(email).await?.is_none() {
            store.add_user(email, None).await?;
        }
        let mut device = Device::open(&self.dir.path().join(format!("dev-{email}")))?;
        device.set_relay(
            &self.relay().device_addr().to_string(),
            Some(self.relay().fingerprint()),
        )?;
        let key = MasterKey::generate()?;
        store
            .put_device(&NewDevice {
                email: email.to_owned(),
                pin: device.pin().0,
                identity_key: device.identity_public_key().to_vec(),
                master_key: key.as_bytes().to_vec(),
            })
            .await?;
        device.provision(self.srp, key)?;
        self.server().dispatcher.forget(device.pin()).await;
        Ok(device)
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        if let Some(r) = self.relay.take() {
            r.shutdown().await;
        }
    }
}

/// Waits for an event matching `f`, at most 10 s.
pub async fn wait_for(
    events: &mut broadcast::Receiver<ServerEvent>,
    what: &str,
    f: impl Fn(&ServerEvent) -> bool,
) -> Result<ServerEvent> {
    let fut = async {
        loop {
            match events.recv().await {
                Ok(ev) if f(&ev) => return Ok(ev),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(e),
            }
        }
    };
    Ok(tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| format!("timed out waiting for {what}"))??)
}

/// Every log line of this test process at TRACE level for Bramble's crates, kept in memory
/// (so a test can search them), and printed as well when `RUST_LOG` asks for it.
pub fn init_logs() -> &'static std::sync::Mutex<Vec<u8>> {
    use std::sync::{Mutex, OnceLock};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let capture = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || Capture(buf))
            .with_filter(tracing_subscriber::EnvFilter::new("bramble=trace,bramble_server=trace,bramble_relay=trace,bramble_net=trace,bramble_device=trace,info"));
        let print = tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(tracing_subscriber::EnvFilter::from_default_env());
        let _ = tracing_subscriber::registry().with(capture).with(print).try_init();
        buf
    })
}

struct Capture(&'static std::sync::Mutex<Vec<u8>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

//! The `[relay]` section of the configuration.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a relay runs. Every field has a default, so an empty `[relay]` section is valid.
///
/// Durations are written as humantime text in TOML: `"7d"`, `"60s"`, `"250ms"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Where `relay.db`, `relay-cert.pem` and `relay-key.pem` live. Default `relay`.
    pub data_dir: PathBuf,
    /// Where enterprise servers connect. Default `0.0.0.0:3101`.
    pub server_listen: SocketAddr,
    /// Where devices connect. Default `0.0.0.0:4101`.
    pub device_listen: SocketAddr,
    /// The TLS certificate (PEM). Default `data_dir/relay-cert.pem`, made self-signed on first
    /// start together with the key.
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM). Default `data_dir/relay-key.pem`.
    pub tls_key: Option<PathBuf>,
    /// Host names and IP addresses the self-signed certificate is made for. Default
    /// `["localhost", "127.0.0.1"]`.
    pub cert_names: Vec<String>,
    /// This relay's name, sent to every endpoint in the challenge. Default `bramble-relay`.
    pub name: String,
    /// How long a frame waits in the queue for its destination before it is dropped (and the
    /// sending server told EXPIRED). Default 7 days, as BES.
    #[serde(with = "humantime_text")]
    pub queue_expiry: Duration,
    /// The most frames queued for one destination. Default 1000.
    pub queue_max_frames: u32,
    /// The most bytes queued for one destination. Default 64 MiB.
    pub queue_max_bytes: u64,
    /// How often expired frames are looked for. Default 60 s.
    #[serde(with = "humantime_text")]
    pub expiry_sweep: Duration,
    /// How long a live connection for an SRP id has to answer a keepalive when a second server
    /// logs in with the same id: an answer means two live servers (a conflict), silence means
    /// the first one is gone (a failover). Default 2 s.
    #[serde(with = "humantime_text")]
    pub failover_probe: Duration,
    /// A connection silent for this long gets a keepalive; silent for this long again, it is
    /// closed. Also the longest a write to a peer may take. Default 60 s.
    #[serde(with = "humantime_text")]
    pub keepalive: Duration,
    /// How activation requests are mailed (`[relay.mail]`): SMTP, or the embedded Maildir store.
    pub mail: crate::mail::MailConfig,
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig::with_data_dir("relay")
    }
}

impl RelayConfig {
    /// The defaults, with the given data directory.
    pub fn with_data_dir(dir: impl Into<PathBuf>) -> RelayConfig {
        RelayConfig {
            data_dir: dir.into(),
            server_listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 3101)),
            device_listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 4101)),
            tls_cert: None,
            tls_key: None,
            cert_names: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            name: "bramble-relay".to_owned(),
            queue_expiry: Duration::from_secs(7 * 24 * 3600),
            queue_max_frames: 1000,
            queue_max_bytes: 64 << 20,
            expiry_sweep: Duration::from_secs(60),
            failover_probe: Duration::from_secs(2),
            keepalive: Duration::from_secs(60),
            mail: crate::mail::MailConfig::default(),
        }
    }

    /// The relay's database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(crate::db::DB_FILE)
    }

    /// The certificate file in use.
    pub fn cert_path(&self) -> PathBuf {
        self.tls_cert
            .clone()
            .unwrap_or_else(|| self.data_dir.join("relay-cert.pem"))
    }

    /// The key file in use.
    pub fn key_path(&self) -> PathBuf {
        self.tls_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join("relay-key.pem"))
    }
}

/// Durations as humantime text (`"7d"`, `"2s"`, `"100ms"`).
mod humantime_text {
    use super::{Deserialize, Deserializer, Duration, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({e}); write it like \"7d\", \"60s\" or \"250ms\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_humantime() {
        let c: RelayConfig = toml::from_str(
            r#"
            data_dir = "/var/lib/bramble/relay"
            queue_expiry = "1d 12h"
            failover_probe = "500ms"
            "#,
        )
        .expect("parses");
        assert_eq!(c.queue_expiry, Duration::from_secs(36 * 3600));
        assert_eq!(c.failover_probe, Duration::from_millis(500));
        assert_eq!(c.keepalive, Duration::from_secs(60));
        assert_eq!(c.server_listen.port(), 3101);
        assert_eq!(c.device_listen.port(), 4101);
        assert_eq!(c.queue_max_frames, 1000);
        assert_eq!(
            c.cert_path(),
            PathBuf::from("/var/lib/bramble/relay/relay-cert.pem")
        );
        let bad = toml::from_str::<RelayConfig>(r#"keepalive = "soon""#).expect_err("refused");
        assert!(bad.to_string().contains("not a duration"), "{bad}");
    }
}

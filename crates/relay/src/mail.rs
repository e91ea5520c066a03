//! The relay as mail gateway (seed 002, activation step 5: "The BlackBerry Infrastructure
//! receives the secure activation email and identifies it as an activation request. (it)
//! forwards the email message to the email address that was typed … using SMTP").
//!
//! A device asks with a `Control::ActivationMail`; the relay builds a normal message with an
//! `ETP.DAT` attachment (MIME by lettre's builder) and sends it through the configured SMTP
//! server, or, on the embedded default, drops it into the local Maildir store
//! (`ROOT/<lower-cased address>/Maildir/new`). Requests are limited per PIN so the relay
//! cannot be used to flood a mailbox.
//!
//! Owns: building and sending activation mail. Must not touch: what is in ETP.DAT (opaque
//! bytes here), any mailbox beyond delivering into it.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bramble_proto::Pin;
use bramble_proto::activation::{ETP_DAT_NAME, MAX_ETP_DAT};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

/// How the relay delivers activation mail (`[relay.mail]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// An SMTP server (`host:port`) that accepts mail for the users' domains. Plain SMTP
    /// without TLS: use it on a trusted link (loopback, or a LAN to the mail server).
    pub smtp: Option<String>,
    /// Deliver into Maildirs under this folder instead of SMTP (the embedded default).
    pub maildir: Option<PathBuf>,
    /// The sender of activation mail.
    pub from: String,
    /// Activation mails one PIN may ask for per hour.
    pub max_per_pin_per_hour: u32,
    /// Activation mails one address may receive per hour (new identities make new PINs, so
    /// this is what keeps a mailbox from being flooded).
    pub max_per_address_per_hour: u32,
}

impl Default for MailConfig {
    fn default() -> MailConfig {
        MailConfig {
            smtp: None,
            maildir: None,
            from: "Bramble Enterprise Activation <activation@bramble-relay.invalid>".into(),
            max_per_pin_per_hour: 10,
            max_per_address_per_hour: 20,
        }
    }
}

enum Sink {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Maildir(PathBuf),
    None,
}

/// Sends activation mail for devices.
pub struct MailGateway {
    from: Mailbox,
    sink: Sink,
    limit: u32,
    address_limit: u32,
    recent: Mutex<HashMap<Pin, VecDeque<Instant>>>,
    recent_to: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl std::fmt::Debug for MailGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sink = match &self.sink {
            Sink::Smtp(_) => "smtp",
            Sink::Maildir(_) => "maildir",
            Sink::None => "none",
        };
        f.debug_struct("MailGateway")
            .field("sink", &sink)
            .finish_non_exhaustive()
    }
}

/// A configuration the gateway cannot use.
#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    /// The sender address does not parse.
    #[error("[relay.mail] from = {0:?} is not a mail address")]
    From(String),
    /// The SMTP address does not parse.
    #[error("[relay.mail] smtp = {0:?} is not host:port")]
    Smtp(String),
}

impl MailGateway {
    /// A gateway for `cfg`. With neither `smtp` nor `maildir`, activation requests are
    /// refused with a message saying so.
    ///
    /// # Errors
    /// When an address in `cfg` does not parse.
    pub fn new(cfg: &MailConfig) -> Result<MailGateway, MailConfigError> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|_| MailConfigError::From(cfg.from.clone()))?;
        let sink = match (&cfg.maildir, &cfg.smtp) {
            (Some(root), _) => Sink::Maildir(root.clone()),
            (None, Some(addr)) => {
                let (host, port) = addr
                    .rsplit_once(':')
                    .and_then(|(h, p)| {
                        p.parse::<u16>()
                            .ok()
                            .map(|p| (h.trim_matches(['[', ']']).to_owned(), p))
                    })
                    .ok_or_else(|| MailConfigError::Smtp(addr.clone()))?;
                Sink::Smtp(
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                        .port(port)
                        .timeout(Some(Duration::from_secs(30)))
                        .build(),
                )
            }
            (None, None) => Sink::None,
        };
        Ok(MailGateway {
            from,
            sink,
            limit: cfg.max_per_pin_per_hour,
            address_limit: cfg.max_per_address_per_hour,
            recent: Mutex::new(HashMap::new()),
            recent_to: Mutex::new(HashMap::new()),
        })
    }

    /// Checks that the mail path works: the SMTP server answers (EHLO), or the Maildir root
    /// can be created. The error says what is wrong, for the operator.
    ///
    /// # Errors
    /// A sentence naming the server or folder and the failure.
    pub async fn check(&self) -> Result<(), String> {
        match &self.sink {
            Sink::None => Ok(()),
            Sink::Smtp(t) => match t.test_connection().await {
                Ok(true) => Ok(()),
                Ok(false) => Err("the SMTP server in [relay.mail] smtp did not answer EHLO".into()),
                Err(e) => Err(format!(
                    "the SMTP server in [relay.mail] smtp cannot be reached: {e}"
                )),
            },
            Sink::Maildir(root) => std::fs::create_dir_all(root).map_err(|e| {
                format!(
                    "the Maildir folder {} cannot be created: {e}",
                    root.display()
                )
            }),
        }
    }

    /// Mails `etp_dat` to `email` for the device `pin`. The error is a sentence for the
    /// phone user.
    ///
    /// # Errors
    /// A sentence saying why the mail was not sent.
    pub async fn send_activation(
        &self,
        pin: Pin,
        email: &str,
        etp_dat: &[u8],
    ) -> Result<(), String> {
        if etp_dat.is_empty() || etp_dat.len() > MAX_ETP_DAT {
            return Err(format!(
                "the activation request must be 1 to {MAX_ETP_DAT} bytes"
            ));
        }
        let to: Mailbox = email
            .trim()
            .parse()
            .map_err(|_| format!("{email:?} is not an email address; check what you typed"))?;
        self.admit(pin, &to.email.to_string().to_lowercase())?;
        let message = self.message(pin, to.clone(), etp_dat)?;
        match &self.sink {
            Sink::None => Err(
                "this relay is not set up to send mail; its operator must configure [relay.mail]"
                    .into(),
            ),
            Sink::Smtp(t) => t.send(message).await.map(|_| ()).map_err(|e| {
                tracing::warn!(%pin, "activation mail to {} failed: {e}", to.email);
                "the mail server did not accept the activation request; try again later".to_owned()
            }),
            Sink::Maildir(root) => {
                let root = root.clone();
                let addr = to.email.to_string().to_lowercase();
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || deliver_maildir(&root, &addr, &bytes))
                    .await
                    .map_err(|_| "delivery failed".to_owned())?
                    .map_err(|e| {
                        tracing::warn!(%pin, "activation mail delivery into the Maildir failed: {e}");
                        "the activation request could not be delivered; try again later".to_owned()
                    })
            }
        }
    }

    fn admit(&self, pin: Pin, to: &str) -> Result<(), String> {
        let hour = Duration::from_secs(3600);
        let (Ok(mut by_pin), Ok(mut by_to)) = (self.recent.lock(), self.recent_to.lock()) else {
            return Ok(());
        };
        let pq = by_pin.entry(pin).or_default();
        while pq.front().is_some_and(|t| t.elapsed() > hour) {
            pq.pop_front();
        }
        if pq.len() >= self.limit as usize {
            return Err(format!(
                "too many activation requests from this device ({} in the last hour); wait and try again",
                pq.len()
            ));
        }
        let aq = by_to.entry(to.to_owned()).or_default();
        while aq.front().is_some_and(|t| t.elapsed() > hour) {
            aq.pop_front();
        }
        if aq.len() >= self.address_limit as usize {
            return Err(format!(
                "too many activation requests for {to} in the last hour; wait and try again"
            ));
        }
        pq.push_back(Instant::now());
        aq.push_back(Instant::now());
        if by_pin.len() > 100_000 {
            by_pin.retain(|_, q| q.back().is_some_and(|t| t.elapsed() < hour));
        }
        if by_to.len() > 100_000 {
            by_to.retain(|_, q| q.back().is_some_and(|t| t.elapsed() < hour));
        }
        Ok(())
    }

    fn message(&self, pin: Pin, to: Mailbox, etp_dat: &[u8]) -> Result<Message, String> {
        let text = format!(
            "This message carries an Enterprise Activation request from the device with PIN {pin}.\r\n\
             Your company's Bramble server removes it from your mailbox by itself. If you can read it,\r\n\
             the server is not watching this mailbox: tell your administrator.\r\n"
        );
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("Enterprise Activation request from PIN {pin}"))
            .header(ActivationHeader(pin.to_string()))
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(text))
                    .singlepart(
                        Attachment::new(ETP_DAT_NAME.to_owned()).body(
                            etp_dat.to_vec(),
                            ContentType::parse("application/octet-stream")
                                .map_err(|e| e.to_string())?,
                        ),
                    ),
            )
            .map_err(|e| format!("the activation mail could not be built: {e}"))
    }
}

/// `X-Bramble-Activation: <PIN>`: marks the message for people and filters.
#[derive(Clone)]
struct ActivationHeader(String);

impl lettre::message::header::Header for ActivationHeader {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("X-Bramble-Activation")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ActivationHeader(s.to_owned()))
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// Writes a message into `root/<addr>/Maildir/new` the Maildir way (tmp, then rename).
fn deliver_maildir(root: &std::path::Path, addr: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if addr.is_empty() || addr.contains(['/', '\\', '\0']) || addr.starts_with('.') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "unusable address for a Maildir",
        ));
    }
    let md = root.join(addr).join("Maildir");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(md.join(sub))?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!(
        "{}.M{}P{}R{:016x}.bramble-relay",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        rand_u64()
    );
    let tmp = md.join("tmp").join(&name);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, md.join("new").join(&name))
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_limited_per_device_and_per_address() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = MailConfig {
            maildir: Some(dir.path().to_owned()),
            max_per_pin_per_hour: 2,
            max_per_address_per_hour: 3,
            ..MailConfig::default()
        };
        let gw = MailGateway::new(&cfg).expect("gateway");
        let etp = [1u8; 10];
        gw.send_activation(Pin(1), "a@example.com", &etp)
            .await
            .expect("first");
        gw.send_activation(Pin(1), "a@example.com", &etp)
            .await
            .expect("second");
        let err = gw
            .send_activation(Pin(1), "a@example.com", &etp)
            .await
            .expect_err("third from one device");
        assert!(err.contains("this device"), "{err}");
        // New identities (new PINs) cannot flood one mailbox either.
        gw.send_activation(Pin(2), "a@example.com", &etp)
            .await
            .expect("another device");
        let err = gw
            .send_activation(Pin(3), "a@example.com", &etp)
            .await
            .expect_err("fourth for one address");
        assert!(err.contains("a@example.com"), "{err}");
        assert!(
            gw.send_activation(Pin(4), "not an address", &etp)
                .await
                .is_err()
        );
        assert!(
            gw.send_activation(Pin(5), "b@example.com", &[])
                .await
                .is_err()
        );
        let delivered = std::fs::read_dir(dir.path().join("a@example.com/Maildir/new"))
            .expect("dir")
            .count();
        assert_eq!(delivered, 3);
    }
}

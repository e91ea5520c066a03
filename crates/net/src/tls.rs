//! TLS 1.3 for Bramble's connections.
//!
//! The relay serves a certificate from its data directory, made self-signed on first start.
//! Clients (devices, enterprise servers) do not use a CA: they pin the certificate's SHA-256
//! fingerprint, either given by the operator or trusted on first use and remembered.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use bramble_proto::identity::{CHANNEL_BINDING_LABEL, CHANNEL_BINDING_LEN};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;

/// The crypto provider every Bramble TLS config uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide rustls provider, for libraries that build their own
/// configs. Safe to call more than once.
pub fn install_default_provider() {
    let _already = rustls::crypto::ring::default_provider().install_default();
}

/// A TLS set-up problem, in an operator's words.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate or key file is not valid PEM of the right kind.
    #[error("{path} does not hold a usable {what} in PEM form")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
    },
    /// Making the self-signed certificate failed.
    #[error("could not make a self-signed certificate: {0}")]
    Generate(String),
    /// rustls refused the configuration or the handshake.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The connection failed.
    #[error("could not connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The peer's certificate is not the pinned one.
    #[error(
        "the relay at {addr} presented a certificate with fingerprint {seen}, but {pinned} is \
         pinned; if the relay's certificate was replaced on purpose, pin the new fingerprint"
    )]
    FingerprintMismatch {
        /// Where.
        addr: String,
        /// What it showed.
        seen: Fingerprint,
        /// What was expected.
        pinned: Fingerprint,
    },
}

/// A certificate's SHA-256 fingerprint, shown as 32 colon-separated hex pairs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(cert_der: &[u8]) -> Fingerprint {
        let d = ring::digest::digest(&ring::digest::SHA256, cert_der);
        let mut f = [0u8; 32];
        f.copy_from_slice(d.as_ref());
        Fingerprint(f)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Text that is not a SHA-256 fingerprint.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a SHA-256 fingerprint: expected 64 hex digits, colons allowed")]
pub struct BadFingerprint(String);

impl FromStr for Fingerprint {
    type Err = BadFingerprint;
    fn from_str(s: &str) -> Result<Fingerprint, BadFingerprint> {
        let t = s.trim();
        let t = t
            .strip_prefix("SHA256:")
            .or_else(|| t.strip_prefix("sha256:"))
            .unwrap_or(t);
        let hex: Vec<u8> = t.bytes().filter(|b| *b != b':').collect();
        if hex.len() != 64 {
            return Err(BadFingerprint(s.to_owned()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            let txt = std::str::from_utf8(pair).map_err(|_| BadFingerprint(s.to_owned()))?;
            out[i] = u8::from_str_radix(txt, 16).map_err(|_| BadFingerprint(s.to_owned()))?;
        }
        Ok(Fingerprint(out))
    }
}

/// A certificate chain and key to serve, with the fingerprint clients pin.
#[derive(Debug)]
pub struct TlsIdentity {
    /// The chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf.
    pub fingerprint: Fingerprint,
    /// Whether it was made just now (so the caller prints the fingerprint for pinning).
    pub created: bool,
}

impl TlsIdentity {
    /// Loads `cert`/`key` PEM files, or, when neither exists, makes a self-signed certificate
    /// for `names` (host names or IP addresses) and writes both (the key readable by the owner
    /// only).
    ///
    /// # Errors
    /// A [`TlsError`] naming the file and what is wrong with it.
    pub fn load_or_create(
        cert: &Path,
        key: &Path,
        names: &[String],
    ) -> Result<TlsIdentity, TlsError> {
        if !cert.exists() && !key.exists() {
            let ck = rcgen::generate_simple_self_signed(names.to_vec())
                .map_err(|e| TlsError::Generate(e.to_string()))?;
            if let Some(dir) = cert.parent() {
                std::fs::create_dir_all(dir).map_err(|source| TlsError::File {
                    path: dir.to_owned(),
                    source,
                })?;
            }
            write_private(key, ck.signing_key.serialize_pem().as_bytes())?;
            std::fs::write(cert, ck.cert.pem()).map_err(|source| TlsError::File {
                path: cert.to_owned(),
                source,
            })?;
            let mut id = Self::load(cert, key)?;
            id.created = true;
            return Ok(id);
        }
        Self::load(cert, key)
    }

    /// Loads `cert` and `key` PEM files.
    ///
    /// # Errors
    /// A [`TlsError`] naming the file and what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsIdentity, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|_| TlsError::BadPem {
                path: cert.to_owned(),
                what: "certificate",
            })?
            .collect::<Result<_, _>>()
            .map_err(|_| TlsError::BadPem {
                path: cert.to_owned(),
                what: "certificate",
            })?;
        let Some(leaf) = certs.first() else {
            return Err(TlsError::BadPem {
                path: cert.to_owned(),
                what: "certificate",
            });
        };
        let fingerprint = Fingerprint::of(leaf);
        let key = PrivateKeyDer::from_pem_file(key).map_err(|_| TlsError::BadPem {
            path: key.to_owned(),
            what: "private key",
        })?;
        Ok(TlsIdentity {
            certs,
            key,
            fingerprint,
            created: false,
        })
    }

    /// A TLS 1.3-only server configuration serving this identity.
    ///
    /// # Errors
    /// When rustls refuses the key or certificate.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let cfg = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())?;
        Ok(Arc::new(cfg))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(|source| TlsError::File {
        path: path.to_owned(),
        source,
    })?;
    f.write_all(bytes).map_err(|source| TlsError::File {
        path: path.to_owned(),
        source,
    })
}

/// Trust in one relay certificate: a pinned fingerprint, or trust on first use.
///
/// Either way, the fingerprint seen in the last handshake is kept, so a caller can remember
/// it (first use) or show it (mismatch).
#[derive(Debug)]
pub struct CertPin {
    expected: Option<Fingerprint>,
    seen: Mutex<Option<Fingerprint>>,
    provider: Arc<CryptoProvider>,
}

impl CertPin {
    /// Accept only the certificate with this fingerprint.
    pub fn expect(fp: Fingerprint) -> Arc<CertPin> {
        Arc::new(CertPin {
            expected: Some(fp),
            seen: Mutex::new(None),
            provider: provider(),
        })
    }

    /// Accept whatever certificate comes first; read it with [`CertPin::seen`] and pin it.
    pub fn trust_on_first_use() -> Arc<CertPin> {
        Arc::new(CertPin {
            expected: None,
            seen: Mutex::new(None),
            provider: provider(),
        })
    }

    /// Accept `fp` when given, else trust on first use.
    pub fn new(fp: Option<Fingerprint>) -> Arc<CertPin> {
        fp.map_or_else(CertPin::trust_on_first_use, CertPin::expect)
    }

    /// The fingerprint presented in the last handshake.
    pub fn seen(&self) -> Option<Fingerprint> {
        self.seen.lock().ok().and_then(|g| *g)
    }

    /// The pinned fingerprint, if any.
    pub fn expected(&self) -> Option<Fingerprint> {
        self.expected
    }

    /// A TLS 1.3-only client configuration trusting exactly what this pin allows.
    ///
    /// # Errors
    /// When rustls refuses the configuration.
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<ClientConfig>, TlsError> {
        let cfg = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        Ok(Arc::new(cfg))
    }
}

impl ServerCertVerifier for CertPin {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = Fingerprint::of(end_entity);
        if let Ok(mut g) = self.seen.lock() {
            *g = Some(fp);
        }
        match self.expected {
            Some(want) if want != fp => Err(rustls::Error::General(format!(
                "certificate fingerprint {fp} is not the pinned {want}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "TLS 1.2 is not used by Bramble".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client TLS stream.
pub type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;
/// A server TLS stream.
pub type ServerStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Connects to `addr` (`host:port`) over TLS 1.3, trusting what `pin` allows.
///
/// # Errors
/// [`TlsError::Connect`] when the TCP connection fails, [`TlsError::FingerprintMismatch`]
/// when the certificate is not the pinned one, [`TlsError::Rustls`] for other handshake
/// failures.
pub async fn connect(addr: &str, pin: &Arc<CertPin>) -> Result<ClientStream, TlsError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| TlsError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(pin.client_config()?);
    let name = server_name(addr);
    match connector.connect(name, tcp).await {
        Ok(s) => Ok(s),
        Err(e) => {
            if let (Some(seen), Some(pinned)) = (pin.seen(), pin.expected())
                && seen != pinned
            {
                return Err(TlsError::FingerprintMismatch {
                    addr: addr.to_owned(),
                    seen,
                    pinned,
                });
            }
            Err(TlsError::Connect {
                addr: addr.to_owned(),
                source: e,
            })
        }
    }
}

fn server_name(addr: &str) -> ServerName<'static> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return ServerName::IpAddress(sa.ip().into());
    }
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_matches(['[', ']']);
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
}

/// The channel binding of a client connection: 32 bytes of TLS exporter output that both
/// ends of this one connection, and nobody else, can compute.
///
/// # Errors
/// When the handshake has not completed.
pub fn channel_binding_client(s: &ClientStream) -> Result<[u8; CHANNEL_BINDING_LEN], TlsError> {
    Ok(s.get_ref().1.export_keying_material(
        [0u8; CHANNEL_BINDING_LEN],
        CHANNEL_BINDING_LABEL,
        None,
    )?)
}

/// The channel binding of a server connection; see [`channel_binding_client`].
///
/// # Errors
/// When the handshake has not completed.
pub fn channel_binding_server(s: &ServerStream) -> Result<[u8; CHANNEL_BINDING_LEN], TlsError> {
    Ok(s.get_ref().1.export_keying_material(
        [0u8; CHANNEL_BINDING_LEN],
        CHANNEL_BINDING_LABEL,
        None,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_text_round_trip() {
        let f = Fingerprint::of(b"cert");
        let shown = f.to_string();
        assert_eq!(shown.len(), 95);
        assert_eq!(shown.parse::<Fingerprint>().expect("parses"), f);
        assert_eq!(
            shown
                .replace(':', "")
                .to_lowercase()
                .parse::<Fingerprint>()
                .expect("parses"),
            f
        );
        assert!("AB:CD".parse::<Fingerprint>().is_err());
    }
}

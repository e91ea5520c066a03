//! Bramble's transport, shared by the relay, the enterprise server's router and the device:
//! TLS 1.3 (rustls with the ring provider) with the relay's self-signed certificate made on
//! first start and pinned by fingerprint, the channel binding a device signs to prove its
//! PIN, a tokio codec for `bramble-proto` frames, and listeners with a deep accept backlog.
//!
//! Owns: sockets and TLS set-up. Must not touch: what frames mean (that is `bramble-proto`
//! and the programs), storage, configuration files beyond the certificate it is pointed at.

pub mod codec;
pub mod link;
pub mod listen;
pub mod tls;

pub use codec::FrameCodec;
pub use link::{Credentials, Link, LinkError, LinkEvent};
pub use listen::bind;
pub use tls::{CertPin, Fingerprint, TlsError, TlsIdentity};

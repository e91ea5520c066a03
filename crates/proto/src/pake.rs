//! OPAQUE (RFC 9807), the augmented PAKE behind the activation password.
//!
//! The server keeps only a registration record made from the password (and its own OPAQUE
//! secret, the "server setup"); nothing stored lets anyone read the password back or test
//! guesses offline without that secret. At activation the device proves it knows the password
//! and both sides derive the same 64-byte session key, from which the master key is taken.
//!
//! Suite: ristretto255 OPRF, 3DH over ristretto255 with SHA-512, Argon2id as the key
//! stretching function. opaque-ke sits on an older RustCrypto generation than the rest of
//! Bramble, so it stays inside this module: everything in and out is bytes.

use opaque_ke::{
    CipherSuite, ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialFinalization, CredentialRequest,
    CredentialResponse, Ristretto255, ServerLogin, ServerLoginParameters, ServerRegistration,
    ServerSetup, TripleDh,
};
use rand08::rngs::OsRng;

struct Suite;

impl CipherSuite for Suite {
    type OprfCs = Ristretto255;
    type KeyExchange = TripleDh<Ristretto255, sha2_010::Sha512>;
    type Ksf = argon2::Argon2<'static>;
}

/// Bytes of the session key both sides derive.
pub const SESSION_KEY_LEN: usize = 64;

/// An OPAQUE step that failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PakeError {
    /// The password is wrong (or the record belongs to another password or server).
    #[error("the activation password is not correct")]
    WrongPassword,
    /// Stored or received bytes are not an OPAQUE value of the expected kind.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Any other failure of the protocol.
    #[error("the password exchange failed: {0}")]
    Protocol(String),
}

fn proto_err(e: opaque_ke::errors::ProtocolError) -> PakeError {
    match e {
        opaque_ke::errors::ProtocolError::InvalidLoginError => PakeError::WrongPassword,
        other => PakeError::Protocol(other.to_string()),
    }
}

/// A new server secret (OPRF seed and 3DH key pair). Made once per server domain and kept
/// in its configuration database; every registration record depends on it.
pub fn new_server_setup() -> Vec<u8> {
    ServerSetup::<Suite>::new(&mut OsRng).serialize().to_vec()
}

fn setup(bytes: &[u8]) -> Result<ServerSetup<Suite>, PakeError> {
    ServerSetup::<Suite>::deserialize(bytes).map_err(|_| PakeError::Malformed("server setup"))
}

/// Registers `password` for `user` and returns the record to store. Both halves of the
/// registration run here, on the server, when the administrator sets the password; the
/// password is dropped when this returns.
///
/// # Errors
/// A [`PakeError`] when the setup is damaged.
pub fn register(server_setup: &[u8], user: &str, password: &[u8]) -> Result<Vec<u8>, PakeError> {
    let setup = setup(server_setup)?;
    let start = ClientRegistration::<Suite>::start(&mut OsRng, password).map_err(proto_err)?;
    let response = ServerRegistration::<Suite>::start(&setup, start.message, user.as_bytes())
        .map_err(proto_err)?;
    let finish = start
        .state
        .finish(
            &mut OsRng,
            password,
            response.message,
            ClientRegistrationFinishParameters::default(),
        )
        .map_err(proto_err)?;
    Ok(ServerRegistration::<Suite>::finish(finish.message)
        .serialize()
        .to_vec())
}

/// Checks that `record` is a registration record (not that it is for any password).
pub fn is_record(record: &[u8]) -> bool {
    ServerRegistration::<Suite>::deserialize(record).is_ok()
}

/// The device's first step: its state (keep it secret) and KE1, the message for the server.
///
/// # Errors
/// A [`PakeError`] on failure of the primitive.
pub fn client_start(password: &[u8]) -> Result<(Vec<u8>, Vec<u8>), PakeError> {
    let start = ClientLogin::<Suite>::start(&mut OsRng, password).map_err(proto_err)?;
    Ok((
        start.state.serialize().to_vec(),
        start.message.serialize().to_vec(),
    ))
}

/// The server's answer to KE1: its state (keep it until KE3) and KE2.
///
/// # Errors
/// [`PakeError::Malformed`] for bad bytes.
pub fn server_start(
    server_setup: &[u8],
    record: &[u8],
    user: &str,
    ke1: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), PakeError> {
    let setup = setup(server_setup)?;
    let record = ServerRegistration::<Suite>::deserialize(record)
        .map_err(|_| PakeError::Malformed("registration record"))?;
    let ke1 =
        CredentialRequest::<Suite>::deserialize(ke1).map_err(|_| PakeError::Malformed("KE1"))?;
    let start = ServerLogin::start(
        &mut OsRng,
        &setup,
        Some(record),
        ke1,
        user.as_bytes(),
        ServerLoginParameters::default(),
    )
    .map_err(proto_err)?;
    Ok((
        start.state.serialize().to_vec(),
        start.message.serialize().to_vec(),
    ))
}

/// The device's second step: KE3 for the server and the session key. Fails with
/// [`PakeError::WrongPassword`] when the password is not the registered one.
///
/// # Errors
/// A [`PakeError`].
pub fn client_finish(
    state: &[u8],
    password: &[u8],
    ke2: &[u8],
) -> Result<(Vec<u8>, [u8; SESSION_KEY_LEN]), PakeError> {
    let state = ClientLogin::<Suite>::deserialize(state)
        .map_err(|_| PakeError::Malformed("client state"))?;
    let ke2 =
        CredentialResponse::<Suite>::deserialize(ke2).map_err(|_| PakeError::Malformed("KE2"))?;
    let finish = state
        .finish(
            &mut OsRng,
            password,
            ke2,
            ClientLoginFinishParameters::default(),
        )
        .map_err(proto_err)?;
    Ok((
        finish.message.serialize().to_vec(),
        session_key(&finish.session_key)?,
    ))
}

/// The server's last step: checks KE3 and returns the session key.
///
/// # Errors
/// [`PakeError::WrongPassword`] when KE3 does not prove knowledge of the password.
pub fn server_finish(state: &[u8], ke3: &[u8]) -> Result<[u8; SESSION_KEY_LEN], PakeError> {
    let state = ServerLogin::<Suite>::deserialize(state)
        .map_err(|_| PakeError::Malformed("server state"))?;
    let ke3 = CredentialFinalization::<Suite>::deserialize(ke3)
        .map_err(|_| PakeError::Malformed("KE3"))?;
    let finish = state
        .finish(ke3, ServerLoginParameters::default())
        .map_err(proto_err)?;
    session_key(&finish.session_key)
}

fn session_key(k: &[u8]) -> Result<[u8; SESSION_KEY_LEN], PakeError> {
    k.try_into()
        .map_err(|_| PakeError::Protocol("unexpected session key length".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_then_login_agrees_on_a_key_and_refuses_a_wrong_password() {
        let setup = new_server_setup();
        let record = register(&setup, "alice@example.com", b"correct horse").expect("registers");
        assert!(is_record(&record));
        assert!(!record.windows(13).any(|w| w == b"correct horse"));

        let (cs, ke1) = client_start(b"correct horse").expect("ke1");
        let (ss, ke2) = server_start(&setup, &record, "alice@example.com", &ke1).expect("ke2");
        let (ke3, client_key) = client_finish(&cs, b"correct horse", &ke2).expect("ke3");
        let server_key = server_finish(&ss, &ke3).expect("finish");
        assert_eq!(client_key, server_key);

        let (cs, ke1) = client_start(b"wrong horse").expect("ke1");
        let (_ss, ke2) = server_start(&setup, &record, "alice@example.com", &ke1).expect("ke2");
        assert_eq!(
            client_finish(&cs, b"wrong horse", &ke2).map(|_| ()),
            Err(PakeError::WrongPassword)
        );
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let setup = new_server_setup();
        assert!(matches!(
            server_start(&setup, b"junk", "a@b.c", b"junk"),
            Err(PakeError::Malformed(_))
        ));
        assert!(matches!(
            server_finish(b"junk", b"junk"),
            Err(PakeError::Malformed(_))
        ));
        assert!(matches!(
            register(b"junk", "a@b.c", b"pw"),
            Err(PakeError::Malformed(_))
        ));
    }
}

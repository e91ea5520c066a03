//! Integration tests of `bramble-store`, run against the backend `BRAMBLE_TEST_DB` names
//! (`sqlite`, the default, or `postgres`): each test gets a fresh database from
//! `bramble_testkit::TestDb`.

mod activation;
mod devices;
mod filters;
mod mail;
mod mail_sync;
mod open;
mod policy;
mod server;
mod sync;
mod users;

use bramble_store::{NewDevice, Store};
use bramble_testkit::TestDb;

/// A store on a fresh database. Keep it alive for the whole test: dropping it removes the
/// database.
#[derive(Debug)]
pub struct Fixture {
    pub store: Store,
    pub db: TestDb,
}

pub async fn fixture() -> anyhow::Result<Fixture> {
    let db = TestDb::new().await?;
    let store = Store::open(db.url()).await?;
    Ok(Fixture { store, db })
}

/// A device for `email` with `pin`, with keys made from the PIN so they differ per device.
pub fn new_device(email: &str, pin: u32) -> NewDevice {
    NewDevice {
        email: email.to_owned(),
        pin,
        identity_key: pin.to_be_bytes().repeat(8),
        master_key: pin.to_le_bytes().repeat(8),
    }
}

//! `bramble demo`: the narrated tour runs to the end.

use crate::util::{bramble, s, tempdir};

/// The stages of the demo, in the order they must appear.
const STAGES: &[&str] = &[
    "[1] Starting a relay and an enterprise server",
    "logged in at the relay as SRP id S",
    "[2] The administrator adds alice@example.com",
    "status: Initializing",
    "activation password (shown once",
    "[3] On the phone: Enterprise Activation",
    "phone: Activating",
    "phone: Verifying Encryption",
    "phone: Encryption Verified. Waiting for Services.",
    "phone: Services Received. Your email address, alice@example.com is now enabled.",
    "phone: Activation Complete",
    "[4] What the administrator sees",
    "Waiting for Services",
    "Completed",
    "[5] The phone pings its server",
    "Ping → server → Pong",
    "Ping → server → Pong",
    "Ping → server → Pong",
    "QUEUED",
    "the phone opened",
    "DELIVERED",
    "[7] Mail arrives in alice's mailbox",
    "phone: new mail in",
    "from Bob Example <bob@example.com>: \"Quarterly figures\"",
    "forwarded 1, delivered 1",
    "[8] The phone replies",
    "phone: outbox: sent",
    "Subject: Re: Quarterly figures",
    "-----Original Message-----",
    "What to try next:",
];

#[test]
fn demo_narrates_every_stage_in_order() {
    let tmp = tempdir();
    bramble(tmp.path(), ["demo"])
        .success()
        .no_panic()
        .stdout_has_in_order(STAGES);
}

#[test]
fn demo_with_data_keeps_its_files() {
    let tmp = tempdir();
    let data = tmp.path().join("demo-data");
    bramble(tmp.path(), ["demo", "--data", s(&data)])
        .success()
        .stdout_has_in_order(STAGES);
    for kept in ["admin.json", "relay", "device-alice"] {
        assert!(
            data.join(kept).exists(),
            "{} was not kept",
            data.join(kept).display()
        );
    }
}

//! `bramble device tui` where it cannot run: it says why, and leaves the terminal alone. (The
//! screen itself is tested without a terminal in `src/tui/tests.rs`; an activated device
//! without a terminal is checked in `serve.rs`, after its activation.)

use crate::util::{bramble, tempdir};

#[test]
fn tui_refuses_a_device_that_is_not_activated() {
    let tmp = tempdir();
    let home = tmp.path().join("phone");
    let home = home.to_str().expect("a UTF-8 temporary path");
    let run = bramble(tmp.path(), ["device", "--home", home, "tui"])
        .code(1)
        .no_panic()
        .stderr_has("This device is not activated")
        .stderr_has("bramble device --home DIR activate EMAIL PASSWORD");
    assert!(
        !run.stdout.contains('\x1b'),
        "the terminal was touched\n{run}"
    );
}

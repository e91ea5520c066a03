//! Hostile bytes as a message from a mailbox: what the server's push mail does with it
//! (`bramble_server::messaging::mail::content`). Checked: no panic gets out of `summarize`,
//! `body_text`, `more`, `attachment` or `attachments`; the summary keeps its bounds; the preview
//! is the start of the body text and `text_total` its length; "More" walks that text in parts;
//! `attachment(i)` agrees with the list.
//!
//! The module is compiled here from its file (`#[path]`), so this target does not pull in the
//! whole server (tokio, sqlx, axum …); the module depends only on bramble-proto and mail-parser.
//!
//! A panic inside mail-parser is caught by the module and is allowed (the message then reads
//! as unreadable, as in the server). Set `BRAMBLE_FUZZ_STRICT=1` to count those as crashes too
//! (libFuzzer's own panic hook, which aborts on any panic).
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/server/src/messaging/mail/content.rs"]
mod content;

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use content::{
    MAX_ADDRESS, MAX_ADDRESSES, MAX_ATTACHMENT_NAME, MAX_ATTACHMENTS, MAX_BODY_TEXT, MAX_SUBJECT,
    MORE_ALL_BYTES, PREVIEW_BYTES,
};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("BRAMBLE_FUZZ_STRICT").is_none() {
            std::panic::set_hook(Box::new(|info| {
                LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
            }));
        }
    });
}

fuzz_target!(|data: &[u8]| {
    quiet_panics();
    if catch_unwind(AssertUnwindSafe(|| check(data))).is_err() {
        LAST_PANIC.with(|p| eprintln!("a panic got out: {}", p.borrow()));
        std::process::abort();
    }
});

fn check(data: &[u8]) {
    let summary = content::summarize(data, data.len() as u64);
    let item = &summary.item;
    let text = content::body_text(data);

    assert!(text.len() <= MAX_BODY_TEXT);
    assert!(item.text.len() <= PREVIEW_BYTES);
    assert!(text.starts_with(&item.text));
    assert_eq!(item.text_total, text.len() as u64);
    assert_eq!(item.size, data.len() as u64);
    assert!(item.attachments.len() <= MAX_ATTACHMENTS);
    if let Some(h) = &item.headers {
        assert!(h.subject.len() <= MAX_SUBJECT);
        assert!(h.to.len() <= MAX_ADDRESSES && h.cc.len() <= MAX_ADDRESSES);
        for a in h.to.iter().chain(&h.cc).chain([&h.from, &h.reply_to]) {
            assert!(a.len() <= MAX_ADDRESS);
        }
        assert_eq!(summary.message_id.as_deref().unwrap_or(""), h.message_id);
    }

    // "More": from the end of the preview on, in parts, back to the whole text.
    let mut offset = item.text.len() as u64;
    let mut again = item.text.clone();
    for _ in 0..8 {
        let (part, total) = content::more(&text, offset, false);
        assert_eq!(total, text.len() as u64);
        assert!(part.len() <= PREVIEW_BYTES);
        if part.is_empty() {
            break;
        }
        offset += part.len() as u64;
        again.push_str(&part);
    }
    assert!(text.starts_with(&again));
    let (all, _) = content::more(&text, offset, true);
    assert!(all.len() <= MORE_ALL_BYTES);
    // offsets inside a character, and past the end
    let odd = u64::from(data.first().copied().unwrap_or(0));
    let (part, _) = content::more(&text, odd, data.len() % 2 == 0);
    let start = text.ceil_char_boundary(odd as usize);
    assert!(text[start..].starts_with(&part));
    assert!(content::more(&text, u64::MAX, true).0.is_empty());

    // Attachments agree with the list.
    for index in 0..3u32 {
        let got = content::attachment(data, index);
        match item.attachments.get(index as usize) {
            Some(info) => {
                let a = got.expect("a listed attachment can be fetched");
                assert_eq!(a.name, info.name);
                assert_eq!(a.content_type, info.content_type);
                assert_eq!(a.data.len() as u64, info.size);
                assert!(a.name.len() <= MAX_ATTACHMENT_NAME && !a.name.is_empty());
            }
            None if item.attachments.len() < MAX_ATTACHMENTS => assert!(got.is_none()),
            None => {}
        }
    }
    let all = content::attachments(data);
    assert_eq!(all.len(), item.attachments.len());
}

//! The UI without a terminal: messages put into an in-memory mail store as the server would
//! push them, drawn on ratatui's `TestBackend`, and key sequences checked for the actions
//! they produce.

use bramble_device::mail::{Change, Draft, MailKind, MailStore, OutboxState};
use bramble_proto::schema::{
    AttachmentInfo, Envelope, MailFlags, MailHeaders, MailItem, envelope::Body,
};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{Action, App, Ask, Field, Link, Page};
use super::{organizer_events, record_action, safe_file_name, view};
use bramble_device::organizer::OrganizerEvent;
use bramble_device::organizer::RecordState;
use bramble_device::{OrganizerEntry, OrganizerStore};
use bramble_organizer::{Database, Fields, Summary};

struct Item {
    ref_id: u64,
    from: &'static str,
    subject: &'static str,
    text: &'static str,
    total: u64,
    attachments: u32,
    seen: bool,
    flagged: bool,
    priority: bool,
    notes: Vec<String>,
}

impl Item {
    fn new(ref_id: u64, from: &'static str, subject: &'static str) -> Item {
        Item {
            ref_id,
            from,
            subject,
            text: "Hello there.",
            total: 12,
            attachments: 0,
            seen: false,
            flagged: false,
            priority: false,
            notes: Vec::new(),
        }
    }

    fn envelope(&self) -> Envelope {
        Envelope {
            version: 1,
            body: Some(Body::MailItem(Box::new(MailItem {
                ref_id: self.ref_id,
                folder: "INBOX".into(),
                headers: Some(MailHeaders {
                    from: self.from.into(),
                    to: vec!["Bob <bob@example.com>".into()],
                    cc: vec!["carol@example.com".into()],
                    subject: self.subject.into(),
                    // Later RefIDs are newer.
                    date_ms: 1_700_000_000_000 + i64::try_from(self.ref_id).unwrap_or(0) * 60_000,
                    message_id: format!("m{}@example.com", self.ref_id),
                    ..Default::default()
                }),
                text: self.text.into(),
                text_total: self.total,
                attachments: (0..self.attachments)
                    .map(|i| AttachmentInfo {
                        index: i,
                        name: format!("report{i}.pdf"),
                        content_type: "application/pdf".into(),
                        size: 3000,
                    })
                    .collect(),
                notes: self.notes.clone(),
                priority: self.priority,
                flags: Some(MailFlags {
                    seen: self.seen,
                    flagged: self.flagged,
                }),
                size: 4000,
                ..Default::default()
            }))),
        }
    }
}

/// A store holding three messages: 1 read and flagged, 2 with priority and attachments,
/// 3 (the newest) plain and unread.
async fn store() -> MailStore {
    let store = MailStore::open(None).await.expect("in-memory store");
    let items = [
        Item {
            seen: true,
            flagged: true,
            ..Item::new(1, "Alice <alice@example.com>", "Lunch on Friday")
        },
        Item {
            priority: true,
            attachments: 2,
            text: "The numbers are in.",
            total: 5000,
            notes: vec!["An attachment of 30 MiB is not shown.".into()],
            ..Item::new(2, "Boss <boss@example.com>", "Quarterly report")
        },
        Item::new(3, "dave@example.com", "Build is green"),
    ];
    for i in &items {
        store.handle(&i.envelope()).await.expect("stored");
    }
    store
}

async fn app_with(store: &MailStore) -> App {
    let mut app = App::new("bob@example.com · PIN 2A1B3C4D");
    app.set_inbox(store.inbox().await.expect("inbox"));
    app.link = Link::Connected;
    app
}

/// What the screen shows, line by line.
fn render(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    t.draw(|f| view::draw(f, app)).expect("drawn");
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

fn screen(app: &App) -> String {
    render(app, 110, 24).join("\n")
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        let k = if c == '\n' {
            key(KeyCode::Enter)
        } else {
            ch(c)
        };
        assert_eq!(app.on_key(k), None, "typing {c:?}");
    }
}

#[tokio::test]
async fn tui_inbox_lists_newest_first_with_markers_and_status() {
    let store = store().await;
    let app = app_with(&store).await;
    let lines = render(&app, 110, 24);
    let text = lines.join("\n");
    let row = |subject: &str| {
        lines
            .iter()
            .position(|l| l.contains(subject))
            .unwrap_or_else(|| panic!("{subject:?} not shown:\n{text}"))
    };
    // Newest first.
    assert!(row("Build is green") < row("Quarterly report"), "{text}");
    assert!(row("Quarterly report") < row("Lunch on Friday"), "{text}");
    // Unread marker, priority, flag, attachment count; senders by name.
    let build = &lines[row("Build is green")];
    assert!(
        build.contains('●') && build.contains("dave@example.com"),
        "{build}"
    );
    let report = &lines[row("Quarterly report")];
    assert!(report.contains("●!") && report.contains("Boss"), "{report}");
    assert!(
        report
            .trim_end()
            .trim_end_matches('│')
            .trim_end()
            .ends_with('2'),
        "{report}"
    );
    let lunch = &lines[row("Lunch on Friday")];
    assert!(lunch.contains('⚑') && !lunch.contains('●'), "{lunch}");
    assert!(
        lunch.contains("Alice") && !lunch.contains("alice@"),
        "{lunch}"
    );
    // The newest is selected.
    assert!(build.contains('▶'), "{build}");
    assert!(
        text.contains("Connected to relay · 2 unread · 3 messages"),
        "{text}"
    );
    assert!(
        text.contains("Enter open") && text.contains("q quit"),
        "{text}"
    );
    assert!(text.contains("bob@example.com · PIN 2A1B3C4D"), "{text}");
}

#[tokio::test]
async fn tui_status_line_tells_the_connection() {
    let store = store().await;
    let mut app = app_with(&store).await;
    app.link = Link::Offline {
        reason: "The relay at 127.0.0.1:4101 cannot be reached.".into(),
        retry_in_s: 4,
    };
    let text = screen(&app);
    assert!(
        text.contains(
            "Out of coverage: retrying in 4s · 2 unread · 3 messages · The relay at 127.0.0.1:4101 cannot be reached"
        ),
        "{text}"
    );
    app.link = Link::Connecting;
    assert!(screen(&app).contains("Connecting to relay"));

    let empty = App::new("x");
    assert!(screen(&empty).contains("No messages."));
}

#[tokio::test]
async fn tui_message_shows_headers_text_more_attachments_and_notes() {
    let store = store().await;
    let mut app = app_with(&store).await;
    app.show_message(store.message(2).await.expect("message 2"));
    let text = screen(&app);
    for want in [
        "From:    Boss <boss@example.com>",
        "To:      Bob <bob@example.com>",
        "Cc:      carol@example.com",
        "Subject: Quarterly report",
        "Flags:   unread, priority",
        "The numbers are in.",
        "[More: 19 of 5000 bytes are on the device. Press m for the next part.]",
        "Attachments (a, then the number, saves one):",
        "0  report0.pdf  (application/pdf, 2.9 KiB)",
        "1  report1.pdf",
        "Note: An attachment of 30 MiB is not shown.",
        "m more",
    ] {
        assert!(text.contains(want), "{want:?} not shown:\n{text}");
    }
    // The list is behind it: selected follows the open message.
    assert_eq!(app.inbox[app.selected].ref_id, 2);
}

#[tokio::test]
async fn tui_reply_editor_shows_the_draft_and_what_is_typed() {
    let store = store().await;
    let mut app = app_with(&store).await;
    let draft = store
        .reply_draft(1, true, "", Some("bob@example.com"))
        .await
        .expect("draft");
    app.start_compose(&draft);
    type_text(&mut app, "Friday works.\nSee you");
    let text = screen(&app);
    for want in [
        "Reply to all",
        "To:      Alice <alice@example.com>",
        "Cc:      carol@example.com",
        "Subject: Re: Lunch on Friday",
        "Friday works.",
        "See you",
        "The server adds the original message below your text.",
        "Ctrl-S (or Ctrl-D) send",
    ] {
        assert!(text.contains(want), "{want:?} not shown:\n{text}");
    }
    assert!(
        !text.contains("bob@example.com>"),
        "own address left out:\n{text}"
    );

    // Sending: the draft goes out as typed; the editor waits for the outbox.
    let Some(Action::Send(sent)) = app.on_key(ctrl('s')) else {
        panic!("Ctrl-S did not send");
    };
    assert_eq!(sent.kind, MailKind::MailReplyAll);
    assert_eq!(sent.original_ref_id, 1);
    assert_eq!(sent.body, "Friday works.\nSee you");
    assert_eq!(sent.to, ["Alice <alice@example.com>"]);
    assert!(screen(&app).contains("Putting it in the outbox"));
    assert_eq!(app.on_key(ch('x')), None, "keys wait while submitting");

    // Refused by the store: the editor stays, with the reason.
    app.draft_refused("This message cannot be sent: add at least one recipient.");
    assert!(screen(&app).contains("Not sent: This message cannot be sent"));
    // Taken: the editor closes and the outbox line follows it.
    let submit = store.compose(&sent).await.expect("queued");
    app.draft_queued(submit.client_id, &sent.subject);
    assert!(app.compose.is_none());
    let text = screen(&app);
    assert!(
        text.contains("Outbox “Re: Lunch on Friday”: Queued"),
        "{text}"
    );
}

#[tokio::test]
async fn tui_outbox_line_follows_the_states() {
    let mut app = App::new("x");
    app.track(7, "Hello", OutboxState::Queued, "");
    app.outbox_changed(7, OutboxState::Accepted, "");
    app.outbox_changed(7, OutboxState::Accepted, "");
    app.outbox_changed(7, OutboxState::Sent, "");
    assert!(screen(&app).contains("Outbox “Hello”: Queued → Accepted → Sent"));
    app.track(8, "Bad", OutboxState::Queued, "");
    app.outbox_changed(8, OutboxState::Failed, "550 no such user");
    assert!(
        screen(&app).contains("Outbox “Bad”: Queued → Failed: 550 no such user"),
        "{}",
        screen(&app)
    );
    // Another entry's news changes nothing here.
    app.outbox_changed(99, OutboxState::Sent, "");
    assert_eq!(app.sending.len(), 2);
    // A notice goes before the outbox line, until the next key.
    app.notify("Flagged.");
    assert!(screen(&app).contains("Flagged."));
    app.on_key(ch('j'));
    assert!(screen(&app).contains("Outbox “Bad”"));
}

#[tokio::test]
async fn tui_keys_produce_actions() {
    let store = store().await;
    let mut app = app_with(&store).await;
    // Inbox: 3, 2, 1. Move and open.
    assert_eq!(app.on_key(ch('j')), None);
    assert_eq!(app.on_key(key(KeyCode::Down)), None);
    assert_eq!(app.on_key(key(KeyCode::Down)), None, "stays on the last");
    assert_eq!(app.on_key(ch('k')), None);
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Action::Open(2)));
    // The loop marks it read and shows it.
    store.mark(2, Change::Seen(true)).await.expect("marked");
    app.show_message(store.message(2).await.expect("message"));

    assert_eq!(
        app.on_key(ch('u')),
        Some(Action::Mark(2, Change::Seen(false)))
    );
    assert_eq!(
        app.on_key(ch('s')),
        Some(Action::Mark(2, Change::Flagged(true)))
    );
    assert_eq!(app.on_key(ch('m')), Some(Action::More(2)));
    assert_eq!(
        app.on_key(ch('r')),
        Some(Action::Reply {
            ref_id: 2,
            all: false
        })
    );
    assert_eq!(
        app.on_key(ch('R')),
        Some(Action::Reply {
            ref_id: 2,
            all: true
        })
    );

    // An attachment by number.
    assert_eq!(app.on_key(ch('a')), None);
    assert!(matches!(app.ask, Some(Ask::Attachment { count: 2, .. })));
    assert_eq!(app.on_key(ch('5')), None, "out of range");
    assert_eq!(app.on_key(ch('1')), Some(Action::SaveAttachment(2, 1)));

    // Forward asks To.
    assert_eq!(app.on_key(ch('f')), None);
    assert!(screen(&app).contains("Forward"));
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        None,
        "nobody to forward to"
    );
    type_text(&mut app, "carol@example.com, dave@example.com");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Some(Action::Forward {
            ref_id: 2,
            to: vec!["carol@example.com".into(), "dave@example.com".into()]
        })
    );

    // Delete asks y/n: n keeps it, y deletes it and goes back to the list.
    assert_eq!(app.on_key(ch('d')), None);
    assert!(screen(&app).contains("Delete “Quarterly report”? (y/n)"));
    assert_eq!(app.on_key(ch('n')), None);
    assert!(app.ask.is_none() && app.open.is_some());
    assert_eq!(app.on_key(ch('d')), None);
    assert_eq!(app.on_key(ch('x')), None, "another key keeps asking");
    assert!(app.ask.is_some());
    assert_eq!(
        app.on_key(ch('y')),
        Some(Action::Mark(2, Change::Deleted(true)))
    );
    assert!(app.open.is_none() && app.ask.is_none());

    // Back in the inbox: the keys act on the selected message.
    assert_eq!(app.on_key(key(KeyCode::Up)), None);
    assert_eq!(app.inbox[app.selected].ref_id, 3);
    assert_eq!(
        app.on_key(ch('u')),
        Some(Action::Mark(3, Change::Seen(true)))
    );
    assert_eq!(app.on_key(ch('G')), None);
    assert_eq!(
        app.on_key(ch('s')),
        Some(Action::Mark(1, Change::Flagged(false)))
    );

    // Esc leaves a message without acting.
    app.show_message(store.message(3).await.expect("message 3"));
    assert_eq!(app.on_key(key(KeyCode::Esc)), None);
    assert!(app.open.is_none());

    assert_eq!(app.on_key(ch('q')), Some(Action::Quit));
    assert_eq!(app.on_key(ctrl('c')), Some(Action::Quit));
}

#[tokio::test]
async fn tui_compose_new_message() {
    let store = store().await;
    let mut app = app_with(&store).await;
    assert_eq!(app.on_key(ch('c')), None);
    let c = app.compose.as_ref().expect("editor open");
    assert_eq!((c.title(), c.focus), ("New message", Field::To));
    // No recipient: not sent, the reason shown.
    assert_eq!(app.on_key(ctrl('d')), None);
    assert!(screen(&app).contains("Not sent: Add at least one recipient."));

    type_text(&mut app, "alice@example.com; ");
    assert_eq!(app.on_key(key(KeyCode::Tab)), None);
    type_text(&mut app, "carol@example.com");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        None,
        "Enter goes to the next field"
    );
    type_text(&mut app, "Plans");
    assert_eq!(app.on_key(key(KeyCode::Tab)), None);
    assert_eq!(app.compose.as_ref().map(|c| c.focus), Some(Field::Body));
    type_text(&mut app, "Line one\nLine twoo");
    assert_eq!(app.on_key(key(KeyCode::Backspace)), None);
    // Home, then Backspace at the start of a line joins it to the one before.
    assert_eq!(app.on_key(key(KeyCode::Home)), None);
    assert_eq!(app.on_key(key(KeyCode::Backspace)), None);
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    type_text(&mut app, "é");
    assert_eq!(
        app.on_key(ctrl('s')),
        Some(Action::Send(Draft {
            kind: MailKind::MailNew,
            original_ref_id: 0,
            to: vec!["alice@example.com".into()],
            cc: vec!["carol@example.com".into()],
            bcc: vec![],
            subject: "Plans".into(),
            body: "Line one\néLine two".into(),
        }))
    );

    // Esc throws a draft away.
    app.compose = None;
    assert_eq!(app.on_key(ch('c')), None);
    type_text(&mut app, "x@example.com");
    assert_eq!(app.on_key(key(KeyCode::Esc)), None);
    assert!(app.compose.is_none());
    assert!(screen(&app).contains("Draft discarded."));
}

#[tokio::test]
async fn tui_selection_survives_new_mail() {
    let store = store().await;
    let mut app = app_with(&store).await;
    app.on_key(ch('j'));
    assert_eq!(app.inbox[app.selected].ref_id, 2);
    // New mail arrives on top: the same message stays selected.
    store
        .handle(&Item::new(9, "eve@example.com", "Newer").envelope())
        .await
        .expect("stored");
    app.set_inbox(store.inbox().await.expect("inbox"));
    assert_eq!(app.inbox[0].ref_id, 9);
    assert_eq!(app.inbox[app.selected].ref_id, 2);
    assert!(screen(&app).contains("3 unread · 4 messages"));
    // It goes away: the selection stays in range.
    store.mark(1, Change::Deleted(true)).await.expect("deleted");
    store.mark(2, Change::Deleted(true)).await.expect("deleted");
    app.set_inbox(store.inbox().await.expect("inbox"));
    assert!(app.selected < app.inbox.len());
    // The open message deleted elsewhere: back to the list, with a word why.
    app.show_message(store.message(3).await.expect("message 3"));
    app.message_gone("The message was deleted.");
    assert!(app.open.is_none());
    assert!(screen(&app).contains("The message was deleted."));
}

#[test]
fn tui_attachment_file_names_stay_in_their_directory() {
    assert_eq!(safe_file_name("report.pdf"), "report.pdf");
    assert_eq!(safe_file_name("../../etc/passwd"), "_.._etc_passwd");
    assert_eq!(safe_file_name(".bashrc"), "bashrc");
    assert_eq!(safe_file_name("a\nb\\c:d"), "a_b_c_d");
    assert_eq!(safe_file_name(""), "attachment");
    assert_eq!(safe_file_name("..."), "attachment");
    assert_eq!(safe_file_name(&"x".repeat(500)).len(), 120);
}

#[tokio::test]
async fn tui_a_locked_device_shows_only_the_password_screen() {
    let store = store().await;
    let mut app = app_with(&store).await;
    app.notify("New message from Boss: Quarterly report");
    app.lock_screen(true);
    let text = screen(&app);
    assert!(text.contains("locked by your administrator"), "{text}");
    for hidden in ["Quarterly report", "Lunch on Friday", "unread", "Boss"] {
        assert!(
            !text.contains(hidden),
            "{hidden:?} shown while locked:\n{text}"
        );
    }
    // Keys type the password (shown as dots) and do nothing else: not delete, not quit.
    type_text(&mut app, "dq");
    assert!(screen(&app).contains("Password: ••"), "{}", screen(&app));
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Some(Action::Unlock("dq".into()))
    );
    assert!(screen(&app).contains("Checking"));
    assert_eq!(app.on_key(ch('x')), None, "ignored while checking");
    app.unlock_refused("That is not the device password. 9 more wrong passwords.");
    let text = screen(&app);
    assert!(text.contains("not the device password"), "{text}");
    assert!(!text.contains("Quarterly report"), "{text}");
    // Nothing typed: asked to type it.
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    assert!(screen(&app).contains("Type the device password."));
    assert_eq!(app.on_key(ctrl('c')), Some(Action::Quit));
    app.unlocked();
    let text = screen(&app);
    assert!(text.contains("Quarterly report"), "{text}");
}

#[tokio::test]
async fn tui_locking_over_a_draft_keeps_it_behind_the_password_screen() {
    let store = store().await;
    let mut app = app_with(&store).await;
    assert_eq!(app.on_key(ch('c')), None);
    type_text(&mut app, "zoe@example.com");
    app.lock_screen(false);
    let text = screen(&app);
    assert!(text.contains("This device is locked."), "{text}");
    assert!(!text.contains("zoe@example.com"), "{text}");
    type_text(&mut app, "pw1234");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Some(Action::Unlock("pw1234".into()))
    );
    app.unlocked();
    let c = app.compose.as_ref().expect("the draft is still there");
    assert_eq!(c.to.text(), "zoe@example.com");
}

// ---- the organizer's screens ------------------------------------------------------------------

fn entry(database: Database, uid: &str, summary: Summary) -> OrganizerEntry {
    OrganizerEntry {
        database,
        uid: uid.into(),
        summary,
        data: String::new(),
        version: Some("v1".into()),
        state: RecordState::Synced,
        modified_ms: 1_700_000_000_000,
        detail: None,
    }
}

fn task(uid: &str, title: &str, completed: bool) -> OrganizerEntry {
    entry(
        Database::Tasks,
        uid,
        Summary {
            title: title.into(),
            completed,
            due: Some("2026-12-24".into()),
            ..Summary::default()
        },
    )
}

fn tasks() -> Vec<OrganizerEntry> {
    vec![
        task("t1", "Buy milk", true),
        task("t2", "Call Bob", false),
        task("t3", "File the report", false),
    ]
}

/// An app on the tasks screen, its records loaded.
async fn on_tasks(store: &MailStore) -> App {
    let mut app = app_with(store).await;
    assert_eq!(
        app.on_key(ch('4')),
        Some(Action::ShowRecords(Database::Tasks))
    );
    app.set_records(Database::Tasks, tasks());
    app
}

#[tokio::test]
async fn tui_screens_switch_with_digits_and_tab() {
    let store = store().await;
    let mut app = app_with(&store).await;
    assert_eq!(app.page, Page::Inbox);
    assert_eq!(
        app.on_key(ch('2')),
        Some(Action::ShowRecords(Database::Calendar))
    );
    assert_eq!(app.page, Page::Organizer(Database::Calendar));
    assert_eq!(
        app.on_key(key(KeyCode::Tab)),
        Some(Action::ShowRecords(Database::Contacts))
    );
    assert_eq!(
        app.on_key(ch('5')),
        Some(Action::ShowRecords(Database::Memos))
    );
    // Tab from the last screen comes back to the inbox; Shift-Tab goes the other way.
    assert_eq!(app.on_key(key(KeyCode::Tab)), None);
    assert_eq!(app.page, Page::Inbox);
    assert_eq!(
        app.on_key(key(KeyCode::BackTab)),
        Some(Action::ShowRecords(Database::Memos))
    );
    assert_eq!(app.on_key(ch('1')), None);
    assert_eq!(app.page, Page::Inbox);
    // The inbox keys still work there.
    assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Action::Open(3)));
    // Records of another screen than the one shown are not kept.
    app.set_records(Database::Tasks, tasks());
    assert!(app.records.is_empty());
    let text = screen(&app);
    assert!(
        text.contains("1 Inbox  2 Calendar  3 Contacts  4 Tasks  5 Memos"),
        "{text}"
    );
    // Locked: keys type the password, no screen changes.
    app.lock_screen(false);
    assert_eq!(app.on_key(ch('3')), None);
    assert_eq!(app.on_key(key(KeyCode::Tab)), None);
    assert_eq!(app.page, Page::Inbox);
    let text = screen(&app);
    assert!(!text.contains("2 Calendar"), "{text}");
}

#[tokio::test]
async fn tui_records_select_open_and_delete_after_asking() {
    let store = store().await;
    let mut app = on_tasks(&store).await;
    assert_eq!(app.record_selected, 0);
    assert_eq!(app.on_key(ch('j')), None);
    assert_eq!(app.on_key(key(KeyCode::Down)), None);
    assert_eq!(app.on_key(key(KeyCode::Down)), None, "stays on the last");
    assert_eq!(app.record_selected, 2);
    assert_eq!(app.on_key(ch('k')), None);
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Some(Action::OpenRecord(Database::Tasks, "t2".into()))
    );
    app.show_record(tasks()[1].clone());
    let text = screen(&app);
    assert!(text.contains("Tasks: Call Bob"), "{text}");
    assert!(text.contains("Done          no"), "{text}");
    assert!(text.contains("When          2026-12-24"), "{text}");
    assert_eq!(app.on_key(key(KeyCode::Esc)), None);
    assert!(app.record.is_none());

    // d asks first; n keeps it.
    assert_eq!(app.on_key(ch('d')), None);
    assert!(matches!(&app.ask, Some(Ask::DeleteRecord { uid, .. }) if uid == "t2"));
    assert!(
        screen(&app).contains("Delete the task “Call Bob”? (y/n)"),
        "{}",
        screen(&app)
    );
    assert_eq!(app.on_key(ch('x')), None, "neither yes nor no: still asked");
    assert!(app.ask.is_some());
    assert_eq!(app.on_key(ch('n')), None);
    assert!(app.ask.is_none());
    // y deletes, also from the record shown (which closes).
    app.show_record(tasks()[1].clone());
    assert_eq!(app.on_key(ch('d')), None);
    assert_eq!(
        app.on_key(ch('y')),
        Some(Action::DeleteRecord(Database::Tasks, "t2".into()))
    );
    assert!(app.record.is_none());
    // The list reloaded without it: the selection stays in range.
    app.set_records(Database::Tasks, vec![tasks()[0].clone()]);
    assert_eq!(app.record_selected, 0);
    assert_eq!(app.on_key(ch('q')), Some(Action::Quit));
}

#[tokio::test]
async fn tui_tasks_toggle_done_with_x() {
    let store = store().await;
    let mut app = on_tasks(&store).await;
    assert_eq!(
        app.on_key(ch('x')),
        Some(Action::SetDone("t1".into(), false))
    );
    assert_eq!(app.on_key(ch('j')), None);
    assert_eq!(
        app.on_key(ch('x')),
        Some(Action::SetDone("t2".into(), true))
    );
    app.show_record(tasks()[2].clone());
    assert_eq!(
        app.on_key(ch('x')),
        Some(Action::SetDone("t3".into(), true))
    );
    // Not on other screens.
    assert_eq!(
        app.on_key(ch('2')),
        Some(Action::ShowRecords(Database::Calendar))
    );
    app.set_records(Database::Calendar, vec![meeting()]);
    assert_eq!(app.on_key(ch('x')), None);
}

#[tokio::test]
async fn tui_new_record_form_saves_on_enter_and_cancels_on_esc() {
    let store = store().await;
    let mut app = on_tasks(&store).await;
    assert_eq!(app.on_key(ch('n')), None);
    assert!(app.form.is_some());
    assert!(screen(&app).contains("New task"), "{}", screen(&app));
    // Nothing typed: asked for a title.
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    assert_eq!(app.notice.as_deref(), Some("Type the task's title."));
    // Keys go to the form: q and digits are typed, not acted on.
    type_text(&mut app, "Pay 2 bills q");
    assert_eq!(app.page, Page::Organizer(Database::Tasks));
    assert!(
        screen(&app).contains("Title:   Pay 2 bills q"),
        "{}",
        screen(&app)
    );
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Some(Action::AddRecord(
            Database::Tasks,
            Fields {
                title: Some("Pay 2 bills q".into()),
                ..Fields::default()
            }
        ))
    );
    assert_eq!(app.on_key(ch('z')), None, "ignored while saving");
    app.record_refused("The title is too long.");
    assert!(app.form.is_some(), "kept to fix");
    app.record_added();
    assert!(app.form.is_none());

    // Esc cancels; contacts ask for a name.
    assert_eq!(
        app.on_key(ch('3')),
        Some(Action::ShowRecords(Database::Contacts))
    );
    assert_eq!(app.on_key(ch('n')), None);
    assert!(screen(&app).contains("Name:"), "{}", screen(&app));
    type_text(&mut app, "Bob");
    assert_eq!(app.on_key(key(KeyCode::Esc)), None);
    assert!(app.form.is_none());
    assert_eq!(app.page, Page::Organizer(Database::Contacts));
}

fn meeting() -> OrganizerEntry {
    entry(
        Database::Calendar,
        "e2",
        Summary {
            title: "Budget review".into(),
            start: Some("2026-12-02 14:00 UTC".into()),
            end: Some("2026-12-02 15:00 UTC".into()),
            location: Some("Room 4".into()),
            organizer: Some("boss@example.com".into()),
            attendees: vec!["bob@example.com".into()],
            invitation: true,
            ..Summary::default()
        },
    )
}

#[tokio::test]
async fn tui_calendar_and_tasks_lists_render() {
    let store = store().await;
    let mut app = app_with(&store).await;
    assert_eq!(
        app.on_key(ch('2')),
        Some(Action::ShowRecords(Database::Calendar))
    );
    let mut lunch = entry(
        Database::Calendar,
        "e1",
        Summary {
            title: "Lunch".into(),
            start: Some("2026-12-01 12:00 UTC".into()),
            ..Summary::default()
        },
    );
    lunch.state = RecordState::New;
    app.set_records(Database::Calendar, vec![lunch, meeting()]);
    let lines = render(&app, 130, 24);
    let text = lines.join("\n");
    assert!(text.contains(" Calendar "), "{text}");
    let row = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not shown:\n{text}"))
    };
    let (lunch_row, meeting_row) = (row("Lunch"), row("Budget review"));
    assert!(lunch_row < meeting_row, "by start time:\n{text}");
    assert!(lines[lunch_row].contains("2026-12-01 12:00 UTC"), "{text}");
    assert!(lines[lunch_row].contains("new, not sent"), "{text}");
    assert!(
        lines[meeting_row].contains("Budget review (invitation from boss@example.com)"),
        "{text}"
    );
    assert!(
        lines[meeting_row].contains("2026-12-02 14:00 UTC – 2026-12-02 15:00 UTC"),
        "{text}"
    );
    assert!(lines[meeting_row].contains("Room 4"), "{text}");
    assert!(text.contains("n new"), "{text}");

    // An event from the server arrives: shown on the notice line.
    app.notify("Calendar: 1 new from the server.");
    assert!(screen(&app).contains("Calendar: 1 new from the server."));

    assert_eq!(
        app.on_key(ch('4')),
        Some(Action::ShowRecords(Database::Tasks))
    );
    app.set_records(Database::Tasks, tasks());
    let lines = render(&app, 110, 24);
    let text = lines.join("\n");
    assert!(text.contains(" Tasks "), "{text}");
    let done = lines
        .iter()
        .find(|l| l.contains("Buy milk"))
        .expect("listed");
    assert!(done.contains("[x]"), "{text}");
    let open = lines
        .iter()
        .find(|l| l.contains("Call Bob"))
        .expect("listed");
    assert!(
        open.contains("[ ]") && open.contains("2026-12-24"),
        "{text}"
    );
    assert!(text.contains("x done/not done"), "{text}");

    // No records: said so.
    assert_eq!(
        app.on_key(ch('5')),
        Some(Action::ShowRecords(Database::Memos))
    );
    assert!(screen(&app).contains("No memos on this device. Press n to add one."));
}

#[tokio::test]
async fn tui_record_actions_change_the_store_and_reload_the_screen() {
    let store = store().await;
    let org = OrganizerStore::open(None)
        .await
        .expect("in-memory organizer");
    let mut app = app_with(&store).await;
    assert_eq!(
        app.on_key(ch('4')),
        Some(Action::ShowRecords(Database::Tasks))
    );
    let none = record_action(Action::ShowRecords(Database::Tasks), &mut app, &org)
        .await
        .expect("listed");
    assert_eq!(none, None, "nothing changed");
    assert!(app.records.is_empty());

    // Added from the form: stored as new (to send), listed, the form closed.
    assert_eq!(app.on_key(ch('n')), None);
    type_text(&mut app, "Call Bob");
    let add = app.on_key(key(KeyCode::Enter)).expect("an action");
    let added = record_action(add, &mut app, &org)
        .await
        .expect("added")
        .expect("a change to send");
    assert_eq!(added.state, RecordState::New);
    assert!(app.form.is_none());
    assert_eq!(app.notice.as_deref(), Some("Added the task “Call Bob”."));
    assert_eq!(app.records.len(), 1);
    assert!(!app.records[0].summary.completed);

    // x marks it done in the store.
    let done = app.on_key(ch('x')).expect("an action");
    assert_eq!(done, Action::SetDone(added.uid.clone(), true));
    record_action(done, &mut app, &org).await.expect("changed");
    assert!(app.records[0].summary.completed);
    assert!(
        org.get(Database::Tasks, &added.uid)
            .await
            .expect("kept")
            .summary
            .completed
    );

    // A record from the server: the screen reloads, the event is told.
    let uid = org
        .add(
            Database::Tasks,
            &Fields {
                title: Some("From the server".into()),
                ..Fields::default()
            },
        )
        .await
        .expect("stored");
    let event = OrganizerEvent::FromServer {
        database: Database::Tasks,
        new: 1,
        changed: 0,
        deleted: 0,
        kept: 0,
    };
    organizer_events(std::slice::from_ref(&event), &mut app, &org)
        .await
        .expect("reloaded");
    assert_eq!(app.records.len(), 2);
    assert!(app.records.iter().any(|e| e.uid == uid));
    assert_eq!(app.notice, Some(event.to_string()));

    // Deleted after asking: gone from the store and the screen.
    let at = app
        .records
        .iter()
        .position(|e| e.uid == added.uid)
        .expect("listed");
    app.record_selected = at;
    assert_eq!(app.on_key(ch('d')), None);
    let delete = app.on_key(ch('y')).expect("an action");
    record_action(delete, &mut app, &org)
        .await
        .expect("deleted");
    assert_eq!(app.records.len(), 1);
    assert_eq!(app.records[0].uid, uid);
    assert!(org.get(Database::Tasks, &added.uid).await.is_err());
    assert_eq!(app.notice.as_deref(), Some("Deleted the task “Call Bob”."));
}

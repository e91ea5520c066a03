//! The phone's screen as state: what is listed, what is open, what is being typed, and what a
//! key does. Pure: keys and news from the device go in, [`Action`]s come out, and nothing here
//! touches a terminal, the mail store or the network — the loop in `tui/mod.rs` does that and
//! feeds the results back (`set_inbox`, `show_message`, `start_compose`, …).
//!
//! The organizer's screens (calendar, contacts, tasks, memos) work the same way: a key
//! switches [`Page`], the loop loads the records ([`App::set_records`]), and adding, deleting
//! or completing one is an [`Action`] the loop stores and sends.
//!
//! Must not touch: the mail store, the organizer store, the connection, the terminal, the
//! clock (times arrive as values, so tests are repeatable).

use bramble_device::OrganizerEntry;
use bramble_device::mail::{Change, Draft, MailKind, Message, MessageSummary, OutboxState};
use bramble_organizer::{Database, Fields};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// How many lines PgUp/PgDn/Space scroll a message.
const PAGE: u16 = 10;

/// What the loop must do for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Leave the UI.
    Quit,
    /// Show this message (and mark it read).
    Open(u64),
    /// Change a message: read/unread, flag, delete; on the device at once, then the server.
    Mark(u64, Change),
    /// Ask the server for the next part of the message's text.
    More(u64),
    /// Download attachment `index` of a message and save it.
    SaveAttachment(u64, u32),
    /// Make a reply draft (to the sender, or to all) and open it in the editor.
    Reply {
        /// The message answered.
        ref_id: u64,
        /// Reply to all.
        all: bool,
    },
    /// Make a forward draft to these recipients and open it in the editor.
    Forward {
        /// The message forwarded.
        ref_id: u64,
        /// The recipients asked for.
        to: Vec<String>,
    },
    /// Put this message in the outbox and send it.
    Send(Draft),
    /// Unlock the device with this password.
    Unlock(String),
    /// Load the records of this database (its screen was switched to).
    ShowRecords(Database),
    /// Show this record with all its fields.
    OpenRecord(Database, String),
    /// Add a record with these fields, and send it.
    AddRecord(Database, Fields),
    /// Delete this record, and send the deletion.
    DeleteRecord(Database, String),
    /// Mark this task done (`true`) or not done, and send the change.
    SetDone(String, bool),
}

/// Which screen is shown: the inbox, or one of the organizer's databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The messages.
    Inbox,
    /// The records of a database.
    Organizer(Database),
}

impl Page {
    /// The screens in the order of their keys, `1` to `5` (Tab goes to the next).
    pub const ALL: [Page; 5] = [
        Page::Inbox,
        Page::Organizer(Database::Calendar),
        Page::Organizer(Database::Contacts),
        Page::Organizer(Database::Tasks),
        Page::Organizer(Database::Memos),
    ];

    /// Its name on the screen switcher.
    pub fn name(self) -> &'static str {
        match self {
            Page::Inbox => "Inbox",
            Page::Organizer(db) => db.title(),
        }
    }

    fn index(self) -> usize {
        Page::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// A record being added: one line, the contact's name or the title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordForm {
    /// The database it goes to.
    pub database: Database,
    /// What is typed.
    pub input: TextArea,
    /// Handed to the loop; waiting for the store to take it.
    pub submitting: bool,
}

impl RecordForm {
    /// The field's label: "Name:" for a contact, "Title:" for the others.
    pub fn label(&self) -> &'static str {
        if self.database == Database::Contacts {
            "Name:"
        } else {
            "Title:"
        }
    }
}

/// The password screen of a locked device: nothing else is shown until the right password is
/// typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockScreen {
    /// What is typed (shown as dots).
    pub input: TextArea,
    /// Why the last password did not unlock, with the attempts left.
    pub error: Option<String>,
    /// Locked by the administrator (rather than the user or the idle timer).
    pub by_admin: bool,
    /// A password was handed to the loop and is being checked.
    pub checking: bool,
}

/// The state of the link to the relay, as the status line tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Trying to reach the relay.
    Connecting,
    /// Logged in at the relay: what the server pushes arrives at once.
    Connected,
    /// No connection; the next try is in `retry_in_s` seconds.
    Offline {
        /// Why, in the device's words.
        reason: String,
        /// Seconds until the next try.
        retry_in_s: u64,
    },
}

impl Link {
    /// The status line's words.
    pub fn describe(&self) -> String {
        match self {
            Link::Connecting => "Connecting to relay…".to_owned(),
            Link::Connected => "Connected to relay".to_owned(),
            Link::Offline { retry_in_s, .. } if *retry_in_s == 0 => {
                "Out of coverage: retrying now".to_owned()
            }
            Link::Offline { retry_in_s, .. } => {
                format!("Out of coverage: retrying in {retry_in_s}s")
            }
        }
    }
}

/// A text being typed: one line (an address field) or many (the body). The cursor is a
/// (line, character) position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextArea {
    lines: Vec<String>,
    row: usize,
    col: usize,
    multiline: bool,
}

impl TextArea {
    /// A field holding `text`, the cursor at its end.
    pub fn new(text: &str, multiline: bool) -> TextArea {
        let mut lines: Vec<String> = if multiline {
            text.split('\n').map(str::to_owned).collect()
        } else {
            vec![text.replace(['\r', '\n'], " ")]
        };
        if lines.is_empty() {
            lines.push(String::new());
        }
        let row = lines.len() - 1;
        let col = lines[row].chars().count();
        TextArea {
            lines,
            row,
            col,
            multiline,
        }
    }

    /// Everything typed, lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The lines.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The cursor: line, and characters before it on that line.
    pub fn cursor(&self) -> (usize, usize) {
        (self.row, self.col)
    }

    fn byte_at(line: &str, col: usize) -> usize {
        line.char_indices().nth(col).map_or(line.len(), |(i, _)| i)
    }

    fn len(&self, row: usize) -> usize {
        self.lines.get(row).map_or(0, |l| l.chars().count())
    }

    fn insert(&mut self, c: char) {
        let line = &mut self.lines[self.row];
        let at = TextArea::byte_at(line, self.col);
        line.insert(at, c);
        self.col += 1;
    }

    fn newline(&mut self) {
        let line = &mut self.lines[self.row];
        let at = TextArea::byte_at(line, self.col);
        let rest = line.split_off(at);
        self.row += 1;
        self.lines.insert(self.row, rest);
        self.col = 0;
    }

    fn backspace(&mut self) {
        if self.col > 0 {
            let line = &mut self.lines[self.row];
            let at = TextArea::byte_at(line, self.col - 1);
            line.remove(at);
            self.col -= 1;
        } else if self.row > 0 {
            let line = self.lines.remove(self.row);
            self.row -= 1;
            self.col = self.len(self.row);
            self.lines[self.row].push_str(&line);
        }
    }

    fn delete(&mut self) {
        if self.col < self.len(self.row) {
            let line = &mut self.lines[self.row];
            let at = TextArea::byte_at(line, self.col);
            line.remove(at);
        } else if self.row + 1 < self.lines.len() {
            let next = self.lines.remove(self.row + 1);
            self.lines[self.row].push_str(&next);
        }
    }

    /// Handles an editing key; whether it was one.
    fn key(&mut self, key: &KeyEvent) -> bool {
        match key.code {
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => self.insert(c),
            KeyCode::Enter if self.multiline => self.newline(),
            KeyCode::Backspace => self.backspace(),
            KeyCode::Delete => self.delete(),
            KeyCode::Left if self.col > 0 => self.col -= 1,
            KeyCode::Left if self.row > 0 => {
                self.row -= 1;
                self.col = self.len(self.row);
            }
            KeyCode::Right if self.col < self.len(self.row) => self.col += 1,
            KeyCode::Right if self.row + 1 < self.lines.len() => {
                self.row += 1;
                self.col = 0;
            }
            KeyCode::Up if self.multiline && self.row > 0 => {
                self.row -= 1;
                self.col = self.col.min(self.len(self.row));
            }
            KeyCode::Down if self.multiline && self.row + 1 < self.lines.len() => {
                self.row += 1;
                self.col = self.col.min(self.len(self.row));
            }
            KeyCode::Home => self.col = 0,
            KeyCode::End => self.col = self.len(self.row),
            KeyCode::Left | KeyCode::Right => {}
            _ => return false,
        }
        true
    }
}

/// A field of the editor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Recipients.
    To,
    /// Copy recipients.
    Cc,
    /// The subject.
    Subject,
    /// The text.
    Body,
}

impl Field {
    const ORDER: [Field; 4] = [Field::To, Field::Cc, Field::Subject, Field::Body];

    fn next(self) -> Field {
        let i = Field::ORDER.iter().position(|f| *f == self).unwrap_or(0);
        Field::ORDER[(i + 1) % Field::ORDER.len()]
    }

    fn prev(self) -> Field {
        let i = Field::ORDER.iter().position(|f| *f == self).unwrap_or(0);
        Field::ORDER[(i + Field::ORDER.len() - 1) % Field::ORDER.len()]
    }
}

/// A message being written: new, a reply or a forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compose {
    /// New, reply, reply to all, forward.
    pub kind: MailKind,
    /// The message answered or forwarded (0: none).
    pub original_ref_id: u64,
    /// Recipients, separated by commas.
    pub to: TextArea,
    /// Copy recipients, separated by commas.
    pub cc: TextArea,
    /// The subject.
    pub subject: TextArea,
    /// The text.
    pub body: TextArea,
    /// Which field keys go to.
    pub focus: Field,
    /// Why it could not be sent (shown in the editor).
    pub error: Option<String>,
    /// Handed to the loop; waiting for the outbox to take it.
    pub submitting: bool,
}

impl Compose {
    fn of(draft: &Draft) -> Compose {
        let focus = if draft.to.is_empty() {
            Field::To
        } else {
            Field::Body
        };
        Compose {
            kind: draft.kind,
            original_ref_id: draft.original_ref_id,
            to: TextArea::new(&draft.to.join(", "), false),
            cc: TextArea::new(&draft.cc.join(", "), false),
            subject: TextArea::new(&draft.subject, false),
            body: TextArea::new(&draft.body, true),
            focus,
            error: None,
            submitting: false,
        }
    }

    fn field(&mut self, f: Field) -> &mut TextArea {
        match f {
            Field::To => &mut self.to,
            Field::Cc => &mut self.cc,
            Field::Subject => &mut self.subject,
            Field::Body => &mut self.body,
        }
    }

    /// The draft as typed.
    pub fn draft(&self) -> Draft {
        Draft {
            kind: self.kind,
            original_ref_id: self.original_ref_id,
            to: addresses(&self.to.text()),
            cc: addresses(&self.cc.text()),
            bcc: Vec::new(),
            subject: self.subject.text().trim().to_owned(),
            body: self.body.text(),
        }
    }

    /// The editor's title.
    pub fn title(&self) -> &'static str {
        match self.kind {
            MailKind::MailNew => "New message",
            MailKind::MailReply => "Reply",
            MailKind::MailReplyAll => "Reply to all",
            MailKind::MailForward => "Forward",
        }
    }
}

/// Addresses typed into one field, separated by commas or semicolons.
pub fn addresses(s: &str) -> Vec<String> {
    s.split([',', ';'])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A question over the inbox or the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// Delete this message? y/n.
    Delete {
        /// The message.
        ref_id: u64,
        /// Its subject, to show.
        subject: String,
    },
    /// Forward to whom?
    ForwardTo {
        /// The message.
        ref_id: u64,
        /// What is typed.
        input: TextArea,
    },
    /// Delete this organizer record? y/n.
    DeleteRecord {
        /// Its database.
        database: Database,
        /// Its UID.
        uid: String,
        /// Its title, to show.
        title: String,
    },
    /// Save which attachment?
    Attachment {
        /// The message.
        ref_id: u64,
        /// What is typed.
        input: TextArea,
        /// How many it has.
        count: usize,
    },
}

/// What happened to a message sent from here, state by state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sending {
    /// The outbox entry.
    pub client_id: u64,
    /// Its subject.
    pub subject: String,
    /// The states it went through, oldest first.
    pub states: Vec<OutboxState>,
    /// The server's words (why it failed).
    pub message: String,
}

/// The whole screen's state.
#[derive(Debug, Clone)]
pub struct App {
    /// Who the phone belongs to, and its PIN, for the title.
    pub title: String,
    /// The messages, newest first.
    pub inbox: Vec<MessageSummary>,
    /// The selected row of the inbox.
    pub selected: usize,
    /// The message shown, if one is.
    pub open: Option<Message>,
    /// How far the open message is scrolled, in lines.
    pub scroll: u16,
    /// The editor, when writing.
    pub compose: Option<Compose>,
    /// A question being asked.
    pub ask: Option<Ask>,
    /// The link to the relay.
    pub link: Link,
    /// The last thing to tell the user.
    pub notice: Option<String>,
    /// Messages sent from here whose fate is being followed (newest last).
    pub sending: Vec<Sending>,
    /// The password screen, when the device is locked.
    pub lock: Option<LockScreen>,
    /// The screen shown.
    pub page: Page,
    /// The records of the organizer screen shown, as the store lists them.
    pub records: Vec<OrganizerEntry>,
    /// The selected row of the records.
    pub record_selected: usize,
    /// The record shown, if one is.
    pub record: Option<OrganizerEntry>,
    /// The form adding a record, when one is open.
    pub form: Option<RecordForm>,
}

fn key_is(key: &KeyEvent, c: char) -> bool {
    key.code == KeyCode::Char(c)
        && !key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
}

fn ctrl(key: &KeyEvent, c: char) -> bool {
    key.code == KeyCode::Char(c) && key.modifiers.contains(KeyModifiers::CONTROL)
}

impl App {
    /// An empty screen with this title ("alice@example.com · PIN 2A1B3C4D").
    pub fn new(title: impl Into<String>) -> App {
        App {
            title: title.into(),
            inbox: Vec::new(),
            selected: 0,
            open: None,
            scroll: 0,
            compose: None,
            ask: None,
            link: Link::Connecting,
            notice: None,
            sending: Vec::new(),
            lock: None,
            page: Page::Inbox,
            records: Vec::new(),
            record_selected: 0,
            record: None,
            form: None,
        }
    }

    // ---- the lock ------------------------------------------------------------------------

    /// The device is locked: the password screen replaces everything (a question or a
    /// message being written stays behind it).
    pub fn lock_screen(&mut self, by_admin: bool) {
        match &mut self.lock {
            Some(l) => l.by_admin |= by_admin,
            None => {
                self.lock = Some(LockScreen {
                    input: TextArea::new("", false),
                    error: None,
                    by_admin,
                    checking: false,
                });
            }
        }
    }

    /// The right password was typed.
    pub fn unlocked(&mut self) {
        self.lock = None;
    }

    /// The password typed did not unlock the device.
    pub fn unlock_refused(&mut self, why: &str) {
        if let Some(l) = &mut self.lock {
            l.checking = false;
            l.error = Some(why.to_owned());
        }
    }

    /// Keys on the password screen.
    fn lock_key(&mut self, key: &KeyEvent) -> Option<Action> {
        let l = self.lock.as_mut()?;
        if l.checking {
            return None;
        }
        match key.code {
            KeyCode::Enter => {
                let password = l.input.text();
                l.input = TextArea::new("", false);
                if password.is_empty() {
                    l.error = Some("Type the device password.".to_owned());
                    return None;
                }
                l.checking = true;
                l.error = None;
                Some(Action::Unlock(password))
            }
            KeyCode::Esc => {
                l.input = TextArea::new("", false);
                None
            }
            _ => {
                l.input.key(key);
                None
            }
        }
    }

    // ---- news from the loop ----------------------------------------------------------------

    /// Replaces the list, keeping the selected message selected where it still is.
    pub fn set_inbox(&mut self, inbox: Vec<MessageSummary>) {
        let was = self.inbox.get(self.selected).map(|m| m.ref_id);
        self.inbox = inbox;
        self.selected = was
            .and_then(|r| self.inbox.iter().position(|m| m.ref_id == r))
            .unwrap_or(self.selected)
            .min(self.inbox.len().saturating_sub(1));
    }

    /// Shows a message (opened, or the open one again with more text or changed flags).
    pub fn show_message(&mut self, msg: Message) {
        if self.open.as_ref().map(|m| m.ref_id) != Some(msg.ref_id) {
            self.scroll = 0;
        }
        if let Some(i) = self.inbox.iter().position(|m| m.ref_id == msg.ref_id) {
            self.selected = i;
        }
        self.open = Some(msg);
    }

    /// The open message is no longer on the device (deleted here or in the mailbox).
    pub fn message_gone(&mut self, why: &str) {
        if self.open.take().is_some() {
            self.notice = Some(why.to_owned());
        }
    }

    /// Opens the editor with a draft (new, or a reply or forward the store made).
    pub fn start_compose(&mut self, draft: &Draft) {
        self.ask = None;
        self.compose = Some(Compose::of(draft));
    }

    /// The outbox took the draft being sent: close the editor and follow its fate.
    pub fn draft_queued(&mut self, client_id: u64, subject: &str) {
        self.compose = None;
        self.track(client_id, subject, OutboxState::Queued, "");
    }

    /// The outbox refused the draft being sent: say why in the editor, and keep it.
    pub fn draft_refused(&mut self, why: &str) {
        if let Some(c) = &mut self.compose {
            c.submitting = false;
            c.error = Some(why.to_owned());
        }
    }

    /// Follows an outbox entry (one sent from here, or found waiting at start).
    pub fn track(&mut self, client_id: u64, subject: &str, state: OutboxState, message: &str) {
        if self.sending.iter().any(|s| s.client_id == client_id) {
            self.outbox_changed(client_id, state, message);
            return;
        }
        self.sending.push(Sending {
            client_id,
            subject: subject.to_owned(),
            states: vec![state],
            message: message.to_owned(),
        });
        if self.sending.len() > 5 {
            self.sending.remove(0);
        }
    }

    /// The server said what became of an outbox entry.
    pub fn outbox_changed(&mut self, client_id: u64, state: OutboxState, message: &str) {
        if let Some(s) = self.sending.iter_mut().find(|s| s.client_id == client_id) {
            if s.states.last() != Some(&state) {
                s.states.push(state);
            }
            s.message = message.to_owned();
        }
    }

    /// The records of `database`, loaded (or loaded again): kept only while its screen is
    /// shown, the selected record staying selected where it still is.
    pub fn set_records(&mut self, database: Database, records: Vec<OrganizerEntry>) {
        if self.page != Page::Organizer(database) {
            return;
        }
        let was = self
            .records
            .get(self.record_selected)
            .map(|e| e.uid.clone());
        self.records = records;
        self.record_selected = was
            .and_then(|u| self.records.iter().position(|e| e.uid == u))
            .unwrap_or(self.record_selected)
            .min(self.records.len().saturating_sub(1));
    }

    /// Shows a record (opened, or the open one again after a change).
    pub fn show_record(&mut self, entry: OrganizerEntry) {
        if self.page != Page::Organizer(entry.database) {
            return;
        }
        if let Some(i) = self.records.iter().position(|e| e.uid == entry.uid) {
            self.record_selected = i;
        }
        self.record = Some(entry);
    }

    /// The open record is no longer on the device.
    pub fn record_gone(&mut self, why: &str) {
        if self.record.take().is_some() {
            self.notice = Some(why.to_owned());
        }
    }

    /// The store took the record being added: close the form.
    pub fn record_added(&mut self) {
        self.form = None;
    }

    /// The store refused the record being added: say why, and keep the form.
    pub fn record_refused(&mut self, why: &str) {
        if let Some(f) = &mut self.form {
            f.submitting = false;
        }
        self.notice = Some(why.to_owned());
    }

    /// Something to tell the user, on the line above the status.
    pub fn notify(&mut self, text: impl Into<String>) {
        self.notice = Some(text.into());
    }

    // ---- what is shown ---------------------------------------------------------------------

    /// How many messages are unread.
    pub fn unread(&self) -> usize {
        self.inbox.iter().filter(|m| !m.seen).count()
    }

    /// The message the keys act on: the open one, else the selected one.
    fn current(&self) -> Option<(u64, bool, bool, String)> {
        if let Some(m) = &self.open {
            return Some((m.ref_id, m.seen, m.flagged, m.subject.clone()));
        }
        self.inbox
            .get(self.selected)
            .map(|m| (m.ref_id, m.seen, m.flagged, m.subject.clone()))
    }

    /// The key help for what is on screen.
    pub fn help(&self) -> &'static str {
        if self.lock.is_some() {
            return "Type the device password · Enter unlock · Ctrl-C quit";
        }
        if self.compose.is_some() {
            return "Tab next field · Ctrl-S (or Ctrl-D) send · Esc cancel";
        }
        if self.form.is_some() {
            return "Enter save · Esc cancel";
        }
        match &self.ask {
            Some(Ask::Delete { .. } | Ask::DeleteRecord { .. }) => return "y delete · n keep it",
            Some(_) => return "Enter OK · Esc cancel",
            None => {}
        }
        if let Page::Organizer(db) = self.page {
            return match (db == Database::Tasks, self.record.is_some()) {
                (true, true) => "x done/not done · d delete · Esc back · 1-5/Tab screens · q quit",
                (false, true) => "d delete · Esc back · 1-5/Tab screens · q quit",
                (true, false) => {
                    "↑↓/jk move · Enter open · n new · x done/not done · d delete · \
                     1-5/Tab screens · q quit"
                }
                (false, false) => {
                    "↑↓/jk move · Enter open · n new · d delete · 1-5/Tab screens · q quit"
                }
            };
        }
        if self.open.is_some() {
            "↑↓ scroll · m more · a attachment · r/R reply · f forward · u unread · s flag · \
             d delete · Esc back · q quit"
        } else {
            "↑↓/jk move · Enter open · c compose · r/R reply · f forward · u read/unread · \
             s flag · d delete · q quit"
        }
    }

    // ---- keys ------------------------------------------------------------------------------

    /// Handles a key; what the loop must do, if anything.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if ctrl(&key, 'c') {
            return Some(Action::Quit);
        }
        if self.lock.is_some() {
            return self.lock_key(&key);
        }
        if self.compose.is_some() {
            return self.compose_key(&key);
        }
        if self.form.is_some() {
            return self.form_key(&key);
        }
        if self.ask.is_some() {
            return self.ask_key(&key);
        }
        self.notice = None;
        if let Some(page) = self.page_key(&key) {
            return self.switch_to(page);
        }
        if let Page::Organizer(db) = self.page {
            return self.organizer_key(db, &key);
        }
        if self.open.is_some() {
            if let Some(a) = self.reading_key(&key) {
                return a;
            }
        } else if let Some(a) = self.inbox_key(&key) {
            return a;
        }
        self.common_key(&key)
    }

    /// The screen a switching key asks for: `1`–`5`, Tab and Shift-Tab.
    fn page_key(&self, key: &KeyEvent) -> Option<Page> {
        let i = self.page.index();
        let n = Page::ALL.len();
        match key.code {
            KeyCode::Tab => Some(Page::ALL[(i + 1) % n]),
            KeyCode::BackTab => Some(Page::ALL[(i + n - 1) % n]),
            KeyCode::Char(c @ '1'..='5') if key_is(key, c) => {
                Page::ALL.get(usize::from(c as u8 - b'1')).copied()
            }
            _ => None,
        }
    }

    /// Shows another screen; an organizer screen's records are to be loaded.
    pub fn switch_to(&mut self, page: Page) -> Option<Action> {
        self.page = page;
        self.record = None;
        match page {
            Page::Inbox => None,
            Page::Organizer(db) => {
                self.records.clear();
                self.record_selected = 0;
                Some(Action::ShowRecords(db))
            }
        }
    }

    /// The record the keys act on: the open one, else the selected one.
    fn current_record(&self) -> Option<&OrganizerEntry> {
        self.record
            .as_ref()
            .or_else(|| self.records.get(self.record_selected))
    }

    /// Keys of an organizer screen (its list, or a record shown).
    fn organizer_key(&mut self, db: Database, key: &KeyEvent) -> Option<Action> {
        if key_is(key, 'q') {
            return Some(Action::Quit);
        }
        if key_is(key, 'd') || key.code == KeyCode::Delete {
            let e = self.current_record()?;
            self.ask = Some(Ask::DeleteRecord {
                database: db,
                uid: e.uid.clone(),
                title: e.summary.title.clone(),
            });
            return None;
        }
        if key_is(key, 'x') && db == Database::Tasks {
            let e = self.current_record()?;
            return Some(Action::SetDone(e.uid.clone(), !e.summary.completed));
        }
        if self.record.is_some() {
            if matches!(key.code, KeyCode::Esc | KeyCode::Left | KeyCode::Backspace)
                || key_is(key, 'h')
            {
                self.record = None;
            }
            return None;
        }
        let last = self.records.len().saturating_sub(1);
        let sel = &mut self.record_selected;
        match key.code {
            KeyCode::Up => *sel = sel.saturating_sub(1),
            KeyCode::Down => *sel = (*sel + 1).min(last),
            KeyCode::Char('k') if key_is(key, 'k') => *sel = sel.saturating_sub(1),
            KeyCode::Char('j') if key_is(key, 'j') => *sel = (*sel + 1).min(last),
            KeyCode::Home | KeyCode::Char('g') => *sel = 0,
            KeyCode::End | KeyCode::Char('G') => *sel = last,
            KeyCode::PageUp => *sel = sel.saturating_sub(usize::from(PAGE)),
            KeyCode::PageDown => *sel = (*sel + usize::from(PAGE)).min(last),
            KeyCode::Enter => {
                return self
                    .records
                    .get(self.record_selected)
                    .map(|e| Action::OpenRecord(db, e.uid.clone()));
            }
            KeyCode::Char('n') if key_is(key, 'n') => {
                self.form = Some(RecordForm {
                    database: db,
                    input: TextArea::new("", false),
                    submitting: false,
                });
            }
            _ => {}
        }
        None
    }

    /// Keys in the form adding a record.
    fn form_key(&mut self, key: &KeyEvent) -> Option<Action> {
        let f = self.form.as_mut()?;
        if f.submitting {
            return None;
        }
        match key.code {
            KeyCode::Esc => {
                self.form = None;
                self.notice = Some("Nothing added.".to_owned());
                None
            }
            KeyCode::Enter => {
                let text = f.input.text().trim().to_owned();
                if text.is_empty() {
                    self.notice = Some(format!(
                        "Type the {}'s {}.",
                        f.database.noun(),
                        if f.database == Database::Contacts {
                            "name"
                        } else {
                            "title"
                        }
                    ));
                    return None;
                }
                f.submitting = true;
                self.notice = None;
                Some(Action::AddRecord(
                    f.database,
                    Fields {
                        title: Some(text),
                        ..Fields::default()
                    },
                ))
            }
            _ => {
                f.input.key(key);
                None
            }
        }
    }

    /// Keys of the inbox list; `None` when not one of them.
    fn inbox_key(&mut self, key: &KeyEvent) -> Option<Option<Action>> {
        let last = self.inbox.len().saturating_sub(1);
        match key.code {
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down => self.selected = (self.selected + 1).min(last),
            KeyCode::Char('k') if key_is(key, 'k') => {
                self.selected = self.selected.saturating_sub(1);
            }
            KeyCode::Char('j') if key_is(key, 'j') => {
                self.selected = (self.selected + 1).min(last);
            }
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = last,
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(usize::from(PAGE)),
            KeyCode::PageDown => self.selected = (self.selected + usize::from(PAGE)).min(last),
            KeyCode::Enter => {
                return Some(
                    self.inbox
                        .get(self.selected)
                        .map(|m| Action::Open(m.ref_id)),
                );
            }
            _ => return None,
        }
        Some(None)
    }

    /// Keys of an open message; `None` when not one of them.
    fn reading_key(&mut self, key: &KeyEvent) -> Option<Option<Action>> {
        let msg = self.open.as_ref()?;
        let ref_id = msg.ref_id;
        let lines = u16::try_from(msg.text.lines().count() + msg.attachments.len() + 12)
            .unwrap_or(u16::MAX);
        match key.code {
            KeyCode::Esc | KeyCode::Left | KeyCode::Backspace => {
                self.open = None;
                self.scroll = 0;
            }
            KeyCode::Char('h') if key_is(key, 'h') => {
                self.open = None;
                self.scroll = 0;
            }
            KeyCode::Up | KeyCode::Char('k') => self.scroll = self.scroll.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll = (self.scroll + 1).min(lines),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(PAGE),
            KeyCode::PageDown | KeyCode::Char(' ') => {
                self.scroll = self.scroll.saturating_add(PAGE).min(lines);
            }
            KeyCode::Home => self.scroll = 0,
            KeyCode::Char('m') if key_is(key, 'm') => {
                if msg.more {
                    return Some(Some(Action::More(ref_id)));
                }
                self.notice = Some(if msg.truncated {
                    "The rest of this message is more than the device keeps.".to_owned()
                } else {
                    "All of this message is on the device.".to_owned()
                });
            }
            KeyCode::Char('a') if key_is(key, 'a') => match msg.attachments.len() {
                0 => self.notice = Some("This message has no attachments.".to_owned()),
                count => {
                    self.ask = Some(Ask::Attachment {
                        ref_id,
                        input: TextArea::new("", false),
                        count,
                    });
                }
            },
            _ => return None,
        }
        Some(None)
    }

    /// Keys that act on the current message, in the inbox or reading it.
    fn common_key(&mut self, key: &KeyEvent) -> Option<Action> {
        if key_is(key, 'q') {
            return Some(Action::Quit);
        }
        if key_is(key, 'c') {
            self.start_compose(&Draft::default());
            return None;
        }
        let (ref_id, seen, flagged, subject) = self.current()?;
        match key.code {
            KeyCode::Char('r') if key_is(key, 'r') => Some(Action::Reply { ref_id, all: false }),
            KeyCode::Char('R') => Some(Action::Reply { ref_id, all: true }),
            KeyCode::Char('f') if key_is(key, 'f') => {
                self.ask = Some(Ask::ForwardTo {
                    ref_id,
                    input: TextArea::new("", false),
                });
                None
            }
            KeyCode::Char('d') if key_is(key, 'd') => {
                self.ask = Some(Ask::Delete { ref_id, subject });
                None
            }
            KeyCode::Delete => {
                self.ask = Some(Ask::Delete { ref_id, subject });
                None
            }
            KeyCode::Char('u') if key_is(key, 'u') => {
                Some(Action::Mark(ref_id, Change::Seen(!seen)))
            }
            KeyCode::Char('s') if key_is(key, 's') => {
                Some(Action::Mark(ref_id, Change::Flagged(!flagged)))
            }
            _ => None,
        }
    }

    /// Keys while a question is asked.
    fn ask_key(&mut self, key: &KeyEvent) -> Option<Action> {
        let ask = self.ask.take()?;
        match ask {
            Ask::Delete { ref_id, subject } => {
                if key_is(key, 'y') || key_is(key, 'Y') {
                    if self.open.as_ref().is_some_and(|m| m.ref_id == ref_id) {
                        self.open = None;
                        self.scroll = 0;
                    }
                    return Some(Action::Mark(ref_id, Change::Deleted(true)));
                }
                if !(key_is(key, 'n') || key_is(key, 'N') || key.code == KeyCode::Esc) {
                    self.ask = Some(Ask::Delete { ref_id, subject });
                }
                None
            }
            Ask::DeleteRecord {
                database,
                uid,
                title,
            } => {
                if key_is(key, 'y') || key_is(key, 'Y') {
                    if self.record.as_ref().is_some_and(|e| e.uid == uid) {
                        self.record = None;
                    }
                    return Some(Action::DeleteRecord(database, uid));
                }
                if !(key_is(key, 'n') || key_is(key, 'N') || key.code == KeyCode::Esc) {
                    self.ask = Some(Ask::DeleteRecord {
                        database,
                        uid,
                        title,
                    });
                }
                None
            }
            Ask::ForwardTo { ref_id, mut input } => match key.code {
                KeyCode::Esc => None,
                KeyCode::Enter => {
                    let to = addresses(&input.text());
                    if to.is_empty() {
                        self.ask = Some(Ask::ForwardTo { ref_id, input });
                        self.notice = Some("Type at least one address.".to_owned());
                        return None;
                    }
                    Some(Action::Forward { ref_id, to })
                }
                _ => {
                    input.key(key);
                    self.ask = Some(Ask::ForwardTo { ref_id, input });
                    None
                }
            },
            Ask::Attachment {
                ref_id,
                mut input,
                count,
            } => {
                let pick = |s: &str| {
                    s.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (*n as usize) < count)
                };
                match key.code {
                    KeyCode::Esc => None,
                    // With at most ten, one digit says which.
                    KeyCode::Char(c) if count <= 10 && c.is_ascii_digit() => {
                        match pick(&c.to_string()) {
                            Some(n) => Some(Action::SaveAttachment(ref_id, n)),
                            None => {
                                self.notice =
                                    Some(format!("Type a number from 0 to {}.", count - 1));
                                self.ask = Some(Ask::Attachment {
                                    ref_id,
                                    input,
                                    count,
                                });
                                None
                            }
                        }
                    }
                    KeyCode::Enter => match pick(&input.text()) {
                        Some(n) => Some(Action::SaveAttachment(ref_id, n)),
                        None => {
                            self.notice = Some(format!("Type a number from 0 to {}.", count - 1));
                            self.ask = Some(Ask::Attachment {
                                ref_id,
                                input,
                                count,
                            });
                            None
                        }
                    },
                    KeyCode::Char(c) if !c.is_ascii_digit() => {
                        self.ask = Some(Ask::Attachment {
                            ref_id,
                            input,
                            count,
                        });
                        None
                    }
                    _ => {
                        input.key(key);
                        self.ask = Some(Ask::Attachment {
                            ref_id,
                            input,
                            count,
                        });
                        None
                    }
                }
            }
        }
    }

    /// Keys in the editor.
    fn compose_key(&mut self, key: &KeyEvent) -> Option<Action> {
        let c = self.compose.as_mut()?;
        if c.submitting {
            return None;
        }
        if key.code == KeyCode::Esc {
            self.compose = None;
            self.notice = Some("Draft discarded.".to_owned());
            return None;
        }
        if ctrl(key, 's') || ctrl(key, 'd') {
            let draft = c.draft();
            if draft.to.is_empty() && draft.cc.is_empty() {
                c.error = Some("Add at least one recipient.".to_owned());
                c.focus = Field::To;
                return None;
            }
            c.error = None;
            c.submitting = true;
            return Some(Action::Send(draft));
        }
        match key.code {
            KeyCode::Tab => c.focus = c.focus.next(),
            KeyCode::BackTab => c.focus = c.focus.prev(),
            KeyCode::Enter if c.focus != Field::Body => c.focus = c.focus.next(),
            KeyCode::Down if c.focus != Field::Body => c.focus = c.focus.next(),
            KeyCode::Up if c.focus != Field::Body && c.focus != Field::To => {
                c.focus = c.focus.prev();
            }
            KeyCode::Up if c.focus == Field::Body && c.body.cursor().0 == 0 => {
                c.focus = Field::Subject;
            }
            _ => {
                let focus = c.focus;
                c.field(focus).key(key);
            }
        }
        None
    }
}

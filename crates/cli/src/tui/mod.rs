//! `bramble device tui`: the phone's screen in a terminal. The inbox, a message, the editor,
//! and what the server pushes appearing at once.
//!
//! Owns the loop: one `tokio::select!` over the terminal's keys (crossterm's `EventStream`)
//! and [`Connection::recv`], every item received handed to
//! [`mail::handle_and_answer`] before the next `recv` (so nothing the relay forgets is lost);
//! pending submits and changes sent with [`mail::send_pending`]; a dropped connection retried
//! with back-off while the screen keeps working from the mail store. The organizer's screens
//! read and change the [`OrganizerStore`]; a change is queued there and sent at once on the
//! live connection with [`organizer::send_pending`] (else on the next one), and the records
//! the server sends ([`MailEvent::Organizer`]) reload the screen shown. The screen's state and
//! what keys do live in [`app`] (pure, tested without a terminal), the drawing in [`view`].
//!
//! The lock: a locked device (by its user, its administrator, or after the IT policy's
//! `inactivity_lock_minutes` without a key) shows the password screen and nothing else until
//! [`Device::unlock`] accepts the password typed; too many wrong ones wipe the device, as a
//! wipe command does, and the UI ends saying so. What the policy service does
//! ([`bramble_device::ManageEvent`]) is shown as a notice.
//!
//! Must not touch: the device's keys and state (only [`Device::connect`] and the device's
//! own lock, unlock and policy accessors), the mail store's and organizer store's tables
//! (only [`MailStore`]'s and [`OrganizerStore`]'s methods). The terminal is put back as it was on every way out:
//! `q`, an error, or a panic.

pub mod app;
pub mod view;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::io::{self, IsTerminal, Stdout};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bramble_device::mail::{self, Change, MailEvent, MailStore};
use bramble_device::organizer::{self, OrganizerEntry, OrganizerEvent, RecordState};
use bramble_device::{Connection, Device, DeviceError, OrganizerStore};
use bramble_organizer::{Database, Fields};
use bramble_proto::schema::{AttachmentRequest, Envelope, MoreRequest, envelope::Body};
use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::time::Instant;

use app::{Action, App, Link, Page};

/// The first wait before connecting again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two tries to reach the relay.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs the UI until the user quits.
///
/// # Errors
/// A device that is not activated (said before the screen changes), no terminal, a relay
/// that cannot be used (its certificate changed, say), or a mail store that cannot be written.
pub async fn run(device: &mut Device) -> Result<()> {
    if device.server().is_none() {
        anyhow::bail!(
            "{} Activate it first: bramble device --home DIR activate EMAIL PASSWORD",
            DeviceError::NotActivated
        );
    }
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        anyhow::bail!(
            "bramble device tui needs a terminal; use `inbox`, `read` and `send` in scripts"
        );
    }
    let home = device
        .home()
        .map(Path::to_owned)
        .context("the device has no home directory")?;
    init_file_logging(&home);
    let store = device.mail_store().await?;
    let org = device.organizer().await?;
    let own = device.profile().map(|p| p.email.clone());
    let mut app = App::new(format!(
        "{} · PIN {}",
        own.as_deref().unwrap_or("(no address)"),
        device.pin()
    ));
    if device.is_locked() {
        app.lock_screen(device.locked_by_admin());
    }
    app.set_inbox(store.inbox().await?);
    for e in store.outbox().await?.iter().rev() {
        if !e.state.is_final() {
            app.track(e.client_id, &e.subject, e.state, &e.message);
        }
    }
    let mut sess = Session {
        store: &store,
        org,
        own,
        attachments: home.join("attachments"),
        want_more: BTreeSet::new(),
        want_attachments: BTreeSet::new(),
        policy: Policy::of(device),
        last_key: Instant::now(),
        unlock_wanted: None,
        lock_wanted: false,
    };
    let mut screen = Screen::enter().context("cannot set up the terminal")?;
    let result = run_loop(device, &mut app, &mut sess, &mut screen).await;
    drop(screen);
    store.close().await;
    match result {
        Ok(Some(ended)) => {
            println!("{ended}");
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Logs go to `HOME/tui.log` when `BRAMBLE_LOG` asks for them: the screen is the terminal's.
fn init_file_logging(home: &Path) {
    let Ok(filter) = std::env::var("BRAMBLE_LOG") else {
        return;
    };
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join("tui.log"))
    else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .try_init();
}

// ---- the terminal ----------------------------------------------------------------------------

/// Whether the terminal is in raw mode on the alternate screen (for the panic hook).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back: cooked mode, the main screen, the cursor shown. Harmless when it
/// already is.
fn restore_terminal() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = crossterm::terminal::disable_raw_mode();
        let _ = crossterm::execute!(
            io::stdout(),
            crossterm::terminal::LeaveAlternateScreen,
            crossterm::cursor::Show
        );
    }
}

/// The terminal in raw mode on the alternate screen, until dropped.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> io::Result<Screen> {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        crossterm::terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let entered = crossterm::execute!(io::stdout(), crossterm::terminal::EnterAlternateScreen)
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match entered {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                restore_terminal();
                Err(e)
            }
        }
    }

    fn draw(&mut self, app: &App) -> io::Result<()> {
        self.terminal.draw(|f| view::draw(f, app)).map(|_| ())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
    }
}

// ---- the loop --------------------------------------------------------------------------------

/// Why the loop around one connection ended.
#[derive(Debug)]
enum Stop {
    /// The user quit.
    Quit,
    /// The connection dropped (or could not be used): connect again later.
    Lost(DeviceError),
    /// Something that trying again will not mend.
    Fatal(anyhow::Error),
    /// The device's data is gone (wiped, or the organization's data removed): the UI ends
    /// with this sentence.
    Ended(String),
}

impl From<DeviceError> for Stop {
    fn from(e: DeviceError) -> Stop {
        match e {
            e if e.is_transient() => Stop::Lost(e),
            e @ (DeviceError::Wiped(_) | DeviceError::OrganizationRemoved) => {
                Stop::Ended(e.to_string())
            }
            e => Stop::Fatal(e.into()),
        }
    }
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        Stop::Fatal(anyhow::Error::new(e).context("the terminal failed"))
    }
}

/// What the loop keeps besides the screen's state.
struct Session<'s> {
    store: &'s MailStore,
    /// The organizer's records.
    org: OrganizerStore,
    /// The user's own address (left out of a reply to all).
    own: Option<String>,
    /// Where attachments are saved: `HOME/attachments`.
    attachments: PathBuf,
    /// Messages whose next part was asked for and has not arrived.
    want_more: BTreeSet<u64>,
    /// Attachments asked for and not yet saved.
    want_attachments: BTreeSet<(u64, u32)>,
    /// What the IT policy in force asks of the screen.
    policy: Policy,
    /// When a key was last pressed (for the idle lock).
    last_key: Instant,
    /// A password typed on the lock screen, to check once the device can be reached (not
    /// while a connection attempt holds it).
    unlock_wanted: Option<String>,
    /// The idle timer ran out: lock the device once it can be reached.
    lock_wanted: bool,
}

/// What the IT policy in force asks of the screen.
#[derive(Debug, Clone, Copy, Default)]
struct Policy {
    /// Lock after this long without a key.
    idle_lock: Option<Duration>,
    /// The largest attachment to download, bytes.
    max_attachment: Option<u64>,
}

impl Policy {
    fn of(device: &Device) -> Policy {
        let s = device.policy_settings();
        Policy {
            idle_lock: (s.inactivity_lock_minutes > 0 && device.has_password())
                .then(|| Duration::from_secs(u64::from(s.inactivity_lock_minutes) * 60)),
            max_attachment: s.max_attachment_bytes(),
        }
    }
}

/// How often the loop looks at the idle timer and a scheduled wipe.
const TICK: Duration = Duration::from_secs(1);

/// The idle timer: whether the screen should lock now.
fn idle_expired(app: &App, sess: &Session<'_>) -> bool {
    app.lock.is_none()
        && sess
            .policy
            .idle_lock
            .is_some_and(|d| sess.last_key.elapsed() >= d)
}

/// Carries out what the lock screen and the idle timer asked for, now that the device can be
/// reached; whether the device changed (so what it queued for the server can be sent).
fn device_wants(device: &mut Device, app: &mut App, sess: &mut Session<'_>) -> Result<bool, Stop> {
    let mut changed = false;
    if sess.lock_wanted {
        sess.lock_wanted = false;
        match device.lock() {
            Ok(()) => app.lock_screen(false),
            // No password to unlock with: the idle timer does not lock.
            Err(DeviceError::NoPassword) => app.unlocked(),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(password) = sess.unlock_wanted.take() {
        match device.unlock(&password) {
            Ok(()) => {
                app.unlocked();
                sess.last_key = Instant::now();
                changed = true;
            }
            Err(e @ DeviceError::WrongDevicePassword { .. }) => app.unlock_refused(&e.to_string()),
            Err(e) => return Err(e.into()),
        }
    }
    sess.policy = Policy::of(device);
    Ok(changed)
}

fn envelope(body: Body) -> Envelope {
    Envelope {
        version: u32::from(bramble_proto::PROTOCOL_VERSION),
        body: Some(body),
    }
}

/// Connects, runs while connected, waits and connects again, until the user quits (or the
/// device's data goes: the sentence to end with).
async fn run_loop(
    device: &mut Device,
    app: &mut App,
    sess: &mut Session<'_>,
    screen: &mut Screen,
) -> Result<Option<String>> {
    let mut events = EventStream::new();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if device.wipe_if_due(bramble_device::manage::now_ms())? {
            return Ok(Some(
                DeviceError::Wiped("by your administrator, at the time set".into()).to_string(),
            ));
        }
        if let Err(stop) = device_wants(device, app, sess) {
            return stopped(stop);
        }
        app.link = Link::Connecting;
        screen.draw(app)?;
        let connected = {
            let connecting = device.connect();
            tokio::pin!(connecting);
            loop {
                tokio::select! {
                    c = &mut connecting => break c,
                    ev = events.next() => match terminal_event(ev, app, sess, None).await {
                        Ok(()) | Err(Stop::Lost(_)) => screen.draw(app)?,
                        Err(stop) => return stopped(stop),
                    },
                }
            }
        };
        let reason = match connected {
            Ok(mut conn) => {
                backoff = FIRST_BACKOFF;
                app.link = Link::Connected;
                let end = online(&mut conn, app, sess, screen, &mut events).await;
                conn.close().await;
                match end {
                    Stop::Lost(e) => e.to_string(),
                    stop => return stopped(stop),
                }
            }
            Err(e) if e.is_transient() => e.to_string(),
            Err(e) => return Err(e.into()),
        };
        let until = Instant::now() + backoff;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let left = until.saturating_duration_since(Instant::now());
            app.link = Link::Offline {
                reason: reason.clone(),
                retry_in_s: left
                    .as_millis()
                    .div_ceil(1000)
                    .try_into()
                    .unwrap_or(u64::MAX),
            };
            screen.draw(app)?;
            if left.is_zero() {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {
                    if idle_expired(app, sess) {
                        sess.lock_wanted = true;
                    }
                }
                ev = events.next() => match terminal_event(ev, app, sess, None).await {
                    Ok(()) | Err(Stop::Lost(_)) => {}
                    Err(stop) => return stopped(stop),
                },
            }
            if let Err(stop) = device_wants(device, app, sess) {
                return stopped(stop);
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How the loop ends for a stop that is not a lost connection.
fn stopped(stop: Stop) -> Result<Option<String>> {
    match stop {
        Stop::Quit | Stop::Lost(_) => Ok(None),
        Stop::Fatal(e) => Err(e),
        Stop::Ended(why) => Ok(Some(why)),
    }
}

/// While connected: what arrives and what is typed, until the connection drops or the user
/// quits.
async fn online(
    conn: &mut Connection<'_>,
    app: &mut App,
    sess: &mut Session<'_>,
    screen: &mut Screen,
    events: &mut EventStream,
) -> Stop {
    match online_loop(conn, app, sess, screen, events).await {
        Ok(never) => match never {},
        Err(stop) => stop,
    }
}

async fn online_loop(
    conn: &mut Connection<'_>,
    app: &mut App,
    sess: &mut Session<'_>,
    screen: &mut Screen,
    events: &mut EventStream,
) -> Result<std::convert::Infallible, Stop> {
    // A password typed while connecting is checked now.
    device_wants(conn.device_mut(), app, sess)?;
    mail::send_pending(conn, sess.store).await?;
    sess.ask_again(conn).await?;
    refresh(app, sess.store).await?;
    screen.draw(app)?;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            item = conn.recv() => {
                let item = item?;
                // Stored (durably) before the next recv acks it to the relay.
                let event = mail::handle_and_answer(conn, sess.store, &item).await?;
                match event {
                    MailEvent::Managed(events) => {
                        sess.policy = Policy::of(conn.device());
                        managed_events(&events, app)?;
                    }
                    MailEvent::Organizer(events) => organizer_events(&events, app, &sess.org).await?,
                    other => mail_event(other, app, sess).await?,
                }
            }
            _ = tick.tick() => {
                let due = bramble_device::manage::run_due(
                    conn,
                    sess.store,
                    bramble_device::manage::now_ms(),
                )
                .await?;
                if let Some(events) = due {
                    managed_events(&events, app)?;
                }
                if idle_expired(app, sess) {
                    sess.lock_wanted = true;
                }
            }
            ev = events.next() => terminal_event(ev, app, sess, Some(&mut *conn)).await?,
        }
        if device_wants(conn.device_mut(), app, sess)? {
            mail::send_pending(conn, sess.store).await?;
        }
        screen.draw(app)?;
    }
}

/// What the policy service did, shown; the lock screen when the administrator locked the
/// device; the end when its data went.
fn managed_events(events: &[bramble_device::ManageEvent], app: &mut App) -> Result<(), Stop> {
    use bramble_device::ManageEvent;
    for e in events {
        tracing::info!("{e}");
        match e {
            ManageEvent::Wiped | ManageEvent::OrganizationRemoved => {
                return Err(Stop::Ended(e.to_string()));
            }
            ManageEvent::Locked { .. } => app.lock_screen(true),
            ManageEvent::AppDownloading { .. } | ManageEvent::CommandRepeated { .. } => {}
            _ => app.notify(e.to_string()),
        }
    }
    Ok(())
}

/// Reloads the list and the open message from the store.
async fn refresh(app: &mut App, store: &MailStore) -> Result<(), DeviceError> {
    app.set_inbox(store.inbox().await?);
    if let Some(ref_id) = app.open.as_ref().map(|m| m.ref_id) {
        match store.message(ref_id).await {
            Ok(m) => app.show_message(m),
            Err(DeviceError::MessageNotFound(_)) => {
                app.message_gone("The message was deleted.");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A key (or the terminal's end): the app decides, the action is carried out.
async fn terminal_event(
    ev: Option<io::Result<Event>>,
    app: &mut App,
    sess: &mut Session<'_>,
    conn: Option<&mut Connection<'_>>,
) -> Result<(), Stop> {
    let key = match ev {
        None => return Err(Stop::Quit),
        Some(Err(e)) => return Err(e.into()),
        Some(Ok(Event::Key(key))) => key,
        Some(Ok(_)) => return Ok(()),
    };
    sess.last_key = Instant::now();
    let Some(action) = app.on_key(key) else {
        return Ok(());
    };
    if action == Action::Quit {
        return Err(Stop::Quit);
    }
    if let Action::Unlock(password) = action {
        // Checked by the loop, where the device can be reached.
        sess.unlock_wanted = Some(password);
        return Ok(());
    }
    match perform(action, app, sess, conn).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_transient() => Err(Stop::Lost(e)),
        // The user's mistake or a refusal: said on screen, and the UI goes on.
        Err(e) => {
            app.notify(e.to_string());
            refresh(app, sess.store).await?;
            refresh_records(app, &sess.org).await?;
            Ok(())
        }
    }
}

/// Carries out what a key asked for.
async fn perform(
    action: Action,
    app: &mut App,
    sess: &mut Session<'_>,
    mut conn: Option<&mut Connection<'_>>,
) -> Result<(), DeviceError> {
    let store = sess.store;
    if let Some(change) = record_action(action.clone(), app, &sess.org).await? {
        let done = app.notice.take().unwrap_or_default();
        if change.state == RecordState::Local {
            app.notify(format!(
                "{done} {} are synchronized from the server only: it stays on this device.",
                change.database.title()
            ));
        } else if let Some(c) = conn {
            organizer::send_pending(c).await?;
            app.notify(done);
        } else {
            app.notify(format!(
                "{done} Out of coverage: it is sent once connected."
            ));
        }
        return Ok(());
    }
    match action {
        Action::Quit
        | Action::Unlock(_)
        | Action::ShowRecords(_)
        | Action::OpenRecord(..)
        | Action::AddRecord(..)
        | Action::DeleteRecord(..)
        | Action::SetDone(..) => {}
        Action::Open(ref_id) => {
            let m = store.message(ref_id).await?;
            if !m.seen {
                store.mark(ref_id, Change::Seen(true)).await?;
            }
            app.show_message(store.message(ref_id).await?);
            refresh(app, store).await?;
        }
        Action::Mark(ref_id, change) => {
            let done = match &change {
                Change::Seen(true) => "Marked read.",
                Change::Seen(false) => "Marked unread.",
                Change::Flagged(true) => "Flagged.",
                Change::Flagged(false) => "Flag removed.",
                Change::Deleted(true) => "Deleted.",
                Change::Deleted(false) => "Restored.",
                Change::MovedTo(_) => "Moved.",
            };
            store.mark(ref_id, change).await?;
            app.notify(done);
            refresh(app, store).await?;
        }
        Action::More(ref_id) => {
            sess.want_more.insert(ref_id);
            match conn.as_deref_mut() {
                Some(c) => {
                    sess.ask_more(c, ref_id).await?;
                    app.notify("Fetching more of the message…");
                }
                None => app.notify("Out of coverage: the rest is fetched once connected."),
            }
        }
        Action::SaveAttachment(ref_id, index) => {
            if let Some(max) = sess.policy.max_attachment {
                let m = store.message(ref_id).await?;
                if let Some(a) = m.attachments.iter().find(|a| a.index == index)
                    && a.size > max
                {
                    return Err(DeviceError::AttachmentForbidden { size: a.size, max });
                }
            }
            if store.attachment_ready(ref_id, index).await? {
                let text = sess.save(ref_id, index).await?;
                app.notify(text);
            } else {
                sess.want_attachments.insert((ref_id, index));
                match conn.as_deref_mut() {
                    Some(c) => {
                        c.send(&envelope(Body::AttachmentRequest(AttachmentRequest {
                            ref_id,
                            index,
                        })))
                        .await?;
                        app.notify(format!("Downloading attachment {index}…"));
                    }
                    None => app.notify("Out of coverage: it is downloaded once connected."),
                }
            }
        }
        Action::Reply { ref_id, all } => {
            let draft = store
                .reply_draft(ref_id, all, "", sess.own.as_deref())
                .await?;
            app.start_compose(&draft);
        }
        Action::Forward { ref_id, to } => {
            let draft = store.forward_draft(ref_id, &to, &[], "").await?;
            app.start_compose(&draft);
        }
        Action::Send(draft) => match store.compose(&draft).await {
            Ok(submit) => {
                app.draft_queued(submit.client_id, &draft.subject);
                if conn.is_none() {
                    app.notify("Out of coverage: it is sent once connected.");
                }
            }
            Err(e) if !e.is_transient() => {
                app.draft_refused(&e.to_string());
                return Ok(());
            }
            Err(e) => return Err(e),
        },
    }
    if let Some(c) = conn {
        mail::send_pending(c, store).await?;
    }
    Ok(())
}

/// Carries out an organizer action (`None` for the others); the record changed, when one was
/// (its change is queued in the store, to send).
async fn record_action(
    action: Action,
    app: &mut App,
    org: &OrganizerStore,
) -> Result<Option<OrganizerEntry>, DeviceError> {
    let changed = match action {
        Action::ShowRecords(db) => {
            app.set_records(db, org.list(db).await?);
            return Ok(None);
        }
        Action::OpenRecord(db, uid) => {
            app.show_record(org.get(db, &uid).await?);
            return Ok(None);
        }
        Action::AddRecord(db, fields) => {
            let uid = match org.add(db, &fields).await {
                Ok(uid) => uid,
                Err(e) if !e.is_transient() => {
                    app.record_refused(&e.to_string());
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let e = org.get(db, &uid).await?;
            app.record_added();
            app.notify(format!("Added {}.", the(&e)));
            e
        }
        Action::DeleteRecord(db, uid) => {
            let e = org.get(db, &uid).await?;
            org.delete(db, &uid).await?;
            app.notify(format!("Deleted {}.", the(&e)));
            e
        }
        Action::SetDone(uid, done) => {
            let fields = Fields {
                completed: Some(done),
                ..Fields::default()
            };
            let e = org.edit(Database::Tasks, &uid, &fields).await?;
            app.notify(format!(
                "{} {}.",
                if done { "Done:" } else { "Not done:" },
                the(&e)
            ));
            e
        }
        _ => return Ok(None),
    };
    refresh_records(app, org).await?;
    Ok(Some(changed))
}

/// "the task “Call Bob”", for the notices.
fn the(e: &OrganizerEntry) -> String {
    format!(
        "the {} “{}”",
        e.database.noun(),
        crate::device::organizer::title(e)
    )
}

/// Reloads the organizer screen shown, and the record open on it, from the store.
async fn refresh_records(app: &mut App, org: &OrganizerStore) -> Result<(), DeviceError> {
    let Page::Organizer(db) = app.page else {
        return Ok(());
    };
    app.set_records(db, org.list(db).await?);
    if let Some(uid) = app.record.as_ref().map(|e| e.uid.clone()) {
        match org.get(db, &uid).await {
            Ok(e) => app.show_record(e),
            Err(DeviceError::NoSuchRecord { .. }) => {
                app.record_gone(&format!("The {} was deleted.", db.noun()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What the synchronization service did: the screen shown reloaded, the events told.
async fn organizer_events(
    events: &[OrganizerEvent],
    app: &mut App,
    org: &OrganizerStore,
) -> Result<(), DeviceError> {
    if events.is_empty() {
        return Ok(());
    }
    for e in events {
        tracing::info!("{e}");
    }
    refresh_records(app, org).await?;
    let text: Vec<String> = events.iter().map(ToString::to_string).collect();
    app.notify(text.join(" "));
    Ok(())
}

/// What a mail envelope from the server did, shown.
async fn mail_event(
    event: MailEvent,
    app: &mut App,
    sess: &mut Session<'_>,
) -> Result<(), DeviceError> {
    match event {
        MailEvent::NewMessage { ref_id } => {
            refresh(app, sess.store).await?;
            if let Some(m) = app.inbox.iter().find(|m| m.ref_id == ref_id) {
                let text = format!(
                    "New message from {}: {}",
                    view::short(&m.from, 30),
                    view::short(&m.subject, 40)
                );
                app.notify(text);
            }
        }
        MailEvent::MoreText { ref_id, .. } => {
            sess.want_more.remove(&ref_id);
            refresh(app, sess.store).await?;
        }
        MailEvent::MoreFailed { ref_id, error } => {
            sess.want_more.remove(&ref_id);
            app.notify(format!("No more text: {error}"));
        }
        MailEvent::AttachmentPiece {
            ref_id,
            index,
            received,
            total,
            complete,
        } => {
            if sess.want_attachments.contains(&(ref_id, index)) {
                if complete {
                    sess.want_attachments.remove(&(ref_id, index));
                    match sess.save(ref_id, index).await {
                        Ok(text) => app.notify(text),
                        Err(e) => app.notify(format!("The attachment was not saved: {e}")),
                    }
                } else {
                    app.notify(format!(
                        "Downloading attachment {index}: {} of {}…",
                        view::size_text(received),
                        view::size_text(total)
                    ));
                }
            }
        }
        MailEvent::AttachmentFailed {
            ref_id,
            index,
            error,
        } => {
            sess.want_attachments.remove(&(ref_id, index));
            app.notify(format!("Attachment {index} cannot be downloaded: {error}"));
        }
        MailEvent::Submitted {
            client_id,
            state,
            message,
        } => app.outbox_changed(client_id, state, &message),
        MailEvent::Changed { .. } => refresh(app, sess.store).await?,
        MailEvent::Refused { reason } => {
            tracing::warn!(%reason, "mail from the server refused");
        }
        MailEvent::Duplicate { .. }
        | MailEvent::NotMail
        | MailEvent::Managed(_)
        | MailEvent::Organizer(_) => {}
    }
    Ok(())
}

impl Session<'_> {
    /// Asks for the next part of a message's text.
    async fn ask_more(&self, conn: &mut Connection<'_>, ref_id: u64) -> Result<(), DeviceError> {
        let m = self.store.message(ref_id).await?;
        if !m.more {
            return Ok(());
        }
        conn.send(&envelope(Body::MoreRequest(MoreRequest {
            ref_id,
            offset: m.text.len() as u64,
            all: false,
        })))
        .await?;
        Ok(())
    }

    /// After connecting: asks again for what was asked for and has not arrived.
    async fn ask_again(&mut self, conn: &mut Connection<'_>) -> Result<(), DeviceError> {
        for ref_id in self.want_more.clone() {
            match self.ask_more(conn, ref_id).await {
                Err(DeviceError::MessageNotFound(_)) => {
                    self.want_more.remove(&ref_id);
                }
                other => other?,
            }
        }
        for (ref_id, index) in self.want_attachments.clone() {
            conn.send(&envelope(Body::AttachmentRequest(AttachmentRequest {
                ref_id,
                index,
            })))
            .await?;
        }
        Ok(())
    }

    /// Saves a downloaded attachment under `HOME/attachments`; the sentence saying where.
    async fn save(&self, ref_id: u64, index: u32) -> Result<String, DeviceError> {
        let m = self.store.message(ref_id).await?;
        let name = m
            .attachments
            .iter()
            .find(|a| a.index == index)
            .map_or("attachment", |a| a.name.as_str());
        std::fs::create_dir_all(&self.attachments).map_err(|e| {
            DeviceError::AttachmentFailed(format!(
                "cannot create {}: {e}",
                self.attachments.display()
            ))
        })?;
        let out = self
            .attachments
            .join(format!("{ref_id}-{index}-{}", safe_file_name(name)));
        let saved = self.store.save_attachment(ref_id, index, &out).await?;
        Ok(format!(
            "Saved {} ({}) to {}",
            saved.name,
            view::size_text(saved.size),
            saved.path.display()
        ))
    }
}

/// An attachment's name as a file name: no directories, no control characters, no leading
/// dot; "attachment" when nothing is left.
pub fn safe_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() || c == ':' {
                '_'
            } else {
                c
            }
        })
        .take(120)
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.');
    if trimmed.is_empty() {
        "attachment".to_owned()
    } else {
        trimmed.to_owned()
    }
}

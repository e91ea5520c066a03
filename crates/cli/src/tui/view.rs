//! Drawing the [`App`] with ratatui: the title, the inbox or the open message or the editor
//! (or an organizer screen: a database's records, or one record), the outbox line, the status
//! line (connection, unread count), the screen switcher and the key help.
//!
//! Must not touch: the state (drawing only reads it), the terminal itself (ratatui's `Frame`
//! is all it gets), the clock other than to write dates in local time.

use bramble_device::OrganizerEntry;
use bramble_device::mail::{Message, MessageSummary, OutboxState};
use bramble_organizer::Database;
use chrono::{DateTime, Datelike, Local};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};

use super::app::{App, Ask, Compose, Field, Link, LockScreen, Page, RecordForm, Sending, TextArea};
use crate::device::organizer::{entry_fields, state_text, title as record_title, when};

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let [title, main, outbox, status, pages, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::raw(" Bramble ").bold(),
            Span::raw(app.title.clone()),
        ]))
        .style(Style::new().bg(Color::Blue).fg(Color::White)),
        title,
    );

    if let Some(l) = &app.lock {
        // Nothing of the phone's content while locked: not the inbox, not the notices.
        draw_lock(frame, main, l);
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::raw(" ○ ").fg(Color::Yellow),
                Span::raw("Locked · "),
                Span::raw(app.link.describe()),
            ]))
            .style(Style::new().add_modifier(Modifier::REVERSED)),
            status,
        );
        frame.render_widget(
            Paragraph::new(app.help()).style(Style::new().fg(Color::DarkGray)),
            help,
        );
        return;
    }
    if let Some(c) = &app.compose {
        draw_compose(frame, main, c);
    } else if let Page::Organizer(db) = app.page {
        match &app.record {
            Some(e) => draw_record(frame, main, e),
            None => draw_records(frame, main, db, app),
        }
    } else if let Some(m) = &app.open {
        draw_message(frame, main, m, app.scroll);
    } else {
        draw_inbox(frame, main, app);
    }

    frame.render_widget(Paragraph::new(notice_line(app)), outbox);
    frame.render_widget(
        Paragraph::new(status_line(app)).style(Style::new().add_modifier(Modifier::REVERSED)),
        status,
    );
    frame.render_widget(Paragraph::new(pages_line(app.page)), pages);
    frame.render_widget(
        Paragraph::new(app.help()).style(Style::new().fg(Color::DarkGray)),
        help,
    );

    if let Some(ask) = &app.ask {
        draw_ask(frame, main, ask);
    }
    if let Some(f) = &app.form {
        draw_form(frame, main, f);
    }
}

/// The screen switcher: "1 Inbox  2 Calendar  3 Contacts  4 Tasks  5 Memos", the one shown
/// highlighted.
fn pages_line(shown: Page) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, p) in Page::ALL.iter().enumerate() {
        spans.push(Span::raw(if i == 0 { " " } else { "  " }));
        let text = format!("{} {}", i + 1, p.name());
        spans.push(if *p == shown {
            Span::raw(text).add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Span::raw(text)
        });
    }
    spans.push(Span::raw("  (Tab next)").fg(Color::DarkGray));
    Line::from(spans)
}

/// A database's records: events by start time, contacts by name, tasks done or not, memos by
/// date (the store's order).
fn draw_records(frame: &mut Frame<'_>, area: Rect, db: Database, app: &App) {
    let block = Block::bordered().title(format!(" {} ", db.title()));
    if app.records.is_empty() {
        frame.render_widget(
            Paragraph::new(format!(
                "No {} on this device. Press n to add one.",
                db.as_str()
            ))
            .block(block),
            area,
        );
        return;
    }
    let (header, widths): (Vec<&str>, Vec<Constraint>) = match db {
        Database::Calendar => (
            vec!["When", "Title", "Where", "State"],
            vec![
                Constraint::Length(44),
                Constraint::Fill(1),
                Constraint::Length(16),
                Constraint::Length(14),
            ],
        ),
        Database::Contacts => (
            vec!["Name", "Email", "Phone", "Organization"],
            vec![
                Constraint::Fill(2),
                Constraint::Fill(2),
                Constraint::Fill(1),
                Constraint::Fill(1),
            ],
        ),
        Database::Tasks => (
            vec!["Done", "Title", "Due", "State"],
            vec![
                Constraint::Length(5),
                Constraint::Fill(1),
                Constraint::Length(20),
                Constraint::Length(14),
            ],
        ),
        Database::Memos => (
            vec!["Date", "Title", "State"],
            vec![
                Constraint::Length(20),
                Constraint::Fill(1),
                Constraint::Length(14),
            ],
        ),
    };
    let rows: Vec<Row<'static>> = app.records.iter().map(|e| record_row(db, e)).collect();
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::UNDERLINED)))
        .block(block)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶");
    let mut state = TableState::default().with_selected(Some(app.record_selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn record_row(db: Database, e: &OrganizerEntry) -> Row<'static> {
    let s = &e.summary;
    let cells: Vec<Cell<'static>> = match db {
        Database::Calendar => vec![
            Cell::from(when(e)),
            Cell::from(short(&record_title(e), 200)),
            Cell::from(short(s.location.as_deref().unwrap_or(""), 60)),
            Cell::from(state_text(e)),
        ],
        Database::Contacts => vec![
            Cell::from(short(&record_title(e), 60)),
            Cell::from(short(&s.emails.join(", "), 60)),
            Cell::from(short(&s.phones.join(", "), 40)),
            Cell::from(short(s.organization.as_deref().unwrap_or(""), 40)),
        ],
        Database::Tasks => vec![
            Cell::from(if s.completed { "[x]" } else { "[ ]" }),
            Cell::from(short(&record_title(e), 200)),
            Cell::from(when(e)),
            Cell::from(state_text(e)),
        ],
        Database::Memos => vec![
            Cell::from(when(e)),
            Cell::from(short(&record_title(e), 200)),
            Cell::from(state_text(e)),
        ],
    };
    let row = Row::new(cells);
    if db == Database::Tasks && s.completed {
        row.style(Style::new().fg(Color::DarkGray))
    } else {
        row
    }
}

/// One record, its fields as `bramble device <database> show` prints them.
pub fn record_text(e: &OrganizerEntry) -> Text<'static> {
    Text::from(
        entry_fields(e)
            .into_iter()
            .map(|(label, v)| {
                Line::from(vec![Span::raw(format!("{label:<14}")).bold(), Span::raw(v)])
            })
            .collect::<Vec<_>>(),
    )
}

fn draw_record(frame: &mut Frame<'_>, area: Rect, e: &OrganizerEntry) {
    let title = format!(" {}: {} ", e.database.title(), short(&record_title(e), 60));
    frame.render_widget(
        Paragraph::new(record_text(e))
            .block(Block::bordered().title(title))
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// The form adding a record: one line.
fn draw_form(frame: &mut Frame<'_>, area: Rect, f: &RecordForm) {
    let r = popup(area, 60, 3);
    frame.render_widget(Clear, r);
    let block = Block::bordered().title(format!(" New {} ", f.database.noun()));
    let inner = block.inner(r);
    frame.render_widget(block, r);
    draw_field(frame, inner, f.label(), &f.input, !f.submitting);
}

/// The password screen.
fn draw_lock(frame: &mut Frame<'_>, area: Rect, l: &LockScreen) {
    let box_area = popup(area, 60, 9);
    frame.render_widget(Clear, box_area);
    let block = Block::bordered().title(" Locked ");
    let inner = block.inner(box_area);
    frame.render_widget(block, box_area);
    let dots: String = "•".repeat(l.input.text().chars().count());
    let mut lines = vec![
        Line::from(if l.by_admin {
            "This device was locked by your administrator."
        } else {
            "This device is locked."
        }),
        Line::from("Type the device password to unlock it."),
        Line::default(),
        Line::from(vec![
            Span::raw("Password: "),
            Span::raw(dots.clone()).bold(),
        ]),
    ];
    if l.checking {
        lines.push(Line::from(Span::raw("Checking…").fg(Color::Yellow)));
    } else if let Some(e) = &l.error {
        lines.push(Line::from(Span::raw(e.clone()).fg(Color::Red)));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
    let x = inner
        .x
        .saturating_add(10)
        .saturating_add(u16::try_from(dots.chars().count()).unwrap_or(u16::MAX));
    frame.set_cursor_position(Position::new(x.min(inner.right()), inner.y + 3));
}

/// "Connected to relay · 3 unread · 12 messages".
fn status_line(app: &App) -> Line<'static> {
    let dot = match app.link {
        Link::Connected => Span::raw(" ● ").fg(Color::Green),
        Link::Connecting => Span::raw(" ○ ").fg(Color::Yellow),
        Link::Offline { .. } => Span::raw(" ○ ").fg(Color::Red),
    };
    let mut spans = vec![
        dot,
        Span::raw(app.link.describe()),
        Span::raw(format!(
            " · {} unread · {} message{}",
            app.unread(),
            app.inbox.len(),
            if app.inbox.len() == 1 { "" } else { "s" }
        )),
    ];
    // Last: a long reason may be cut at the screen's edge, the count stays.
    if let Link::Offline { reason, .. } = &app.link {
        spans.push(Span::raw(format!(" · {}", reason.trim_end_matches('.'))));
    }
    Line::from(spans)
}

/// The notice, else the newest message being sent and its states.
fn notice_line(app: &App) -> Line<'static> {
    if let Some(n) = &app.notice {
        return Line::from(Span::raw(format!(" {n}")).fg(Color::Yellow));
    }
    match app.sending.last() {
        Some(s) => sending_line(s),
        None => Line::default(),
    }
}

/// "Outbox “Lunch”: Queued → Accepted → Sent".
pub fn sending_line(s: &Sending) -> Line<'static> {
    let subject = if s.subject.is_empty() {
        "(no subject)".to_owned()
    } else {
        short(&s.subject, 40)
    };
    let mut spans = vec![Span::raw(format!(" Outbox “{subject}”: "))];
    for (i, st) in s.states.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" → "));
        }
        let word = state_word(*st);
        spans.push(match st {
            OutboxState::Sent => Span::raw(word).fg(Color::Green),
            OutboxState::Failed => Span::raw(word).fg(Color::Red).bold(),
            _ => Span::raw(word),
        });
    }
    if !s.message.is_empty() {
        spans.push(Span::raw(format!(": {}", s.message)));
    }
    Line::from(spans)
}

fn state_word(s: OutboxState) -> &'static str {
    match s {
        OutboxState::Queued => "Queued",
        OutboxState::Accepted => "Accepted",
        OutboxState::Sent => "Sent",
        OutboxState::Failed => "Failed",
    }
}

/// A date as the inbox shows it: the time today, the day this year, else the date.
pub fn short_date(ms: i64, now: DateTime<Local>) -> String {
    let Some(t) = DateTime::from_timestamp_millis(ms).map(|t| t.with_timezone(&Local)) else {
        return String::new();
    };
    if t.date_naive() == now.date_naive() {
        t.format("%H:%M").to_string()
    } else if t.year() == now.year() {
        t.format("%b %d").to_string()
    } else {
        t.format("%Y-%m-%d").to_string()
    }
}

fn long_date(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&Local)
                .format("%a %Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

/// `s` on one line, cut to `max` characters with "…".
pub fn short(s: &str, max: usize) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one.chars().count() <= max {
        return one;
    }
    let mut out: String = one.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The sender's name, else the address.
fn sender_name(from: &str) -> &str {
    match from.find('<') {
        Some(i) if i > 0 => from[..i].trim().trim_matches('"'),
        _ => from.trim().trim_start_matches('<').trim_end_matches('>'),
    }
}

fn inbox_row(m: &MessageSummary, now: DateTime<Local>) -> Row<'static> {
    let marks = format!(
        "{}{}{}",
        if m.seen { ' ' } else { '●' },
        if m.priority { '!' } else { ' ' },
        if m.flagged { '⚑' } else { ' ' },
    );
    let style = if m.seen {
        Style::new()
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    };
    let subject = if m.subject.is_empty() {
        "(no subject)".to_owned()
    } else {
        short(&m.subject, 200)
    };
    Row::new(vec![
        Cell::from(Span::raw(marks).fg(if m.priority { Color::Red } else { Color::Cyan })),
        Cell::from(short_date(m.date_ms.unwrap_or(m.received_ms), now)),
        Cell::from(short(sender_name(&m.from), 40)),
        Cell::from(subject),
        Cell::from(if m.attachments > 0 {
            m.attachments.to_string()
        } else {
            String::new()
        }),
    ])
    .style(style)
}

fn draw_inbox(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let block = Block::bordered().title(" Inbox ");
    if app.inbox.is_empty() {
        frame.render_widget(
            Paragraph::new("No messages. New mail appears here as soon as it arrives.")
                .block(block),
            area,
        );
        return;
    }
    let now = Local::now();
    let rows: Vec<Row<'static>> = app.inbox.iter().map(|m| inbox_row(m, now)).collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Length(10),
            Constraint::Length(22),
            Constraint::Fill(1),
            Constraint::Length(4),
        ],
    )
    .header(
        Row::new(vec!["", "Date", "From", "Subject", "Att"])
            .style(Style::new().add_modifier(Modifier::UNDERLINED)),
    )
    .block(block)
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .highlight_symbol("▶");
    let mut state = TableState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

/// The lines of an open message: headers, text, More, attachments, notes.
pub fn message_text(m: &Message) -> Text<'static> {
    let label = |name: &str, value: String| {
        Line::from(vec![
            Span::raw(format!("{name:<9}")).bold(),
            Span::raw(value),
        ])
    };
    let mut lines = vec![label("From:", m.from.clone())];
    if !m.to.is_empty() {
        lines.push(label("To:", m.to.join(", ")));
    }
    if !m.cc.is_empty() {
        lines.push(label("Cc:", m.cc.join(", ")));
    }
    if !m.reply_to.is_empty() {
        lines.push(label("Reply-To:", m.reply_to.clone()));
    }
    lines.push(label("Subject:", m.subject.clone()));
    lines.push(label(
        "Date:",
        long_date(m.date_ms.unwrap_or(m.received_ms)),
    ));
    let mut flags = Vec::new();
    if !m.seen {
        flags.push("unread".to_owned());
    }
    if m.flagged {
        flags.push("flagged".to_owned());
    }
    if m.priority {
        flags.push("priority".to_owned());
    }
    if m.importance != "normal" {
        flags.push(format!("{} importance", m.importance));
    }
    if m.folder != bramble_device::mail::INBOX {
        flags.push(format!("in {}", m.folder));
    }
    if !flags.is_empty() {
        lines.push(label("Flags:", flags.join(", ")));
    }
    lines.push(Line::from("─".repeat(40)).fg(Color::DarkGray));
    for l in m.text.lines() {
        lines.push(Line::from(l.replace('\t', "    ")));
    }
    if m.more {
        lines.push(Line::default());
        lines.push(
            Line::from(format!(
                "[More: {} of {} bytes are on the device. Press m for the next part.]",
                m.text.len(),
                m.text_total
            ))
            .fg(Color::Cyan),
        );
    } else if m.truncated {
        lines.push(Line::default());
        lines.push(
            Line::from(format!(
                "[The rest of this message ({} bytes in all) is more than the device keeps.]",
                m.text_total
            ))
            .fg(Color::DarkGray),
        );
    }
    if !m.attachments.is_empty() {
        lines.push(Line::default());
        lines.push(Line::from("Attachments (a, then the number, saves one):").bold());
        for a in &m.attachments {
            let kind = if a.content_type.is_empty() {
                "unknown type"
            } else {
                &a.content_type
            };
            lines.push(Line::from(format!(
                "  {}  {}  ({kind}, {})",
                a.index,
                a.name,
                size_text(a.size)
            )));
        }
    }
    for n in &m.notes {
        lines.push(Line::default());
        lines.push(Line::from(format!("Note: {n}")).fg(Color::Yellow));
    }
    Text::from(lines)
}

fn draw_message(frame: &mut Frame<'_>, area: Rect, m: &Message, scroll: u16) {
    let title = format!(" {} ", short(&m.subject, 60));
    frame.render_widget(
        Paragraph::new(message_text(m))
            .block(Block::bordered().title(title))
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        area,
    );
}

/// A single-line field: its label and text, the cursor placed when focused.
fn draw_field(frame: &mut Frame<'_>, area: Rect, label: &str, field: &TextArea, focused: bool) {
    let style = if focused {
        Style::new().add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    let text = field.text();
    let (_, col) = field.cursor();
    let before: String = text.chars().take(col).collect();
    let label = format!("{label:<9}");
    let width = area.width.saturating_sub(10) as usize;
    // Keep the cursor in view on long lines.
    let shown_from = before.chars().count().saturating_sub(width);
    let shown: String = text.chars().skip(shown_from).collect();
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(label.clone(), style),
            Span::raw(shown),
        ])),
        area,
    );
    if focused {
        let x = Line::from(label).width() + Line::from(before).width()
            - Line::from(text.chars().take(shown_from).collect::<String>()).width();
        frame.set_cursor_position(Position {
            x: area.x
                + u16::try_from(x)
                    .unwrap_or(area.width)
                    .min(area.width.saturating_sub(1)),
            y: area.y,
        });
    }
}

fn draw_compose(frame: &mut Frame<'_>, area: Rect, c: &Compose) {
    let block = Block::bordered().title(format!(" {} ", c.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [to, cc, subject, rule, body, info] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    draw_field(frame, to, "To:", &c.to, c.focus == Field::To);
    draw_field(frame, cc, "Cc:", &c.cc, c.focus == Field::Cc);
    draw_field(
        frame,
        subject,
        "Subject:",
        &c.subject,
        c.focus == Field::Subject,
    );
    frame.render_widget(
        Paragraph::new("─".repeat(usize::from(rule.width))).fg(Color::DarkGray),
        rule,
    );

    let (row, col) = c.body.cursor();
    let height = usize::from(body.height.max(1));
    let top = (row + 1).saturating_sub(height);
    let lines: Vec<Line<'static>> = c
        .body
        .lines()
        .iter()
        .skip(top)
        .take(height)
        .map(|l| Line::from(l.clone()))
        .collect();
    frame.render_widget(Paragraph::new(lines), body);
    if c.focus == Field::Body {
        let before: String = c.body.lines()[row].chars().take(col).collect();
        let x = u16::try_from(Line::from(before).width()).unwrap_or(u16::MAX);
        let y = u16::try_from(row - top).unwrap_or(0);
        frame.set_cursor_position(Position {
            x: body.x + x.min(body.width.saturating_sub(1)),
            y: body.y + y,
        });
    }

    let note = if let Some(e) = &c.error {
        Line::from(format!("Not sent: {e}")).fg(Color::Red)
    } else if c.submitting {
        Line::from("Putting it in the outbox…").fg(Color::Yellow)
    } else if c.original_ref_id != 0 {
        Line::from("The server adds the original message below your text.").fg(Color::DarkGray)
    } else {
        Line::default()
    };
    frame.render_widget(Paragraph::new(note), info);
}

fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_ask(frame: &mut Frame<'_>, area: Rect, ask: &Ask) {
    let r = popup(area, 60, 3);
    frame.render_widget(Clear, r);
    match ask {
        Ask::Delete { subject, .. } => {
            let subject = if subject.is_empty() {
                "this message".to_owned()
            } else {
                format!("“{}”", short(subject, 36))
            };
            frame.render_widget(
                Paragraph::new(format!("Delete {subject}? (y/n)"))
                    .block(Block::bordered().title(" Delete ")),
                r,
            );
        }
        Ask::DeleteRecord {
            database, title, ..
        } => {
            let what = if title.is_empty() {
                format!("this {}", database.noun())
            } else {
                format!("the {} “{}”", database.noun(), short(title, 30))
            };
            frame.render_widget(
                Paragraph::new(format!("Delete {what}? (y/n)"))
                    .block(Block::bordered().title(" Delete ")),
                r,
            );
        }
        Ask::ForwardTo { input, .. } => {
            let block = Block::bordered().title(" Forward ");
            let inner = block.inner(r);
            frame.render_widget(block, r);
            draw_field(frame, inner, "To:", input, true);
        }
        Ask::Attachment { input, count, .. } => {
            let block = Block::bordered().title(format!(" Save attachment (0–{}) ", count - 1));
            let inner = block.inner(r);
            frame.render_widget(block, r);
            draw_field(frame, inner, "Number:", input, true);
        }
    }
}

/// A size in bytes, KiB or MiB.
pub fn size_text(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let f = n as f64;
    if n < 1024 {
        format!("{n} bytes")
    } else if n < 1 << 20 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{:.1} MiB", f / (1024.0 * 1024.0))
    }
}

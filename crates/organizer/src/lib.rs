//! Organizer records, the data of the synchronization service (seed 002, "BlackBerry
//! Synchronization Service"): contacts as vCards (RFC 6350, 3.0 accepted), and events, tasks
//! and memos as iCalendar objects (RFC 5545) holding one VEVENT, VTODO or VJOURNAL (with its
//! recurrence overrides and time zones).
//!
//! Owns: reading a record from hostile bytes ([`parse`]: bounded, never panics, a sentence
//! for what is wrong), the few fields a phone shows ([`Summary`]), and building or editing a
//! record from what a phone user typed ([`new_record`], [`edit_record`]). The parsing and
//! writing themselves are calcard's (Stalwart's iCalendar/vCard library). Must not touch: I/O
//! of any kind (the server's CalDAV/CardDAV client and the device's store use this crate).

mod build;
mod record;

pub use build::{Fields, edit_record, new_record, new_uid};
pub use record::{MAX_RECORD, Record, RecordError, Summary, parse};

use bramble_proto::schema;

/// One of the four organizer databases a phone keeps.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    /// Events (VEVENT), meeting invitations among them.
    Calendar,
    /// Contacts (vCard).
    Contacts,
    /// Tasks (VTODO).
    Tasks,
    /// Memos (VJOURNAL).
    Memos,
}

impl Database {
    /// Every database, in the order they are synchronized: the calendar first (seed 001,
    /// "Phase 4").
    pub const ALL: [Database; 4] = [
        Database::Calendar,
        Database::Contacts,
        Database::Tasks,
        Database::Memos,
    ];

    /// "calendar", "contacts", "tasks", "memos".
    pub fn as_str(self) -> &'static str {
        match self {
            Database::Calendar => "calendar",
            Database::Contacts => "contacts",
            Database::Tasks => "tasks",
            Database::Memos => "memos",
        }
    }

    /// As a phone shows it: "Calendar", "Contacts", "Tasks", "Memos".
    pub fn title(self) -> &'static str {
        match self {
            Database::Calendar => "Calendar",
            Database::Contacts => "Contacts",
            Database::Tasks => "Tasks",
            Database::Memos => "Memos",
        }
    }

    /// One record of it, in words: "event", "contact", "task", "memo".
    pub fn noun(self) -> &'static str {
        match self {
            Database::Calendar => "event",
            Database::Contacts => "contact",
            Database::Tasks => "task",
            Database::Memos => "memo",
        }
    }

    /// From its name (as [`Database::as_str`], case-insensitive; the singular is accepted).
    pub fn from_name(name: &str) -> Option<Database> {
        match name.trim().to_ascii_lowercase().as_str() {
            "calendar" | "events" | "event" => Some(Database::Calendar),
            "contacts" | "contact" | "address book" | "addressbook" => Some(Database::Contacts),
            "tasks" | "task" => Some(Database::Tasks),
            "memos" | "memo" => Some(Database::Memos),
            _ => None,
        }
    }

    /// The iCalendar component its records hold; `None` for contacts (vCards).
    pub fn component(self) -> Option<&'static str> {
        match self {
            Database::Calendar => Some("VEVENT"),
            Database::Tasks => Some("VTODO"),
            Database::Memos => Some("VJOURNAL"),
            Database::Contacts => None,
        }
    }

    /// The file name extension of its records on a CalDAV/CardDAV server.
    pub fn extension(self) -> &'static str {
        match self {
            Database::Contacts => "vcf",
            _ => "ics",
        }
    }

    /// The wire's value.
    pub fn to_proto(self) -> i32 {
        (match self {
            Database::Calendar => schema::OrganizerDatabase::DatabaseCalendar,
            Database::Contacts => schema::OrganizerDatabase::DatabaseContacts,
            Database::Tasks => schema::OrganizerDatabase::DatabaseTasks,
            Database::Memos => schema::OrganizerDatabase::DatabaseMemos,
        }) as i32
    }

    /// From the wire's value; `None` for one this version does not know.
    pub fn from_proto(v: i32) -> Option<Database> {
        match schema::OrganizerDatabase::try_from(v).ok()? {
            schema::OrganizerDatabase::DatabaseCalendar => Some(Database::Calendar),
            schema::OrganizerDatabase::DatabaseContacts => Some(Database::Contacts),
            schema::OrganizerDatabase::DatabaseTasks => Some(Database::Tasks),
            schema::OrganizerDatabase::DatabaseMemos => Some(Database::Memos),
            schema::OrganizerDatabase::DatabaseUnspecified => None,
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_round_trip_through_names_and_the_wire() {
        for db in Database::ALL {
            assert_eq!(Database::from_name(db.as_str()), Some(db));
            assert_eq!(Database::from_name(db.noun()), Some(db));
            assert_eq!(Database::from_proto(db.to_proto()), Some(db));
        }
        assert_eq!(Database::from_proto(0), None);
        assert_eq!(Database::from_proto(99), None);
        assert_eq!(Database::from_name("notes"), None);
        assert_eq!(
            Database::ALL[0],
            Database::Calendar,
            "the calendar goes first"
        );
    }
}

//! The synchronization service: organizer data against CalDAV/CardDAV.

pub mod dav;

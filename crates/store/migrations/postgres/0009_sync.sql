-- The synchronization service (seed 002, BlackBerry Synchronization Service): how each
-- organizer database is synchronized for a user or a group, the CalDAV/CardDAV collection and
-- sync token per user and database, what the server and the device hold of each record (never
-- the record itself: that lives on the CalDAV/CardDAV server and on the device), problems
-- reported, and the newest wireless backup per user (encrypted by the server).
-- Keep in step with ../sqlite/0009_sync.sql.

-- database: calendar, contacts, tasks, memos; direction: bidirectional, server-to-device;
-- conflict: server-wins, device-wins, newest-wins.
CREATE TABLE user_sync_settings (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    database   TEXT    NOT NULL,
    enabled    BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    direction  TEXT    NOT NULL,
    conflict   TEXT    NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, database)
);

CREATE TABLE group_sync_settings (
    group_id   BIGINT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    database   TEXT    NOT NULL,
    enabled    BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    direction  TEXT    NOT NULL,
    conflict   TEXT    NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, database)
);

CREATE TABLE sync_collections (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    database   TEXT    NOT NULL,
    href       TEXT    NOT NULL,
    sync_token TEXT,
    synced_at  BIGINT,
    PRIMARY KEY (user_id, database)
);

-- One row per record either side holds. href/etag: the CalDAV/CardDAV resource and the
-- version of it the server knows (NULL: not there); device_etag: the version the device is
-- known to hold (NULL: the device lacks it); server_seen_at: when the server first saw that
-- etag (for newest-wins when the record has no LAST-MODIFIED/REV); modified_ms: the record's
-- own change time, when it has one.
CREATE TABLE sync_records (
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    database       TEXT    NOT NULL,
    uid            TEXT    NOT NULL,
    href           TEXT,
    etag           TEXT,
    device_etag    TEXT,
    server_seen_at BIGINT NOT NULL,
    modified_ms    BIGINT,
    PRIMARY KEY (user_id, database, uid)
);

CREATE INDEX sync_records_href ON sync_records (user_id, database, href);

CREATE TABLE sync_problems (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    database TEXT    NOT NULL,
    -- the record's UID or CalDAV/CardDAV href
    item     TEXT    NOT NULL,
    -- server (on the CalDAV/CardDAV server) or device
    side     TEXT    NOT NULL,
    detail   TEXT    NOT NULL,
    at       BIGINT NOT NULL
);

CREATE INDEX sync_problems_user ON sync_problems (user_id, id);

CREATE TABLE device_backups (
    user_id  BIGINT NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    pin      BIGINT NOT NULL CHECK (pin BETWEEN 0 AND 4294967295),
    taken_at BIGINT NOT NULL,
    sealed   BYTEA    NOT NULL,
    stored_at BIGINT NOT NULL
);

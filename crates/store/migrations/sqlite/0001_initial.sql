-- Bramble configuration database, SQLite dialect.
-- Keep the logical schema in step with ../postgres/0001_initial.sql.
-- Conventions: times are unix milliseconds (INTEGER); PINs, SRP ids and key generations are
-- u32 kept in INTEGER with a range check; sequence numbers are u64 kept in INTEGER (i64), so
-- never above 9223372036854775807; emails are stored lower-cased.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT    NOT NULL,
    display_name  TEXT,
    -- snake_case name of bramble_store::UserStatus
    status        TEXT    NOT NULL,
    status_reason TEXT,
    status_at     INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    CONSTRAINT users_email_unique UNIQUE (email)
) STRICT;

-- The timeline of a user's status: one row per change, the first at creation.
CREATE TABLE user_status_history (
    id      INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status  TEXT    NOT NULL,
    reason  TEXT,
    at      INTEGER NOT NULL
) STRICT;

CREATE INDEX user_status_history_user ON user_status_history (user_id, at, id);

-- One pending activation per user: the OPAQUE registration record, never the password.
CREATE TABLE activation (
    user_id         INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    record          BLOB    NOT NULL,
    expires_at      INTEGER NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0 CHECK (failed_attempts BETWEEN 0 AND 4294967295),
    max_attempts    INTEGER NOT NULL CHECK (max_attempts BETWEEN 0 AND 4294967295),
    created_at      INTEGER NOT NULL
) STRICT;

-- The current device of each user.
CREATE TABLE devices (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pin             INTEGER NOT NULL CHECK (pin BETWEEN 0 AND 4294967295),
    identity_key    BLOB    NOT NULL,
    master_key      BLOB    NOT NULL,
    key_generation  INTEGER NOT NULL CHECK (key_generation BETWEEN 0 AND 4294967295),
    tx_seq_reserved INTEGER NOT NULL DEFAULT 0 CHECK (tx_seq_reserved >= 0),
    rx_seq_highest  INTEGER NOT NULL DEFAULT 0 CHECK (rx_seq_highest >= 0),
    status          TEXT    NOT NULL DEFAULT 'active',
    activated_at    INTEGER NOT NULL,
    last_seen       INTEGER,
    CONSTRAINT devices_user_unique UNIQUE (user_id),
    CONSTRAINT devices_pin_unique UNIQUE (pin)
) STRICT;

-- The server's own identity at the relay: exactly one row (id = 1) once set.
CREATE TABLE server_identity (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    srp_id            INTEGER NOT NULL CHECK (srp_id BETWEEN 0 AND 4294967295),
    srp_key           TEXT    NOT NULL,
    relay_addr        TEXT    NOT NULL,
    relay_fingerprint TEXT
) STRICT;

-- Counters; scope is 'global' or a user's (lower-cased) email.
CREATE TABLE statistics (
    scope TEXT    NOT NULL,
    name  TEXT    NOT NULL,
    value INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, name)
) STRICT;

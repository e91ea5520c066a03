-- The relay's own state (relay.db). Not the enterprise server's configuration database.
--
-- Times are unix milliseconds. Addresses are stored as one integer: the wire tag shifted
-- left by 32 bits, plus the value (1 << 32 | PIN for a device, 2 << 32 | SRP number for a
-- server). Sequence numbers are u64 stored bit for bit in an i64.

-- Enterprise servers allowed to connect, by SRP id. Only a SHA-256 hash of the key is kept.
CREATE TABLE srp (
    id           INTEGER PRIMARY KEY,
    key_hash     BLOB    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'enabled'
                         CHECK (state IN ('enabled', 'conflict', 'disabled')),
    state_reason TEXT,
    state_at     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_login   INTEGER
);

-- The identity key each PIN was first seen with; a PIN stays with its first key.
CREATE TABLE pins (
    pin          INTEGER PRIMARY KEY,
    identity_key BLOB    NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL
);

-- Frames waiting for a destination that is not connected (or that fell behind). `frame` is
-- the whole encoded frame, body sealed: the relay never opens it.
CREATE TABLE queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dst         INTEGER NOT NULL,
    src         INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    len         INTEGER NOT NULL,
    frame       BLOB    NOT NULL,
    enqueued_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX queue_by_dst ON queue (dst, id);
CREATE INDEX queue_by_expiry ON queue (expires_at);

-- Delivery reports for an enterprise server that was not connected when they arose.
CREATE TABLE pending_reports (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    srp        INTEGER NOT NULL,
    pin        INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    status     INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    detail     TEXT    NOT NULL DEFAULT '',
    expires_at INTEGER NOT NULL
);
CREATE INDEX pending_reports_by_srp ON pending_reports (srp, id);
CREATE INDEX pending_reports_by_expiry ON pending_reports (expires_at);

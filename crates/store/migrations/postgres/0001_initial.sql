-- Bramble configuration database, PostgreSQL dialect.
-- Keep the logical schema in step with ../sqlite/0001_initial.sql.
-- Conventions: times are unix milliseconds (BIGINT); PINs, SRP ids and key generations are
-- u32 kept in BIGINT with a range check; sequence numbers are u64 kept in BIGINT (i64), so
-- never above 9223372036854775807; emails are stored lower-cased.

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         TEXT   NOT NULL,
    display_name  TEXT,
    -- snake_case name of bramble_store::UserStatus
    status        TEXT   NOT NULL,
    status_reason TEXT,
    status_at     BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    CONSTRAINT users_email_unique UNIQUE (email)
);

-- The timeline of a user's status: one row per change, the first at creation.
CREATE TABLE user_status_history (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status  TEXT   NOT NULL,
    reason  TEXT,
    at      BIGINT NOT NULL
);

CREATE INDEX user_status_history_user ON user_status_history (user_id, at, id);

-- One pending activation per user: the OPAQUE registration record, never the password.
CREATE TABLE activation (
    user_id         BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    record          BYTEA  NOT NULL,
    expires_at      BIGINT NOT NULL,
    failed_attempts BIGINT NOT NULL DEFAULT 0 CHECK (failed_attempts BETWEEN 0 AND 4294967295),
    max_attempts    BIGINT NOT NULL CHECK (max_attempts BETWEEN 0 AND 4294967295),
    created_at      BIGINT NOT NULL
);

-- The current device of each user.
CREATE TABLE devices (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pin             BIGINT NOT NULL CHECK (pin BETWEEN 0 AND 4294967295),
    identity_key    BYTEA  NOT NULL,
    master_key      BYTEA  NOT NULL,
    key_generation  BIGINT NOT NULL CHECK (key_generation BETWEEN 0 AND 4294967295),
    tx_seq_reserved BIGINT NOT NULL DEFAULT 0 CHECK (tx_seq_reserved >= 0),
    rx_seq_highest  BIGINT NOT NULL DEFAULT 0 CHECK (rx_seq_highest >= 0),
    status          TEXT   NOT NULL DEFAULT 'active',
    activated_at    BIGINT NOT NULL,
    last_seen       BIGINT,
    CONSTRAINT devices_user_unique UNIQUE (user_id),
    CONSTRAINT devices_pin_unique UNIQUE (pin)
);

-- The server's own identity at the relay: exactly one row (id = 1) once set.
CREATE TABLE server_identity (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    srp_id            BIGINT NOT NULL CHECK (srp_id BETWEEN 0 AND 4294967295),
    srp_key           TEXT   NOT NULL,
    relay_addr        TEXT   NOT NULL,
    relay_fingerprint TEXT
);

-- Counters; scope is 'global' or a user's (lower-cased) email.
CREATE TABLE statistics (
    scope TEXT   NOT NULL,
    name  TEXT   NOT NULL,
    value BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, name)
);

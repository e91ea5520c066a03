-- The administration service (seed 002, BlackBerry Administration Service): administrator
-- accounts, their roles (the six BES 5 presets and custom ones), login sessions, API tokens,
-- and the audit log of every change and command.
-- Passwords are kept only as Argon2id PHC strings; sessions and tokens only as SHA-256 hex of
-- the secret. Permissions are the server's names, space-separated (the server checks them).
-- Keep in step with ../sqlite/0010_admin.sql.

CREATE TABLE admin_roles (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL UNIQUE,
    description TEXT,
    -- 1 for the BES presets: the server keeps their permissions, nobody edits or deletes them
    preset      BIGINT  NOT NULL DEFAULT 0 CHECK (preset IN (0, 1)),
    permissions TEXT    NOT NULL DEFAULT '',
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

CREATE TABLE admin_accounts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT    NOT NULL,
    name_key      TEXT    NOT NULL UNIQUE,
    display_name  TEXT,
    email         TEXT,
    -- NULL: the account cannot log in with a password (API tokens only)
    password_hash TEXT,
    disabled      BIGINT  NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    BIGINT  NOT NULL,
    last_login_at BIGINT
);

CREATE TABLE admin_account_roles (
    account_id BIGINT  NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    role_id    BIGINT  NOT NULL REFERENCES admin_roles (id) ON DELETE CASCADE,
    PRIMARY KEY (account_id, role_id)
);

CREATE INDEX admin_account_roles_role ON admin_account_roles (role_id);

-- Console login sessions.
CREATE TABLE admin_sessions (
    token_hash   TEXT    PRIMARY KEY,
    account_id   BIGINT  NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    source       TEXT,
    created_at   BIGINT  NOT NULL,
    last_seen_at BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL
);

CREATE INDEX admin_sessions_account ON admin_sessions (account_id);

-- API tokens (Authorization: Bearer), named by their owner.
CREATE TABLE admin_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   BIGINT  NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT
);

CREATE INDEX admin_tokens_account ON admin_tokens (account_id);

-- Who did what, when, from where, and how it went. Append-only.
CREATE TABLE audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT  NOT NULL,
    actor   TEXT    NOT NULL,
    source  TEXT,
    action  TEXT    NOT NULL,
    target  TEXT,
    detail  TEXT,
    -- success, denied, failed
    result  TEXT    NOT NULL,
    status  BIGINT  NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_actor ON audit_log (actor, at);

-- The policy service (seed 002, BlackBerry Policy Service): groups of users, IT policies and
-- their versions, what each device was sent and answered, IT admin commands with their
-- receipts, the application repository, software configurations and deployment jobs.
-- Names are unique in any case: each table keeps the name as typed and lower-cased (name_key).
-- Keep in step with ../postgres/0008_policy.sql.

CREATE TABLE user_groups (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL UNIQUE,
    description TEXT,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
) STRICT;

CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE it_policies (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL,
    name_key        TEXT    NOT NULL UNIQUE,
    description     TEXT,
    current_version INTEGER NOT NULL CHECK (current_version BETWEEN 1 AND 4294967295),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;

-- Every version of every policy: the rules as the server's JSON text, never changed.
CREATE TABLE it_policy_versions (
    policy_id  INTEGER NOT NULL REFERENCES it_policies (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL CHECK (version BETWEEN 1 AND 4294967295),
    rules      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT,
    note       TEXT,
    PRIMARY KEY (policy_id, version)
) STRICT;

-- One policy per user and one per group, at most.
CREATE TABLE user_policy (
    user_id   INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    policy_id INTEGER NOT NULL REFERENCES it_policies (id) ON DELETE CASCADE
) STRICT;

CREATE TABLE group_policy (
    group_id  INTEGER PRIMARY KEY REFERENCES user_groups (id) ON DELETE CASCADE,
    policy_id INTEGER NOT NULL REFERENCES it_policies (id) ON DELETE CASCADE
) STRICT;

-- What each device was last sent and what it answered.
CREATE TABLE device_policy (
    pin           INTEGER PRIMARY KEY REFERENCES devices (pin) ON DELETE CASCADE,
    policy_name   TEXT    NOT NULL,
    version       INTEGER NOT NULL CHECK (version BETWEEN 0 AND 4294967295),
    hash          BLOB    NOT NULL,
    sent_at       INTEGER NOT NULL,
    send_count    INTEGER NOT NULL DEFAULT 1 CHECK (send_count BETWEEN 0 AND 4294967295),
    applied       INTEGER NOT NULL DEFAULT 0 CHECK (applied IN (0, 1)),
    applied_at    INTEGER,
    -- a JSON array of sentences
    problems      TEXT    NOT NULL DEFAULT '[]',
    reported_at   INTEGER
) STRICT;

CREATE INDEX device_policy_sent ON device_policy (sent_at);

-- IT admin commands and their receipts. Numbers are never reused (AUTOINCREMENT): a late
-- answer from a device must not land on another command; likewise software jobs.
CREATE TABLE it_commands (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pin        INTEGER CHECK (pin BETWEEN 0 AND 4294967295),
    kind       TEXT    NOT NULL,
    params     TEXT    NOT NULL,
    -- queued, sent, pending, done, failed, cancelled
    state      TEXT    NOT NULL,
    detail     TEXT,
    created_at INTEGER NOT NULL,
    created_by TEXT,
    updated_at INTEGER NOT NULL,
    sent_at    INTEGER,
    attempts   INTEGER NOT NULL DEFAULT 0 CHECK (attempts BETWEEN 0 AND 4294967295)
) STRICT;

CREATE INDEX it_commands_user ON it_commands (user_id, id);
CREATE INDEX it_commands_open ON it_commands (state, sent_at);

CREATE TABLE it_command_history (
    id         INTEGER PRIMARY KEY,
    command_id INTEGER NOT NULL REFERENCES it_commands (id) ON DELETE CASCADE,
    state      TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    detail     TEXT
) STRICT;

CREATE INDEX it_command_history_command ON it_command_history (command_id, id);

-- The application repository.
CREATE TABLE software_packages (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    content     BLOB    NOT NULL,
    sha256      BLOB    NOT NULL,
    size        INTEGER NOT NULL CHECK (size >= 0),
    uploaded_at INTEGER NOT NULL,
    uploaded_by TEXT,
    UNIQUE (name_key, version)
) STRICT;

CREATE TABLE software_configs (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL,
    name_key       TEXT    NOT NULL UNIQUE,
    allow_unlisted INTEGER NOT NULL DEFAULT 0 CHECK (allow_unlisted IN (0, 1)),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

-- One line per application of a configuration: required, optional or not-permitted.
CREATE TABLE software_config_apps (
    config_id   INTEGER NOT NULL REFERENCES software_configs (id) ON DELETE CASCADE,
    app_name    TEXT    NOT NULL,
    app_key     TEXT    NOT NULL,
    version     TEXT,
    disposition TEXT    NOT NULL,
    PRIMARY KEY (config_id, app_key)
) STRICT;

CREATE TABLE user_software (
    user_id   INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    config_id INTEGER NOT NULL REFERENCES software_configs (id) ON DELETE CASCADE
) STRICT;

CREATE TABLE group_software (
    group_id  INTEGER PRIMARY KEY REFERENCES user_groups (id) ON DELETE CASCADE,
    config_id INTEGER NOT NULL REFERENCES software_configs (id) ON DELETE CASCADE
) STRICT;

-- Deployment jobs: a snapshot of the configuration sent to one device, and its report.
CREATE TABLE software_jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    pin         INTEGER NOT NULL REFERENCES devices (pin) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    config_name TEXT    NOT NULL,
    snapshot    TEXT    NOT NULL,
    -- queued, sent, done, failed, superseded
    state       TEXT    NOT NULL,
    detail      TEXT,
    results     TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    sent_at     INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts BETWEEN 0 AND 4294967295)
) STRICT;

CREATE INDEX software_jobs_pin ON software_jobs (pin, id);
CREATE INDEX software_jobs_open ON software_jobs (state, sent_at);

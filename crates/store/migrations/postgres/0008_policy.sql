-- The policy service (seed 002, BlackBerry Policy Service): groups of users, IT policies and
-- their versions, what each device was sent and answered, IT admin commands with their
-- receipts, the application repository, software configurations and deployment jobs.
-- Names are unique in any case: each table keeps the name as typed and lower-cased (name_key).
-- Keep in step with ../sqlite/0008_policy.sql.

CREATE TABLE user_groups (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL UNIQUE,
    description TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id BIGINT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    user_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);

CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE it_policies (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            TEXT    NOT NULL,
    name_key        TEXT    NOT NULL UNIQUE,
    description     TEXT,
    current_version BIGINT NOT NULL CHECK (current_version BETWEEN 1 AND 4294967295),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Every version of every policy: the rules as the server's JSON text, never changed.
CREATE TABLE it_policy_versions (
    policy_id  BIGINT NOT NULL REFERENCES it_policies (id) ON DELETE CASCADE,
    version    BIGINT NOT NULL CHECK (version BETWEEN 1 AND 4294967295),
    rules      TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    note       TEXT,
    PRIMARY KEY (policy_id, version)
);

-- One policy per user and one per group, at most.
CREATE TABLE user_policy (
    user_id   BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    policy_id BIGINT NOT NULL REFERENCES it_policies (id) ON DELETE CASCADE
);

CREATE TABLE group_policy (
    group_id  BIGINT PRIMARY KEY REFERENCES user_groups (id) ON DELETE CASCADE,
    policy_id BIGINT NOT NULL REFERENCES it_policies (id) ON DELETE CASCADE
);

-- What each device was last sent and what it answered.
CREATE TABLE device_policy (
    pin           BIGINT PRIMARY KEY REFERENCES devices (pin) ON DELETE CASCADE,
    policy_name   TEXT    NOT NULL,
    version       BIGINT NOT NULL CHECK (version BETWEEN 0 AND 4294967295),
    hash          BYTEA    NOT NULL,
    sent_at       BIGINT NOT NULL,
    send_count    BIGINT NOT NULL DEFAULT 1 CHECK (send_count BETWEEN 0 AND 4294967295),
    applied       BIGINT NOT NULL DEFAULT 0 CHECK (applied IN (0, 1)),
    applied_at    BIGINT,
    -- a JSON array of sentences
    problems      TEXT    NOT NULL DEFAULT '[]',
    reported_at   BIGINT
);

CREATE INDEX device_policy_sent ON device_policy (sent_at);

-- IT admin commands and their receipts.
CREATE TABLE it_commands (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pin        BIGINT CHECK (pin BETWEEN 0 AND 4294967295),
    kind       TEXT    NOT NULL,
    params     TEXT    NOT NULL,
    -- queued, sent, pending, done, failed, cancelled
    state      TEXT    NOT NULL,
    detail     TEXT,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL,
    sent_at    BIGINT,
    attempts   BIGINT NOT NULL DEFAULT 0 CHECK (attempts BETWEEN 0 AND 4294967295)
);

CREATE INDEX it_commands_user ON it_commands (user_id, id);
CREATE INDEX it_commands_open ON it_commands (state, sent_at);

CREATE TABLE it_command_history (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_id BIGINT NOT NULL REFERENCES it_commands (id) ON DELETE CASCADE,
    state      TEXT    NOT NULL,
    at         BIGINT NOT NULL,
    detail     TEXT
);

CREATE INDEX it_command_history_command ON it_command_history (command_id, id);

-- The application repository.
CREATE TABLE software_packages (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    content     BYTEA    NOT NULL,
    sha256      BYTEA    NOT NULL,
    size        BIGINT NOT NULL CHECK (size >= 0),
    uploaded_at BIGINT NOT NULL,
    uploaded_by TEXT,
    UNIQUE (name_key, version)
);

CREATE TABLE software_configs (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           TEXT    NOT NULL,
    name_key       TEXT    NOT NULL UNIQUE,
    allow_unlisted BIGINT NOT NULL DEFAULT 0 CHECK (allow_unlisted IN (0, 1)),
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- One line per application of a configuration: required, optional or not-permitted.
CREATE TABLE software_config_apps (
    config_id   BIGINT NOT NULL REFERENCES software_configs (id) ON DELETE CASCADE,
    app_name    TEXT    NOT NULL,
    app_key     TEXT    NOT NULL,
    version     TEXT,
    disposition TEXT    NOT NULL,
    PRIMARY KEY (config_id, app_key)
);

CREATE TABLE user_software (
    user_id   BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    config_id BIGINT NOT NULL REFERENCES software_configs (id) ON DELETE CASCADE
);

CREATE TABLE group_software (
    group_id  BIGINT PRIMARY KEY REFERENCES user_groups (id) ON DELETE CASCADE,
    config_id BIGINT NOT NULL REFERENCES software_configs (id) ON DELETE CASCADE
);

-- Deployment jobs: a snapshot of the configuration sent to one device, and its report.
CREATE TABLE software_jobs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pin         BIGINT NOT NULL REFERENCES devices (pin) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    config_name TEXT    NOT NULL,
    snapshot    TEXT    NOT NULL,
    -- queued, sent, done, failed, superseded
    state       TEXT    NOT NULL,
    detail      TEXT,
    results     TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    sent_at     BIGINT,
    attempts    BIGINT NOT NULL DEFAULT 0 CHECK (attempts BETWEEN 0 AND 4294967295)
);

CREATE INDEX software_jobs_pin ON software_jobs (pin, id);
CREATE INDEX software_jobs_open ON software_jobs (state, sent_at);

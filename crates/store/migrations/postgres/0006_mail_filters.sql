-- Push-mail filters (BES "global filters" and user filters): ordered rules deciding whether a
-- new message is forwarded to the device, with priority, or not at all. The global filters
-- (user_id NULL) are checked first; the first enabled one that matches decides; then the
-- user's own. Keep in step with ../sqlite/0006_mail_filters.sql.
CREATE TABLE mail_filters (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL for a global filter
    user_id          BIGINT REFERENCES users (id) ON DELETE CASCADE,
    -- 1-based place among the filters of its scope; the store keeps them 1..n without gaps
    position         BIGINT NOT NULL CHECK (position BETWEEN 1 AND 4294967295),
    name             TEXT   NOT NULL,
    -- the name lower-cased: names are unique per scope in any case
    name_key         TEXT   NOT NULL,
    enabled          BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    -- patterns: case-insensitive substrings with * and ? wildcards; NULL: no condition
    match_from       TEXT,
    match_to         TEXT,
    match_cc         TEXT,
    match_subject    TEXT,
    -- 'high', 'normal', 'low'; NULL: any importance
    match_importance TEXT,
    -- snake_case name of bramble_store::FilterAction
    action           TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE INDEX mail_filters_order ON mail_filters (user_id, position);
CREATE UNIQUE INDEX mail_filters_global_name ON mail_filters (name_key) WHERE user_id IS NULL;
CREATE UNIQUE INDEX mail_filters_user_name ON mail_filters (user_id, name_key)
    WHERE user_id IS NOT NULL;

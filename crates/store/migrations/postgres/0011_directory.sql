-- The directory import (seed 002's BlackBerry MailStore service): a user added from the
-- company directory keeps the entry's stable identifier (entryUUID, objectGUID, … as the
-- administrator configured), so the name and the address follow the entry when it changes.
-- Keep in step with ../sqlite/0011_directory.sql.

ALTER TABLE users ADD COLUMN directory_id TEXT;

CREATE UNIQUE INDEX users_directory_id ON users (directory_id) WHERE directory_id IS NOT NULL;

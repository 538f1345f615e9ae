-- Token versions (a password reset or a revocation ends every earlier token) and the
-- login throttle's counts, shared by every process that serves logins.

ALTER TABLE users ADD COLUMN IF NOT EXISTS token_version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS login_failures (
    key      TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_at  TIMESTAMPTZ NOT NULL
);

-- Calls, users and idempotency keys. Written to be safe to run twice (IF NOT EXISTS),
-- on top of sqlx's own record of applied migrations.

CREATE TABLE IF NOT EXISTS calls (
    call_id             UUID PRIMARY KEY,
    owner               TEXT NOT NULL,
    phone_number        TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN (
                            'pending', 'dialing', 'ringing', 'answered',
                            'completed', 'busy', 'no_answer', 'failed', 'canceled')),
    mode                TEXT NOT NULL,
    channel             TEXT NOT NULL,
    context             TEXT NOT NULL,
    extension           TEXT NOT NULL,
    priority            INTEGER NOT NULL,
    caller_id           TEXT,
    timeout_ms          BIGINT NOT NULL,
    max_duration_ms     BIGINT,
    variables           JSONB NOT NULL DEFAULT '{}',
    media               JSONB NOT NULL DEFAULT '[]',
    gather_dtmf         BOOLEAN NOT NULL DEFAULT FALSE,
    dtmf                TEXT NOT NULL DEFAULT '',
    created_at          TIMESTAMPTZ NOT NULL,
    dialed_at           TIMESTAMPTZ,
    ringing_at          TIMESTAMPTZ,
    answered_at         TIMESTAMPTZ,
    ended_at            TIMESTAMPTZ,
    failure_reason      TEXT,
    cause               BIGINT,
    cause_txt           TEXT,
    dialstatus          TEXT,
    attempt_number      INTEGER NOT NULL DEFAULT 1,
    cancel_requested_at TIMESTAMPTZ
);

-- A user's calls, newest first.
CREATE INDEX IF NOT EXISTS calls_owner_created ON calls (owner, created_at DESC);

-- Calls not yet final: what the bridge reconciles and sweeps.
CREATE INDEX IF NOT EXISTS calls_active ON calls (created_at)
    WHERE status IN ('pending', 'dialing', 'ringing', 'answered');

CREATE TABLE IF NOT EXISTS users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    owner      TEXT NOT NULL,
    key        TEXT NOT NULL,
    call_id    UUID NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (owner, key)
);

-- The call queue, pacing, retries and scheduled calls. Calls gain the `queued` status
-- and what a queued or retried call carries: its retry policy, `send_at`, calling
-- window (`calling_window`: WINDOW is a reserved word), when it is next due
-- (`queued_until`), when the dispatcher claimed its attempt, whether that attempt holds
-- a line in the pacing state, and the attempts before the current one. Users gain
-- their limits (NULL: none). Pacing states are rows of their own, each with the version
-- its next write must find.

ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_status_check;
ALTER TABLE calls ADD CONSTRAINT calls_status_check CHECK (status IN (
    'queued', 'pending', 'dialing', 'ringing', 'answered',
    'completed', 'busy', 'no_answer', 'failed', 'canceled'));

ALTER TABLE calls ADD COLUMN IF NOT EXISTS retry JSONB;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS send_at TIMESTAMPTZ;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS calling_window JSONB;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS queued_until TIMESTAMPTZ;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS claimed_at TIMESTAMPTZ;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS paced BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS attempts JSONB NOT NULL DEFAULT '[]';

-- The queue, in its order: soonest due (a queued call without `queued_until` is due
-- at its creation), then oldest, then by id.
CREATE INDEX IF NOT EXISTS calls_queue
    ON calls ((COALESCE(queued_until, created_at)), created_at, call_id)
    WHERE status = 'queued';

-- A queued call is not final either: reconciliation and sweeps see it.
CREATE INDEX IF NOT EXISTS calls_not_final ON calls (created_at)
    WHERE status IN ('queued', 'pending', 'dialing', 'ringing', 'answered');
DROP INDEX IF EXISTS calls_active;

ALTER TABLE users ADD COLUMN IF NOT EXISTS max_concurrent_calls INTEGER;
ALTER TABLE users ADD COLUMN IF NOT EXISTS max_queued_calls INTEGER;

CREATE TABLE IF NOT EXISTS pacing (
    key     TEXT PRIMARY KEY,
    state   JSONB NOT NULL,
    version BIGINT NOT NULL
);

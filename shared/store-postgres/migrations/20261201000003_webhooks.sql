-- Status webhooks. A call's events live in its row (the outbox), written by the same
-- UPDATE as the change each one reports. `version` counts the row's writes.
-- `next_event_at` is when its first undelivered event is due (NULL when none waits),
-- so that deliverers find due calls by index; `claimed_until` holds a call for one
-- deliverer at a time. Users gain a default callback and the secrets events are
-- signed with (the one before a rotation, and when it was replaced).

ALTER TABLE calls ADD COLUMN IF NOT EXISTS webhook JSONB;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS events JSONB NOT NULL DEFAULT '[]';
ALTER TABLE calls ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS next_event_at TIMESTAMPTZ;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS claimed_until TIMESTAMPTZ;

CREATE INDEX IF NOT EXISTS calls_next_event ON calls (next_event_at)
    WHERE next_event_at IS NOT NULL;

ALTER TABLE users ADD COLUMN IF NOT EXISTS webhook_url TEXT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS webhook_secret TEXT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS previous_webhook_secret TEXT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS previous_webhook_secret_at TIMESTAMPTZ;

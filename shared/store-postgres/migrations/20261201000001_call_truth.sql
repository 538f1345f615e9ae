-- What the bridge learns about a call beyond its status: an originate the PBX never
-- confirmed, and media items the PBX could not play. And a total order for listing:
-- creation time, then call id.

ALTER TABLE calls ADD COLUMN IF NOT EXISTS originate_unconfirmed_at TIMESTAMPTZ;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS media_failed TEXT[] NOT NULL DEFAULT '{}';

CREATE INDEX IF NOT EXISTS calls_owner_created_id ON calls (owner, created_at DESC, call_id DESC);
DROP INDEX IF EXISTS calls_owner_created;

-- An idempotency key keeps the fingerprint of the request that bound it, so that a
-- reuse of the key for a different request is refused instead of answered with the
-- first call. Bindings from before have none ('') and match any request until they
-- lapse (a day).
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS fingerprint TEXT NOT NULL DEFAULT '';

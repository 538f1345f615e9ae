-- Each user's part of the queue, in the queue's order: the dispatcher reads it for
-- every user with calls waiting when the queue is deeper than one batch, so that one
-- user's long backlog cannot hold back another user's calls queued after it.
CREATE INDEX IF NOT EXISTS calls_queue_owner
    ON calls (owner, (COALESCE(queued_until, created_at)), created_at, call_id)
    WHERE status = 'queued';

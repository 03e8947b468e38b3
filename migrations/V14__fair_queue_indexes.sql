-- voidrunner:no-transaction
-- squawk-disable-assume-in-transaction
-- voidrunner-db V14: the indexes of the fair claim (V15).
--
-- `task_executions_user_claim_idx` holds each user's pending executions in
-- claim order (priority DESC, run_after, id): the fair claim finds the next
-- user with pending work after a given one (one descent, the first entry
-- past that user's id), then walks that user's runnable rows in order.
-- `task_executions_user_running_idx` holds the running executions by user:
-- a concurrency cap counts a user's running executions through it, reading
-- at most the cap's number of entries, however many executions the user
-- ran before.
--
-- Run outside any transaction, one statement at a time (see V9): the
-- indexes are built concurrently, so writes go on while they are built. A
-- run interrupted half-way is repeated from the top; every statement here is
-- safe to run again.

-- A concurrent build that failed leaves an INVALID index behind, which
-- CREATE INDEX ... IF NOT EXISTS would take for done: those are dropped
-- first (see V11).
DO $$
DECLARE
    leftover regclass;
BEGIN
    FOR leftover IN
        SELECT i.indexrelid::regclass FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'task_executions'::regclass AND NOT i.indisvalid
          AND c.relname IN ('task_executions_user_claim_idx', 'task_executions_user_running_idx')
    LOOP
        EXECUTE format('DROP INDEX %s', leftover);
    END LOOP;
END;
$$;

CREATE INDEX CONCURRENTLY IF NOT EXISTS task_executions_user_claim_idx
    ON task_executions (user_id, priority DESC, run_after, id) WHERE status = 'pending';

CREATE INDEX CONCURRENTLY IF NOT EXISTS task_executions_user_running_idx
    ON task_executions (user_id) WHERE status = 'running';

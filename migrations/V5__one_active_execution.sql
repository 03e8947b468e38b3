-- voidrunner:no-transaction
-- squawk-disable-assume-in-transaction
-- voidrunner-db V5: at most one active (pending or running) execution per
-- task, enforced by a partial unique index.
--
-- The first line makes the crate run this file outside any transaction, one
-- statement at a time, each committed on its own: CREATE INDEX CONCURRENTLY
-- cannot run inside a transaction, and a plain CREATE INDEX would block
-- every write to task_executions for as long as the build takes. A run
-- interrupted half-way is repeated from the top, so every statement here is
-- safe to run again.

-- Scans the table with a lock that lets reads and writes go on (SHARE UPDATE
-- EXCLUSIVE); a no-op once the constraint is valid, so safe to run again
-- (squawk cannot know that of VALIDATE outside a transaction).
-- squawk-ignore prefer-robust-stmts
ALTER TABLE task_executions VALIDATE CONSTRAINT task_executions_running_has_lease;

-- Before V5 a retried enqueue could queue a task twice. Keep one active
-- execution per task (a running one over a pending one, then the newest)
-- and cancel the rest, so the unique index below can be built. Changes
-- nothing when run again.
WITH ranked AS (
    SELECT id,
           row_number() OVER (
               PARTITION BY task_id
               ORDER BY (status = 'running') DESC, created_at DESC, id DESC
           ) AS n
    FROM task_executions
    WHERE status IN ('pending', 'running')
)
UPDATE task_executions e
SET status = 'cancelled', completed_at = greatest(now(), e.started_at), lease_expires_at = NULL
FROM ranked r
WHERE e.id = r.id AND r.n > 1 AND e.status IN ('pending', 'running');

-- A concurrent build that failed (or was cancelled) leaves an INVALID index
-- of this name behind, which IF NOT EXISTS would take for done: drop it
-- first, so a rerun always builds a valid index.
DROP INDEX CONCURRENTLY IF EXISTS task_executions_one_active_per_task_idx;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS task_executions_one_active_per_task_idx
    ON task_executions (task_id)
    WHERE status IN ('pending', 'running');

-- voidrunner-db V5: at most one active (pending or running) execution per
-- task, enforced by a partial unique index.
--
-- Every statement here is safe to run again, so a run interrupted half-way
-- is simply repeated.

-- Scans the table with a lock that lets reads and writes go on.
ALTER TABLE task_executions VALIDATE CONSTRAINT task_executions_running_has_lease;

-- Before V5 a retried enqueue could queue a task twice. Keep one active
-- execution per task (a running one over a pending one, then the newest)
-- and cancel the rest, so the unique index below can be built.
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

CREATE UNIQUE INDEX task_executions_one_active_per_task_idx
    ON task_executions (task_id)
    WHERE status IN ('pending', 'running');

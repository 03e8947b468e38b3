-- The statements of the task_executions table that write no status (every
-- status write is the queue's, `queue.sql`), and the lock fragments every
-- statement on one or many executions starts with. `{{execution}}` is the
-- execution's column list.

-- columns: execution
-- An execution's columns, in the order `read_execution` reads them.
id, task_id, status, return_code, stdout, stderr,
execution_time_ms, memory_usage_bytes, started_at, completed_at, created_at, priority,
run_after, attempt, worker_id, lease_expires_at, heartbeat_at, updated_at

-- fragment: lock_task_of_one
-- The task of execution `$1`, locked: the first step of the crate's one lock
-- order (task, then execution), for the statements on one execution. Only
-- a task in the call's scope (`voidrunner_in_scope`, V9): to a scoped call
-- another user's execution is missing.
task AS MATERIALIZED (
  SELECT t.id, t.status FROM tasks t
  WHERE t.id = (SELECT task_id FROM task_executions WHERE id = $1)
    AND voidrunner_in_scope(t.user_id)
  FOR NO KEY UPDATE
)

-- fragment: lock_one
-- Execution `$1` locked after its task (`current`), its status and owner
-- read from the latest committed version; every statement that changes one
-- execution starts with it, so all of them take their locks in one order.
{{lock_task_of_one}}, current AS MATERIALIZED (
  SELECT e.id, e.status, e.worker_id, e.lease_expires_at, e.started_at, e.completed_at
  FROM task_executions e JOIN task ON task.id = e.task_id
  WHERE e.id = $1 FOR NO KEY UPDATE OF e
)

-- fragment: lock_many
-- `lock_one` for the executions `$1::uuid[]`: their tasks in task id order,
-- then the executions in id order, one order for every concurrent batch,
-- so batches cannot deadlock. The locked rows' values are the latest
-- committed ones (a task moved to another user meanwhile has moved them).
task AS MATERIALIZED (
  SELECT t.id, t.status FROM tasks t
  WHERE t.id IN (SELECT x.task_id FROM task_executions x WHERE x.id = ANY($1::uuid[]))
    AND voidrunner_in_scope(t.user_id)
  ORDER BY t.id FOR NO KEY UPDATE
), current AS MATERIALIZED (
  SELECT e.id, e.status, e.worker_id, e.lease_expires_at, e.created_at, e.user_id, e.task_id
  FROM task_executions e JOIN task ON task.id = e.task_id
  WHERE e.id = ANY($1::uuid[]) ORDER BY e.id FOR NO KEY UPDATE OF e
)

-- name: get
-- `$1` id; another user's execution is missing to a scoped call (see
-- `tasks.get`).
SELECT {{execution}} FROM task_executions WHERE id = $1 AND voidrunner_in_scope(user_id)

-- name: latest_for_task
-- The newest execution of task `$1`: the first row of its list, through the
-- list's page function (migrations V7, V8), so it is one probe of the
-- task's index whatever the statistics say; none to a scoped call when the
-- task is another user's (the owner is read once, before the page).
SELECT {{execution}} FROM voidrunner_executions_by_task_page($1, NULL, NULL, 1)
WHERE voidrunner_in_scope((SELECT user_id FROM tasks WHERE id = $1))

-- name: update
-- Results recorded on an execution: `$1` execution, `$2`–`$8` the fields
-- (NULL leaves one as it is). The task is locked first, the crate's one
-- lock order, so a transaction that records results and then ends the
-- execution cannot deadlock with a cancel of its task. Times that would end
-- the execution before it started, counting those already stored, change
-- nothing and are reported by `updated` being false (a validation error,
-- not the CHECK's 23514).
WITH {{lock_one}}, updated AS (
  UPDATE task_executions e SET
    return_code = COALESCE($2, e.return_code),
    stdout = COALESCE($3, e.stdout),
    stderr = COALESCE($4, e.stderr),
    execution_time_ms = COALESCE($5, e.execution_time_ms),
    memory_usage_bytes = COALESCE($6, e.memory_usage_bytes),
    started_at = COALESCE($7, e.started_at),
    completed_at = COALESCE($8, e.completed_at),
    updated_at = now()
  FROM current c
  WHERE e.id = c.id
    AND COALESCE(COALESCE($8, c.completed_at) >= COALESCE($7, c.started_at), true)
  RETURNING {{e.execution}}
)
SELECT u.id IS NOT NULL AS updated, {{u.execution}}
FROM current c LEFT JOIN updated u ON true

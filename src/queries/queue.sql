-- The queue: every statement that writes the status of a task or of an
-- execution is here, and only the queue's code (`src/pg/queue/`) runs them.
-- The lock fragments they start with are in `executions.sql`.

-- columns: claimed
-- A claimed row: the execution's columns, then its task's script, in the
-- order `read_claimed` reads them.
{{execution}}, script_content, script_type, timeout_seconds

-- name: claim
-- `$1` worker, `$2` limit, `$3` lease in seconds.
--
-- `voidrunner_claim` (migration V8) does it all: it picks pending
-- executions whose run_after has come, in claim order, only those whose
-- task is pending (a cancelled task's work never runs), locks each task,
-- then its execution, skipping rows another transaction holds, and claims
-- them; their tasks move to running. It walks the claim index under planner
-- settings that leave no other plan, so a claim reads what it takes,
-- whatever the statistics say; and it never waits, so a claim can take no
-- part in a deadlock. The locks read the latest committed versions of both
-- rows, so a change committed after this statement's snapshot is seen; so
-- do the function's updates (this statement's own snapshot could not update
-- a row committed after it was taken, which is why they are not made here).
SELECT {{c.claimed}}
FROM voidrunner_claim($1, $2, $3) c
ORDER BY c.priority DESC, c.run_after, c.id

-- name: claim_fair
-- `$1` worker, `$2` limit, `$3` lease in seconds, `$4` the user the
-- caller's previous fair claim served last (NULL: none), `$5` whether a
-- claim without one starts at a random user (rather than the lowest).
--
-- `voidrunner_claim_fair` (migration V15) claims as `voidrunner_claim`
-- does (the same locks in the same order, the same updates, never a wait),
-- but user by user: round-robin from the user after `$4`, each user's own
-- work by priority, then age, and no user past their concurrency cap.
-- Rows come in claim order; `claimed_user` is each row's user, the last
-- one where the next claim starts. A walk cut short at its bound (many
-- users with nothing runnable) comes first as a row without an execution
-- (`id` NULL), whose `claimed_user` is where it stopped.
SELECT {{c.claimed}}, c.user_id AS claimed_user
FROM voidrunner_claim_fair($1, $2, $3, $4, $5) c
ORDER BY c.claim_order

-- name: rescue
-- `$1` batch size, `$2` max attempts, `$3` ids for retries, `$4` retry delay
-- in seconds.
--
-- `voidrunner_expired_leases` (migration V7) locks each expired execution
-- and its task with SKIP LOCKED (never waiting, like the claim), skipping
-- rows a worker is completing right now, oldest expiry first, walking the
-- lease index whatever the statistics say. The lock rechecks status and
-- lease on the latest row version, so an execution completed or heartbeaten
-- after this statement's snapshot is left alone; holding the lock, the
-- updates need no condition but the primary key (one on status would let
-- the planner reach the rows through a status index instead). A retry is
-- queued only while the task is still running (a cancelled task is never
-- retried); the retried task goes straight back to pending (running →
-- timeout → pending, both legal).
WITH expired AS MATERIALIZED (
  SELECT x.execution_id, x.task_id, x.task_status
  FROM voidrunner_expired_leases($1) x
), timed_out AS (
  UPDATE task_executions e
  SET status = 'timeout', completed_at = greatest(now(), e.started_at), updated_at = now()
  FROM expired x
  WHERE e.id = x.execution_id
  RETURNING e.id, e.task_id, e.user_id, e.priority, e.attempt, x.task_status
), numbered AS (
  SELECT task_id, user_id, priority, attempt, row_number() OVER (ORDER BY id) AS n
  FROM timed_out WHERE attempt < $2 AND task_status = 'running'
), retried AS (
  INSERT INTO task_executions (id, task_id, user_id, priority, attempt, run_after)
  SELECT ($3::uuid[])[n], task_id, user_id, priority, attempt, now() + make_interval(secs => $4)
  FROM numbered
  RETURNING id, task_id
), task_follow AS (
  UPDATE tasks t
  SET status = CASE WHEN t.id IN (SELECT task_id FROM retried) THEN 'pending' ELSE 'timeout' END,
      updated_at = now()
  FROM timed_out o WHERE t.id = o.task_id AND o.task_status = 'running'
)
SELECT false AS retry, id FROM timed_out
UNION ALL
SELECT true, id FROM retried

-- name: prune
-- One prune batch: `$1` age in seconds, `$2` batch size. The candidates come
-- from `voidrunner_prunable` (migration V7), which walks the prune index
-- oldest first whatever the statistics say, and are deleted by primary key.
DELETE FROM task_executions e
USING voidrunner_prunable(now() - make_interval(secs => $1), $2) p
WHERE e.id = p.execution_id

-- name: enqueue
-- The enqueue of one task: `$1` task, `$2` new execution id, `$3`
-- run_after, `$4` task statuses that may move to pending.
--
-- The task is locked first. `fresh` compares the locked row version with
-- the one this statement's snapshot sees: every writer that adds an
-- execution also updates its task, so when they are the same version, the
-- snapshot sees every execution of the task and `active` is exact. When
-- they differ (another transaction changed the task after the snapshot was
-- taken), nothing is written and the caller runs the statement again with
-- a new snapshot. A task that has an active execution gets that execution
-- back (enqueue is idempotent); otherwise a new one is queued, with its
-- task's owner, and the task moves to pending (a pending task is still
-- updated, to mark the change). To a scoped call another user's task is
-- missing (`voidrunner_in_scope`, V9).
WITH task AS MATERIALIZED (
  SELECT id, user_id, status, priority, xmin AS version FROM tasks
  WHERE id = $1 AND voidrunner_in_scope(user_id) FOR NO KEY UPDATE
), fresh AS (
  SELECT task.version = (SELECT xmin FROM tasks WHERE id = $1) AS ok FROM task
), active AS (
  SELECT {{execution}} FROM task_executions
  WHERE task_id = $1 AND status IN ('pending', 'running')
), go AS (
  SELECT task.id, task.user_id, task.priority FROM task, fresh
  WHERE fresh.ok AND task.status = ANY($4) AND NOT EXISTS (SELECT 1 FROM active)
), moved AS (
  UPDATE tasks t SET status = 'pending', updated_at = now() FROM go WHERE t.id = go.id
), queued AS (
  INSERT INTO task_executions (id, task_id, user_id, priority, run_after)
  SELECT $2, go.id, go.user_id, go.priority, COALESCE($3, now()) FROM go
  RETURNING {{execution}}
), result AS (
  SELECT {{execution}} FROM queued UNION ALL SELECT {{execution}} FROM active
)
SELECT task.status AS task_status, fresh.ok AS fresh, r.id IS NOT NULL AS found, {{r.execution}}
FROM task CROSS JOIN fresh LEFT JOIN result r ON true

-- name: enqueue_many
-- `enqueue` for many tasks, all or nothing: `$1` task ids, `$2` new
-- execution ids, `$3` run_after, `$4` task statuses that may move to
-- pending. Tasks are locked in id order, so concurrent batches cannot
-- deadlock. A task named twice is queued once.
WITH req AS (
  SELECT task_id, execution_id, ord
  FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS r(task_id, execution_id, ord)
), task AS MATERIALIZED (
  SELECT id, user_id, status, priority, xmin AS version FROM tasks
  WHERE id = ANY($1::uuid[]) AND voidrunner_in_scope(user_id)
  ORDER BY id FOR NO KEY UPDATE
), snap AS (
  SELECT id, xmin AS version FROM tasks WHERE id = ANY($1::uuid[])
), active AS (
  SELECT {{execution}} FROM task_executions
  WHERE task_id = ANY($1::uuid[]) AND status IN ('pending', 'running')
), ok AS (
  SELECT NOT EXISTS (
           SELECT 1 FROM task LEFT JOIN snap ON snap.id = task.id
           WHERE snap.version IS NULL OR NOT task.version = snap.version
         ) AS fresh,
         (SELECT count(DISTINCT task_id) FROM req) = (
           SELECT count(*) FROM task
           WHERE status = ANY($4) OR id IN (SELECT task_id FROM active)
         ) AS all_ok
), go AS (
  SELECT DISTINCT ON (req.task_id) req.task_id, req.execution_id, task.user_id,
         task.priority, req.ord
  FROM req JOIN task ON task.id = req.task_id, ok
  WHERE ok.fresh AND ok.all_ok
    AND NOT EXISTS (SELECT 1 FROM active a WHERE a.task_id = req.task_id)
  ORDER BY req.task_id, req.ord
), moved AS (
  UPDATE tasks t SET status = 'pending', updated_at = now()
  FROM go WHERE t.id = go.task_id
), queued AS (
  INSERT INTO task_executions (id, task_id, user_id, priority, run_after)
  SELECT execution_id, task_id, user_id, priority, COALESCE($3, now()) FROM go ORDER BY ord
  RETURNING {{execution}}
), result AS (
  SELECT {{execution}} FROM queued UNION ALL SELECT {{execution}} FROM active
)
SELECT req.task_id AS requested, task.status AS task_status, ok.fresh, ok.all_ok,
       r.id IS NOT NULL AS found, {{r.execution}}
FROM req CROSS JOIN ok
LEFT JOIN task ON task.id = req.task_id
LEFT JOIN result r ON r.task_id = req.task_id
ORDER BY req.ord

-- name: complete
-- The end of a running execution reported by its worker: `$1` execution,
-- `$2` worker, `$3` status, `$4`–`$8` the outcome.
--
-- Locks the task, then the execution (`lock_one`), and re-checks status and
-- owner on the locked row. The lease need not still be in the future: until
-- the rescuer has timed the execution out, nobody else can own it, and the
-- result is worth keeping. After the rescue, the status check refuses it.
WITH {{lock_one}}, done AS (
  UPDATE task_executions e
  SET status = $3, return_code = $4, stdout = $5, stderr = $6,
      execution_time_ms = $7, memory_usage_bytes = $8,
      completed_at = greatest(now(), e.started_at), lease_expires_at = NULL,
      updated_at = now()
  FROM current c
  WHERE e.id = c.id AND c.status = 'running' AND c.worker_id = $2
  RETURNING {{e.execution}}
), task_done AS (
  UPDATE tasks t SET status = $3, updated_at = now() FROM done, task k
  WHERE t.id = done.task_id AND k.id = done.task_id AND k.status = 'running'
)
SELECT c.status AS current_status, c.worker_id AS current_worker,
       c.lease_expires_at IS NOT NULL AS leased, done.id IS NOT NULL AS done, {{done.execution}}
FROM current c LEFT JOIN done ON true

-- name: complete_many
-- `complete` for many executions: `$1` executions (no id twice), `$2`
-- workers, `$3` statuses, `$4`–`$8` the outcomes, one array element per
-- completion. Locks as `lock_many`, and re-checks status and owner of each
-- locked row against its own completion. One row per completion, in input
-- order; `current_status` is NULL for an execution that does not exist.
WITH req AS (
  SELECT id, worker_id, status, return_code, stdout, stderr, execution_time_ms,
         memory_usage_bytes, ord
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::text[],
              $6::text[], $7::int4[], $8::int8[])
    WITH ORDINALITY AS r(id, worker_id, status, return_code, stdout, stderr,
                         execution_time_ms, memory_usage_bytes, ord)
), {{lock_many}}, done AS (
  UPDATE task_executions e
  SET status = r.status, return_code = r.return_code, stdout = r.stdout,
      stderr = r.stderr, execution_time_ms = r.execution_time_ms,
      memory_usage_bytes = r.memory_usage_bytes,
      completed_at = greatest(now(), e.started_at), lease_expires_at = NULL,
      updated_at = now()
  FROM current c JOIN req r ON r.id = c.id
  WHERE e.id = c.id AND c.status = 'running' AND c.worker_id = r.worker_id
  RETURNING {{e.execution}}
), task_done AS (
  UPDATE tasks t SET status = done.status, updated_at = now()
  FROM done JOIN task k ON k.id = done.task_id
  WHERE t.id = done.task_id AND k.status = 'running'
)
SELECT r.ord, c.status AS current_status, c.worker_id AS current_worker,
       c.lease_expires_at IS NOT NULL AS leased, done.id IS NOT NULL AS done, {{done.execution}}
FROM req r LEFT JOIN current c ON c.id = r.id LEFT JOIN done ON done.id = r.id
ORDER BY r.ord

-- name: heartbeat
-- The heartbeat of one execution: `$1` execution, `$2` worker, `$3` lease in
-- seconds. The task is locked first (`lock_one`) even though a heartbeat
-- changes no status: a worker's transaction that heartbeats and then
-- completes must take its locks in the crate's one order.
WITH {{lock_one}}, beat AS (
  UPDATE task_executions e
  SET lease_expires_at = now() + make_interval(secs => $3), heartbeat_at = now(),
      updated_at = now()
  FROM current c
  WHERE e.id = c.id AND c.status = 'running' AND c.worker_id = $2
  RETURNING e.lease_expires_at
)
SELECT c.status, c.worker_id, c.lease_expires_at IS NOT NULL AS leased,
       beat.lease_expires_at AS new_lease
FROM current c LEFT JOIN beat ON true

-- name: heartbeat_batch
-- The heartbeats of many executions, of one worker or many: `$1`
-- executions, `$2` their workers, `$3` their leases in seconds, one array
-- element per heartbeat (an execution twice only with the same worker and
-- lease, as `heartbeat_many` sends it). Locks as `lock_many`; each
-- execution is checked against its own worker on the locked row. One row
-- per heartbeat, in input order; `status` is NULL for an execution that
-- does not exist.
WITH req AS (
  SELECT id, worker_id, lease_secs, ord
  FROM unnest($1::uuid[], $2::text[], $3::float8[])
    WITH ORDINALITY AS r(id, worker_id, lease_secs, ord)
), {{lock_many}}, beat AS (
  UPDATE task_executions e
  SET lease_expires_at = now() + make_interval(secs => r.lease_secs),
      heartbeat_at = now(), updated_at = now()
  FROM current c JOIN req r ON r.id = c.id
  WHERE e.id = c.id AND c.status = 'running' AND c.worker_id = r.worker_id
  RETURNING e.id, e.lease_expires_at
)
SELECT c.status, c.worker_id, c.lease_expires_at IS NOT NULL AS leased,
       beat.lease_expires_at AS new_lease
FROM req r LEFT JOIN current c ON c.id = r.id LEFT JOIN beat ON beat.id = r.id
ORDER BY r.ord

-- name: finish
-- An execution ended by hand (cancelled, or `update_status` to an end
-- state): `$1` execution, `$2` the end status, `$3` statuses it may come
-- from. Locks as `lock_one`. `now()` is when the statement started: a claim
-- that committed while this statement waited for the task lock may have
-- started the execution later than that, so `completed_at` is never earlier
-- than `started_at`. The task follows: a cancelled execution cancels its
-- pending or running task; a running execution ended otherwise ends its
-- running task the same way.
WITH {{lock_one}}, ended AS (
  UPDATE task_executions e
  SET status = $2,
      completed_at = COALESCE(e.completed_at, greatest(now(), e.started_at)),
      lease_expires_at = NULL, updated_at = now()
  FROM current c WHERE e.id = c.id AND c.status = ANY($3)
  RETURNING {{e.execution}}
), task_follows AS (
  UPDATE tasks t SET status = $2, updated_at = now() FROM ended x, task k
  WHERE t.id = x.task_id AND k.id = x.task_id
    AND (k.status = 'running' OR (k.status = 'pending' AND $2 = 'cancelled'))
)
SELECT c.status AS current_status, x.id IS NOT NULL AS ended, {{x.execution}}
FROM current c LEFT JOIN ended x ON true

-- name: delete
-- The delete of an execution: `$1` execution, after its task's lock
-- (`lock_task_of_one`). Deleting an active execution cancels its task,
-- which would otherwise be left pending or running with nothing to run.
WITH {{lock_task_of_one}}, gone AS (
  DELETE FROM task_executions e USING task
  WHERE e.id = $1 AND e.task_id = task.id
  RETURNING e.task_id, e.status
), task_follows AS (
  UPDATE tasks t SET status = 'cancelled', updated_at = now() FROM gone g, task k
  WHERE t.id = g.task_id AND k.id = g.task_id AND g.status IN ('pending', 'running')
    AND k.status IN ('pending', 'running')
)
SELECT count(*) FROM gone

-- name: task_status
-- A task's status set by hand: `$1` task, `$2` the new status (pending or
-- cancelled: the other statuses follow its execution), `$3` statuses it may
-- come from.
--
-- `current` locks the task and, under READ COMMITTED, sees its latest
-- committed version; the transition is checked against it. Cancelling also
-- cancels the task's active execution, in the same statement and after the
-- task lock (the crate's one lock order: task, then execution), also when
-- the task already was cancelled by another application writing to the
-- table and its execution was left active, so a cancelled task never has
-- claimable work. `fresh` makes that exact: every writer that adds an
-- execution also updates its task, so when the locked version is the one
-- this statement's snapshot sees, the snapshot sees all of the task's
-- executions; when not, nothing is written and the statement is run again.
-- The second branch of the result returns the locked row when nothing
-- changed: a no-op, or a refused transition with the status to report.
WITH current AS MATERIALIZED (
  SELECT {{task}}, xmin AS version FROM tasks
  WHERE id = $1 AND voidrunner_in_scope(user_id) FOR NO KEY UPDATE
), fresh AS (
  SELECT current.version = (SELECT xmin FROM tasks WHERE id = $1) AS ok FROM current
), changed AS (
  UPDATE tasks t SET status = $2, updated_at = now() FROM current c, fresh
  WHERE fresh.ok AND t.id = c.id AND c.status = ANY($3) AND c.status <> $2
  RETURNING {{t.task}}
), cancelled AS (
  UPDATE task_executions e
  SET status = 'cancelled', completed_at = greatest(now(), e.started_at),
      lease_expires_at = NULL, updated_at = now()
  FROM current c, fresh
  WHERE fresh.ok AND $2 = 'cancelled' AND e.task_id = c.id
    AND (c.status = 'cancelled' OR c.status = ANY($3))
    AND e.status IN ('pending', 'running')
)
SELECT true AS changed, fresh.ok AS fresh, {{task}} FROM changed, fresh
UNION ALL
SELECT false, fresh.ok, {{task}} FROM current, fresh
WHERE NOT EXISTS (SELECT 1 FROM changed)

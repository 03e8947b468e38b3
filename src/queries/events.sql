-- The polling event stream's statements.

-- name: poll
-- Changed rows after the cursor `($1, $2)` in `(updated_at, id)` order,
-- settled for `$3` seconds, with the time each entered its status.
SELECT id, task_id, status, worker_id, updated_at,
       CASE status WHEN 'pending' THEN created_at
                   WHEN 'running' THEN started_at
                   ELSE completed_at END AS status_at
FROM task_executions
WHERE (updated_at, id) > ($1, $2)
  AND updated_at < now() - make_interval(secs => $3)
ORDER BY updated_at, id LIMIT 256

-- name: now
-- The server's clock: where a polling stream starts.
SELECT now()

-- Every list of the repositories: for each, its first page, a page after a
-- cursor, and its count (but the tasks', whose counts are read from
-- counters: `counts.sql`). Pages go through the page functions of migrations
-- V8, V9 and V10, which take the filter value (when the list has one), the
-- cursor's keys (NULL for the first page) and the row count, in that order,
-- and walk the list's index under planner settings that leave no other
-- plan; the ORDER BY here says the order rather than relying on it (a sort
-- of one page). The metadata search is one SELECT whose plan is the
-- planner's: its best plan depends on how many rows match.

-- name: users_first
-- `$1` the row count.
SELECT {{user}} FROM voidrunner_users_with_names_page(NULL, NULL, $1) ORDER BY created_at DESC, id DESC

-- name: users_after
-- `$1`, `$2` the cursor's created_at and id, `$3` the row count.
SELECT {{user}} FROM voidrunner_users_with_names_page($1, $2, $3) ORDER BY created_at DESC, id DESC

-- name: users_count
SELECT count(*) FROM users WHERE TRUE

-- name: tasks_first
-- `$1` the row count.
SELECT {{task}} FROM voidrunner_tasks_page(NULL, NULL, NULL, $1) ORDER BY priority DESC, created_at DESC, id DESC

-- name: tasks_after
-- `$1`–`$3` the cursor's priority, created_at and id, `$4` the row count.
SELECT {{task}} FROM voidrunner_tasks_page($1, $2, $3, $4) ORDER BY priority DESC, created_at DESC, id DESC

-- name: tasks_by_user_first
-- `$1` the filter value, `$2` the row count.
SELECT {{task}} FROM voidrunner_tasks_by_user_page($1, NULL, NULL, NULL, $2) ORDER BY priority DESC, created_at DESC, id DESC

-- name: tasks_by_user_after
-- `$1` the filter value, `$2`–`$4` the cursor's keys, `$5` the row count.
SELECT {{task}} FROM voidrunner_tasks_by_user_page($1, $2, $3, $4, $5) ORDER BY priority DESC, created_at DESC, id DESC

-- name: tasks_by_status_first
-- `$1` the filter value, `$2` the row count.
SELECT {{task}} FROM voidrunner_tasks_by_status_page($1, NULL, NULL, NULL, $2) ORDER BY priority DESC, created_at DESC, id DESC

-- name: tasks_by_status_after
-- `$1` the filter value, `$2`–`$4` the cursor's keys, `$5` the row count.
SELECT {{task}} FROM voidrunner_tasks_by_status_page($1, $2, $3, $4, $5) ORDER BY priority DESC, created_at DESC, id DESC

-- name: executions_first
-- `$1` the row count.
SELECT {{execution}} FROM voidrunner_executions_page(NULL, NULL, $1) ORDER BY created_at DESC, id DESC

-- name: executions_after
-- `$1`, `$2` the cursor's created_at and id, `$3` the row count.
SELECT {{execution}} FROM voidrunner_executions_page($1, $2, $3) ORDER BY created_at DESC, id DESC

-- name: executions_count
SELECT count(*) FROM task_executions WHERE TRUE

-- name: executions_by_task_first
-- `$1` the filter value, `$2` the row count. Empty to a scoped call when the
-- task is another user's: its owner is read once, before the page is
-- walked (`voidrunner_in_scope`, V9).
SELECT {{execution}} FROM voidrunner_executions_by_task_page($1, NULL, NULL, $2)
WHERE voidrunner_in_scope((SELECT user_id FROM tasks WHERE id = $1))
ORDER BY created_at DESC, id DESC

-- name: executions_by_task_after
-- `$1` the filter value, `$2`, `$3` the cursor's keys, `$4` the row count.
SELECT {{execution}} FROM voidrunner_executions_by_task_page($1, $2, $3, $4)
WHERE voidrunner_in_scope((SELECT user_id FROM tasks WHERE id = $1))
ORDER BY created_at DESC, id DESC

-- name: executions_by_task_count
-- Like the pages, 0 to a scoped call for another user's task without
-- reading its executions: the owner is read once, before the count.
SELECT count(*) FROM task_executions
WHERE task_id = $1 AND voidrunner_in_scope((SELECT user_id FROM tasks WHERE id = $1))

-- name: executions_by_status_first
-- `$1` the filter value, `$2` the row count.
SELECT {{execution}} FROM voidrunner_executions_by_status_page($1, NULL, NULL, $2) ORDER BY created_at DESC, id DESC

-- name: executions_by_status_after
-- `$1` the filter value, `$2`, `$3` the cursor's keys, `$4` the row count.
SELECT {{execution}} FROM voidrunner_executions_by_status_page($1, $2, $3, $4) ORDER BY created_at DESC, id DESC

-- name: executions_by_status_count
SELECT count(*) FROM task_executions WHERE status = $1

-- name: tasks_by_metadata_first
-- `$1` the JSON the metadata contains, `$2` the row count.
SELECT {{task}} FROM tasks WHERE metadata @> $1
ORDER BY priority DESC, created_at DESC, id DESC LIMIT $2

-- name: tasks_by_metadata_after
-- `$1` the JSON the metadata contains, `$2`–`$4` the cursor's priority,
-- created_at and id, `$5` the row count. Strictly after the cursor's row, so
-- rows inserted meanwhile neither repeat nor shift rows already seen.
SELECT {{task}} FROM tasks WHERE metadata @> $1 AND (priority, created_at, id) < ($2, $3, $4)
ORDER BY priority DESC, created_at DESC, id DESC LIMIT $5

-- The lists of the scoped repositories (V9) that the unscoped ones do not
-- have: each is filtered by the scope's user first (`$1`), then as its
-- unscoped twin.

-- name: tasks_by_user_status_first
-- `$1` the user, `$2` the status, `$3` the row count.
SELECT {{task}} FROM voidrunner_tasks_by_user_status_page($1, $2, NULL, NULL, NULL, $3) ORDER BY priority DESC, created_at DESC, id DESC

-- name: tasks_by_user_status_after
-- `$1` the user, `$2` the status, `$3`–`$5` the cursor's keys, `$6` the row
-- count.
SELECT {{task}} FROM voidrunner_tasks_by_user_status_page($1, $2, $3, $4, $5, $6) ORDER BY priority DESC, created_at DESC, id DESC

-- name: tasks_by_user_metadata_first
-- `$1` the user, `$2` the JSON the metadata contains, `$3` the row count.
-- The planner's plan, as for the unscoped search: the user's index or the
-- metadata's, whichever the statistics say reads less.
SELECT {{task}} FROM tasks WHERE user_id = $1 AND metadata @> $2
ORDER BY priority DESC, created_at DESC, id DESC LIMIT $3

-- name: tasks_by_user_metadata_after
-- `$1` the user, `$2` the JSON, `$3`–`$5` the cursor's keys, `$6` the row
-- count.
SELECT {{task}} FROM tasks
WHERE user_id = $1 AND metadata @> $2 AND (priority, created_at, id) < ($3, $4, $5)
ORDER BY priority DESC, created_at DESC, id DESC LIMIT $6

-- name: executions_by_user_first
-- `$1` the user, `$2` the row count.
SELECT {{execution}} FROM voidrunner_executions_by_user_page($1, NULL, NULL, $2) ORDER BY created_at DESC, id DESC

-- name: executions_by_user_after
-- `$1` the user, `$2`, `$3` the cursor's keys, `$4` the row count.
SELECT {{execution}} FROM voidrunner_executions_by_user_page($1, $2, $3, $4) ORDER BY created_at DESC, id DESC

-- name: executions_by_user_count
SELECT count(*) FROM task_executions WHERE user_id = $1

-- The sorted task lists (V11): one statement each for every order,
-- direction and filter, and for the first page and the pages after a
-- cursor, through voidrunner_tasks_sorted_page, which walks the order's
-- index. `$1` the order's field ('created_at', 'updated_at', 'priority',
-- 'name'), `$2` whether descending, `$3` the user and `$4` the status
-- filtered on (NULL: any), `$5`–`$8` the cursor's name, timestamp,
-- priority and id (NULL for a first page, and those its order does not
-- use), `$9` the row count. The function returns the rows in list order;
-- WITH ORDINALITY numbers them in that order, so the ORDER BY sorts
-- nothing whatever the order.

-- name: tasks_sorted
SELECT {{task}}
FROM voidrunner_tasks_sorted_page($1, $2, $3, $4, $5, $6, $7, $8, $9, false) WITH ORDINALITY AS p
ORDER BY p.ordinality

-- name: tasks_sorted_with_latest
-- Each task, then its latest execution's columns (all NULL when it has
-- none), then its execution count.
SELECT {{task}},
       latest_id AS id, latest_task_id AS task_id, latest_status AS status,
       latest_return_code AS return_code, latest_stdout AS stdout, latest_stderr AS stderr,
       latest_execution_time_ms AS execution_time_ms,
       latest_memory_usage_bytes AS memory_usage_bytes, latest_started_at AS started_at,
       latest_completed_at AS completed_at, latest_created_at AS created_at,
       latest_priority AS priority, latest_run_after AS run_after, latest_attempt AS attempt,
       latest_worker_id AS worker_id, latest_lease_expires_at AS lease_expires_at,
       latest_heartbeat_at AS heartbeat_at, latest_updated_at AS updated_at,
       execution_count
FROM voidrunner_tasks_sorted_page($1, $2, $3, $4, $5, $6, $7, $8, $9, true) WITH ORDINALITY AS p
ORDER BY p.ordinality

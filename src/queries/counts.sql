-- The counts that do not grow with the data (migration V12): the tasks'
-- counts by status, read from the counter rows the triggers on tasks keep
-- (at most 64 rows, by their key, in the V12 functions), and the planner's
-- estimates of the other tables' sizes.

-- name: tasks
-- Every task, by status.
SELECT pending, running, completed, failed, timeout, cancelled FROM voidrunner_task_counts_all()

-- name: tasks_by_user
-- `$1` the user: their tasks, by status.
SELECT pending, running, completed, failed, timeout, cancelled FROM voidrunner_task_counts_of($1)

-- name: recount_tasks
-- Counts the tasks again (`Database::recount_tasks`); returns how many.
SELECT voidrunner_recount_tasks()

-- name: users_estimate
-- The planner's estimate of the rows of users: the row density of its last
-- ANALYZE or VACUUM (pg_class) times the table's pages now, as the planner
-- scales it. A table without that density (never analyzed or vacuumed, or
-- only while empty) is counted exactly instead.
SELECT CASE WHEN c.relpages > 0 AND c.reltuples >= 0
            THEN round(c.reltuples / c.relpages
                       * (pg_relation_size(c.oid) / current_setting('block_size')::bigint))::bigint
            ELSE (SELECT count(*) FROM users) END
FROM pg_class c WHERE c.oid = 'users'::regclass

-- name: executions_estimate
-- As `users_estimate`, for task_executions; but for a caller row-level
-- security binds (V9: the application role), the exact count of the rows
-- it may see, as its other counts: the table's size is every tenant's.
SELECT CASE WHEN row_security_active('task_executions') THEN (SELECT count(*) FROM task_executions)
            WHEN c.relpages > 0 AND c.reltuples >= 0
            THEN round(c.reltuples / c.relpages
                       * (pg_relation_size(c.oid) / current_setting('block_size')::bigint))::bigint
            ELSE (SELECT count(*) FROM task_executions) END
FROM pg_class c WHERE c.oid = 'task_executions'::regclass

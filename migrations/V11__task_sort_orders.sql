-- voidrunner:no-transaction
-- squawk-disable-assume-in-transaction
-- voidrunner-db V11: task lists in four orders (created_at, updated_at,
-- priority, name), each ascending or descending with the id as the
-- tie-breaker, and each task with its latest execution and its execution
-- count: the indexes that back every order under every filter, and the one
-- page function that walks them.
--
-- Run outside any transaction, one statement at a time (see V9): the
-- indexes are built concurrently, so writes go on while they are built. A
-- run interrupted half-way is repeated from the top; every statement here is
-- safe to run again.

-- A concurrent build that failed leaves an INVALID index behind, which
-- CREATE INDEX ... IF NOT EXISTS would take for done: those (and only
-- those, so a rerun does not rebuild the valid ones) are dropped first. A
-- plain DROP INDEX: DROP INDEX CONCURRENTLY cannot run in a block, and an
-- invalid index is never used, so its lock is held only for the drop.
DO $$
DECLARE
    leftover regclass;
BEGIN
    FOR leftover IN
        SELECT i.indexrelid::regclass FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'tasks'::regclass AND NOT i.indisvalid AND c.relname IN (
        'tasks_created_at_id_idx',
        'tasks_user_id_created_at_id_idx',
        'tasks_status_created_at_id_idx',
        'tasks_user_id_status_created_at_id_idx',
        'tasks_updated_at_id_idx',
        'tasks_user_id_updated_at_id_idx',
        'tasks_status_updated_at_id_idx',
        'tasks_user_id_status_updated_at_id_idx',
        'tasks_name_id_idx',
        'tasks_user_id_name_id_idx',
        'tasks_status_name_id_idx',
        'tasks_user_id_status_name_id_idx')
    LOOP
        EXECUTE format('DROP INDEX %s', leftover);
    END LOOP;
END;
$$;

-- For each of created_at, updated_at and name: the unfiltered list, a
-- user's, a status's and a user's in one status (the scoped view), each
-- ending in the id. One btree serves both directions (a descending walk is
-- a backward scan). The priority order reuses V1's and V9's indexes on
-- (priority DESC, created_at DESC, id DESC), walked forward for descending
-- and backward for ascending. name is compared and ordered in its column's
-- collation, the index's: the page function names no other.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_created_at_id_idx
    ON tasks (created_at, id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_user_id_created_at_id_idx
    ON tasks (user_id, created_at, id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_status_created_at_id_idx
    ON tasks (status, created_at, id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_user_id_status_created_at_id_idx
    ON tasks (user_id, status, created_at, id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_updated_at_id_idx
    ON tasks (updated_at, id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_user_id_updated_at_id_idx
    ON tasks (user_id, updated_at, id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_status_updated_at_id_idx
    ON tasks (status, updated_at, id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_user_id_status_updated_at_id_idx
    ON tasks (user_id, status, updated_at, id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_name_id_idx
    ON tasks (name, id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_user_id_name_id_idx
    ON tasks (user_id, name, id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_status_name_id_idx
    ON tasks (status, name, id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_user_id_status_name_id_idx
    ON tasks (user_id, status, name, id);

-- One page of tasks in one order under one filter, each task with its
-- latest execution and execution count when `with_latest`: the rows after
-- the cursor's (when `after_id` is not NULL), `max_rows` of them, in the
-- order asked. `sort_field` is one of 'created_at', 'updated_at', 'name',
-- 'priority' (which is (priority, created_at, id), the order of V8's
-- lists); `descending` its direction. `filter_user_id` and `filter_status`
-- filter when not NULL. The cursor's keys: `after_name` (name),
-- `after_at` (created_at or updated_at; priority's created_at),
-- `after_priority` (priority), `after_id` (every order).
--
-- 4 orders x 2 directions x 4 filters x first or after would be 64 static
-- statements; instead the statement is built here from fixed fragments
-- chosen by CASE (nothing of the caller's is ever written into it: every
-- value is a parameter of EXECUTE ... USING). As V8's pages, a filter
-- compares its column with ANY (ARRAY[value]) and orders by that column
-- first, so the one index whose order is the page's is the only one that
-- gives it; with sequential scans, bitmap scans, sorts and hash and merge
-- joins off, the plan walks that index from the cursor whatever the
-- statistics say (EXECUTE plans each call with its values, so the filter
-- cannot be folded into a constant the planner drops from the order).
--
-- The latest execution is the task's newest by (created_at DESC, id DESC):
-- one probe of task_executions_task_id_created_at_id_idx per task, LIMIT 1,
-- written as V8's executions_by_task page so that it stays that probe under
-- stale statistics. The count is a range of that task's entries in an
-- index on task_id: linear in the task's own history (which `prune` keeps
-- short), never in anyone else's.
--
-- Not SECURITY DEFINER: it reads as its caller, so row-level security
-- (V9) binds the application role here as in any statement.
CREATE OR REPLACE FUNCTION voidrunner_tasks_sorted_page(
    sort_field text, descending boolean, filter_user_id uuid, filter_status text,
    after_name text, after_at timestamptz, after_priority integer, after_id uuid,
    max_rows bigint, with_latest boolean
)
RETURNS TABLE (
    id uuid, user_id uuid, name text, description text, script_content text,
    script_type text, status text, priority integer, timeout_seconds integer,
    metadata jsonb, created_at timestamptz, updated_at timestamptz,
    latest_id uuid, latest_task_id uuid, latest_status text,
    latest_return_code integer, latest_stdout text, latest_stderr text,
    latest_execution_time_ms integer, latest_memory_usage_bytes bigint,
    latest_started_at timestamptz, latest_completed_at timestamptz,
    latest_created_at timestamptz, latest_priority integer, latest_run_after
    timestamptz, latest_attempt integer, latest_worker_id text,
    latest_lease_expires_at timestamptz, latest_heartbeat_at timestamptz,
    latest_updated_at timestamptz,
    execution_count bigint
)
LANGUAGE plpgsql STABLE ROWS 20
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_incremental_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    -- The key's columns in the page's order, as compared with the cursor.
    keys text;
    -- The cursor's values for them: parameters of EXECUTE, never text.
    cursor_keys text;
    -- Whether the walk goes forward in the index: the new indexes are
    -- ascending, the priority ones descending.
    forward boolean;
    dir text := CASE WHEN descending THEN ' DESC' ELSE '' END;
    filter_dir text;
    filters text := '';
    filter_order text := '';
    -- ORDER BY of the filter's and the key's columns, `%1$s` the table's
    -- alias (the page's, then the outer query's).
    key_order text;
    page text;
BEGIN
    CASE sort_field
        WHEN 'created_at' THEN
            keys := 't.created_at, t.id'; cursor_keys := '$4, $6'; forward := NOT descending;
            key_order := '%1$s.created_at' || dir || ', %1$s.id' || dir;
        WHEN 'updated_at' THEN
            keys := 't.updated_at, t.id'; cursor_keys := '$4, $6'; forward := NOT descending;
            key_order := '%1$s.updated_at' || dir || ', %1$s.id' || dir;
        WHEN 'name' THEN
            keys := 't.name, t.id'; cursor_keys := '$3, $6'; forward := NOT descending;
            key_order := '%1$s.name' || dir || ', %1$s.id' || dir;
        WHEN 'priority' THEN
            keys := 't.priority, t.created_at, t.id'; cursor_keys := '$5, $4, $6'; forward := descending;
            key_order := '%1$s.priority' || dir || ', %1$s.created_at' || dir || ', %1$s.id' || dir;
        ELSE
            RAISE EXCEPTION 'voidrunner_tasks_sorted_page: no sort field %', quote_literal(sort_field)
                USING ERRCODE = 'invalid_parameter_value';
    END CASE;
    filter_dir := CASE WHEN forward THEN '' ELSE ' DESC' END;
    IF filter_user_id IS NOT NULL THEN
        filters := filters || ' AND t.user_id = ANY (ARRAY[$1])';
        filter_order := filter_order || '%1$s.user_id' || filter_dir || ', ';
    END IF;
    -- A second filter column is a range that holds one value, not ANY:
    -- an index scan returns rows in index order only with ANY on its first
    -- column (PostgreSQL before 17), so the planner would check the status
    -- of every row of the user's walk instead of seeking to it. Unlike an
    -- equality, the range keeps the column in the page's order, so only
    -- the (user_id, status, key) index gives that order.
    IF filter_status IS NOT NULL AND filter_user_id IS NOT NULL THEN
        filters := filters || ' AND t.status >= $2 AND t.status <= $2';
        filter_order := filter_order || '%1$s.status' || filter_dir || ', ';
    ELSIF filter_status IS NOT NULL THEN
        filters := filters || ' AND t.status = ANY (ARRAY[$2])';
        filter_order := filter_order || '%1$s.status' || filter_dir || ', ';
    END IF;
    IF after_id IS NOT NULL THEN
        filters := filters || ' AND (' || keys || ') '
            || CASE WHEN descending THEN '<' ELSE '>' END || ' (' || cursor_keys || ')';
    END IF;
    page := 'SELECT t.id, t.user_id, t.name, t.description::text,
                   t.script_content::text, t.script_type::text, t.status,
                   t.priority::integer, t.timeout_seconds::integer, t.metadata::jsonb,
                   t.created_at::timestamptz, t.updated_at::timestamptz
            FROM tasks t
            WHERE TRUE' || filters || '
            ORDER BY ' || format(filter_order || key_order, 't') || '
            LIMIT $7';
    IF with_latest THEN
        RETURN QUERY EXECUTE
            'SELECT p.id, p.user_id, p.name::text, p.description, p.script_content,
                    p.script_type, p.status::text, p.priority, p.timeout_seconds, p.metadata,
                    p.created_at, p.updated_at, l.*, c.n
             FROM (' || page || ') p
             LEFT JOIN LATERAL (
                 SELECT e.id, e.task_id, e.status::text, e.return_code::integer,
                   e.stdout::text, e.stderr::text,
                   e.execution_time_ms::integer,
                   e.memory_usage_bytes::bigint,
                   e.started_at::timestamptz,
                   e.completed_at::timestamptz,
                   e.created_at::timestamptz, e.priority::integer,
                   e.run_after::timestamptz, e.attempt::integer,
                   e.worker_id::text,
                   e.lease_expires_at::timestamptz,
                   e.heartbeat_at::timestamptz,
                   e.updated_at::timestamptz
                 FROM task_executions e
                 WHERE e.task_id = ANY (ARRAY[p.id])
                 ORDER BY e.task_id, e.created_at DESC, e.id DESC
                 LIMIT 1
             ) l ON TRUE
             CROSS JOIN LATERAL (
                 SELECT count(*) AS n FROM task_executions x WHERE x.task_id = p.id
             ) c
             ORDER BY ' || format(filter_order || key_order, 'p')
            USING filter_user_id, filter_status, after_name, after_at, after_priority,
                  after_id, max_rows;
    ELSE
        RETURN QUERY EXECUTE
            'SELECT p.id, p.user_id, p.name::text, p.description, p.script_content,
                    p.script_type, p.status::text, p.priority, p.timeout_seconds, p.metadata,
                    p.created_at, p.updated_at,
                    NULL::uuid, NULL::uuid, NULL::text, NULL::integer, NULL::text,
                   NULL::text, NULL::integer, NULL::bigint,
                   NULL::timestamptz, NULL::timestamptz,
                   NULL::timestamptz, NULL::integer,
                   NULL::timestamptz, NULL::integer, NULL::text,
                   NULL::timestamptz, NULL::timestamptz,
                   NULL::timestamptz, NULL::bigint
             FROM (' || page || ') p'
            USING filter_user_id, filter_status, after_name, after_at, after_priority,
                  after_id, max_rows;
    END IF;
END;
$$;

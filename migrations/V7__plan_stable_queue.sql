-- voidrunner-db V7: the queue and the list pages keep their plans whatever
-- the statistics say, and every execution costs the server less to write.
--
-- 1. Plans. A bulk enqueue into a table analyzed while it held few pending
--    rows makes the planner expect a handful of candidates, so it read every
--    pending row through a bitmap, sorted them all and kept ten. PostgreSQL
--    has no plan hints: the only way to take the bitmap-and-sort plans away
--    is the planner's enable_* settings, and a function's SET clause applies
--    them to the function's own queries alone. So each statement whose plan
--    must be an ordered walk of one index (the claim, the rescue, the prune
--    and the list pages) runs its scan in a function here: with sequential
--    scans, bitmap scans, sorts, hash and merge joins disabled, an index
--    scan in the index's order, joined by nested loops, is the only plan
--    left. Which index is still the planner's choice, so each query gives
--    it one that fits: a task is looked up by primary key alone, its status
--    checked outside the lookup, or the tasks' status index would be a
--    candidate too. plan_cache_mode = force_generic_plan keeps one cached
--    plan per session instead of planning every call. The functions find
--    the tables through the caller's search_path, as the crate's other
--    statements do. Each function declares a small ROWS: the
--    statements that take its rows join them to their tables by primary
--    key, and a small estimate keeps those joins index probes however many
--    rows a call takes. The statements around these functions live in
--    src/pg/ as before.
--
-- 2. updated_at. The crate's UPDATEs set updated_at themselves; the row
--    triggers now fire only for an UPDATE that did not set it to now()
--    (another application's), so every row still ends up with updated_at =
--    now() while the crate's writes skip a PL/pgSQL call per row.
--
-- 3. HOT. tasks keeps a tenth of each page free, so an update that changes
--    no indexed column (queueing a task that is already pending, renaming
--    it) can write the new row version on the same page without new index
--    entries.

-- The claim: up to max_rows pending executions whose run_after has come,
-- in claim order (priority DESC, run_after, id), whose task is pending,
-- each locked with its task, skipping rows another transaction holds, and
-- claimed for `claimer` with a lease of `lease_seconds`; its task moves to
-- running. Returns each claimed row and its task's script, type and
-- timeout.
--
-- The claim index holds (priority DESC, run_after, id) of pending rows.
-- Walked whole, it would also pass over every delayed row (run_after in
-- the future) of a higher priority before reaching the eligible rows of the
-- next, so the walk goes one priority at a time. A probe finds the first
-- pending row at or below the current priority that this query can see:
-- every entry before it is a row claimed, ended or deleted since the last
-- vacuum, so the range scan of that priority's eligible rows starts at the
-- probe's row instead of walking those entries again. For each candidate
-- the scan locks the task, if it is pending (a condition written IS NOT
-- DISTINCT FROM, which no index serves, so the tasks' status index is never
-- walked instead of the primary key), then the execution, both with SKIP
-- LOCKED: the crate's lock order, and never a wait. A task that is not
-- pending is neither locked nor its execution.
--
-- The updates are made here, not by the statement that calls the
-- function: the function's queries see rows committed after that
-- statement's snapshot was taken, which the statement could not update.
CREATE FUNCTION voidrunner_claim(claimer text, max_rows bigint, lease_seconds double precision)
RETURNS TABLE (
    id uuid, task_id uuid, status text, return_code integer, stdout text, stderr text,
    execution_time_ms integer, memory_usage_bytes bigint, started_at timestamptz,
    completed_at timestamptz, created_at timestamptz, priority integer,
    run_after timestamptz, attempt integer, worker_id text,
    lease_expires_at timestamptz, heartbeat_at timestamptz, updated_at timestamptz,
    script_content text, script_type text, timeout_seconds integer
)
LANGUAGE plpgsql VOLATILE ROWS 10
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    -- bigint: one below the lowest integer priority still fits.
    at_priority bigint := 2147483647;
    from_run_after timestamptz;
    from_id uuid;
    ids uuid[] := '{}';
    scripts text[] := '{}';
    kinds text[] := '{}';
    time_limits integer[] := '{}';
BEGIN
    WHILE cardinality(ids) < max_rows LOOP
        SELECT e.priority, e.run_after, e.id INTO at_priority, from_run_after, from_id
        FROM task_executions e
        WHERE e.status = 'pending' AND e.priority <= at_priority
        ORDER BY e.priority DESC, e.run_after, e.id
        LIMIT 1;
        EXIT WHEN NOT FOUND;
        SELECT ids || coalesce(array_agg(c.id), '{}'),
               scripts || coalesce(array_agg(c.script), '{}'),
               kinds || coalesce(array_agg(c.kind), '{}'),
               time_limits || coalesce(array_agg(c.time_limit), '{}')
        INTO ids, scripts, kinds, time_limits
        FROM (
            -- Cast to the declared types, so that a column's type changed
            -- by an operator (varchar to text, integer to bigint) does not
            -- stop the claim.
            SELECT e.id, t.script_content::text AS script, t.script_type::text AS kind,
                   t.timeout_seconds::integer AS time_limit
            FROM task_executions e
            CROSS JOIN LATERAL (
                SELECT t.script_content, t.script_type, t.timeout_seconds
                FROM tasks t
                WHERE t.id = e.task_id AND t.status IS NOT DISTINCT FROM 'pending'
                -- Keeps the subquery whole, so the lock stays in it.
                LIMIT 1
                FOR NO KEY UPDATE SKIP LOCKED
            ) t
            WHERE e.status = 'pending' AND e.priority = at_priority
              AND (e.run_after, e.id) >= (from_run_after, from_id)
              AND e.run_after <= now()
            ORDER BY e.run_after, e.id
            LIMIT max_rows - cardinality(ids)
            FOR NO KEY UPDATE OF e SKIP LOCKED
        ) c;
        at_priority := at_priority - 1;
    END LOOP;
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    -- The updates, and the triggers they fire (the event notification's
    -- query among them), plan with the session's settings: the walk is
    -- done, and the settings above would make those queries pay for the
    -- plans they take away (a sort the notification needs, priced as
    -- disabled, took half a second). The function's SET clauses still put
    -- the caller's values back when it returns.
    RESET enable_seqscan;
    RESET enable_bitmapscan;
    RESET enable_sort;
    RESET enable_hashjoin;
    RESET enable_mergejoin;
    RETURN QUERY
        WITH claimed AS (
            UPDATE task_executions e
            SET status = 'running', started_at = now(), completed_at = NULL,
                -- Saturates rather than overflows: one row written by another
                -- application at the top value must not stop every claim.
                attempt = CASE WHEN e.attempt < 2147483647 THEN e.attempt + 1 ELSE e.attempt END,
                worker_id = claimer, lease_expires_at = now() + make_interval(secs => lease_seconds),
                heartbeat_at = now(), updated_at = now()
            FROM unnest(ids, scripts, kinds, time_limits) AS c(id, script, kind, time_limit)
            WHERE e.id = c.id
            RETURNING e.id, e.task_id, e.status::text, e.return_code::integer,
                      e.stdout::text, e.stderr::text, e.execution_time_ms::integer,
                      e.memory_usage_bytes::bigint, e.started_at::timestamptz,
                      e.completed_at::timestamptz, e.created_at::timestamptz,
                      e.priority::integer, e.run_after::timestamptz, e.attempt::integer,
                      e.worker_id::text, e.lease_expires_at::timestamptz,
                      e.heartbeat_at::timestamptz, e.updated_at::timestamptz, c.script,
                      c.kind, c.time_limit
        ), started AS (
            -- Locked above and pending then, so by key alone.
            UPDATE tasks t SET status = 'running', updated_at = now()
            WHERE t.id IN (SELECT claimed.task_id FROM claimed)
        )
        SELECT claimed.id, claimed.task_id, claimed.status, claimed.return_code,
               claimed.stdout, claimed.stderr, claimed.execution_time_ms,
               claimed.memory_usage_bytes, claimed.started_at, claimed.completed_at,
               claimed.created_at, claimed.priority, claimed.run_after,
               claimed.attempt, claimed.worker_id, claimed.lease_expires_at,
               claimed.heartbeat_at, claimed.updated_at, claimed.script,
               claimed.kind, claimed.time_limit
        FROM claimed;
END;
$$;

-- The rescue's candidates: up to max_rows running executions whose lease
-- has expired, oldest expiry first, each locked with its task (task first),
-- skipping rows another transaction holds; with the task's status.
CREATE FUNCTION voidrunner_expired_leases(max_rows bigint)
RETURNS TABLE (execution_id uuid, task_id uuid, task_status text)
LANGUAGE plpgsql VOLATILE ROWS 10
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
        SELECT e.id, e.task_id, t.status::text
        FROM task_executions e
        CROSS JOIN LATERAL (
            SELECT t.status FROM tasks t WHERE t.id = e.task_id
            LIMIT 1
            FOR NO KEY UPDATE SKIP LOCKED
        ) t
        WHERE e.status = 'running' AND e.lease_expires_at < now()
        ORDER BY e.lease_expires_at
        LIMIT max_rows
        FOR NO KEY UPDATE OF e SKIP LOCKED;
END;
$$;

-- The prune's candidates: up to max_rows ended executions that ended
-- before `cutoff`, oldest first, locked, skipping rows another transaction
-- holds.
CREATE FUNCTION voidrunner_prunable(cutoff timestamptz, max_rows bigint)
RETURNS TABLE (execution_id uuid)
LANGUAGE plpgsql VOLATILE ROWS 10
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
        SELECT e.id
        FROM task_executions e
        WHERE e.status IN ('completed', 'failed', 'timeout', 'cancelled')
          AND e.completed_at < cutoff
        ORDER BY e.completed_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED;
END;
$$;

-- The list pages: one function per list, each the page's rows in list
-- order (newest first; tasks by priority first), after the cursor's row
-- when after_id is not NULL. Each walks the list's index from the cursor
-- (or the start) for as many rows as the page takes, whatever the
-- statistics say. search_by_metadata is not here: which plan serves it
-- depends on how many tasks the filter matches, which only statistics
-- can tell.
--
-- A filtered list compares its column with ANY (ARRAY[value]) and orders
-- by that column first. With a plain equality the planner drops the column
-- from the order as a constant, and then the unfiltered list's index gives
-- the order too, walked with the filter on every row: every other user's
-- tasks read, say, whenever the statistics make the filter look
-- unselective (taken when there was one user). Ordered by the column
-- first, the page has one index that gives its order: its own.
--
-- Each returns the columns the crate reads, each cast to the type it is
-- declared with here: a column another application adds changes nothing,
-- and neither does a type an operator changes to one that casts (varchar
-- to text, integer to bigint). A function returning its table's row type
-- instead would change its result type with the table, and PostgreSQL
-- does not invalidate a prepared statement that calls such a function:
-- every call of a connection's cached statement would then fail.
CREATE FUNCTION voidrunner_users_page(after_created_at timestamptz, after_id uuid, max_rows bigint)
RETURNS TABLE (
    id uuid, email text, password_hash text, created_at timestamptz,
    updated_at timestamptz
)
LANGUAGE plpgsql STABLE ROWS 20
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT u.id, u.email::text, u.password_hash::text, u.created_at::timestamptz,
                   u.updated_at::timestamptz
            FROM users u
            ORDER BY u.created_at DESC, u.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT u.id, u.email::text, u.password_hash::text, u.created_at::timestamptz,
                   u.updated_at::timestamptz
            FROM users u
            WHERE (u.created_at, u.id) < (after_created_at, after_id)
            ORDER BY u.created_at DESC, u.id DESC
            LIMIT max_rows;
    END IF;
END;
$$;

CREATE FUNCTION voidrunner_tasks_page(
    after_priority integer, after_created_at timestamptz, after_id uuid,
    max_rows bigint
)
RETURNS TABLE (
    id uuid, user_id uuid, name text, description text, script_content text,
    script_type text, status text, priority integer, timeout_seconds integer,
    metadata jsonb, created_at timestamptz, updated_at timestamptz
)
LANGUAGE plpgsql STABLE ROWS 20
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT t.id, t.user_id, t.name::text, t.description::text,
                   t.script_content::text, t.script_type::text, t.status::text,
                   t.priority::integer, t.timeout_seconds::integer, t.metadata::jsonb,
                   t.created_at::timestamptz, t.updated_at::timestamptz
            FROM tasks t
            ORDER BY t.priority DESC, t.created_at DESC, t.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT t.id, t.user_id, t.name::text, t.description::text,
                   t.script_content::text, t.script_type::text, t.status::text,
                   t.priority::integer, t.timeout_seconds::integer, t.metadata::jsonb,
                   t.created_at::timestamptz, t.updated_at::timestamptz
            FROM tasks t
            WHERE (t.priority, t.created_at, t.id) < (after_priority, after_created_at, after_id)
            ORDER BY t.priority DESC, t.created_at DESC, t.id DESC
            LIMIT max_rows;
    END IF;
END;
$$;

CREATE FUNCTION voidrunner_tasks_by_user_page(
    filter_user_id uuid, after_priority integer, after_created_at timestamptz,
    after_id uuid, max_rows bigint
)
RETURNS TABLE (
    id uuid, user_id uuid, name text, description text, script_content text,
    script_type text, status text, priority integer, timeout_seconds integer,
    metadata jsonb, created_at timestamptz, updated_at timestamptz
)
LANGUAGE plpgsql STABLE ROWS 20
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT t.id, t.user_id, t.name::text, t.description::text,
                   t.script_content::text, t.script_type::text, t.status::text,
                   t.priority::integer, t.timeout_seconds::integer, t.metadata::jsonb,
                   t.created_at::timestamptz, t.updated_at::timestamptz
            FROM tasks t
            WHERE t.user_id = ANY (ARRAY[filter_user_id])
            ORDER BY t.user_id, t.priority DESC, t.created_at DESC, t.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT t.id, t.user_id, t.name::text, t.description::text,
                   t.script_content::text, t.script_type::text, t.status::text,
                   t.priority::integer, t.timeout_seconds::integer, t.metadata::jsonb,
                   t.created_at::timestamptz, t.updated_at::timestamptz
            FROM tasks t
            WHERE t.user_id = ANY (ARRAY[filter_user_id])
              AND (t.priority, t.created_at, t.id) < (after_priority, after_created_at, after_id)
            ORDER BY t.user_id, t.priority DESC, t.created_at DESC, t.id DESC
            LIMIT max_rows;
    END IF;
END;
$$;

CREATE FUNCTION voidrunner_tasks_by_status_page(
    filter_status text, after_priority integer, after_created_at timestamptz,
    after_id uuid, max_rows bigint
)
RETURNS TABLE (
    id uuid, user_id uuid, name text, description text, script_content text,
    script_type text, status text, priority integer, timeout_seconds integer,
    metadata jsonb, created_at timestamptz, updated_at timestamptz
)
LANGUAGE plpgsql STABLE ROWS 20
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT t.id, t.user_id, t.name::text, t.description::text,
                   t.script_content::text, t.script_type::text, t.status::text,
                   t.priority::integer, t.timeout_seconds::integer, t.metadata::jsonb,
                   t.created_at::timestamptz, t.updated_at::timestamptz
            FROM tasks t
            WHERE t.status = ANY (ARRAY[filter_status])
            ORDER BY t.status, t.priority DESC, t.created_at DESC, t.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT t.id, t.user_id, t.name::text, t.description::text,
                   t.script_content::text, t.script_type::text, t.status::text,
                   t.priority::integer, t.timeout_seconds::integer, t.metadata::jsonb,
                   t.created_at::timestamptz, t.updated_at::timestamptz
            FROM tasks t
            WHERE t.status = ANY (ARRAY[filter_status])
              AND (t.priority, t.created_at, t.id) < (after_priority, after_created_at, after_id)
            ORDER BY t.status, t.priority DESC, t.created_at DESC, t.id DESC
            LIMIT max_rows;
    END IF;
END;
$$;

CREATE FUNCTION voidrunner_executions_page(after_created_at timestamptz, after_id uuid, max_rows bigint)
RETURNS TABLE (
    id uuid, task_id uuid, status text, return_code integer, stdout text, stderr text,
    execution_time_ms integer, memory_usage_bytes bigint, started_at timestamptz,
    completed_at timestamptz, created_at timestamptz, priority integer,
    run_after timestamptz, attempt integer, worker_id text,
    lease_expires_at timestamptz, heartbeat_at timestamptz, updated_at timestamptz
)
LANGUAGE plpgsql STABLE ROWS 20
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT e.id, e.task_id, e.status::text, e.return_code::integer, e.stdout::text,
                   e.stderr::text, e.execution_time_ms::integer,
                   e.memory_usage_bytes::bigint, e.started_at::timestamptz,
                   e.completed_at::timestamptz, e.created_at::timestamptz,
                   e.priority::integer, e.run_after::timestamptz, e.attempt::integer,
                   e.worker_id::text, e.lease_expires_at::timestamptz,
                   e.heartbeat_at::timestamptz, e.updated_at::timestamptz
            FROM task_executions e
            ORDER BY e.created_at DESC, e.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT e.id, e.task_id, e.status::text, e.return_code::integer, e.stdout::text,
                   e.stderr::text, e.execution_time_ms::integer,
                   e.memory_usage_bytes::bigint, e.started_at::timestamptz,
                   e.completed_at::timestamptz, e.created_at::timestamptz,
                   e.priority::integer, e.run_after::timestamptz, e.attempt::integer,
                   e.worker_id::text, e.lease_expires_at::timestamptz,
                   e.heartbeat_at::timestamptz, e.updated_at::timestamptz
            FROM task_executions e
            WHERE (e.created_at, e.id) < (after_created_at, after_id)
            ORDER BY e.created_at DESC, e.id DESC
            LIMIT max_rows;
    END IF;
END;
$$;

CREATE FUNCTION voidrunner_executions_by_task_page(
    filter_task_id uuid, after_created_at timestamptz, after_id uuid, max_rows bigint
)
RETURNS TABLE (
    id uuid, task_id uuid, status text, return_code integer, stdout text, stderr text,
    execution_time_ms integer, memory_usage_bytes bigint, started_at timestamptz,
    completed_at timestamptz, created_at timestamptz, priority integer,
    run_after timestamptz, attempt integer, worker_id text,
    lease_expires_at timestamptz, heartbeat_at timestamptz, updated_at timestamptz
)
LANGUAGE plpgsql STABLE ROWS 20
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT e.id, e.task_id, e.status::text, e.return_code::integer, e.stdout::text,
                   e.stderr::text, e.execution_time_ms::integer,
                   e.memory_usage_bytes::bigint, e.started_at::timestamptz,
                   e.completed_at::timestamptz, e.created_at::timestamptz,
                   e.priority::integer, e.run_after::timestamptz, e.attempt::integer,
                   e.worker_id::text, e.lease_expires_at::timestamptz,
                   e.heartbeat_at::timestamptz, e.updated_at::timestamptz
            FROM task_executions e
            WHERE e.task_id = ANY (ARRAY[filter_task_id])
            ORDER BY e.task_id, e.created_at DESC, e.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT e.id, e.task_id, e.status::text, e.return_code::integer, e.stdout::text,
                   e.stderr::text, e.execution_time_ms::integer,
                   e.memory_usage_bytes::bigint, e.started_at::timestamptz,
                   e.completed_at::timestamptz, e.created_at::timestamptz,
                   e.priority::integer, e.run_after::timestamptz, e.attempt::integer,
                   e.worker_id::text, e.lease_expires_at::timestamptz,
                   e.heartbeat_at::timestamptz, e.updated_at::timestamptz
            FROM task_executions e
            WHERE e.task_id = ANY (ARRAY[filter_task_id])
              AND (e.created_at, e.id) < (after_created_at, after_id)
            ORDER BY e.task_id, e.created_at DESC, e.id DESC
            LIMIT max_rows;
    END IF;
END;
$$;

CREATE FUNCTION voidrunner_executions_by_status_page(
    filter_status text, after_created_at timestamptz, after_id uuid, max_rows bigint
)
RETURNS TABLE (
    id uuid, task_id uuid, status text, return_code integer, stdout text, stderr text,
    execution_time_ms integer, memory_usage_bytes bigint, started_at timestamptz,
    completed_at timestamptz, created_at timestamptz, priority integer,
    run_after timestamptz, attempt integer, worker_id text,
    lease_expires_at timestamptz, heartbeat_at timestamptz, updated_at timestamptz
)
LANGUAGE plpgsql STABLE ROWS 20
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT e.id, e.task_id, e.status::text, e.return_code::integer, e.stdout::text,
                   e.stderr::text, e.execution_time_ms::integer,
                   e.memory_usage_bytes::bigint, e.started_at::timestamptz,
                   e.completed_at::timestamptz, e.created_at::timestamptz,
                   e.priority::integer, e.run_after::timestamptz, e.attempt::integer,
                   e.worker_id::text, e.lease_expires_at::timestamptz,
                   e.heartbeat_at::timestamptz, e.updated_at::timestamptz
            FROM task_executions e
            WHERE e.status = ANY (ARRAY[filter_status])
            ORDER BY e.status, e.created_at DESC, e.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT e.id, e.task_id, e.status::text, e.return_code::integer, e.stdout::text,
                   e.stderr::text, e.execution_time_ms::integer,
                   e.memory_usage_bytes::bigint, e.started_at::timestamptz,
                   e.completed_at::timestamptz, e.created_at::timestamptz,
                   e.priority::integer, e.run_after::timestamptz, e.attempt::integer,
                   e.worker_id::text, e.lease_expires_at::timestamptz,
                   e.heartbeat_at::timestamptz, e.updated_at::timestamptz
            FROM task_executions e
            WHERE e.status = ANY (ARRAY[filter_status])
              AND (e.created_at, e.id) < (after_created_at, after_id)
            ORDER BY e.status, e.created_at DESC, e.id DESC
            LIMIT max_rows;
    END IF;
END;
$$;

-- updated_at, set by the crate's statements; the trigger keeps it right for
-- everyone else's.
DROP TRIGGER users_set_updated_at ON users;
CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW WHEN (NEW.updated_at IS DISTINCT FROM now())
    EXECUTE FUNCTION voidrunner_set_updated_at();
DROP TRIGGER tasks_set_updated_at ON tasks;
CREATE TRIGGER tasks_set_updated_at BEFORE UPDATE ON tasks
    FOR EACH ROW WHEN (NEW.updated_at IS DISTINCT FROM now())
    EXECUTE FUNCTION voidrunner_set_updated_at();
DROP TRIGGER task_executions_set_updated_at ON task_executions;
CREATE TRIGGER task_executions_set_updated_at BEFORE UPDATE ON task_executions
    FOR EACH ROW WHEN (NEW.updated_at IS DISTINCT FROM now())
    EXECUTE FUNCTION voidrunner_set_updated_at();

-- Takes effect on pages written from now on; no rewrite of the table.
ALTER TABLE tasks SET (fillfactor = 90);

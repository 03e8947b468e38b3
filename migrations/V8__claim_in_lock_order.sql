-- voidrunner-db V8: the claim locks each task before its execution and
-- makes its updates itself; the list pages return declared types; the V7
-- functions follow the caller's search_path.
--
-- 1. The claim. V7's voidrunner_claim_next locked each execution before its
--    task, the reverse of every other statement of the crate (task, then
--    execution), so a claim could deadlock with a cancel or an edit of the
--    same task; and the statement that called it could not update rows
--    committed after its own snapshot, so a claim racing an enqueue could
--    come back empty although the function had locked rows. V8 adds
--    voidrunner_claim, which locks in the crate's order and claims the
--    rows it locked. voidrunner_claim_next stays, unused by this release,
--    for instances of the previous one while they are upgraded one at a
--    time; a later migration drops it.
--
-- 2. The list pages returned their table's row type (SETOF users, ...). A
--    column type an operator changes (varchar to text) changes such a
--    function's result type, and PostgreSQL does not invalidate a prepared
--    statement that calls it: every call of a connection's cached
--    statement then failed (42804). They now return declared types, each
--    column cast. A function's result type cannot be replaced in place, so
--    each is dropped and created again, in this migration's transaction.
--
-- 3. search_path. V7's functions carried the search_path the schema was
--    migrated with; a schema renamed by an operator left them pointing at
--    the old name. They now find the tables through the caller's
--    search_path, as every statement of the crate does.

ALTER FUNCTION voidrunner_expired_leases(bigint) RESET search_path;
ALTER FUNCTION voidrunner_prunable(timestamptz, bigint) RESET search_path;

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
    -- The crate checks these before it calls; another caller gets the same
    -- refusal instead of a claim no worker can complete (no claimer) or
    -- one whose lease has already run out.
    IF claimer IS NULL OR btrim(claimer) = '' THEN
        RAISE EXCEPTION 'voidrunner_claim: claimer must be a non-blank worker id'
            USING ERRCODE = '22023';
    END IF;
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'voidrunner_claim: max_rows must be at least 1, not %', max_rows
            USING ERRCODE = '22023';
    END IF;
    IF lease_seconds IS NULL OR NOT (lease_seconds > 0 AND lease_seconds < 'Infinity') THEN
        RAISE EXCEPTION 'voidrunner_claim: lease_seconds must be positive and finite, not %',
            lease_seconds USING ERRCODE = '22023';
    END IF;
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

-- Each page function is created again below, in this transaction, under
-- the same name and arguments: no client sees it missing. V7's is renamed
-- first, so that the grants on it carry over to the new one (below) before
-- it is dropped.
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_users_page(timestamptz, uuid, bigint) RENAME TO voidrunner_users_page_v7;
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_tasks_page(integer, timestamptz, uuid, bigint) RENAME TO voidrunner_tasks_page_v7;
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_tasks_by_user_page(uuid, integer, timestamptz, uuid, bigint) RENAME TO voidrunner_tasks_by_user_page_v7;
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_tasks_by_status_page(text, integer, timestamptz, uuid, bigint) RENAME TO voidrunner_tasks_by_status_page_v7;
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_executions_page(timestamptz, uuid, bigint) RENAME TO voidrunner_executions_page_v7;
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_executions_by_task_page(uuid, timestamptz, uuid, bigint) RENAME TO voidrunner_executions_by_task_page_v7;
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_executions_by_status_page(text, timestamptz, uuid, bigint) RENAME TO voidrunner_executions_by_status_page_v7;

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

-- The grants on V7's functions carry over to their successors: a
-- deployment that revoked EXECUTE from PUBLIC and granted it to its roles
-- keeps exactly that (a new function would get the default privileges
-- instead: PUBLIC, or nobody under ALTER DEFAULT PRIVILEGES). A DO block,
-- so no helper object is left behind and no TEMP privilege is needed.
DO $$
DECLARE
    pair record;
    a record;
BEGIN
    FOR pair IN
        SELECT src::regprocedure AS src, dst::regprocedure AS dst FROM (VALUES
            ('voidrunner_users_page_v7(timestamptz, uuid, bigint)', 'voidrunner_users_page(timestamptz, uuid, bigint)'),
            ('voidrunner_tasks_page_v7(integer, timestamptz, uuid, bigint)', 'voidrunner_tasks_page(integer, timestamptz, uuid, bigint)'),
            ('voidrunner_tasks_by_user_page_v7(uuid, integer, timestamptz, uuid, bigint)', 'voidrunner_tasks_by_user_page(uuid, integer, timestamptz, uuid, bigint)'),
            ('voidrunner_tasks_by_status_page_v7(text, integer, timestamptz, uuid, bigint)', 'voidrunner_tasks_by_status_page(text, integer, timestamptz, uuid, bigint)'),
            ('voidrunner_executions_page_v7(timestamptz, uuid, bigint)', 'voidrunner_executions_page(timestamptz, uuid, bigint)'),
            ('voidrunner_executions_by_task_page_v7(uuid, timestamptz, uuid, bigint)', 'voidrunner_executions_by_task_page(uuid, timestamptz, uuid, bigint)'),
            ('voidrunner_executions_by_status_page_v7(text, timestamptz, uuid, bigint)', 'voidrunner_executions_by_status_page(text, timestamptz, uuid, bigint)'),
            ('voidrunner_claim_next(bigint)', 'voidrunner_claim(text, bigint, double precision)')
        ) AS v(src, dst)
    LOOP
        FOR a IN
            SELECT x.grantee FROM pg_proc p,
                aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x
            WHERE p.oid = pair.dst AND x.grantee <> p.proowner
        LOOP
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM %s', pair.dst,
                CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END);
        END LOOP;
        FOR a IN
            SELECT x.grantee, x.is_grantable FROM pg_proc p,
                aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x
            WHERE p.oid = pair.src AND x.privilege_type = 'EXECUTE' AND x.grantee <> p.proowner
        LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s%s', pair.dst,
                CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
    END LOOP;
END;
$$;

-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_users_page_v7(timestamptz, uuid, bigint);
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_tasks_page_v7(integer, timestamptz, uuid, bigint);
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_tasks_by_user_page_v7(uuid, integer, timestamptz, uuid, bigint);
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_tasks_by_status_page_v7(text, integer, timestamptz, uuid, bigint);
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_executions_page_v7(timestamptz, uuid, bigint);
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_executions_by_task_page_v7(uuid, timestamptz, uuid, bigint);
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_executions_by_status_page_v7(text, timestamptz, uuid, bigint);

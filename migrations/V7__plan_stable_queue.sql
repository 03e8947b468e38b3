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
--    plan per session instead of planning every call; search_path is the
--    one the schema was migrated with, so a caller's search_path cannot
--    redirect the tables. Each function declares a small ROWS: the
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

-- The claim's candidates: up to max_rows pending executions whose run_after
-- has come, in claim order (priority DESC, run_after, id), each locked with
-- its task, skipping rows another transaction holds, and only executions
-- whose task is pending.
--
-- The claim index holds (priority DESC, run_after, id) of pending rows.
-- Walked whole, it would also pass over every delayed row (run_after in
-- the future) of a higher priority before reaching the eligible rows of the
-- next, so the walk goes one priority at a time. A probe finds the first
-- pending row at or below the current priority that this statement can
-- see: every entry before it is a row claimed, ended or deleted since the
-- last vacuum, so the range scan of that priority's eligible rows starts
-- at the probe's row instead of walking those entries again. The scan
-- locks each execution, then its task, both with SKIP LOCKED (never
-- waiting, so the order cannot deadlock, and an execution another claim
-- holds is passed over without reading its task), until the batch is full.
-- An execution locked whose task is held by someone else or is not pending
-- stays locked, unclaimed, until the claim commits.
CREATE FUNCTION voidrunner_claim_next(max_rows bigint)
RETURNS TABLE (execution_id uuid, script_content text, script_type text, timeout_seconds integer)
LANGUAGE plpgsql VOLATILE ROWS 10
SET search_path FROM CURRENT
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    -- bigint: one below the lowest integer priority still fits.
    at_priority bigint := 2147483647;
    from_run_after timestamptz;
    from_id uuid;
    wanted bigint := max_rows;
    taken bigint;
BEGIN
    WHILE wanted > 0 LOOP
        SELECT e.priority, e.run_after, e.id INTO at_priority, from_run_after, from_id
        FROM task_executions e
        WHERE e.status = 'pending' AND e.priority <= at_priority
        ORDER BY e.priority DESC, e.run_after, e.id
        LIMIT 1;
        EXIT WHEN NOT FOUND;
        RETURN QUERY
            -- Cast to the declared types, so that a column's type changed
            -- by an operator (varchar to text, integer to bigint) does not
            -- stop the claim.
            SELECT e.id, t.script_content::text, t.script_type::text, t.timeout_seconds::integer
            FROM (
                SELECT e.id, e.task_id, e.run_after
                FROM task_executions e
                WHERE e.status = 'pending' AND e.priority = at_priority
                  AND (e.run_after, e.id) >= (from_run_after, from_id)
                  AND e.run_after <= now()
                ORDER BY e.run_after, e.id
                FOR NO KEY UPDATE SKIP LOCKED
            ) e
            CROSS JOIN LATERAL (
                -- By primary key alone, status checked outside: a
                -- condition on status here would let the planner walk the
                -- tasks' status index instead, all pending tasks per
                -- candidate, when statistics say few are pending. LIMIT
                -- keeps that condition from being pushed back in.
                SELECT t.status, t.script_content, t.script_type, t.timeout_seconds
                FROM tasks t
                WHERE t.id = e.task_id
                LIMIT 1
                FOR NO KEY UPDATE SKIP LOCKED
            ) t
            -- No ORDER BY here: the rows come in the walk's order (the
            -- nested loop keeps its outer side's), and one here would not
            -- be known to be met already, so it would sort, after locking
            -- every row of the priority.
            WHERE t.status = 'pending'
            LIMIT wanted;
        GET DIAGNOSTICS taken = ROW_COUNT;
        wanted := wanted - taken;
        at_priority := at_priority - 1;
    END LOOP;
END;
$$;

-- The rescue's candidates: up to max_rows running executions whose lease
-- has expired, oldest expiry first, each locked with its task (task first),
-- skipping rows another transaction holds; with the task's status.
CREATE FUNCTION voidrunner_expired_leases(max_rows bigint)
RETURNS TABLE (execution_id uuid, task_id uuid, task_status text)
LANGUAGE plpgsql VOLATILE ROWS 10
SET search_path FROM CURRENT
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
SET search_path FROM CURRENT
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
-- Each returns its table's own row type, so the columns an operator or
-- another application adds, or a type they change (varchar to text, say),
-- change nothing here; the statements that call these functions name the
-- columns they read.
CREATE FUNCTION voidrunner_users_page(after_created_at timestamptz, after_id uuid, max_rows bigint)
RETURNS SETOF users
LANGUAGE plpgsql STABLE ROWS 20
SET search_path FROM CURRENT
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT u.*
            FROM users u
            ORDER BY u.created_at DESC, u.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT u.*
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
RETURNS SETOF tasks
LANGUAGE plpgsql STABLE ROWS 20
SET search_path FROM CURRENT
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT t.*
            FROM tasks t
            ORDER BY t.priority DESC, t.created_at DESC, t.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT t.*
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
RETURNS SETOF tasks
LANGUAGE plpgsql STABLE ROWS 20
SET search_path FROM CURRENT
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT t.*
            FROM tasks t
            WHERE t.user_id = ANY (ARRAY[filter_user_id])
            ORDER BY t.user_id, t.priority DESC, t.created_at DESC, t.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT t.*
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
RETURNS SETOF tasks
LANGUAGE plpgsql STABLE ROWS 20
SET search_path FROM CURRENT
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT t.*
            FROM tasks t
            WHERE t.status = ANY (ARRAY[filter_status])
            ORDER BY t.status, t.priority DESC, t.created_at DESC, t.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT t.*
            FROM tasks t
            WHERE t.status = ANY (ARRAY[filter_status])
              AND (t.priority, t.created_at, t.id) < (after_priority, after_created_at, after_id)
            ORDER BY t.status, t.priority DESC, t.created_at DESC, t.id DESC
            LIMIT max_rows;
    END IF;
END;
$$;

CREATE FUNCTION voidrunner_executions_page(after_created_at timestamptz, after_id uuid, max_rows bigint)
RETURNS SETOF task_executions
LANGUAGE plpgsql STABLE ROWS 20
SET search_path FROM CURRENT
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT e.*
            FROM task_executions e
            ORDER BY e.created_at DESC, e.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT e.*
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
RETURNS SETOF task_executions
LANGUAGE plpgsql STABLE ROWS 20
SET search_path FROM CURRENT
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT e.*
            FROM task_executions e
            WHERE e.task_id = ANY (ARRAY[filter_task_id])
            ORDER BY e.task_id, e.created_at DESC, e.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT e.*
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
RETURNS SETOF task_executions
LANGUAGE plpgsql STABLE ROWS 20
SET search_path FROM CURRENT
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF after_id IS NULL THEN
        RETURN QUERY
            SELECT e.*
            FROM task_executions e
            WHERE e.status = ANY (ARRAY[filter_status])
            ORDER BY e.status, e.created_at DESC, e.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT e.*
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

-- Reverts V8__claim_in_lock_order.sql: no voidrunner_claim, the list
-- pages of V7 (their table's row type) with the grants the pages had, and
-- the V7 functions' search_path that of the session running this script,
-- as V7 set it.
DROP FUNCTION voidrunner_claim(text, bigint, double precision);

-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_users_page(timestamptz, uuid, bigint) RENAME TO voidrunner_users_page_v8;
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_tasks_page(integer, timestamptz, uuid, bigint) RENAME TO voidrunner_tasks_page_v8;
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_tasks_by_user_page(uuid, integer, timestamptz, uuid, bigint) RENAME TO voidrunner_tasks_by_user_page_v8;
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_tasks_by_status_page(text, integer, timestamptz, uuid, bigint) RENAME TO voidrunner_tasks_by_status_page_v8;
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_executions_page(timestamptz, uuid, bigint) RENAME TO voidrunner_executions_page_v8;
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_executions_by_task_page(uuid, timestamptz, uuid, bigint) RENAME TO voidrunner_executions_by_task_page_v8;
-- squawk-ignore renaming-object
ALTER FUNCTION voidrunner_executions_by_status_page(text, timestamptz, uuid, bigint) RENAME TO voidrunner_executions_by_status_page_v8;

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

DO $$
DECLARE
    pair record;
    a record;
BEGIN
    FOR pair IN
        SELECT src::regprocedure AS src, dst::regprocedure AS dst FROM (VALUES
            ('voidrunner_users_page_v8(timestamptz, uuid, bigint)', 'voidrunner_users_page(timestamptz, uuid, bigint)'),
            ('voidrunner_tasks_page_v8(integer, timestamptz, uuid, bigint)', 'voidrunner_tasks_page(integer, timestamptz, uuid, bigint)'),
            ('voidrunner_tasks_by_user_page_v8(uuid, integer, timestamptz, uuid, bigint)', 'voidrunner_tasks_by_user_page(uuid, integer, timestamptz, uuid, bigint)'),
            ('voidrunner_tasks_by_status_page_v8(text, integer, timestamptz, uuid, bigint)', 'voidrunner_tasks_by_status_page(text, integer, timestamptz, uuid, bigint)'),
            ('voidrunner_executions_page_v8(timestamptz, uuid, bigint)', 'voidrunner_executions_page(timestamptz, uuid, bigint)'),
            ('voidrunner_executions_by_task_page_v8(uuid, timestamptz, uuid, bigint)', 'voidrunner_executions_by_task_page(uuid, timestamptz, uuid, bigint)'),
            ('voidrunner_executions_by_status_page_v8(text, timestamptz, uuid, bigint)', 'voidrunner_executions_by_status_page(text, timestamptz, uuid, bigint)')
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

DROP FUNCTION voidrunner_users_page_v8(timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_tasks_page_v8(integer, timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_tasks_by_user_page_v8(uuid, integer, timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_tasks_by_status_page_v8(text, integer, timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_executions_page_v8(timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_executions_by_task_page_v8(uuid, timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_executions_by_status_page_v8(text, timestamptz, uuid, bigint);

ALTER FUNCTION voidrunner_expired_leases(bigint) SET search_path FROM CURRENT;
ALTER FUNCTION voidrunner_prunable(timestamptz, bigint) SET search_path FROM CURRENT;

-- voidrunner-db V12: task counts that do not grow with the data. Counter
-- rows, kept by statement-level triggers on tasks in the same transaction
-- as the change, answer the counts (all tasks, one user's, one status's)
-- by summing at most 64 rows, however many tasks there are.
--
-- Layout. `task_counts` holds one row per slot (0..63), and
-- `task_counts_by_user` one row per (user, slot) the user's tasks were
-- ever changed in; each row holds a count per status. A count is the sum
-- of its rows; a row alone means nothing (a task created in slot 3 and
-- deleted in slot 5 leaves +1 in one and -1 in the other).
--
-- Slots, so that writers never wait for each other on a counter. Each
-- counted statement takes the first global slot row it can lock without
-- waiting (FOR UPDATE SKIP LOCKED), starting from its backend's own slot
-- (pg_backend_pid() % 64, so a pool's sessions start apart), and keeps it
-- to the end of its transaction; then it changes its users' rows of that
-- slot only, in user_id order. A user's row of slot s is only ever written
-- by the transaction that holds the global row s, so counting never waits
-- on a user's row, and it waits on a global row only when all 64 are held
-- at once (then on its own slot's, in the same order: global, then users).
-- So one user's concurrent writes are not serialised, and counting adds no
-- lock wait, hence no deadlock, to transactions of many statements. Reads
-- lock nothing.
--
-- Exactness. A trigger sees every row its statement inserted, deleted or
-- updated (transition tables), the cascades of deleted users included, and
-- writes in the statement's transaction: a crash or a rollback undoes both.
-- Only writes with the triggers off escape them (session_replication_role
-- = replica, ALTER TABLE ... DISABLE TRIGGER, a data-only restore with
-- --disable-triggers); `voidrunner_recount_tasks()` (the crate's
-- `Database::recount_tasks`) counts the table again after those.
--
-- Locks of this migration. One transaction: writes to tasks wait from the
-- LOCK below to the commit, which comes right after one count of the table
-- grouped by user (the backfill, into slot 0); reads go on. Writes to users
-- wait as long (its delete trigger is created in the same transaction).

-- Neither table has a foreign key: a user's deletion cascades to its tasks,
-- whose trigger then decrements the counts, and a key to users would
-- refuse that. Deleted users' rows go with users_task_counts_gone instead.
-- Half-empty pages, so that the two rows each task write updates stay on
-- their page (HOT: no index entry per change). The slot is a smallint on
-- purpose: it is 0..63 by construction (voidrunner_count_slot), and it is
-- in both keys.
CREATE TABLE task_counts (
    -- squawk-ignore prefer-bigint-over-smallint
    slot      smallint PRIMARY KEY,
    pending   bigint NOT NULL DEFAULT 0,
    running   bigint NOT NULL DEFAULT 0,
    completed bigint NOT NULL DEFAULT 0,
    failed    bigint NOT NULL DEFAULT 0,
    timeout   bigint NOT NULL DEFAULT 0,
    cancelled bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 50);

CREATE TABLE task_counts_by_user (
    user_id   uuid NOT NULL,
    -- squawk-ignore prefer-bigint-over-smallint
    slot      smallint NOT NULL,
    pending   bigint NOT NULL DEFAULT 0,
    running   bigint NOT NULL DEFAULT 0,
    completed bigint NOT NULL DEFAULT 0,
    failed    bigint NOT NULL DEFAULT 0,
    timeout   bigint NOT NULL DEFAULT 0,
    cancelled bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, slot)
) WITH (fillfactor = 50);

-- The slots beyond 0..63, made only when every slot is held at once.
-- squawk-ignore prefer-bigint-over-smallint
CREATE SEQUENCE task_counts_extra_slot AS smallint MINVALUE 64 MAXVALUE 32767 CYCLE;

-- The slot a session starts looking from: its backend's, or the setting
-- voidrunner.count_slot when it is a number (the tests use it to put two
-- sessions in one slot on purpose; any other value is ignored, so that no
-- setting can fail a write). Always in 0..63. One expression without a
-- FROM, so that the caller inlines it rather than run a query each time.
CREATE FUNCTION voidrunner_count_slot() RETURNS smallint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT ((CASE WHEN current_setting('voidrunner.count_slot', true) ~ '^[0-9]{1,9}$'
                  THEN current_setting('voidrunner.count_slot', true)::integer
                  ELSE pg_backend_pid() END) % 64)::smallint
$$;

-- The trigger of every insert, update and delete of tasks (COPY and the
-- cascades of deleted users included): the statement's rows, +1 for a new
-- row and -1 for an old one, summed per user and status; users whose sums
-- are all zero (an update that changed no status and no owner, the common
-- case) are left out, and a statement that changed no count locks nothing.
-- An UPDATE trigger with transition tables may not name columns, so it
-- fires for every update and finds the changes itself.
--
-- Then it adds the sums: to the first global slot row it can lock without
-- waiting from the session's slot up (else below it; else its own, waiting
-- for it), then to each user's row of that slot, in user_id order (see
-- the layout above). Rows of users that no longer exist are left alone
-- when deleting: a deleted user's tasks are deleted by the foreign key's
-- cascade, whose trigger runs after the users' statement trigger removed
-- the user's rows, and must not write them again. Generic plans: the
-- custom plans PostgreSQL would otherwise make for each call's arrays cost
-- more than the writes.
--
-- SECURITY DEFINER, so that it writes the counters whatever the caller may
-- do (the application role may not write them, and row-level security
-- binds it). Safe: nobody but the owner may attach it to a table (EXECUTE
-- is revoked from PUBLIC below: a trigger fires without it, CREATE TRIGGER
-- needs it), it refuses to run for a table of any other name, it takes no
-- argument but the rows the caller's own statement changed, and it runs
-- with a search_path of pg_catalog, the tasks table's own schema (the
-- trigger's, read at each call rather than pinned at migration, so that a
-- schema an operator renames keeps working), then pg_temp: no object of
-- the caller's can stand in for the counters
-- or for a function or operator it calls. By the tables' keys whatever the
-- statistics say (the slots' table is small enough for a sequential scan
-- to look cheaper to the planner, but a scan would pass every dead version
-- of its rows).
CREATE FUNCTION voidrunner_task_counts_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    start smallint;
    counted smallint;
    u uuid[];
    p bigint[];
    r bigint[];
    co bigint[];
    f bigint[];
    t bigint[];
    ca bigint[];
    tp bigint;
    tr bigint;
    tco bigint;
    tf bigint;
    tt bigint;
    tca bigint;
BEGIN
    IF TG_TABLE_NAME <> 'tasks' THEN
        RAISE EXCEPTION 'voidrunner_task_counts_change counts the tasks table only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Each user's sums, in user_id order (the order of a sorted subquery,
    -- which array_agg keeps), and their totals.
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(d.user_id), array_agg(d.p), array_agg(d.r), array_agg(d.co),
               array_agg(d.f), array_agg(d.t), array_agg(d.ca),
               sum(d.p), sum(d.r), sum(d.co), sum(d.f), sum(d.t), sum(d.ca)
        INTO u, p, r, co, f, t, ca, tp, tr, tco, tf, tt, tca
        FROM (
            SELECT n.user_id,
                   count(*) FILTER (WHERE n.status = 'pending') AS p,
                   count(*) FILTER (WHERE n.status = 'running') AS r,
                   count(*) FILTER (WHERE n.status = 'completed') AS co,
                   count(*) FILTER (WHERE n.status = 'failed') AS f,
                   count(*) FILTER (WHERE n.status = 'timeout') AS t,
                   count(*) FILTER (WHERE n.status = 'cancelled') AS ca
            FROM new_rows n GROUP BY n.user_id ORDER BY n.user_id
        ) d;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(d.user_id), array_agg(-d.p), array_agg(-d.r), array_agg(-d.co),
               array_agg(-d.f), array_agg(-d.t), array_agg(-d.ca),
               -sum(d.p), -sum(d.r), -sum(d.co), -sum(d.f), -sum(d.t), -sum(d.ca)
        INTO u, p, r, co, f, t, ca, tp, tr, tco, tf, tt, tca
        FROM (
            SELECT o.user_id,
                   count(*) FILTER (WHERE o.status = 'pending') AS p,
                   count(*) FILTER (WHERE o.status = 'running') AS r,
                   count(*) FILTER (WHERE o.status = 'completed') AS co,
                   count(*) FILTER (WHERE o.status = 'failed') AS f,
                   count(*) FILTER (WHERE o.status = 'timeout') AS t,
                   count(*) FILTER (WHERE o.status = 'cancelled') AS ca
            FROM old_rows o GROUP BY o.user_id ORDER BY o.user_id
        ) d;
    ELSE
        SELECT array_agg(d.user_id), array_agg(d.p), array_agg(d.r), array_agg(d.co),
               array_agg(d.f), array_agg(d.t), array_agg(d.ca),
               sum(d.p), sum(d.r), sum(d.co), sum(d.f), sum(d.t), sum(d.ca)
        INTO u, p, r, co, f, t, ca, tp, tr, tco, tf, tt, tca
        FROM (
            SELECT x.user_id,
                   coalesce(sum(x.sign) FILTER (WHERE x.status = 'pending'), 0)::bigint AS p,
                   coalesce(sum(x.sign) FILTER (WHERE x.status = 'running'), 0)::bigint AS r,
                   coalesce(sum(x.sign) FILTER (WHERE x.status = 'completed'), 0)::bigint AS co,
                   coalesce(sum(x.sign) FILTER (WHERE x.status = 'failed'), 0)::bigint AS f,
                   coalesce(sum(x.sign) FILTER (WHERE x.status = 'timeout'), 0)::bigint AS t,
                   coalesce(sum(x.sign) FILTER (WHERE x.status = 'cancelled'), 0)::bigint AS ca
            FROM (
                SELECT n.user_id, n.status, 1 AS sign FROM new_rows n
                UNION ALL
                SELECT o.user_id, o.status, -1 AS sign FROM old_rows o
            ) x
            GROUP BY x.user_id
            HAVING (coalesce(sum(x.sign) FILTER (WHERE x.status = 'pending'), 0),
                    coalesce(sum(x.sign) FILTER (WHERE x.status = 'running'), 0),
                    coalesce(sum(x.sign) FILTER (WHERE x.status = 'completed'), 0),
                    coalesce(sum(x.sign) FILTER (WHERE x.status = 'failed'), 0),
                    coalesce(sum(x.sign) FILTER (WHERE x.status = 'timeout'), 0),
                    coalesce(sum(x.sign) FILTER (WHERE x.status = 'cancelled'), 0))
                   <> (0, 0, 0, 0, 0, 0)
            ORDER BY x.user_id
        ) d;
    END IF;
    IF u IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('search_path', format('pg_catalog, %I, pg_temp', TG_TABLE_SCHEMA), true);
    start := voidrunner_count_slot();
    -- The global row first: the first free slot from ours up, without
    -- waiting; else one below ours; else a new one (never a wait).
    UPDATE task_counts c SET
        pending = c.pending + tp, running = c.running + tr, completed = c.completed + tco,
        failed = c.failed + tf, timeout = c.timeout + tt, cancelled = c.cancelled + tca
    WHERE c.slot = (SELECT l.slot FROM task_counts l WHERE l.slot >= start
                    ORDER BY l.slot LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING c.slot INTO counted;
    IF counted IS NULL THEN
        SELECT l.slot INTO counted FROM task_counts l
        WHERE l.slot < start ORDER BY l.slot LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF counted IS NOT NULL THEN
            UPDATE task_counts c SET
                pending = c.pending + tp, running = c.running + tr,
                completed = c.completed + tco, failed = c.failed + tf,
                timeout = c.timeout + tt, cancelled = c.cancelled + tca
            WHERE c.slot = counted;
        END IF;
    END IF;
    -- Every row is held by another transaction: a row of our own, new,
    -- rather than a wait (a wait here, outside the callers' lock order,
    -- could close a cycle with a lock they hold). Such rows stay and are
    -- taken like the others from then on, so there are at most as many as
    -- transactions ever counted at once.
    WHILE counted IS NULL LOOP
        INSERT INTO task_counts AS c (slot, pending, running, completed, failed, timeout, cancelled)
        VALUES (nextval('task_counts_extra_slot')::smallint, tp, tr, tco, tf, tt, tca)
        ON CONFLICT (slot) DO NOTHING
        RETURNING c.slot INTO counted;
    END LOOP;
    -- Then the users' rows of that slot, in user_id order.
    IF TG_OP = 'DELETE' THEN
        INSERT INTO task_counts_by_user AS c
            (user_id, slot, pending, running, completed, failed, timeout, cancelled)
        SELECT d.u, counted, d.p, d.r, d.co, d.f, d.t, d.ca
        FROM unnest(u, p, r, co, f, t, ca) WITH ORDINALITY AS d(u, p, r, co, f, t, ca, i)
        WHERE EXISTS (SELECT 1 FROM users x WHERE x.id = d.u)
        ORDER BY d.i
        ON CONFLICT (user_id, slot) DO UPDATE SET
            pending = c.pending + excluded.pending,
            running = c.running + excluded.running,
            completed = c.completed + excluded.completed,
            failed = c.failed + excluded.failed,
            timeout = c.timeout + excluded.timeout,
            cancelled = c.cancelled + excluded.cancelled;
    ELSE
        INSERT INTO task_counts_by_user AS c
            (user_id, slot, pending, running, completed, failed, timeout, cancelled)
        SELECT d.u, counted, d.p, d.r, d.co, d.f, d.t, d.ca
        FROM unnest(u, p, r, co, f, t, ca) WITH ORDINALITY AS d(u, p, r, co, f, t, ca, i)
        ORDER BY d.i
        ON CONFLICT (user_id, slot) DO UPDATE SET
            pending = c.pending + excluded.pending,
            running = c.running + excluded.running,
            completed = c.completed + excluded.completed,
            failed = c.failed + excluded.failed,
            timeout = c.timeout + excluded.timeout,
            cancelled = c.cancelled + excluded.cancelled;
    END IF;
    RETURN NULL;
END;
$$;

-- Deleted users' rows (also those of users who had no task left), each
-- user's by the key. The cascade's task trigger fires after this one and
-- writes no row of a user that is gone (see voidrunner_task_counts_change).
-- SECURITY DEFINER, search_path and EXECUTE as above.
CREATE FUNCTION voidrunner_task_counts_users_gone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    IF TG_TABLE_NAME <> 'users' THEN
        RAISE EXCEPTION 'voidrunner_task_counts_users_gone serves the users table only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM set_config('search_path', format('pg_catalog, %I, pg_temp', TG_TABLE_SCHEMA), true);
    DELETE FROM task_counts_by_user c USING old_users o WHERE c.user_id = o.id;
    RETURN NULL;
END;
$$;

-- TRUNCATE of tasks (also by TRUNCATE users CASCADE): every count is 0.
CREATE FUNCTION voidrunner_task_counts_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME <> 'tasks' THEN
        RAISE EXCEPTION 'voidrunner_task_counts_truncated serves the tasks table only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM set_config('search_path', format('pg_catalog, %I, pg_temp', TG_TABLE_SCHEMA), true);
    DELETE FROM task_counts_by_user;
    UPDATE task_counts SET pending = 0, running = 0, completed = 0, failed = 0,
                           timeout = 0, cancelled = 0;
    RETURN NULL;
END;
$$;

-- Counts the tasks again, into slot 0, and returns how many there are: for
-- an operator, after writes the triggers did not see (see above) or
-- counters another writer changed. Writes to tasks wait while it counts
-- (SHARE lock, for one count of the table); reads go on. Runs with the
-- caller's privileges: the tables' owner's. It waits at most 2 s for its
-- lock (lock_not_available, 55P03, after that): every write to tasks
-- queues behind a waiting LOCK, so a recount behind a long transaction
-- must give up rather than stall them all.
CREATE FUNCTION voidrunner_recount_tasks() RETURNS bigint
LANGUAGE plpgsql
SET lock_timeout = '2s'
AS $$
DECLARE
    total bigint;
BEGIN
    LOCK TABLE tasks IN SHARE MODE;
    DELETE FROM task_counts_by_user;
    DELETE FROM task_counts;
    INSERT INTO task_counts (slot) SELECT g FROM generate_series(0, 63) g;
    INSERT INTO task_counts_by_user
        (user_id, slot, pending, running, completed, failed, timeout, cancelled)
    SELECT t.user_id, 0,
           count(*) FILTER (WHERE t.status = 'pending'),
           count(*) FILTER (WHERE t.status = 'running'),
           count(*) FILTER (WHERE t.status = 'completed'),
           count(*) FILTER (WHERE t.status = 'failed'),
           count(*) FILTER (WHERE t.status = 'timeout'),
           count(*) FILTER (WHERE t.status = 'cancelled')
    FROM tasks t GROUP BY t.user_id;
    UPDATE task_counts c SET
        pending = s.p, running = s.r, completed = s.co,
        failed = s.f, timeout = s.t, cancelled = s.ca
    FROM (
        SELECT coalesce(sum(b.pending), 0)::bigint AS p,
               coalesce(sum(b.running), 0)::bigint AS r,
               coalesce(sum(b.completed), 0)::bigint AS co,
               coalesce(sum(b.failed), 0)::bigint AS f,
               coalesce(sum(b.timeout), 0)::bigint AS t,
               coalesce(sum(b.cancelled), 0)::bigint AS ca
        FROM task_counts_by_user b
    ) s
    WHERE c.slot = 0
    RETURNING c.pending + c.running + c.completed + c.failed + c.timeout + c.cancelled
    INTO total;
    RETURN total;
END;
$$;

-- The reads: the sum of a user's rows, and of the global rows, by the
-- tables' key whatever the statistics say (their rows are few, but a
-- user's are found among every user's). Row-level security applies (they
-- run as the caller): the application role sees only its scope's rows.
CREATE FUNCTION voidrunner_task_counts_of(filter_user_id uuid)
RETURNS TABLE (
    pending bigint, running bigint, completed bigint,
    failed bigint, timeout bigint, cancelled bigint
)
LANGUAGE sql STABLE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
    SELECT coalesce(sum(c.pending), 0)::bigint, coalesce(sum(c.running), 0)::bigint,
           coalesce(sum(c.completed), 0)::bigint, coalesce(sum(c.failed), 0)::bigint,
           coalesce(sum(c.timeout), 0)::bigint, coalesce(sum(c.cancelled), 0)::bigint
    FROM task_counts_by_user c WHERE c.user_id = filter_user_id
$$;

CREATE FUNCTION voidrunner_task_counts_all()
RETURNS TABLE (
    pending bigint, running bigint, completed bigint,
    failed bigint, timeout bigint, cancelled bigint
)
LANGUAGE sql STABLE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
    SELECT coalesce(sum(c.pending), 0)::bigint, coalesce(sum(c.running), 0)::bigint,
           coalesce(sum(c.completed), 0)::bigint, coalesce(sum(c.failed), 0)::bigint,
           coalesce(sum(c.timeout), 0)::bigint, coalesce(sum(c.cancelled), 0)::bigint
    FROM task_counts c WHERE c.slot >= 0
$$;

-- Not for callers: an operator's.
REVOKE ALL ON FUNCTION voidrunner_recount_tasks() FROM PUBLIC;
-- The triggers' functions are nobody's to attach to another table (see
-- voidrunner_task_counts_change); they fire for every writer all the same.
REVOKE ALL ON FUNCTION voidrunner_task_counts_change() FROM PUBLIC;
REVOKE ALL ON FUNCTION voidrunner_task_counts_users_gone() FROM PUBLIC;
REVOKE ALL ON FUNCTION voidrunner_task_counts_truncated() FROM PUBLIC;

-- Writes to tasks wait from here to the commit: no write is counted twice
-- (by the backfill and a trigger) or missed (by both). users first, in
-- the crate's lock order (a user, then its tasks): its trigger below needs
-- this lock anyway, and taken after the tasks' it could close a cycle with
-- a transaction that creates a user and then its first task.
LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;
LOCK TABLE tasks IN SHARE MODE;

CREATE TRIGGER tasks_counts_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_task_counts_change();
CREATE TRIGGER tasks_counts_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_task_counts_change();
CREATE TRIGGER tasks_counts_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_task_counts_change();
CREATE TRIGGER tasks_counts_truncate AFTER TRUNCATE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_task_counts_truncated();
CREATE TRIGGER users_task_counts_gone AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_users
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_task_counts_users_gone();

-- The backfill: the tasks there are, into slot 0.
SELECT voidrunner_recount_tasks();

-- A user's rows are tenant data: the application role sees only those of
-- the user its transaction is scoped to, and no global row (a count it
-- reads unscoped is 0, as a count of tasks was); other roles see every row
-- (V9's voidrunner_unbound). Only the triggers write them. On as V9 turns
-- row-level security on for tasks: now if voidrunner_app exists, else
-- when the roles script creates it.
CREATE POLICY task_counts_by_user_tenant ON task_counts_by_user FOR SELECT
    USING (user_id = voidrunner_scope());
CREATE POLICY task_counts_by_user_unbound ON task_counts_by_user FOR SELECT
    USING ((SELECT voidrunner_unbound()));
CREATE POLICY task_counts_unbound ON task_counts FOR SELECT
    USING ((SELECT voidrunner_unbound()));

-- A deployment that ran the roles script before this release: its roles
-- may read the counters at once (the script grants the same when run
-- again after the upgrade, as it should be).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voidrunner_app') THEN
        ALTER TABLE task_counts_by_user ENABLE ROW LEVEL SECURITY;
        ALTER TABLE task_counts ENABLE ROW LEVEL SECURITY;
        IF has_table_privilege('voidrunner_app', 'tasks', 'SELECT') THEN
            GRANT SELECT ON task_counts_by_user, task_counts TO voidrunner_app;
            GRANT EXECUTE ON FUNCTION voidrunner_task_counts_of(uuid), voidrunner_task_counts_all()
                TO voidrunner_app;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voidrunner_worker')
       AND has_table_privilege('voidrunner_worker', 'tasks', 'SELECT')
    THEN
        GRANT SELECT ON task_counts_by_user, task_counts TO voidrunner_worker;
        GRANT EXECUTE ON FUNCTION voidrunner_task_counts_of(uuid), voidrunner_task_counts_all()
            TO voidrunner_worker;
    END IF;
END;
$$;

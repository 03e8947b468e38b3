-- voidrunner-db V13: execution log lines, appended while a task runs, kept
-- in time partitions that are dropped whole when they expire.
--
-- Two tables, both range-partitioned by the execution's created_at:
--
-- `task_execution_logs`: one row per line. Its key is (execution_id,
-- execution_created_at, seq): a unique key of a partitioned table must
-- hold the partition key, and an execution's created_at never changes, so
-- every line of an execution lands in one partition and the key enforces
-- (execution_id, seq) across all of them: a retried batch inserts nothing
-- twice (ON CONFLICT DO NOTHING). A line's own time would not do: a retry
-- stamped a moment later could land in the next partition beside its
-- first copy. `started_at` would not either: it is NULL until a claim and
-- set again by the claim after a rescue.
--
-- `task_execution_log_chunks`: the search index. One row per execution
-- and append statement (per 64 KiB of its lines), holding the tsvector of
-- those lines and the range of sequence numbers they span. A GIN index on
-- one tsvector per line costs about three times the insert of the line
-- itself; one per chunk costs a fraction, and a search reads the lines of
-- the matching chunks through the lines' key and checks each line.
--
-- Lines of an execution whose time range has no partition yet go to the
-- DEFAULT partitions, so an append never fails for a missing partition;
-- `voidrunner_log_partition_ensure` moves them out when it creates their
-- partition. Retention drops whole partitions (`voidrunner_log_partition_
-- drop_expired`), never deletes rows one by one. The crate calls these
-- from `Database::maintain_log_partitions`.
--
-- Deletes: no foreign key (its check would run once per line, doubling an
-- append's cost); instead an execution's lines and chunks go with it by a
-- statement trigger on task_executions (a deleted task or user deletes its
-- executions by cascade, which fires it), a TRUNCATE of task_executions
-- truncates both, and a change of an execution's owner (a task moved to
-- another user by cascade) moves its lines to the new owner.

CREATE TABLE task_execution_logs (
    execution_id         uuid        NOT NULL,
    execution_created_at timestamptz NOT NULL,
    user_id              uuid        NOT NULL,
    seq                  bigint      NOT NULL,
    stream               text        NOT NULL,
    logged_at            timestamptz NOT NULL,
    line                 text        NOT NULL,
    CONSTRAINT task_execution_logs_pkey
        PRIMARY KEY (execution_id, execution_created_at, seq),
    CONSTRAINT task_execution_logs_seq_nonnegative CHECK (seq >= 0),
    CONSTRAINT task_execution_logs_stream_valid
        CHECK (stream IN ('stdout', 'stderr', 'system')),
    CONSTRAINT task_execution_logs_line_length CHECK (octet_length(line) <= 65536),
    -- What the crate can read back (a year of four digits).
    CONSTRAINT task_execution_logs_logged_at_range
        CHECK (isfinite(logged_at) AND logged_at < '10000-01-01 00:00:00+00')
) PARTITION BY RANGE (execution_created_at);

CREATE TABLE task_execution_log_chunks (
    execution_id         uuid        NOT NULL,
    execution_created_at timestamptz NOT NULL,
    user_id              uuid        NOT NULL,
    task_id              uuid        NOT NULL,
    first_seq            bigint      NOT NULL,
    last_seq             bigint      NOT NULL,
    document             tsvector    NOT NULL,
    CONSTRAINT task_execution_log_chunks_pkey
        PRIMARY KEY (execution_id, execution_created_at, first_seq),
    CONSTRAINT task_execution_log_chunks_seq_range
        CHECK (first_seq >= 0 AND last_seq >= first_seq)
) PARTITION BY RANGE (execution_created_at);

CREATE INDEX task_execution_log_chunks_document_idx
    ON task_execution_log_chunks USING gin (document);
-- A search's chunks by their owner, where the GIN index cannot serve: a
-- word most chunks hold (the GIN index would return every user's), and
-- the application role, under whose row-level security PostgreSQL keeps
-- the non-leakproof `@@` off every index. Either way a search then reads
-- the chunks of the one user (or task) it searches, never the others'.
CREATE INDEX task_execution_log_chunks_user_id_task_id_idx
    ON task_execution_log_chunks (user_id, task_id);

CREATE TABLE task_execution_logs_default
    PARTITION OF task_execution_logs DEFAULT;
CREATE TABLE task_execution_log_chunks_default
    PARTITION OF task_execution_log_chunks DEFAULT;

-- An execution's created_at is every one of its lines' partition key:
-- one the crate cannot read back or no partition can hold (infinity, a
-- year of five digits) would stall the maintenance. NOT VALID: rows from
-- before are not scanned (they were written by the crate, with now()).
ALTER TABLE task_executions ADD CONSTRAINT task_executions_created_at_range
    CHECK (isfinite(created_at) AND created_at < '10000-01-01 00:00:00+00') NOT VALID;

-- Row-level security on every partition too, without a policy: reads and
-- writes through the parents are held to the parents' policies only, and
-- a role granted a partition directly (GRANT ... ON ALL TABLES IN SCHEMA)
-- sees none of its rows rather than every tenant's.
ALTER TABLE task_execution_logs_default ENABLE ROW LEVEL SECURITY;
ALTER TABLE task_execution_log_chunks_default ENABLE ROW LEVEL SECURITY;

-- A chunk's document is stored as it is: pglz gains nothing on a tsvector
-- of log lines (numbers, ids, timestamps: stored and raw sizes within 1%)
-- and compressing, then moving it out of line, cost about 5% of an append.
-- Up to a page (toast_tuple_target, per partition: a partitioned table has
-- no storage parameters; voidrunner_log_partition_make gives new
-- partitions the DEFAULT partition's) it stays in its row; above, it moves
-- to TOAST uncompressed.
ALTER TABLE task_execution_log_chunks ALTER COLUMN document SET STORAGE EXTERNAL;
ALTER TABLE task_execution_log_chunks_default SET (toast_tuple_target = 8160);

-- The partitions of a log table with their bounds, read from the catalog
-- (so a partition an operator made or dropped by hand counts as it is).
-- MINVALUE and MAXVALUE bounds read as -infinity and infinity; the
-- DEFAULT partition is left out.
CREATE OR REPLACE FUNCTION voidrunner_log_partitions(parent regclass)
RETURNS TABLE (partition regclass, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE plpgsql STABLE
SET "TimeZone" = 'UTC'
SET "DateStyle" = 'ISO, YMD'
AS $$
DECLARE
    part record;
    bounds text[];
BEGIN
    FOR part IN
        SELECT c.oid, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = parent
    LOOP
        bounds := regexp_match(part.bound,
            '^FOR VALUES FROM \((MINVALUE|''[^'']*'')\) TO \((MAXVALUE|''[^'']*'')\)$');
        CONTINUE WHEN bounds IS NULL;
        partition := part.oid;
        lower_bound := CASE WHEN bounds[1] = 'MINVALUE' THEN '-infinity'::timestamptz
                            ELSE btrim(bounds[1], '''')::timestamptz END;
        upper_bound := CASE WHEN bounds[2] = 'MAXVALUE' THEN 'infinity'::timestamptz
                            ELSE btrim(bounds[2], '''')::timestamptz END;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- The start of the partition of width `unit` ('hour', 'day', 'week' or
-- 'month', in UTC) holding `at`.
CREATE OR REPLACE FUNCTION voidrunner_log_partition_start(unit text, at timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT date_trunc(unit, at, 'UTC') $$;

-- An execution's lines after seq `after_seq`, in seq order, at most
-- `max_rows` (`voidrunner_log_after_page`), or its last `max_rows` lines,
-- newest first (`voidrunner_log_tail_page`): one walk of the key index of
-- the partition of `created` (the execution's created_at), whatever the
-- statistics say. Written as one statement, the planner may read every
-- line of the execution and sort them when its statistics of the log
-- tables are stale (taken while they were small: a partition is new every
-- day), as it may for the list pages; so, as V7's pages, each runs in a
-- function whose SET clause leaves an ordered index scan the only plan.
-- The partition is chosen when the cached generic plan starts (its other
-- partitions are pruned before any is read). Not SECURITY DEFINER: they
-- read as their caller, so row-level security binds the application role
-- here as in any statement; no search_path pinned, as V11's pages.
CREATE OR REPLACE FUNCTION voidrunner_log_after_page(
    execution uuid, created timestamptz, after_seq bigint, max_rows bigint
)
RETURNS TABLE (execution_id uuid, seq bigint, stream text, logged_at timestamptz, line text)
LANGUAGE plpgsql STABLE ROWS 100
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_incremental_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT l.execution_id, l.seq, l.stream, l.logged_at, l.line
        FROM task_execution_logs l
        WHERE l.execution_id = execution AND l.execution_created_at = created
          AND l.seq > after_seq
        ORDER BY l.execution_id, l.execution_created_at, l.seq
        LIMIT max_rows;
END;
$$;

CREATE OR REPLACE FUNCTION voidrunner_log_tail_page(
    execution uuid, created timestamptz, max_rows bigint
)
RETURNS TABLE (execution_id uuid, seq bigint, stream text, logged_at timestamptz, line text)
LANGUAGE plpgsql STABLE ROWS 100
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_incremental_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT l.execution_id, l.seq, l.stream, l.logged_at, l.line
        FROM task_execution_logs l
        WHERE l.execution_id = execution AND l.execution_created_at = created
        ORDER BY l.execution_id DESC, l.execution_created_at DESC, l.seq DESC
        LIMIT max_rows;
END;
$$;

-- Creates the partitions of both log tables for the range of width `unit`
-- holding `at`, where none covers it yet: only the parts of the range no
-- partition covers (partitions of another width, made before a change of
-- `unit`, stay as they are). Rows of that range waiting in a DEFAULT
-- partition move into the new one, under a lock of the DEFAULT partition
-- only (appends to other partitions go on). Returns the partitions made
-- and the rows moved into each. One call, one transaction: the crate calls
-- it once per range, with a lock timeout, so one busy range does not hold
-- up the others.
CREATE OR REPLACE FUNCTION voidrunner_log_partition_ensure(unit text, at timestamptz)
RETURNS TABLE (partition text, moved bigint)
LANGUAGE plpgsql
SET "TimeZone" = 'UTC'
SET lock_timeout = '2s'
AS $$
DECLARE
    parent regclass;
    default_part regclass;
    range_lo timestamptz;
    range_hi timestamptz;
    gap_lo timestamptz;
    taken record;
    made record;
BEGIN
    IF unit NOT IN ('hour', 'day', 'week', 'month') THEN
        RAISE EXCEPTION 'log partition unit must be hour, day, week or month, not %', unit
            USING ERRCODE = '22023';
    END IF;
    IF NOT isfinite(at) THEN
        RAISE EXCEPTION 'log partition time must be finite' USING ERRCODE = '22023';
    END IF;
    -- One maintenance at a time: two would both see the same gap and the
    -- second fail on the first's table. A lock of the lines' DEFAULT
    -- partition, which only the tables' owner may take (an advisory lock
    -- any role could hold to stop maintenance), and which appends (ROW
    -- EXCLUSIVE) do not wait for.
    LOCK TABLE task_execution_logs_default IN SHARE UPDATE EXCLUSIVE MODE;
    range_lo := voidrunner_log_partition_start(unit, at);
    range_hi := voidrunner_log_partition_start(unit, range_lo + ('1 ' || unit)::interval);
    FOREACH parent IN ARRAY ARRAY['task_execution_logs'::regclass,
                                  'task_execution_log_chunks'::regclass]
    LOOP
        default_part := (SELECT i.inhrelid::regclass
                         FROM pg_inherits i JOIN pg_partitioned_table p ON p.partrelid = i.inhparent
                         WHERE i.inhparent = parent AND i.inhrelid = p.partdefid);
        gap_lo := range_lo;
        FOR taken IN
            SELECT lower_bound, upper_bound FROM voidrunner_log_partitions(parent)
            WHERE lower_bound < range_hi AND upper_bound > range_lo
            ORDER BY lower_bound
        LOOP
            IF taken.lower_bound > gap_lo THEN
                made := voidrunner_log_partition_make(parent, default_part, gap_lo,
                                                      taken.lower_bound);
                partition := made.name;
                moved := made.moved;
                RETURN NEXT;
            END IF;
            gap_lo := greatest(gap_lo, taken.upper_bound);
        END LOOP;
        IF gap_lo < range_hi THEN
            made := voidrunner_log_partition_make(parent, default_part, gap_lo, range_hi);
            partition := made.name;
            moved := made.moved;
            RETURN NEXT;
        END IF;
    END LOOP;
END;
$$;

-- One partition of `parent` for [lo, hi): made as a table of its own,
-- filled with the rows of that range from the DEFAULT partition (locked
-- against appends meanwhile), then attached: ATTACH takes a SHARE UPDATE
-- EXCLUSIVE lock of the parent, so reads and appends to other partitions
-- go on, where CREATE TABLE ... PARTITION OF would lock out everything.
CREATE OR REPLACE FUNCTION voidrunner_log_partition_make(
    parent regclass, default_part regclass, lo timestamptz, hi timestamptz,
    OUT name text, OUT moved bigint
)
LANGUAGE plpgsql
SET "TimeZone" = 'UTC'
AS $$
DECLARE
    parent_schema text := (SELECT n.nspname FROM pg_class c
                           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = parent);
    suffix integer;
BEGIN
    name := format('%s_p%s%s', (SELECT relname FROM pg_class WHERE oid = parent),
                   to_char(lo, 'YYYYMMDD"_"HH24MI'),
                   CASE WHEN lo < '0001-01-01 00:00:00+00' THEN '_bc' ELSE '' END);
    -- A table of that name left by hand (a partition detached, a range of
    -- another width) keeps its name; the new one takes a suffix.
    IF to_regclass(format('%I.%I', parent_schema, name)) IS NOT NULL THEN
        suffix := 1;
        WHILE to_regclass(format('%I.%I', parent_schema, name || '_' || suffix)) IS NOT NULL LOOP
            suffix := suffix + 1;
        END LOOP;
        name := name || '_' || suffix;
    END IF;
    moved := 0;
    -- With the parent's column storage and the DEFAULT partition's storage
    -- parameters (the chunks' toast_tuple_target).
    EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING STORAGE)%s',
                   parent_schema, name, parent,
                   (SELECT ' WITH (' || array_to_string(c.reloptions, ', ') || ')'
                    FROM pg_class c WHERE c.oid = default_part AND c.reloptions IS NOT NULL));
    EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', parent_schema, name);
    -- Lets ATTACH skip its scan of the new table.
    EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I CHECK '
                   '(execution_created_at >= %L AND execution_created_at < %L)',
                   parent_schema, name, name || '_bound', lo, hi);
    IF default_part IS NOT NULL THEN
        EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', default_part);
        EXECUTE format('WITH gone AS (DELETE FROM %s WHERE execution_created_at >= %L '
                       'AND execution_created_at < %L RETURNING *) '
                       'INSERT INTO %I.%I SELECT * FROM gone',
                       default_part, lo, hi, parent_schema, name);
        GET DIAGNOSTICS moved = ROW_COUNT;
    END IF;
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                   parent, parent_schema, name, lo, hi);
    EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', parent_schema, name, name || '_bound');
END;
$$;

-- The range starts of width `unit` of the rows waiting in the DEFAULT
-- partitions (normally none: maintenance makes partitions ahead of time).
CREATE OR REPLACE FUNCTION voidrunner_log_partition_waiting(unit text)
RETURNS SETOF timestamptz
LANGUAGE sql STABLE
AS $$
    SELECT DISTINCT voidrunner_log_partition_start(unit, execution_created_at)
    FROM task_execution_logs_default
    UNION
    SELECT DISTINCT voidrunner_log_partition_start(unit, execution_created_at)
    FROM task_execution_log_chunks_default
$$;

-- Drops the oldest partition of either log table that ends at or before
-- `cutoff`, and returns its name; NULL when there is none. DROP TABLE of a
-- partition locks its parent for a moment: the crate calls this with a
-- lock timeout, one partition per call.
CREATE OR REPLACE FUNCTION voidrunner_log_partition_drop_expired(cutoff timestamptz)
RETURNS text
LANGUAGE plpgsql
SET lock_timeout = '2s'
AS $$
DECLARE
    victim regclass;
    victim_name text;
BEGIN
    LOCK TABLE task_execution_logs_default IN SHARE UPDATE EXCLUSIVE MODE;
    SELECT p.partition INTO victim
    FROM (SELECT * FROM voidrunner_log_partitions('task_execution_logs')
          UNION ALL
          SELECT * FROM voidrunner_log_partitions('task_execution_log_chunks')) p
    WHERE p.upper_bound <= cutoff
    ORDER BY p.upper_bound, p.partition::text
    LIMIT 1;
    IF victim IS NULL THEN
        RETURN NULL;
    END IF;
    victim_name := victim::text;
    EXECUTE format('DROP TABLE %s', victim);
    RETURN victim_name;
END;
$$;

-- An execution's lines and chunks go with it. A statement trigger: a
-- prune of many executions deletes their lines in one join, each
-- execution's through its partition (the key holds created_at).
--
-- The three trigger functions below are SECURITY DEFINER, as V12's
-- counters' are: whoever may delete an execution (the worker's prune, the
-- application role's delete of its task, whose cascade fires the trigger
-- as the caller) takes its lines along without a privilege of its own on
-- the log tables, and row-level security does not hide any of them. Safe
-- in the same way: EXECUTE is revoked from PUBLIC (a trigger fires without
-- it; attaching one needs it), each refuses any table but task_executions,
-- touches only the rows of the executions the caller's own statement
-- changed, and runs with a search_path of pg_catalog, the firing table's
-- schema (read at each call) and pg_temp.
--
-- By the lines' key, whatever the statistics: a nested loop from the
-- deleted executions into each one's partition (pruned at run time), never
-- a scan of the log tables (a hash join would read every partition whole,
-- for the delete of one execution, or of a user without any).
CREATE OR REPLACE FUNCTION voidrunner_execution_logs_gone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    IF TG_TABLE_NAME <> 'task_executions' THEN
        RAISE EXCEPTION 'voidrunner_execution_logs_gone() is for task_executions only';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM gone_executions) THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('search_path', format('pg_catalog, %I, pg_temp', TG_TABLE_SCHEMA), true);
    DELETE FROM task_execution_logs l
    USING gone_executions g
    WHERE l.execution_id = g.id AND l.execution_created_at = g.created_at;
    DELETE FROM task_execution_log_chunks c
    USING gone_executions g
    WHERE c.execution_id = g.id AND c.execution_created_at = g.created_at;
    RETURN NULL;
END;
$$;

CREATE TRIGGER task_executions_logs_gone AFTER DELETE ON task_executions
    REFERENCING OLD TABLE AS gone_executions
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_execution_logs_gone();

CREATE OR REPLACE FUNCTION voidrunner_execution_logs_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME <> 'task_executions' THEN
        RAISE EXCEPTION 'voidrunner_execution_logs_truncated() is for task_executions only';
    END IF;
    PERFORM set_config('search_path', format('pg_catalog, %I, pg_temp', TG_TABLE_SCHEMA), true);
    -- A table the same TRUNCATE named is empty by now, and truncating it
    -- again here would fail (55006: in use by the statement that fires
    -- this): only the ones it left are truncated.
    IF EXISTS (SELECT 1 FROM task_execution_logs) THEN
        TRUNCATE task_execution_logs;
    END IF;
    IF EXISTS (SELECT 1 FROM task_execution_log_chunks) THEN
        TRUNCATE task_execution_log_chunks;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER task_executions_logs_truncated AFTER TRUNCATE ON task_executions
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_execution_logs_truncated();

-- A task moved to another user takes its executions along (V9's cascade);
-- their lines follow, so the new owner sees them and the old one does not.
CREATE OR REPLACE FUNCTION voidrunner_execution_logs_owner() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME <> 'task_executions' THEN
        RAISE EXCEPTION 'voidrunner_execution_logs_owner() is for task_executions only';
    END IF;
    PERFORM set_config('search_path', format('pg_catalog, %I, pg_temp', TG_TABLE_SCHEMA), true);
    -- A new created_at moves the lines to its partition.
    UPDATE task_execution_logs
    SET execution_id = NEW.id, execution_created_at = NEW.created_at, user_id = NEW.user_id
    WHERE execution_id = OLD.id AND execution_created_at = OLD.created_at;
    UPDATE task_execution_log_chunks
    SET execution_id = NEW.id, execution_created_at = NEW.created_at, user_id = NEW.user_id,
        task_id = NEW.task_id
    WHERE execution_id = OLD.id AND execution_created_at = OLD.created_at;
    RETURN NULL;
END;
$$;

-- Fires only for updates that name one of these columns (no heartbeat,
-- no status change does), and only when one changed.
CREATE TRIGGER task_executions_logs_owner
    AFTER UPDATE OF id, created_at, user_id, task_id ON task_executions
    FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.created_at IS DISTINCT FROM NEW.created_at
          OR OLD.user_id IS DISTINCT FROM NEW.user_id OR OLD.task_id IS DISTINCT FROM NEW.task_id)
    EXECUTE FUNCTION voidrunner_execution_logs_owner();

REVOKE ALL ON FUNCTION voidrunner_execution_logs_gone() FROM PUBLIC;
REVOKE ALL ON FUNCTION voidrunner_execution_logs_truncated() FROM PUBLIC;
REVOKE ALL ON FUNCTION voidrunner_execution_logs_owner() FROM PUBLIC;

-- Tenants, as V9: the application role sees only its scope's lines (and
-- none when scoped to nobody); every other role sees every row. Row-level
-- security applies through the parent; partitions get no grants, so no
-- bound role reads one directly.
CREATE POLICY task_execution_logs_tenant ON task_execution_logs
    USING (user_id = voidrunner_scope())
    WITH CHECK (user_id = voidrunner_scope());
CREATE POLICY task_execution_logs_unbound ON task_execution_logs
    USING ((SELECT voidrunner_unbound()))
    WITH CHECK ((SELECT voidrunner_unbound()));
CREATE POLICY task_execution_log_chunks_tenant ON task_execution_log_chunks
    USING (user_id = voidrunner_scope())
    WITH CHECK (user_id = voidrunner_scope());
CREATE POLICY task_execution_log_chunks_unbound ON task_execution_log_chunks
    USING ((SELECT voidrunner_unbound()))
    WITH CHECK ((SELECT voidrunner_unbound()));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voidrunner_app') THEN
        ALTER TABLE task_execution_logs ENABLE ROW LEVEL SECURITY;
        ALTER TABLE task_execution_log_chunks ENABLE ROW LEVEL SECURITY;
    END IF;
END;
$$;

-- Followers (`Database::follow_logs`) wait on the channel
-- `voidrunner_logs` for new lines of the execution they follow. One
-- notification per append statement, not per line: its payload is a JSON
-- array of the distinct executions that got lines, split over several
-- notifications when they do not fit in one (a payload must be shorter than
-- 8000 bytes; 200 ids of 39 bytes each do). Delivered at commit, never for
-- a rollback, and nothing for a statement that added no line (a retry
-- whose lines were all stored). `voidrunner.notify_events = off` silences
-- a session, as it does the execution events (V3): its followers then see
-- its lines at their poll interval.
--
-- The same trigger (its transition table is the costly part, so one for
-- both) holds every writer's lines to their execution: the execution
-- exists, and the line carries its created_at and user_id. A line with
-- another created_at would land in another partition beside a line of the
-- same seq, out of reach of the key's uniqueness; one with another user_id
-- would show to the wrong tenant. The crate's appends copy both from the
-- locked execution row; this refuses another application's mistakes
-- (23503, the whole statement).
CREATE OR REPLACE FUNCTION voidrunner_notify_logs() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The statement's executions by their key, whatever the statistics.
SET enable_seqscan = off
AS $$
DECLARE
    ids text;
    stray record;
BEGIN
    -- The firing table's schema, read at each call, then pg_temp last: a
    -- temporary table of the caller's cannot stand in for task_executions,
    -- and a session with an empty search_path (a data-only restore) finds
    -- it.
    PERFORM set_config('search_path', format('pg_catalog, %I, pg_temp', TG_TABLE_SCHEMA), true);
    -- The executions locked against a concurrent delete (FOR KEY SHARE, as
    -- a foreign key's check; the crate's appends hold a stronger lock
    -- already): a line of an execution deleted meanwhile is refused, not
    -- left behind.
    SELECT n.execution_id INTO stray
    FROM (SELECT DISTINCT execution_id, execution_created_at, user_id FROM new_lines) n
    LEFT JOIN (SELECT x.id, x.created_at, x.user_id FROM task_executions x
               WHERE x.id = ANY (ARRAY(SELECT DISTINCT execution_id FROM new_lines))
               FOR KEY SHARE) e ON e.id = n.execution_id
    WHERE e.id IS NULL OR e.created_at <> n.execution_created_at OR e.user_id <> n.user_id
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'log lines of execution % do not match it: no such execution, or another created_at or user_id', stray.execution_id
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = 'task_execution_logs_execution_match',
                  TABLE = 'task_execution_logs';
    END IF;
    IF TG_OP <> 'INSERT'
       OR coalesce(current_setting('voidrunner.notify_events', true), '') = 'off' THEN
        RETURN NULL;
    END IF;
    FOR ids IN
        SELECT '[' || string_agg('"' || d.execution_id::text || '"', ',') || ']'
        FROM (
            SELECT execution_id, (row_number() OVER (ORDER BY execution_id) - 1) / 200 AS part
            FROM (SELECT DISTINCT execution_id FROM new_lines) e
        ) d
        GROUP BY d.part
    LOOP
        PERFORM pg_notify('voidrunner_logs', ids);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER task_execution_logs_notify AFTER INSERT ON task_execution_logs
    REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_notify_logs();

-- An update is held to the same rule (a trigger with transition tables
-- takes one event), and sends nothing.
CREATE TRIGGER task_execution_logs_checked AFTER UPDATE ON task_execution_logs
    REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_notify_logs();

-- The search chunks are held to their execution likewise, its task
-- included: a chunk that named another user's execution would put that
-- execution's lines in this user's unscoped searches.
CREATE OR REPLACE FUNCTION voidrunner_check_log_chunks() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The statement's executions by their key, whatever the statistics.
SET enable_seqscan = off
AS $$
DECLARE
    stray record;
BEGIN
    PERFORM set_config('search_path', format('pg_catalog, %I, pg_temp', TG_TABLE_SCHEMA), true);
    SELECT n.execution_id INTO stray
    FROM (SELECT DISTINCT execution_id, execution_created_at, user_id, task_id
          FROM new_chunks) n
    LEFT JOIN (SELECT x.id, x.created_at, x.user_id, x.task_id FROM task_executions x
               WHERE x.id = ANY (ARRAY(SELECT DISTINCT execution_id FROM new_chunks))
               FOR KEY SHARE) e ON e.id = n.execution_id
    WHERE e.id IS NULL OR e.created_at <> n.execution_created_at OR e.user_id <> n.user_id
       OR e.task_id <> n.task_id
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'log chunks of execution % do not match it: no such execution, or another created_at, user_id or task_id', stray.execution_id
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = 'task_execution_log_chunks_execution_match',
                  TABLE = 'task_execution_log_chunks';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER task_execution_log_chunks_checked AFTER INSERT ON task_execution_log_chunks
    REFERENCING NEW TABLE AS new_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_check_log_chunks();
CREATE TRIGGER task_execution_log_chunks_checked_update AFTER UPDATE ON task_execution_log_chunks
    REFERENCING NEW TABLE AS new_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_check_log_chunks();

-- The part of a search that the chunks can answer: its words and phrases
-- that are not negated (`querytree`), each phrase as the words it holds
-- (a chunk's tsvector keeps no positions: phrases are checked on each
-- line). Lines of a chunk that holds a negated word may still match on
-- their own, so negations are left to the lines too. A query with
-- nothing to look up (no word, only negations, or an alternative of
-- negations only: `a or -b`) is refused (22023), since it could only be
-- answered by reading every line of the scope.
CREATE OR REPLACE FUNCTION voidrunner_log_chunk_query(query tsquery) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE STRICT
AS $$
BEGIN
    IF querytree(query) IN ('', 'T') THEN
        RAISE EXCEPTION 'voidrunner: a log search needs a word that is not negated in each of its alternatives'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN regexp_replace(querytree(query), '<(-|[0-9]+)>', '&', 'g')::tsquery;
END;
$$;

-- Today's and tomorrow's daily partitions, so the first appends after the
-- migration do not wait in DEFAULT for the first maintenance.
SELECT voidrunner_log_partition_ensure('day', now());
SELECT voidrunner_log_partition_ensure('day', now() + interval '1 day');

-- voidrunner:no-transaction
-- squawk-disable-assume-in-transaction
-- voidrunner-db V9: tenant isolation. Every execution carries its task's
-- owner, kept equal to it by a foreign key; row-level security policies on
-- tasks and task_executions show the application role (voidrunner_app)
-- only the rows of the user its transaction is scoped to, and none when it
-- is scoped to nobody (on once that role exists); the indexes and list
-- pages the scoped repositories read.
--
-- Run outside any transaction, one statement at a time, each committed on
-- its own (see V5): the owner column is filled in batches, the indexes are
-- built concurrently and the constraints validated without blocking writes.
-- A run interrupted half-way is repeated from the top, so every statement
-- here is safe to run again.

-- Nullable for now: adding it is instant, whatever the table's size.
ALTER TABLE task_executions ADD COLUMN IF NOT EXISTS user_id uuid;

-- An execution written without its owner (by an instance of the previous
-- release during an upgrade, or by another application) takes its task's.
-- The crate's own statements write it themselves, so the trigger's
-- condition keeps them from paying for a PL/pgSQL call per row. A task
-- that does not exist (or that row-level security hides) is refused as the
-- foreign key on task_id refuses it, not as a missing owner: that is what
-- the writer got wrong.
CREATE OR REPLACE FUNCTION voidrunner_execution_owner() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.task_id IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT t.user_id INTO NEW.user_id FROM tasks t WHERE t.id = NEW.task_id;
    IF NEW.user_id IS NULL THEN
        RAISE EXCEPTION 'insert or update on table "task_executions" violates foreign key constraint "task_executions_task_id_fkey"'
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = 'task_executions_task_id_fkey',
                  TABLE = 'task_executions',
                  SCHEMA = TG_TABLE_SCHEMA,
                  DETAIL = format('Key (task_id)=(%s) is not present in table "tasks".', NEW.task_id);
    END IF;
    RETURN NEW;
END;
$$;

-- Dropped and created in one statement, so that a rerun interrupted in
-- between never leaves the table without it.
DO $$
BEGIN
    DROP TRIGGER IF EXISTS task_executions_set_user_id ON task_executions;
    CREATE TRIGGER task_executions_set_user_id BEFORE INSERT ON task_executions
        FOR EACH ROW WHEN (NEW.user_id IS NULL)
        EXECUTE FUNCTION voidrunner_execution_owner();
END;
$$;

-- The existing rows take their task's owner, a few thousand at a time in
-- primary key order, each batch committed on its own so no lock is held
-- for long. The batch does not touch updated_at: the owner is not a change
-- anyone polling by updated_at should see, so the trigger that would set
-- it (and the one that compares statuses for NOTIFY, which would find
-- none changed) is off for the batch's own transaction only; ALTER TABLE
-- is transactional, so no other session ever sees them off.
DO $$
DECLARE
    last_id uuid := '00000000-0000-0000-0000-000000000000';
    batch uuid[];
BEGIN
    LOOP
        SELECT array_agg(s.id ORDER BY s.id) INTO batch
        FROM (
            SELECT e.id FROM task_executions e
            WHERE e.id > last_id ORDER BY e.id LIMIT 5000
        ) s;
        EXIT WHEN batch IS NULL;
        ALTER TABLE task_executions DISABLE TRIGGER task_executions_set_updated_at;
        ALTER TABLE task_executions DISABLE TRIGGER task_executions_notify_update;
        UPDATE task_executions e SET user_id = t.user_id
        FROM tasks t
        WHERE e.id = ANY (batch) AND e.user_id IS NULL AND t.id = e.task_id;
        ALTER TABLE task_executions ENABLE TRIGGER task_executions_notify_update;
        ALTER TABLE task_executions ENABLE TRIGGER task_executions_set_updated_at;
        COMMIT;
        last_id := batch[array_upper(batch, 1)];
    END LOOP;
END;
$$;

-- NOT NULL without a scan under the ACCESS EXCLUSIVE lock: a CHECK added
-- NOT VALID, validated under a lock that lets writes go on, lets SET NOT
-- NULL skip its own scan; then the CHECK has done its work.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'task_executions_user_id_not_null'
          AND conrelid = 'task_executions'::regclass
    ) AND EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = 'task_executions'::regclass AND attname = 'user_id'
          AND NOT attnotnull
    ) THEN
        ALTER TABLE task_executions ADD CONSTRAINT task_executions_user_id_not_null
            CHECK (user_id IS NOT NULL) NOT VALID;
    END IF;
END;
$$;

DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'task_executions_user_id_not_null'
          AND conrelid = 'task_executions'::regclass
    ) THEN
        ALTER TABLE task_executions VALIDATE CONSTRAINT task_executions_user_id_not_null;
        ALTER TABLE task_executions ALTER COLUMN user_id SET NOT NULL;
        ALTER TABLE task_executions DROP CONSTRAINT task_executions_user_id_not_null;
    END IF;
END;
$$;

-- The key the owner's foreign key refers to: (id, user_id) is unique
-- because id is. A failed concurrent build leaves an INVALID index behind,
-- which IF NOT EXISTS would take for done (see V5).
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'tasks_id_user_id_key' AND conrelid = 'tasks'::regclass
    ) AND EXISTS (
        SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relname = 'tasks_id_user_id_key' AND NOT i.indisvalid
    ) THEN
        DROP INDEX tasks_id_user_id_key;
    END IF;
END;
$$;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS tasks_id_user_id_key ON tasks (id, user_id);

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'tasks_id_user_id_key' AND conrelid = 'tasks'::regclass
    ) THEN
        ALTER TABLE tasks ADD CONSTRAINT tasks_id_user_id_key UNIQUE USING INDEX tasks_id_user_id_key;
    END IF;
END;
$$;

-- The foreign key's own look-ups (the cascade of a task's delete, the
-- check and cascade of a change of its owner) ask for `task_id = $1 AND
-- user_id = $2`. Without an index on both, statistics taken while the table
-- was small can send them down the user's index below, through every
-- execution of that user, for each task deleted.
DROP INDEX CONCURRENTLY IF EXISTS task_executions_task_id_user_id_idx;

CREATE INDEX CONCURRENTLY IF NOT EXISTS task_executions_task_id_user_id_idx
    ON task_executions (task_id, user_id);

-- An execution's owner is its task's: the database refuses any other, and
-- a task given to another user (by another application: the crate never
-- does it) takes its executions along.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'task_executions_task_owner_fkey'
          AND conrelid = 'task_executions'::regclass
    ) THEN
        ALTER TABLE task_executions ADD CONSTRAINT task_executions_task_owner_fkey
            FOREIGN KEY (task_id, user_id) REFERENCES tasks (id, user_id)
            ON UPDATE CASCADE ON DELETE CASCADE NOT VALID;
    END IF;
END;
$$;

-- A no-op once valid; squawk cannot know that outside a transaction.
-- squawk-ignore prefer-robust-stmts
ALTER TABLE task_executions VALIDATE CONSTRAINT task_executions_task_owner_fkey;

-- The scoped lists: a user's executions, newest first, and a user's tasks
-- in one status, in task order.
DROP INDEX CONCURRENTLY IF EXISTS task_executions_user_id_created_at_id_idx;

CREATE INDEX CONCURRENTLY IF NOT EXISTS task_executions_user_id_created_at_id_idx
    ON task_executions (user_id, created_at DESC, id DESC);

DROP INDEX CONCURRENTLY IF EXISTS tasks_user_id_status_priority_created_at_id_idx;

CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_user_id_status_priority_created_at_id_idx
    ON tasks (user_id, status, priority DESC, created_at DESC, id DESC);

-- The user a transaction is scoped to: the transaction-local setting
-- voidrunner.user_id, which only the crate's scoped repositories set (SET
-- LOCAL, so it never outlives the transaction and never reaches the next
-- user of a pooled connection); NULL when unset or empty. A value that is
-- not a uuid fails the statement (22P02) rather than matching anything.
-- SQL and STABLE, so the planner inlines it and an index can compare with
-- it.
CREATE OR REPLACE FUNCTION voidrunner_scope() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(current_setting('voidrunner.user_id', true), '')::uuid $$;

-- Whether a row of `owner` may be touched by this transaction: always when
-- it is scoped to nobody (the crate's unscoped repositories: workers, the
-- rescuer, administration), else only the scope's own rows. Every statement
-- the scoped repositories share with the unscoped ones checks it, so a
-- scoped call is refused another user's row by the statement itself, also
-- for a role that row-level security does not bind (the tables' owner, a
-- superuser).
CREATE OR REPLACE FUNCTION voidrunner_in_scope(owner uuid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT voidrunner_scope() IS NULL OR owner = voidrunner_scope() $$;

-- The list pages of the scoped lists, as V8's: each walks its index from
-- the cursor for as many rows as the page takes, whatever the statistics
-- say. With two filter columns, incremental sorts are off too: otherwise
-- the user's index of V1, ordered by user first, sorted one user at a time,
-- is a plan left to statistics taken when the table was small.
CREATE OR REPLACE FUNCTION voidrunner_tasks_by_user_status_page(
    filter_user_id uuid, filter_status text, after_priority integer,
    after_created_at timestamptz, after_id uuid, max_rows bigint
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
SET enable_incremental_sort = off
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
              AND t.status = ANY (ARRAY[filter_status])
            ORDER BY t.user_id, t.status, t.priority DESC, t.created_at DESC, t.id DESC
            LIMIT max_rows;
    ELSE
        RETURN QUERY
            SELECT t.id, t.user_id, t.name::text, t.description::text,
                   t.script_content::text, t.script_type::text, t.status::text,
                   t.priority::integer, t.timeout_seconds::integer, t.metadata::jsonb,
                   t.created_at::timestamptz, t.updated_at::timestamptz
            FROM tasks t
            WHERE t.user_id = ANY (ARRAY[filter_user_id])
              AND t.status = ANY (ARRAY[filter_status])
              AND (t.priority, t.created_at, t.id) < (after_priority, after_created_at, after_id)
            ORDER BY t.user_id, t.status, t.priority DESC, t.created_at DESC, t.id DESC
            LIMIT max_rows;
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION voidrunner_executions_by_user_page(
    filter_user_id uuid, after_created_at timestamptz, after_id uuid, max_rows bigint
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
SET enable_incremental_sort = off
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
            WHERE e.user_id = ANY (ARRAY[filter_user_id])
            ORDER BY e.user_id, e.created_at DESC, e.id DESC
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
            WHERE e.user_id = ANY (ARRAY[filter_user_id])
              AND (e.created_at, e.id) < (after_created_at, after_id)
            ORDER BY e.user_id, e.created_at DESC, e.id DESC
            LIMIT max_rows;
    END IF;
END;
$$;

-- Row-level security binds the members of the role voidrunner_app (the
-- application role of the crate's roles script, `voidrunner_db::roles`):
-- such a role sees and writes only the rows of the user its transaction is
-- scoped to, and none at all when it is scoped to nobody: it fails closed.
-- Every other role sees every row through `*_unbound`: the workers, the
-- rescuer, administration, the roles of deployments that predate the roles
-- script (the tables' owner and superusers are never bound anyway). The
-- membership check is a subquery, evaluated once per statement, not once
-- per row.
CREATE OR REPLACE FUNCTION voidrunner_unbound() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT NOT EXISTS (
        SELECT 1 FROM pg_roles r
        WHERE r.rolname = 'voidrunner_app' AND pg_has_role(r.oid, 'MEMBER')
    )
$$;

DO $$
BEGIN
    DROP POLICY IF EXISTS tasks_tenant ON tasks;
    CREATE POLICY tasks_tenant ON tasks
        USING (user_id = voidrunner_scope())
        WITH CHECK (user_id = voidrunner_scope());
END;
$$;

DO $$
BEGIN
    DROP POLICY IF EXISTS tasks_unbound ON tasks;
    CREATE POLICY tasks_unbound ON tasks
        USING ((SELECT voidrunner_unbound()))
        WITH CHECK ((SELECT voidrunner_unbound()));
END;
$$;

DO $$
BEGIN
    DROP POLICY IF EXISTS task_executions_tenant ON task_executions;
    CREATE POLICY task_executions_tenant ON task_executions
        USING (user_id = voidrunner_scope())
        WITH CHECK (user_id = voidrunner_scope());
END;
$$;

DO $$
BEGIN
    DROP POLICY IF EXISTS task_executions_unbound ON task_executions;
    CREATE POLICY task_executions_unbound ON task_executions
        USING ((SELECT voidrunner_unbound()))
        WITH CHECK ((SELECT voidrunner_unbound()));
END;
$$;

-- The policies take effect once row-level security is on: here when the
-- role voidrunner_app exists (roles are the cluster's, so it may have been
-- made for another database), else when the roles script creates it and
-- turns it on in this database; before, it binds nobody. Turned on, it
-- costs every role it applies to and does not exempt (all but the tables'
-- owner, superusers and BYPASSRLS roles) more than the policies:
-- PostgreSQL then plans a non-leakproof operator (the metadata search's
-- `@>`) without the column's statistics, which can turn a search by the
-- metadata index into a walk of the list's.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voidrunner_app') THEN
        ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
        ALTER TABLE task_executions ENABLE ROW LEVEL SECURITY;
    END IF;
END;
$$;

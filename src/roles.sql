-- voidrunner-db roles: the three group roles of a deployment, and their
-- privileges in this database (see `voidrunner_db::roles` and the guide
-- "Roles and upgrades").
--
--   voidrunner_owner   owns the schema objects and runs the migrations:
--                      CREATE on the tables' schema.
--   voidrunner_app     the request handlers: the DML the user-facing
--                      repositories run, bound by row-level security (a
--                      transaction not scoped to a user sees no task and
--                      no execution).
--   voidrunner_worker  the workers, the rescuer, the pruner and the event
--                      poll: every row of tasks, task_executions and the
--                      execution logs, through policies of its own; it
--                      reads V15's concurrency caps, which neither role
--                      sets (an operator's, as the tables' owner).
--
-- All three are NOLOGIN groups: log in as a role of your own that is a
-- member of one (CREATE ROLE api LOGIN IN ROLE voidrunner_app), never of
-- two of them.
--
-- Run it as a superuser, or as the owner of the tables and of their schema
-- with CREATEROLE (needed only while a role is still missing), after
-- migrate() and again after every upgrade: it grants on what exists. On a
-- database without the tables it creates the roles and gives
-- voidrunner_owner CREATE on the current schema, so that the migrations
-- can then run as it (the grants wait for the next run).
--
-- Idempotent: each role is created only if missing (roles are shared by
-- every database of the cluster, so a second database or a second run
-- finds them), grants that exist are granted again as no-ops, and each
-- policy is dropped and created afresh. It turns on row-level security for
-- tasks and task_executions once V9's policies are there (see V9), for
-- V12's counters and V13's log tables once theirs are. It
-- never revokes, never changes an
-- object's owner and never alters an existing role, but it stops without
-- changing anything if voidrunner_app could escape row-level security (a
-- superuser, BYPASSRLS, the tables' owner, or a member of another of the
-- three). It runs as one transaction, so it is all or nothing, under a
-- lock_timeout of 5 s: on a busy table it may give up rather than queue
-- the table's traffic behind it; run it again then.

BEGIN;

SET LOCAL lock_timeout = '5s';

-- One run at a time per database ("voidrun" + 2): two concurrent GRANTs
-- on one table can fail with "tuple concurrently updated".
DO $$
BEGIN
    PERFORM pg_advisory_xact_lock(8534155699028323842);
END;
$$;

-- The roles. Another database's run may create one between the check and
-- the CREATE: that is as good as creating it here.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['voidrunner_owner', 'voidrunner_app', 'voidrunner_worker'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END;
$$;

-- The app role must stay bound by row-level security: fail closed rather
-- than grant to a role that would see every user's rows.
DO $$
DECLARE
    tables_owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = to_regclass('tasks'));
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_roles r
        WHERE r.rolname = 'voidrunner_app' AND (r.rolsuper OR r.rolbypassrls)
    ) OR pg_has_role('voidrunner_app', 'voidrunner_owner', 'USAGE')
      OR pg_has_role('voidrunner_app', 'voidrunner_worker', 'USAGE')
      OR (tables_owner IS NOT NULL AND pg_has_role('voidrunner_app', tables_owner, 'USAGE'))
    THEN
        RAISE EXCEPTION 'voidrunner_app would not be bound by row-level security'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'It is a superuser, has BYPASSRLS, owns the tables or is a member of voidrunner_owner, voidrunner_worker or the tables'' owner.',
                  HINT = 'Make it a plain NOLOGIN role again (ALTER ROLE voidrunner_app NOBYPASSRLS, REVOKE … FROM voidrunner_app), then run the script again.';
    END IF;
END;
$$;

-- The schema: CREATE for the owner role, USAGE for all three. Granted when
-- the one running the script may (a superuser, the schema's owner); else
-- (the tables' owner) GRANT would only warn, so it is not tried, and a
-- privilege the role lacks all the same (not even through PUBLIC, which
-- has USAGE on `public` unless revoked) stops the script.
DO $$
DECLARE
    tasks_table regclass := to_regclass('tasks');
    target_schema name := (
        SELECT n.nspname FROM pg_namespace n
        WHERE n.oid = coalesce(
            (SELECT c.relnamespace FROM pg_class c WHERE c.oid = tasks_table),
            (SELECT n2.oid FROM pg_namespace n2 WHERE n2.nspname = current_schema())
        )
    );
    wanted record;
    can_grant boolean;
BEGIN
    IF target_schema IS NULL THEN
        RAISE EXCEPTION 'no schema to grant on: the search_path names none that exists';
    END IF;
    can_grant := (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user)
        OR pg_has_role((SELECT n.nspowner FROM pg_namespace n WHERE n.nspname = target_schema), 'USAGE');
    FOR wanted IN
        SELECT * FROM (VALUES
            ('voidrunner_owner', 'USAGE'), ('voidrunner_owner', 'CREATE'),
            ('voidrunner_app', 'USAGE'), ('voidrunner_worker', 'USAGE')
        ) AS w(grantee, privilege)
    LOOP
        IF can_grant THEN
            EXECUTE format('GRANT %s ON SCHEMA %I TO %I', wanted.privilege, target_schema, wanted.grantee);
        END IF;
        IF NOT has_schema_privilege(wanted.grantee, target_schema, wanted.privilege) THEN
            RAISE EXCEPTION 'could not grant % on schema % to %', wanted.privilege, target_schema, wanted.grantee
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Run the script as the schema''s owner or a superuser.';
        END IF;
    END LOOP;
    IF tasks_table IS NULL THEN
        RAISE NOTICE 'voidrunner roles: no table tasks in the search_path yet; run the script again after migrate() to grant on the tables';
    END IF;
END;
$$;

-- The tables and functions, when they exist. What each role runs:
--
-- voidrunner_app: users.*, tasks.*, the lists, and of the queue enqueue,
-- enqueue_many, task_status (a task's cancel) and finish (an execution's
-- cancel), executions.get and latest_for_task. A deleted task's or user's
-- executions go by the foreign keys' cascade, which needs no privilege of
-- the caller, so no DELETE on task_executions. `FOR NO KEY UPDATE` needs
-- UPDATE, which it has where it locks. Functions: the scope's (V9: in the
-- statements, and in the policies, which run with the caller's
-- privileges), the list pages and the counts' reads (V12: counts.tasks,
-- counts.tasks_by_user; the counters' triggers run as the tables' owner).
--
-- voidrunner_worker: claim, heartbeat, complete, rescue (which queues
-- retries: INSERT), prune (DELETE of executions), enqueue, the event poll,
-- and the fair claim, which reads the caps as its caller (V15).
-- It changes tasks but never creates or deletes one. Functions: every
-- function of the crate but the trigger functions (a trigger runs without
-- EXECUTE), so the queue's (voidrunner_claim, voidrunner_expired_leases,
-- voidrunner_prunable, …) as they are added.
DO $$
DECLARE
    tasks_table regclass := to_regclass('tasks');
    fn record;
BEGIN
    IF tasks_table IS NULL THEN
        RETURN;
    END IF;
    -- Not DELETE on users: deleting a user deletes their tasks and
    -- executions by cascade, which row-level security does not bind (the
    -- cascade runs as the tables' owner), so it is administration's.
    GRANT SELECT, INSERT, UPDATE ON users TO voidrunner_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON tasks TO voidrunner_app;
    GRANT SELECT, INSERT, UPDATE ON task_executions TO voidrunner_app;
    GRANT SELECT, UPDATE ON tasks TO voidrunner_worker;
    GRANT SELECT, INSERT, UPDATE, DELETE ON task_executions TO voidrunner_worker;
    -- V12's counters: read by the counts, written only by the triggers on
    -- tasks (as the tables' owner), so SELECT only; the application role
    -- sees only its scope's rows of them.
    IF to_regclass('task_counts') IS NOT NULL THEN
        GRANT SELECT ON task_counts, task_counts_by_user TO voidrunner_app, voidrunner_worker;
    END IF;
    -- V13's execution logs: the application role reads its scope's lines
    -- (row-level security, below); the worker appends, reads and deletes
    -- every execution's. An execution's lines go with it through V13's
    -- triggers (SECURITY DEFINER), which need none of these.
    IF to_regclass('task_execution_logs') IS NOT NULL THEN
        GRANT SELECT ON task_execution_logs, task_execution_log_chunks TO voidrunner_app;
        GRANT SELECT, INSERT, DELETE ON task_execution_logs, task_execution_log_chunks
            TO voidrunner_worker;
    END IF;
    -- V15's per-user lock rows of the fair claim: the worker makes and
    -- locks them (FOR NO KEY UPDATE needs UPDATE); nobody else may, so no
    -- other role can stall a user's claims by holding their row.
    IF to_regclass('queue_user_locks') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE ON queue_user_locks TO voidrunner_worker;
    END IF;
    -- V15's caps: the fair claim reads them as the worker. The
    -- application role gets nothing on them: a user-facing path never
    -- reads or sets another user's cap (an operator's, as the owner).
    IF to_regclass('queue_settings') IS NOT NULL THEN
        GRANT SELECT ON queue_settings, user_concurrency_limits TO voidrunner_worker;
    END IF;
    FOR fn IN
        SELECT p.oid::regprocedure AS signature, p.proname
        FROM pg_proc p
        WHERE p.pronamespace = (SELECT c.relnamespace FROM pg_class c WHERE c.oid = tasks_table)
          AND p.proname LIKE 'voidrunner\_%'
          AND p.prorettype <> 'trigger'::regtype
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO voidrunner_worker', fn.signature);
        IF fn.proname IN ('voidrunner_scope', 'voidrunner_in_scope', 'voidrunner_unbound',
                          'voidrunner_task_counts_of', 'voidrunner_task_counts_all')
           OR fn.proname LIKE 'voidrunner\_%\_page'
        THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO voidrunner_app', fn.signature);
        END IF;
    END LOOP;
END;
$$;

-- Row-level security on: V9's policies (migration) bind voidrunner_app from
-- now on. V9 turns it on itself only when this role already exists, since
-- before there is nobody to bind and it would cost other non-owner roles
-- the statistics of non-leakproof operators (see V9).
DO $$
BEGIN
    -- Each table only once it has both of V9's policies: row-level
    -- security without them would hide every row from every role it binds
    -- (a V9 interrupted half-way has some and not others).
    IF (SELECT count(*) FROM pg_policy
        WHERE polrelid = to_regclass('tasks') AND polname IN ('tasks_tenant', 'tasks_unbound')) = 2
    THEN
        ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
    END IF;
    IF (SELECT count(*) FROM pg_policy
        WHERE polrelid = to_regclass('task_executions')
          AND polname IN ('task_executions_tenant', 'task_executions_unbound')) = 2
    THEN
        ALTER TABLE task_executions ENABLE ROW LEVEL SECURITY;
    END IF;
    IF (SELECT count(*) FROM pg_policy
        WHERE polrelid = to_regclass('task_counts_by_user')
          AND polname IN ('task_counts_by_user_tenant', 'task_counts_by_user_unbound')) = 2
    THEN
        ALTER TABLE task_counts_by_user ENABLE ROW LEVEL SECURITY;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_policy
               WHERE polrelid = to_regclass('task_counts') AND polname = 'task_counts_unbound')
    THEN
        ALTER TABLE task_counts ENABLE ROW LEVEL SECURITY;
    END IF;
    IF (SELECT count(*) FROM pg_policy
        WHERE polrelid = to_regclass('task_execution_logs')
          AND polname IN ('task_execution_logs_tenant', 'task_execution_logs_unbound')) = 2
    THEN
        ALTER TABLE task_execution_logs ENABLE ROW LEVEL SECURITY;
    END IF;
    IF (SELECT count(*) FROM pg_policy
        WHERE polrelid = to_regclass('task_execution_log_chunks')
          AND polname IN ('task_execution_log_chunks_tenant',
                          'task_execution_log_chunks_unbound')) = 2
    THEN
        ALTER TABLE task_execution_log_chunks ENABLE ROW LEVEL SECURITY;
    END IF;
END;
$$;

-- The worker reads and writes every row: a permissive policy of its own,
-- OR-ed with V9's, so that its access does not rest on V9 leaving roles
-- other than voidrunner_app unbound (BYPASSRLS would do it too, but only
-- a superuser may grant that). Policies for a role apply to its members.
DO $$
BEGIN
    IF to_regclass('tasks') IS NULL THEN
        RETURN;
    END IF;
    DROP POLICY IF EXISTS tasks_worker ON tasks;
    CREATE POLICY tasks_worker ON tasks TO voidrunner_worker
        USING (true) WITH CHECK (true);
    DROP POLICY IF EXISTS task_executions_worker ON task_executions;
    CREATE POLICY task_executions_worker ON task_executions TO voidrunner_worker
        USING (true) WITH CHECK (true);
    IF to_regclass('task_counts') IS NOT NULL THEN
        DROP POLICY IF EXISTS task_counts_worker ON task_counts;
        CREATE POLICY task_counts_worker ON task_counts FOR SELECT TO voidrunner_worker
            USING (true);
        DROP POLICY IF EXISTS task_counts_by_user_worker ON task_counts_by_user;
        CREATE POLICY task_counts_by_user_worker ON task_counts_by_user FOR SELECT
            TO voidrunner_worker USING (true);
    END IF;
    IF to_regclass('task_execution_logs') IS NOT NULL THEN
        DROP POLICY IF EXISTS task_execution_logs_worker ON task_execution_logs;
        CREATE POLICY task_execution_logs_worker ON task_execution_logs TO voidrunner_worker
            USING (true) WITH CHECK (true);
        DROP POLICY IF EXISTS task_execution_log_chunks_worker ON task_execution_log_chunks;
        CREATE POLICY task_execution_log_chunks_worker ON task_execution_log_chunks
            TO voidrunner_worker USING (true) WITH CHECK (true);
    END IF;
END;
$$;

COMMIT;

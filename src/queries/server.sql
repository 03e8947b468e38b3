-- Statements about the server itself.

-- name: version
-- The health check: the server's version, and proof that it answers.
SELECT current_setting('server_version')

-- name: probe
-- Sent just before COMMIT, in the same round trip: its error tells an
-- aborted transaction (25P02) from one that commits.
SELECT 1

-- name: missing_privileges
-- What every pool reads, whatever it is for, and the session's role may
-- not: SELECT on tasks and task_executions, USAGE on their schema, and
-- EXECUTE on the functions reads go through (the scope's, V9, which the
-- statements and the row-level security policies call, and the list
-- pages). Writes and the queue's functions are not asked for: a read-only
-- pool and the app role lack some, and the worker role does not read
-- users. The tables are looked for in the schemas the search_path names,
-- whether or not the role may use them (the server skips those it may
-- not, which would hide the tables); only what exists is checked, so a
-- database not migrated yet passes. One row per privilege missing: the
-- role, the privilege, the kind of object and its name. A simple-query
-- batch, one round trip in every pooler mode, in a read-only transaction
-- of its own without statement_timeout: the pool's may be as short as
-- 1 ms, and the crate bounds the wait itself.
BEGIN READ ONLY;
SET LOCAL statement_timeout = 0;
WITH searched AS (
  SELECT n.oid, n.nspname, p.ord
  FROM unnest(string_to_array(current_setting('search_path'), ',')) WITH ORDINALITY AS p(entry, ord)
  JOIN pg_namespace n ON n.nspname = CASE WHEN btrim(p.entry) = '"$user"' THEN current_user::text
                                          ELSE btrim(btrim(p.entry), '"') END
), found AS (
  SELECT DISTINCT ON (c.relname) c.oid, c.relname, s.oid AS schema_oid, s.nspname
  FROM searched s JOIN pg_class c ON c.relnamespace = s.oid
  WHERE c.relname IN ('tasks', 'task_executions') AND c.relkind IN ('r', 'p')
  ORDER BY c.relname, s.ord
)
SELECT current_user::text AS role, 'USAGE' AS privilege, 'schema' AS kind, f.nspname::text AS object
FROM (SELECT DISTINCT schema_oid, nspname FROM found) f
WHERE NOT has_schema_privilege(f.schema_oid, 'USAGE')
UNION ALL
SELECT current_user::text, 'SELECT', 'table', f.relname::text
FROM found f WHERE NOT has_table_privilege(f.oid, 'SELECT')
UNION ALL
SELECT current_user::text, 'EXECUTE', 'function', p.oid::regprocedure::text
FROM pg_proc p
WHERE p.pronamespace IN (SELECT schema_oid FROM found)
  AND (p.proname IN ('voidrunner_scope', 'voidrunner_in_scope', 'voidrunner_unbound')
       OR p.proname LIKE 'voidrunner\_%\_page')
  AND NOT has_function_privilege(p.oid, 'EXECUTE')
ORDER BY 3, 4;
COMMIT

-- name: replay_position
-- A replica's probe, and the check sent in the same round trip ahead of a
-- read that carries a read-your-writes token: whether the server is a
-- standby, and how far it has replayed the primary's WAL (NULL on a
-- primary, which a promoted replica now is).
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()

-- name: insert_position
-- The primary's WAL insert position: a read-your-writes token, sent in the
-- same round trip after a write (or after COMMIT). The insert position,
-- not the write or flush one, so that it covers a commit that was
-- asynchronous (synchronous_commit = off) and is not written yet.
SELECT pg_current_wal_insert_lsn()

-- name: write_position
-- The primary's WAL write position, sampled by the replica prober to
-- measure each replica's replay lag against (the insert position may sit
-- a page header past the last record on an idle server, which no replica
-- would ever reach), and the cluster's identifier, which each replica
-- must share.
SELECT pg_current_wal_lsn(), (SELECT system_identifier FROM pg_control_system())

-- name: replica_probe
-- The prober's question to a replica: standby or not, how far it has
-- replayed, and which cluster it is a copy of.
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), (SELECT system_identifier FROM pg_control_system())

-- The statements of the tasks table, but for its status (set only by the
-- queue's statements, `queue.sql`). `{{task}}` is the task's column list.

-- columns: task
-- A task's columns, in the order `read_task` reads them.
id, user_id, name, description, script_content, script_type, status,
priority, timeout_seconds, metadata, created_at, updated_at

-- name: create
-- `$1` new id, `$2`–`$9` the new task's fields.
INSERT INTO tasks (id, user_id, name, description, script_content, script_type,
                   priority, timeout_seconds, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {{task}}

-- name: create_many
-- The tasks of `create`, one array element each (`$1`–`$9`). The rows come
-- back in input order: RETURNING promises no order, so they are joined back
-- to their input position.
WITH input AS (
  SELECT id, user_id, name, description, script_content, script_type,
         priority, timeout_seconds, metadata, ord
  FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
              $6::text[], $7::int4[], $8::int4[], $9::jsonb[])
    WITH ORDINALITY AS input(id, user_id, name, description, script_content,
                             script_type, priority, timeout_seconds, metadata, ord)
), created AS (
  INSERT INTO tasks (id, user_id, name, description, script_content,
                     script_type, priority, timeout_seconds, metadata)
  SELECT id, user_id, name, description, script_content, script_type,
         priority, timeout_seconds, metadata
  FROM input
  RETURNING {{task}}
)
SELECT {{created.task}} FROM created JOIN input ON input.id = created.id
ORDER BY input.ord

-- name: get
-- `$1` id. Every statement on one task checks `voidrunner_in_scope` (V9):
-- true outside a scoped call, and in one only for the scope's own tasks, so
-- a scoped call finds another user's task exactly as it finds a missing one.
SELECT {{task}} FROM tasks WHERE id = $1 AND voidrunner_in_scope(user_id)

-- name: update
-- `$1` id, `$2`–`$9` the fields; NULL leaves one as it is. The description
-- needs a flag (`$3`), since NULL is also a value it can be set to.
UPDATE tasks SET
  name = COALESCE($2, name),
  description = CASE WHEN $3 THEN $4 ELSE description END,
  script_content = COALESCE($5, script_content),
  script_type = COALESCE($6, script_type),
  priority = COALESCE($7, priority),
  timeout_seconds = COALESCE($8, timeout_seconds),
  metadata = COALESCE($9, metadata),
  updated_at = now()
WHERE id = $1 AND voidrunner_in_scope(user_id)
RETURNING {{task}}

-- name: delete
-- `$1` id; its executions go with it (ON DELETE CASCADE).
DELETE FROM tasks WHERE id = $1 AND voidrunner_in_scope(user_id)

-- name: import
-- The bulk load: binary COPY of new tasks, their columns in this order.
COPY tasks (id, user_id, name, description, script_content, script_type,
            priority, timeout_seconds, metadata) FROM STDIN BINARY

-- The statements of the users table. Each is named (`-- name:`) and
-- registered as `users.<name>`; `{{user}}` is the user's column list.

-- columns: user
-- A user's columns, in the order `read_user` reads them.
id, email, display_name, password_hash, created_at, updated_at

-- name: create
-- `$1` new id, `$2` normalised email, `$3` password hash, `$4` display
-- name (checked and trimmed).
INSERT INTO users (id, email, password_hash, display_name) VALUES ($1, $2, $3, $4)
RETURNING {{user}}

-- name: get
-- `$1` id.
SELECT {{user}} FROM users WHERE id = $1

-- name: get_by_email
-- `$1` normalised email; served by the index of the users_email_key
-- constraint.
SELECT {{user}} FROM users WHERE email = $1

-- name: update
-- `$1` id, `$2` email, `$3` password hash, `$4` display name; NULL leaves
-- a column as it is.
UPDATE users
SET email = COALESCE($2, email), password_hash = COALESCE($3, password_hash),
    display_name = COALESCE($4, display_name), updated_at = now()
WHERE id = $1
RETURNING {{user}}

-- name: lock
-- The first lock of a user's delete (the crate's lock order: the user, its
-- tasks in id order, then their executions): `$1` id. Once the user row is
-- locked no task can be added for it.
SELECT id FROM users WHERE id = $1 FOR UPDATE

-- name: lock_tasks
-- The second lock of a user's delete: `$1` user id, its tasks in id order,
-- in a statement of its own so that its snapshot sees every task.
SELECT id FROM tasks WHERE user_id = $1 ORDER BY id FOR UPDATE

-- name: delete
-- `$1` id; the tasks and executions go with it (ON DELETE CASCADE).
DELETE FROM users WHERE id = $1

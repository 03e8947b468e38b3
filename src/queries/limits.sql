-- The concurrency caps of the fair claim (migration V15): the deployment's
-- default, and each user's override. The fair claim reads them itself
-- (`voidrunner_claim_fair`); these are the statements that set and show
-- them.

-- name: default_get
-- The default cap; no row when another application deleted the settings'
-- row (then there is none).
SELECT default_max_running FROM queue_settings WHERE singleton

-- name: default_set
-- `$1` the default cap, NULL for none. Makes the settings' row again if
-- another application deleted it.
INSERT INTO queue_settings (singleton, default_max_running, updated_at)
VALUES (true, $1, now())
ON CONFLICT (singleton) DO UPDATE
SET default_max_running = EXCLUDED.default_max_running, updated_at = now()

-- name: user_get
-- `$1` user. One row when the user exists: whether they have an override
-- and its cap, the default cap, and how many of their executions run now
-- (through V14's index of running executions by user).
SELECT l.user_id IS NOT NULL AS overridden, l.max_running,
       (SELECT s.default_max_running FROM queue_settings s WHERE s.singleton) AS default_max_running,
       (SELECT count(*) FROM task_executions e
        WHERE e.user_id = u.id AND e.status = 'running') AS running
FROM users u
LEFT JOIN user_concurrency_limits l ON l.user_id = u.id
WHERE u.id = $1

-- name: user_set
-- `$1` user, `$2` their cap (NULL: none). The user is locked against a
-- delete (the foreign key's own lock) first, so a missing user is told
-- apart from a failure: `found` is false and nothing is written.
WITH target AS MATERIALIZED (
  SELECT u.id FROM users u WHERE u.id = $1 FOR KEY SHARE
), saved AS (
  INSERT INTO user_concurrency_limits (user_id, max_running, updated_at)
  SELECT target.id, $2, now() FROM target
  ON CONFLICT (user_id) DO UPDATE
  SET max_running = EXCLUDED.max_running, updated_at = now()
)
SELECT EXISTS (SELECT 1 FROM target) AS found

-- name: user_clear
-- `$1` user: their override removed, so the default applies. `found` as in
-- `user_set`.
WITH target AS MATERIALIZED (
  SELECT u.id FROM users u WHERE u.id = $1 FOR KEY SHARE
), gone AS (
  DELETE FROM user_concurrency_limits l USING target WHERE l.user_id = target.id
)
SELECT EXISTS (SELECT 1 FROM target) AS found

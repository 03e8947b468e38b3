-- Statements about the server itself.

-- name: version
-- The health check: the server's version, and proof that it answers.
SELECT current_setting('server_version')

-- name: probe
-- Sent just before COMMIT, in the same round trip: its error tells an
-- aborted transaction (25P02) from one that commits.
SELECT 1

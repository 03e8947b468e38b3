-- The statements of the execution logs (migration V13): appends, pages,
-- tails and searches of `task_execution_logs` and its search chunks
-- `task_execution_log_chunks`, and the partition maintenance's calls.
-- Every read names the execution's created_at, the partition key, so it
-- reads one partition.

-- columns: log_line
-- A line's columns, in the order `read_line` reads them.
execution_id, seq, stream, logged_at, line

-- name: append
-- Lines of many executions, each batch lease-checked as a completion is:
-- `$1` executions (no id twice), `$2` their workers; `$3`–`$7` the lines
-- (execution, seq, stream, time, text), one array element per line. Locks
-- as `lock_many` (tasks, then executions, in id order), so a completion or
-- a rescue of an execution waits for an append in flight and an append
-- after them is refused: no line is added to an execution its worker no
-- longer holds. A line already stored (same execution and seq) is skipped,
-- so a retried batch adds nothing twice. The new lines of each execution
-- are indexed for search in chunks of at most 64 KiB of text. One row per
-- execution, in input order: `appended` lines added, or why none could be.
WITH req AS (
  SELECT id, worker_id, ord
  FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS r(id, worker_id, ord)
), {{lock_many}}, held AS MATERIALIZED (
  SELECT c.id, c.created_at, c.user_id, c.task_id
  FROM current c
  JOIN req r ON r.id = c.id
  WHERE c.status = 'running' AND c.worker_id = r.worker_id
), added AS (
  INSERT INTO task_execution_logs (execution_id, execution_created_at, user_id, seq, stream,
                                   logged_at, line)
  SELECT h.id, h.created_at, h.user_id, l.seq, l.stream, l.logged_at, l.line
  FROM unnest($3::uuid[], $4::int8[], $5::text[], $6::timestamptz[], $7::text[])
    AS l(execution_id, seq, stream, logged_at, line)
  JOIN held h ON h.id = l.execution_id
  ON CONFLICT (execution_id, execution_created_at, seq) DO NOTHING
  RETURNING execution_id, execution_created_at, user_id, seq, line
), sized AS (
  SELECT a.execution_id, a.execution_created_at, a.user_id, a.seq, a.line,
         (sum(octet_length(a.line)) OVER (PARTITION BY a.execution_id ORDER BY a.seq)
          - octet_length(a.line)) / 65536 AS chunk
  FROM added a
), indexed AS (
  INSERT INTO task_execution_log_chunks (execution_id, execution_created_at, user_id, task_id,
                                         first_seq, last_seq, document)
  SELECT s.execution_id, s.execution_created_at, s.user_id, h.task_id, min(s.seq), max(s.seq),
         strip(to_tsvector('simple', string_agg(s.line, E'\n' ORDER BY s.seq)))
  FROM sized s JOIN held h ON h.id = s.execution_id
  GROUP BY s.execution_id, s.execution_created_at, s.user_id, h.task_id, s.chunk
), counted AS (
  SELECT execution_id, count(*) AS appended FROM added GROUP BY execution_id
)
SELECT r.ord, c.status AS current_status, c.worker_id AS current_worker,
       c.lease_expires_at IS NOT NULL AS leased, h.id IS NOT NULL AS held,
       COALESCE(n.appended, 0) AS appended
FROM req r
LEFT JOIN current c ON c.id = r.id
LEFT JOIN held h ON h.id = r.id
LEFT JOIN counted n ON n.execution_id = r.id
ORDER BY r.ord

-- name: after
-- Execution `$1`'s status and its lines after seq `$2` (-1: from the
-- first), in order, at most `$3`, read in one snapshot: when the status is
-- final, no line can follow the ones returned beyond the limit (an append
-- after the end is refused). No row when the execution does not exist or
-- is not in the call's scope; one row with NULL line columns when it has
-- no lines there.
-- The lines are read by `voidrunner_log_after_page` (V13): one walk of
-- the key index of the execution's partition whatever the statistics.
SELECT e.status AS execution_status, {{l.log_line}}
FROM task_executions e
LEFT JOIN LATERAL voidrunner_log_after_page(e.id, e.created_at, $2, $3) l ON true
WHERE e.id = $1 AND voidrunner_in_scope(e.user_id)
ORDER BY l.seq

-- name: tail
-- As `after`, the last `$2` lines of execution `$1`, newest first.
SELECT e.status AS execution_status, {{l.log_line}}
FROM task_executions e
LEFT JOIN LATERAL voidrunner_log_tail_page(e.id, e.created_at, $2) l ON true
WHERE e.id = $1 AND voidrunner_in_scope(e.user_id)
ORDER BY l.seq DESC

-- fragment: search_matches
-- The lines matching the query `$2` of the chunks chosen by the statement's
-- own condition on `c` (a task's or a user's), newest execution first,
-- after the cursor `$3`–`$5` (created_at, execution, seq; NULL: from the
-- start), at most `$6`. The chunks are found by their GIN index (or the
-- owner's index: the planner picks) with the query's indexable part
-- (`voidrunner_log_chunk_query`: its words, negations left out), their
-- lines by the lines' key, and each line is checked against the whole
-- query on its own. Lines two chunks share (a retry that filled a gap)
-- come back once; a line must be the chunk's owner's, and the chunk's
-- execution must still be there and still its owner's (a REPEATABLE READ
-- transaction that deleted it, or gave its task to another user, cannot
-- see lines appended after its snapshot: those are left behind, never
-- served, and go with their partition). A query with nothing to look up
-- fails (22023, `voidrunner_log_chunk_query`).
SELECT DISTINCT c.task_id, l.execution_created_at, {{l.log_line}}
FROM task_execution_log_chunks c
JOIN LATERAL (
  SELECT execution_created_at, {{log_line}} FROM task_execution_logs x
  WHERE x.execution_id = c.execution_id AND x.execution_created_at = c.execution_created_at
    -- One probe of the execution per chunk (a scalar subquery on the
    -- chunk's columns only: a gate of the chunk's lines, never a join).
    AND (SELECT e.user_id FROM task_executions e WHERE e.id = c.execution_id) = c.user_id
    AND x.seq BETWEEN c.first_seq AND c.last_seq
    AND to_tsvector('simple', x.line) @@ (SELECT websearch_to_tsquery('simple', $2))
    AND x.user_id = c.user_id
    AND voidrunner_in_scope(x.user_id)
) l ON true
WHERE c.document @@ (SELECT voidrunner_log_chunk_query(websearch_to_tsquery('simple', $2)))
  AND voidrunner_in_scope(c.user_id)
  AND ($3::timestamptz IS NULL
       OR (c.execution_created_at, c.execution_id, c.first_seq) <= ($3, $4, $5))
  AND ($3::timestamptz IS NULL
       OR (l.execution_created_at, l.execution_id, l.seq) < ($3, $4, $5))

-- name: search_task
-- `search_matches` in task `$1`'s logs. The task's owner is named too, so
-- the chunks' owner index serves where the GIN index cannot (see V13).
{{search_matches}}
  AND c.task_id = $1
  AND c.user_id = (SELECT t.user_id FROM tasks t WHERE t.id = $1)
ORDER BY l.execution_created_at DESC, l.execution_id DESC, l.seq DESC
LIMIT $6

-- name: search_user
-- `search_matches` in user `$1`'s logs.
{{search_matches}}
  AND c.user_id = $1
ORDER BY l.execution_created_at DESC, l.execution_id DESC, l.seq DESC
LIMIT $6

-- name: partitions_waiting
-- The range starts (width `$1`) of rows waiting in the DEFAULT partitions
-- that a partition can hold (a row of another writer's with a time past
-- year 9999 waits for good rather than stall the maintenance).
SELECT w.range_start FROM voidrunner_log_partition_waiting($1) AS w(range_start)
WHERE isfinite(w.range_start) AND w.range_start < '9999-12-01 00:00:00+00'

-- name: partition_ensure
-- The partitions for the range of width `$1` holding `$2`, made where
-- missing; one row per partition made.
SELECT partition, moved FROM voidrunner_log_partition_ensure($1, $2)

-- name: partition_drop_expired
-- Drops the oldest partition that ends at or before `$1`; its name, or NULL.
SELECT voidrunner_log_partition_drop_expired($1) AS dropped

-- name: now
-- The server's time: where the partition maintenance stands.
SELECT now() AS now

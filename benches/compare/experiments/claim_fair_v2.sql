-- An experiment (issue #22), not a migration: V15's `voidrunner_claim_fair`
-- with the same signature, results and order (checked against V15's on the
-- same queues, 1,000 users and the noisy neighbour's five, several rotation
-- positions: identical rows in identical order), replaced in the bench's
-- own database only:
--
--   VR_FAIR_SQL="$(cat experiments/claim_fair_v2.sql)" cargo run --release -- --fair-only ...
--
-- What it changes, and why (see NOTES.md, "Issue #22"):
--
-- 1. The per-user probe and the per-user claim name the user as a range of
--    one (`user_id >= u AND user_id <= u`) and order by V14's whole key.
--    With `user_id = u` the planner drops user_id from the ORDER BY, so
--    V8's claim index (priority DESC, run_after, id) serves the order too,
--    with user_id as a filter; the generic plan (force_generic_plan) picks
--    it when the statistics saw one user's backlog, and then every visit to
--    another user reads that backlog row by row: 100,000 rows, 120-170 ms,
--    per probe in the noisy-neighbour case (a claim of 10 took 1.1-2.6 s
--    instead of 2-9 ms). As a range only V14's index gives the order.
-- 2. The next-user lookup orders by V14's whole key too, so it walks V14's
--    index (with `ORDER BY user_id` alone the planner may take
--    `task_executions_user_id_created_at_id_idx` and filter status in the
--    heap, reading every finished execution of the users it passes: it does
--    on a freshly loaded, analyzed, not yet vacuumed queue), and its row is
--    the user's first in claim order: the first probe of each user is saved
--    (one statement less per user visited).
-- 3. The running count of a capped user: the same range of one, ordered
--    by user, so it reads V14's running index (at most the cap's entries);
--    with `=` the generic plan may take (status, created_at DESC, id DESC)
--    and read every running execution of every user, filtering user_id.
-- 4. The override table is read per user only when it has rows at all.
CREATE OR REPLACE FUNCTION voidrunner_claim_fair(
    claimer text, max_rows bigint, lease_seconds double precision, after_user uuid
)
RETURNS TABLE (
    id uuid, task_id uuid, status text, return_code integer, stdout text, stderr text,
    execution_time_ms integer, memory_usage_bytes bigint, started_at timestamptz,
    completed_at timestamptz, created_at timestamptz, priority integer,
    run_after timestamptz, attempt integer, worker_id text,
    lease_expires_at timestamptz, heartbeat_at timestamptz, updated_at timestamptz,
    script_content text, script_type text, timeout_seconds integer,
    user_id uuid, claim_order bigint
)
LANGUAGE plpgsql VOLATILE ROWS 10
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    at_user uuid := after_user;
    next_user uuid;
    -- The first user of the current round, whether the walk wrapped around
    -- since, and what the round took.
    round_first uuid;
    round_wrapped boolean := false;
    round_taken bigint := 0;
    round_users bigint := 0;
    quota bigint := 1;
    default_cap integer;
    -- Whether any user has an override: if none, no lookup per user.
    overrides boolean;
    -- The first row of `next_user` in claim order, found with the user.
    first_priority bigint;
    first_run_after timestamptz;
    first_id uuid;
    probed boolean;
    cap integer;
    overridden boolean;
    running bigint;
    take bigint;
    before bigint;
    user_taken bigint;
    at_priority bigint;
    from_run_after timestamptz;
    from_id uuid;
    ids uuid[] := '{}';
    owners uuid[] := '{}';
    scripts text[] := '{}';
    kinds text[] := '{}';
    time_limits integer[] := '{}';
BEGIN
    -- As `voidrunner_claim`: another caller gets the crate's refusals.
    IF claimer IS NULL OR btrim(claimer) = '' THEN
        RAISE EXCEPTION 'voidrunner_claim_fair: claimer must be a non-blank worker id'
            USING ERRCODE = '22023';
    END IF;
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'voidrunner_claim_fair: max_rows must be at least 1, not %', max_rows
            USING ERRCODE = '22023';
    END IF;
    IF lease_seconds IS NULL OR NOT (lease_seconds > 0 AND lease_seconds < 'Infinity') THEN
        RAISE EXCEPTION 'voidrunner_claim_fair: lease_seconds must be positive and finite, not %',
            lease_seconds USING ERRCODE = '22023';
    END IF;
    -- No row (deleted by another application): no default cap.
    SELECT s.default_max_running INTO default_cap FROM queue_settings s WHERE s.singleton;
    overrides := EXISTS (SELECT 1 FROM user_concurrency_limits);
    LOOP
        EXIT WHEN cardinality(ids) >= max_rows;
        -- Two queries rather than one with `at_user IS NULL OR ...`, which
        -- the generic plan could only apply as a filter of a whole walk.
        IF at_user IS NULL THEN
            SELECT e.user_id, e.priority, e.run_after, e.id
            INTO next_user, first_priority, first_run_after, first_id
            FROM task_executions e
            WHERE e.status = 'pending'
            ORDER BY e.user_id, e.priority DESC, e.run_after, e.id LIMIT 1;
        ELSE
            SELECT e.user_id, e.priority, e.run_after, e.id
            INTO next_user, first_priority, first_run_after, first_id
            FROM task_executions e
            WHERE e.status = 'pending' AND e.user_id > at_user
            ORDER BY e.user_id, e.priority DESC, e.run_after, e.id LIMIT 1;
        END IF;
        IF NOT FOUND THEN
            EXIT WHEN at_user IS NULL; -- nothing pending at all
            at_user := NULL; -- past the highest id: around to the lowest
            round_wrapped := true;
            CONTINUE;
        END IF;
        -- Back at (or, after a wrap, past: that user's rows may have gone)
        -- the round's first user: the round is over.
        IF round_first IS NOT NULL
           AND (next_user = round_first OR (round_wrapped AND next_user > round_first)) THEN
            EXIT WHEN round_taken = 0;
            quota := greatest(1, ceil((max_rows - cardinality(ids))::numeric / round_users)::bigint);
            round_first := NULL;
            round_wrapped := false;
            round_taken := 0;
            round_users := 0;
        END IF;
        IF round_first IS NULL THEN
            round_first := next_user;
        END IF;
        at_user := next_user;
        take := least(quota, max_rows - cardinality(ids));

        cap := default_cap;
        IF overrides THEN
            SELECT l.max_running, true INTO cap, overridden
            FROM user_concurrency_limits l WHERE l.user_id = next_user;
            IF NOT FOUND THEN
                cap := default_cap;
            END IF;
        END IF;
        IF cap IS NOT NULL THEN
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                RAISE EXCEPTION 'voidrunner_claim_fair: a capped user''s work is claimed under READ COMMITTED only, not %',
                    current_setting('transaction_isolation')
                    USING ERRCODE = '55000',
                          HINT = 'Claim outside the transaction, or in a READ COMMITTED one.';
            END IF;
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(1987208817, hashtext(next_user::text));
            -- A range of one again, ordered by user: with `=` the generic
            -- plan may count through (status, created_at DESC, id DESC),
            -- filtering user_id: every running execution of every user.
            SELECT count(*) INTO running FROM (
                SELECT 1 FROM task_executions e
                WHERE e.user_id >= next_user AND e.user_id <= next_user
                  AND e.status = 'running'
                ORDER BY e.user_id
                LIMIT cap
            ) r;
            -- Rows this claim took for the user in an earlier round are
            -- still pending until the update below.
            take := least(take, cap - running
                                - (SELECT count(*) FROM unnest(owners) o WHERE o = next_user));
            CONTINUE WHEN take <= 0;
        END IF;

        user_taken := 0;
        at_priority := first_priority;
        from_run_after := first_run_after;
        from_id := first_id;
        probed := true;
        WHILE take > 0 LOOP
            -- The user as a range of one, not `=`: with `=` the planner
            -- drops user_id from the ORDER BY, and V8's claim index
            -- (priority DESC, run_after, id) serves the rest, filtering
            -- other users' rows out one by one (the generic plan it picks
            -- when the statistics saw one user's backlog, the noisy
            -- neighbour's case: 100,000 rows read per probe). As a range,
            -- only V14's index gives the order.
            IF NOT probed THEN
                SELECT e.priority, e.run_after, e.id INTO at_priority, from_run_after, from_id
                FROM task_executions e
                WHERE e.user_id >= next_user AND e.user_id <= next_user
                  AND e.status = 'pending' AND e.priority <= at_priority
                ORDER BY e.user_id, e.priority DESC, e.run_after, e.id
                LIMIT 1;
                EXIT WHEN NOT FOUND;
            END IF;
            probed := false;
            before := cardinality(ids);
            SELECT ids || coalesce(array_agg(c.id), '{}'),
                   owners || coalesce(array_agg(next_user), '{}'),
                   scripts || coalesce(array_agg(c.script), '{}'),
                   kinds || coalesce(array_agg(c.kind), '{}'),
                   time_limits || coalesce(array_agg(c.time_limit), '{}')
            INTO ids, owners, scripts, kinds, time_limits
            FROM (
                -- As in `voidrunner_claim`: the task by primary key, status
                -- written so no index serves it, locked first; declared
                -- types cast.
                SELECT e.id, t.script_content::text AS script, t.script_type::text AS kind,
                       t.timeout_seconds::integer AS time_limit
                FROM task_executions e
                CROSS JOIN LATERAL (
                    SELECT t.script_content, t.script_type, t.timeout_seconds
                    FROM tasks t
                    WHERE t.id = e.task_id AND t.status IS NOT DISTINCT FROM 'pending'
                    LIMIT 1
                    FOR NO KEY UPDATE SKIP LOCKED
                ) t
                WHERE e.user_id >= next_user AND e.user_id <= next_user
                  AND e.status = 'pending'
                  AND e.priority >= at_priority AND e.priority <= at_priority
                  AND (e.run_after, e.id) >= (from_run_after, from_id)
                  AND e.run_after <= now()
                  -- Taken by this claim in an earlier round: locked by it,
                  -- so SKIP LOCKED would not pass them by.
                  AND e.id <> ALL (ids)
                ORDER BY e.user_id, e.priority DESC, e.run_after, e.id
                LIMIT take
                FOR NO KEY UPDATE OF e SKIP LOCKED
            ) c;
            take := take - (cardinality(ids) - before);
            user_taken := user_taken + (cardinality(ids) - before);
            at_priority := at_priority - 1;
        END LOOP;
        IF user_taken > 0 THEN
            round_taken := round_taken + user_taken;
            round_users := round_users + 1;
        END IF;
    END LOOP;
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    -- As in `voidrunner_claim`: the updates and their triggers plan with the
    -- session's settings.
    RESET enable_seqscan;
    RESET enable_bitmapscan;
    RESET enable_sort;
    RESET enable_hashjoin;
    RESET enable_mergejoin;
    RETURN QUERY
        WITH claimed AS (
            UPDATE task_executions e
            SET status = 'running', started_at = now(), completed_at = NULL,
                attempt = CASE WHEN e.attempt < 2147483647 THEN e.attempt + 1 ELSE e.attempt END,
                worker_id = claimer, lease_expires_at = now() + make_interval(secs => lease_seconds),
                heartbeat_at = now(), updated_at = now()
            FROM unnest(ids, scripts, kinds, time_limits) WITH ORDINALITY
                AS c(id, script, kind, time_limit, ord)
            WHERE e.id = c.id
            RETURNING e.id, e.task_id, e.status::text, e.return_code::integer,
                      e.stdout::text, e.stderr::text, e.execution_time_ms::integer,
                      e.memory_usage_bytes::bigint, e.started_at::timestamptz,
                      e.completed_at::timestamptz, e.created_at::timestamptz,
                      e.priority::integer, e.run_after::timestamptz, e.attempt::integer,
                      e.worker_id::text, e.lease_expires_at::timestamptz,
                      e.heartbeat_at::timestamptz, e.updated_at::timestamptz, c.script,
                      c.kind, c.time_limit, e.user_id, c.ord
        ), started AS (
            UPDATE tasks t SET status = 'running', updated_at = now()
            WHERE t.id IN (SELECT claimed.task_id FROM claimed)
        )
        SELECT claimed.id, claimed.task_id, claimed.status, claimed.return_code,
               claimed.stdout, claimed.stderr, claimed.execution_time_ms,
               claimed.memory_usage_bytes, claimed.started_at, claimed.completed_at,
               claimed.created_at, claimed.priority, claimed.run_after,
               claimed.attempt, claimed.worker_id, claimed.lease_expires_at,
               claimed.heartbeat_at, claimed.updated_at, claimed.script,
               claimed.kind, claimed.time_limit, claimed.user_id, claimed.ord
        FROM claimed
        ORDER BY claimed.ord;
END;
$$;

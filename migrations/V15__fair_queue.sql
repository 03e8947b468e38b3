-- voidrunner-db V15: the fair claim, and per-user concurrency caps.
--
-- 1. Caps. `queue_settings` holds one row: the default cap of running
--    executions per user (NULL: no cap). `user_concurrency_limits` holds a
--    user's override: a cap of their own, or NULL for none whatever the
--    default; no row means the default. A cap of 0 pauses a user: their
--    work stays pending. Both are read by every fair claim, so the caps
--    are the same for every worker of the deployment.
--
-- 2. The fair claim, `voidrunner_claim_fair`: claims rotate between users
--    (round-robin in user id order, from the user after `after_user`, the
--    last one the caller's previous claim served), and priority, then age,
--    orders each user's own work. It walks V14's indexes only, one user at
--    a time, under the planner settings of V7's functions, so what it reads
--    is bounded by the users it visits and the rows it takes, whatever the
--    statistics say. V8's `voidrunner_claim` (priority, then age, across
--    all users) stays as it was: the FIFO claim, which knows no caps.

CREATE TABLE queue_settings (
    -- One row: the key can only be true.
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT queue_settings_one_row CHECK (singleton),
    -- A cap of running executions: no deployment runs 2^31 at once.
    -- squawk-ignore prefer-bigint-over-int
    default_max_running integer
        CONSTRAINT queue_settings_default_max_running_check CHECK (default_max_running >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO queue_settings (singleton) VALUES (true);

CREATE TABLE user_concurrency_limits (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- squawk-ignore prefer-bigint-over-int
    max_running integer
        CONSTRAINT user_concurrency_limits_max_running_check CHECK (max_running >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per user whose cap a fair claim has taken: the row the claim
-- locks (FOR NO KEY UPDATE) while it counts and claims that user's work.
-- A row lock, not an advisory lock: an advisory lock's key is anyone's to
-- take (the application role could hold another user's and stall their
-- claims), and each one held takes an entry of the server's shared lock
-- table until commit. Only the worker may lock these rows (the roles
-- script grants nobody else UPDATE). Made by the first fair claim that
-- meets the user capped; deleted with the user.
CREATE TABLE queue_user_locks (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE
);

-- The fair claim: up to max_rows pending executions whose run_after has
-- come and whose task is pending, taken user by user, each locked with its
-- task (task first, then execution, both SKIP LOCKED: the crate's lock
-- order), and claimed for `claimer` with a lease of `lease_seconds`, as
-- `voidrunner_claim` claims them. Returns each claimed row, its task's
-- script, type and timeout, its user, and its place in the claim order
-- (`claim_order`, from 1).
--
-- The walk. Users with pending work are visited in user id order from the
-- first after `after_user` (NULL: from the lowest, or with `start_anywhere`
-- from a random point between the lowest and highest), wrapping around at the
-- end: one descent of `task_executions_user_claim_idx` finds the next user
-- and, with it, that user's first row in claim order. A first round takes
-- one execution from each user; when the walk comes back to the round's
-- first user and rows are still wanted, the next round gives each user
-- that took one an equal share of what is left, visiting only those users,
-- and so on, until the batch is full or a whole round took nothing. The
-- first round's walk stops after 2,000 users (and twice the batch); the
-- claim then returns, first, a row without an execution (id NULL) whose
-- user_id is where it stopped, for the next claim to start after.
-- Within a user, one priority at a
-- time, highest first, as `voidrunner_claim` walks the whole queue (a
-- probe, then a range of that priority's runnable rows).
--
-- Plans. Each query names the user as a range of one (`user_id >= u AND
-- user_id <= u`) and orders by V14's whole key. With `user_id = u` the
-- planner would drop user_id from the ORDER BY as a constant, and V8's
-- claim index (priority DESC, run_after, id) would give the order too,
-- filtering other users' rows out one by one: the generic plan takes it
-- when the statistics saw one user's backlog, and every visit to another
-- user then reads that backlog. Ordered by the whole key, only V14's index
-- gives the order; the settings below take every other plan away.
--
-- The cap. A user whose cap (override, else default) is not NULL is taken
-- from only holding their row of `queue_user_locks`. It is tried first
-- (SKIP LOCKED), never waited for while the walk goes on: a claim that
-- finds it held (another claim is taking that user's slots right now)
-- passes the user by and takes from the others. Only when a whole round
-- took nothing because of it, and this claim holds no other user's lock
-- and has taken nothing, does it wait for that lock (at most 2 s, the
-- caller's lock_timeout if shorter, a quarter of their statement_timeout),
-- so that claims racing for one capped user queue up rather than come
-- back empty while work waits. Holding no other user's lock, the wait
-- closes no circle with another claim: a claim waits only while it holds
-- none. A user at the cap by the committed count is passed by without the
-- lock, and one claim locks at most 64 users. Holding the lock, the user's
-- running executions are counted (V14's index of running executions by
-- user, at most the cap's entries) with a snapshot taken after the lock,
-- so every claim that held it before has committed and is counted; the
-- lock is held until this claim commits. An execution counts from its
-- claim until it ends: completed, failed, cancelled, or timed out by the
-- rescuer (a retry is pending again, and claimed under the cap like any
-- other). Under REPEATABLE READ or SERIALIZABLE the count would be the
-- transaction's snapshot, older than the lock, so a capped user is refused
-- there
-- (55000). A negative cap (another writer's, past a dropped CHECK) is read
-- as 0: the user is paused.
CREATE FUNCTION voidrunner_claim_fair(
    claimer text, max_rows bigint, lease_seconds double precision, after_user uuid,
    start_anywhere boolean DEFAULT false
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
    -- The walk wrapped around twice in one round: the round's first user
    -- has no pending work left (claimed or deleted meanwhile), so no user
    -- at or after it ends the round; the next user found does.
    round_over boolean := false;
    round_taken bigint := 0;
    round_users bigint := 0;
    -- The users that took in this round, and the previous round's, which
    -- the later rounds visit again (rather than walking every user).
    takers uuid[] := '{}';
    revisit uuid[] := '{}';
    revisit_at integer := 0;
    revisiting boolean := false;
    -- Users the first round's walk visited, and whether it stopped at the
    -- bound (then the claim returns where it stopped).
    visited bigint := 0;
    cut boolean := false;
    quota bigint := 1;
    default_cap integer;
    -- Whether any user has an override: if none, no look-up per user.
    overrides boolean;
    cap integer;
    overridden boolean;
    running bigint;
    -- The users whose cap lock this claim holds; the first capped user
    -- passed by because another claim held theirs; the user whose lock
    -- this claim waits for, whether this visit is that wait, and whether
    -- it waited already.
    locked uuid[] := '{}';
    mine bigint;
    busy_user uuid;
    wait_for uuid;
    waiting boolean;
    waited boolean := false;
    got_lock boolean;
    caller_lock_timeout text;
    wait_ms numeric;
    lowest uuid;
    highest uuid;
    lowest_n bigint;
    highest_n bigint;
    take bigint;
    before bigint;
    user_taken bigint;
    at_priority bigint;
    from_run_after timestamptz;
    from_id uuid;
    probed boolean;
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
    IF at_user IS NULL AND start_anywhere THEN
        -- No position (a process's first claim): start at a random point
        -- between the lowest and the highest user with pending work, so
        -- that processes that claim once and exit, or restart together,
        -- do not all serve the lowest id first. By the first 60 bits of
        -- the ids: a UUIDv7's time and more.
        SELECT e.user_id INTO lowest FROM task_executions e
        WHERE e.status = 'pending' AND e.user_id IS NOT NULL
        ORDER BY e.user_id, e.priority DESC, e.run_after, e.id
        LIMIT 1;
        SELECT e.user_id INTO highest FROM task_executions e
        WHERE e.status = 'pending' AND e.user_id IS NOT NULL
        ORDER BY e.user_id DESC, e.priority, e.run_after DESC, e.id DESC
        LIMIT 1;
        IF lowest IS NOT NULL AND lowest <> highest THEN
            lowest_n := ('x' || left(replace(lowest::text, '-', ''), 15))::bit(60)::bigint;
            highest_n := ('x' || left(replace(highest::text, '-', ''), 15))::bit(60)::bigint;
            at_user := (lpad(to_hex(lowest_n + floor(random() * (highest_n - lowest_n + 1))::bigint),
                             15, '0') || '00000000000000000')::uuid;
        END IF;
    END IF;
    LOOP
        EXIT WHEN cardinality(ids) >= max_rows;
        IF wait_for IS NOT NULL THEN
            -- The user whose lock to wait for (see the round's end below),
            -- and their first row in claim order.
            next_user := wait_for;
            SELECT e.priority, e.run_after, e.id INTO at_priority, from_run_after, from_id
            FROM task_executions e
            WHERE e.user_id >= next_user AND e.user_id <= next_user AND e.status = 'pending'
            ORDER BY e.user_id, e.priority DESC, e.run_after, e.id
            LIMIT 1;
            EXIT WHEN NOT FOUND;
        ELSIF revisiting THEN
            -- A later round: the users that took in the round before, in
            -- the order they took.
            IF revisit_at >= cardinality(revisit) THEN
                EXIT WHEN round_taken = 0;
                quota := greatest(1, ceil((max_rows - cardinality(ids))::numeric / round_users)::bigint);
                revisit := takers;
                takers := '{}';
                revisit_at := 0;
                round_taken := 0;
                round_users := 0;
                CONTINUE;
            END IF;
            revisit_at := revisit_at + 1;
            next_user := revisit[revisit_at];
            SELECT e.priority, e.run_after, e.id INTO at_priority, from_run_after, from_id
            FROM task_executions e
            WHERE e.user_id >= next_user AND e.user_id <= next_user AND e.status = 'pending'
            ORDER BY e.user_id, e.priority DESC, e.run_after, e.id
            LIMIT 1;
            CONTINUE WHEN NOT FOUND;
        ELSE
            -- The next user and their first row in claim order. Two queries
            -- rather than one with `at_user IS NULL OR ...`, which the
            -- generic plan could only apply as a filter of a whole walk.
            IF at_user IS NULL THEN
                SELECT e.user_id, e.priority, e.run_after, e.id
                INTO next_user, at_priority, from_run_after, from_id
                FROM task_executions e
                -- Not NULL: only another writer past a dropped NOT NULL
                -- leaves one, which no round could end at.
                WHERE e.status = 'pending' AND e.user_id IS NOT NULL
                ORDER BY e.user_id, e.priority DESC, e.run_after, e.id
                LIMIT 1;
            ELSE
                SELECT e.user_id, e.priority, e.run_after, e.id
                INTO next_user, at_priority, from_run_after, from_id
                FROM task_executions e
                WHERE e.status = 'pending' AND e.user_id > at_user
                ORDER BY e.user_id, e.priority DESC, e.run_after, e.id
                LIMIT 1;
            END IF;
            IF NOT FOUND THEN
                EXIT WHEN at_user IS NULL; -- nothing pending at all
                at_user := NULL; -- past the highest id: around to the lowest
                -- Only a wrap after the round's first user counts: a claim
                -- that starts past the highest id has not begun its round.
                IF round_first IS NOT NULL THEN
                    round_over := round_wrapped;
                    round_wrapped := true;
                END IF;
                CONTINUE;
            END IF;
            -- Back at (or, after a wrap, past: that user's rows may have
            -- gone) the round's first user: the round is over.
            IF round_first IS NOT NULL
               AND (round_over OR next_user = round_first
                    OR (round_wrapped AND next_user > round_first)) THEN
                IF round_taken = 0 THEN
                    -- Nothing to take but behind another claim's cap lock:
                    -- wait for it once, holding no other (see above).
                    EXIT WHEN busy_user IS NULL OR waited OR cardinality(locked) > 0
                              OR cardinality(ids) > 0;
                    wait_for := busy_user;
                    round_first := NULL;
                    round_wrapped := false;
                    round_over := false;
                    CONTINUE;
                END IF;
                -- The later rounds visit the users that took, not the walk.
                quota := greatest(1, ceil((max_rows - cardinality(ids))::numeric / round_users)::bigint);
                revisiting := true;
                revisit := takers;
                takers := '{}';
                revisit_at := 0;
                round_taken := 0;
                round_users := 0;
                CONTINUE;
            END IF;
            -- A bounded walk: past 2,000 users (and twice the batch) the
            -- claim stops and returns where it stopped, so that claims
            -- among many users with nothing runnable (work for later, all
            -- at their caps) stay short and the next claim goes on from
            -- there.
            visited := visited + 1;
            IF visited > 2000 + 2 * max_rows THEN
                cut := true;
                EXIT;
            END IF;
            IF round_first IS NULL THEN
                -- A wrap before the round's first user (the walk started
                -- past the highest id) is no wrap of this round.
                round_first := next_user;
                round_wrapped := false;
            END IF;
            at_user := next_user;
        END IF;
        take := least(quota, max_rows - cardinality(ids));

        cap := default_cap;
        IF overrides THEN
            SELECT l.max_running, true INTO cap, overridden
            FROM user_concurrency_limits l WHERE l.user_id = next_user;
            IF NOT FOUND THEN
                cap := default_cap;
            END IF;
        END IF;
        -- Below 0 only if another writer dropped the CHECK: read as 0 (the
        -- user paused) rather than fail every claim on `LIMIT cap`.
        IF cap < 0 THEN
            cap := 0;
        END IF;
        -- Below 0 only if another writer dropped the CHECK: read as 0 (the
        -- user paused) rather than fail every claim on `LIMIT cap`.
        IF cap < 0 THEN
            cap := 0;
        END IF;
        waiting := wait_for IS NOT NULL;
        wait_for := NULL;
        -- One wait per claim, whatever comes of it.
        waited := waited OR waiting;
        IF cap IS NOT NULL THEN
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                RAISE EXCEPTION 'voidrunner_claim_fair: a capped user''s work is claimed under READ COMMITTED only, not %',
                    current_setting('transaction_isolation')
                    USING ERRCODE = '55000',
                          HINT = 'Claim in a READ COMMITTED transaction (default_transaction_isolation of the database or role may set another).';
            END IF;
            -- Rows this claim took for the user in an earlier round are
            -- still pending until the update below.
            mine := (SELECT count(*) FROM unnest(owners) o WHERE o = next_user);
            IF NOT next_user = ANY (locked) THEN
                -- A lock is held until the claim commits, in the server's
                -- shared lock table, which every database of the server
                -- shares: a user at the cap by the committed count takes
                -- none (a claim that meets many users at their cap would
                -- hold one of each), and one claim takes at most 64 (the
                -- share of one transaction in PostgreSQL's default
                -- max_locks_per_transaction); the capped users past that
                -- wait for the next claim, which starts where this one
                -- left the rotation.
                SELECT count(*) INTO running FROM (
                    SELECT 1 FROM task_executions e
                    WHERE e.user_id >= next_user AND e.user_id <= next_user
                      AND e.status = 'running'
                    ORDER BY e.user_id
                    LIMIT cap
                ) r;
                CONTINUE WHEN running >= cap OR cardinality(locked) >= 64;
                IF waiting THEN
                    -- At most 2 s, the caller's lock_timeout if shorter, and
                    -- a quarter of their statement_timeout: a claim comes
                    -- back empty rather than fail or stall.
                    wait_ms := 2000;
                    caller_lock_timeout := current_setting('lock_timeout');
                    IF caller_lock_timeout <> '0' THEN
                        wait_ms := least(wait_ms,
                            extract(epoch FROM caller_lock_timeout::interval) * 1000);
                    END IF;
                    IF current_setting('statement_timeout') <> '0' THEN
                        wait_ms := least(wait_ms,
                            extract(epoch FROM current_setting('statement_timeout')::interval) * 250);
                    END IF;
                    PERFORM set_config('lock_timeout', greatest(1, floor(wait_ms))::bigint || 'ms', true);
                    BEGIN
                        PERFORM 1 FROM queue_user_locks k WHERE k.user_id = next_user
                        FOR NO KEY UPDATE;
                        got_lock := FOUND;
                    EXCEPTION WHEN lock_not_available THEN
                        got_lock := false;
                    END;
                    PERFORM set_config('lock_timeout', caller_lock_timeout, true);
                    EXIT WHEN NOT got_lock;
                ELSE
                    PERFORM 1 FROM queue_user_locks k WHERE k.user_id = next_user
                    FOR NO KEY UPDATE SKIP LOCKED;
                    got_lock := FOUND;
                    IF NOT got_lock
                       AND NOT EXISTS (SELECT 1 FROM queue_user_locks k WHERE k.user_id = next_user) THEN
                        -- The user's first capped visit: their row is made
                        -- here, waiting at most 50 ms for a claim making it
                        -- at the same time (an insert of the same key waits
                        -- for the other's commit), and not at all for a
                        -- user deleted meanwhile.
                        caller_lock_timeout := current_setting('lock_timeout');
                        PERFORM set_config('lock_timeout', '50ms', true);
                        BEGIN
                            INSERT INTO queue_user_locks (user_id) VALUES (next_user)
                            ON CONFLICT (user_id) DO NOTHING;
                        EXCEPTION WHEN lock_not_available OR foreign_key_violation THEN
                            NULL;
                        END;
                        PERFORM set_config('lock_timeout', caller_lock_timeout, true);
                        PERFORM 1 FROM queue_user_locks k WHERE k.user_id = next_user
                        FOR NO KEY UPDATE SKIP LOCKED;
                        got_lock := FOUND;
                    END IF;
                    IF NOT got_lock THEN
                        busy_user := coalesce(busy_user, next_user);
                        CONTINUE;
                    END IF;
                END IF;
                locked := locked || next_user;
            END IF;
            -- Counted again holding the lock, in a snapshot taken after it.
            SELECT count(*) INTO running FROM (
                SELECT 1 FROM task_executions e
                WHERE e.user_id >= next_user AND e.user_id <= next_user
                  AND e.status = 'running'
                ORDER BY e.user_id
                LIMIT cap
            ) r;
            take := least(take, cap - running - mine);
            CONTINUE WHEN take <= 0;
        END IF;

        user_taken := 0;
        probed := true; -- the user's first row was found with the user
        WHILE take > 0 LOOP
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
            takers := takers || next_user;
        END IF;
    END LOOP;
    IF cut THEN
        -- Where the walk stopped, for the next claim to start after: a row
        -- of its own, without an execution (id NULL), first in the order.
        user_id := at_user;
        claim_order := 0;
        RETURN NEXT;
    END IF;
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

-- voidrunner-db V2: task_executions becomes a work queue.
--
-- Workers claim pending executions with FOR UPDATE SKIP LOCKED, hold them
-- under a lease they renew by heartbeat, and a rescuer times out executions
-- whose lease expired. Every status change is announced with NOTIFY from the
-- transaction that makes it.

ALTER TABLE task_executions
    -- Copied from the task when the execution is queued, so the claim reads
    -- one table.
    ADD COLUMN priority         integer      NOT NULL DEFAULT 0,
    -- Not claimed before this time.
    ADD COLUMN run_after        timestamptz  NOT NULL DEFAULT now(),
    -- Claims of this execution's lineage: a retry starts from the attempt
    -- of the execution it replaces, and each claim adds one.
    ADD COLUMN attempt          integer      NOT NULL DEFAULT 0,
    ADD COLUMN worker_id        varchar(255),
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN heartbeat_at     timestamptz,
    ADD COLUMN updated_at       timestamptz  NOT NULL DEFAULT now(),
    ADD CONSTRAINT task_executions_priority_range CHECK (priority BETWEEN 0 AND 10),
    ADD CONSTRAINT task_executions_attempt_nonnegative CHECK (attempt >= 0),
    ADD CONSTRAINT task_executions_worker_id_not_blank CHECK (worker_id ~ '[^[:space:]]');

-- Pending rows queued before V2 get their task's priority and are eligible
-- since they were created. Only they are claimable, so the rest (usually
-- nearly all of a large table) is left alone rather than rewritten.
UPDATE task_executions e
SET priority = t.priority, run_after = e.created_at
FROM tasks t
WHERE t.id = e.task_id AND e.status = 'pending';

CREATE TRIGGER task_executions_set_updated_at BEFORE UPDATE ON task_executions
    FOR EACH ROW EXECUTE FUNCTION voidrunner_set_updated_at();

-- The claim: pending rows in claim order, so `ORDER BY priority DESC,
-- run_after, id LIMIT n` is an index range scan that stops after n rows.
CREATE INDEX task_executions_claim_idx
    ON task_executions (priority DESC, run_after, id)
    WHERE status = 'pending';

-- The rescuer: running rows by lease expiry.
CREATE INDEX task_executions_lease_idx
    ON task_executions (lease_expires_at)
    WHERE status = 'running';

-- Pruning: ended rows by end time.
CREATE INDEX task_executions_prune_idx
    ON task_executions (completed_at)
    WHERE status IN ('completed', 'failed', 'timeout', 'cancelled');

-- The polling fallback of the event stream: changes in order.
CREATE INDEX task_executions_updated_at_id_idx
    ON task_executions (updated_at, id);

-- Events: one NOTIFY per new execution and per status change. NOTIFY is
-- transactional: delivered at commit, dropped on rollback.
CREATE FUNCTION voidrunner_notify_execution() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM pg_notify(
            'voidrunner_execution_events',
            json_build_object(
                'execution_id', NEW.id,
                'task_id', NEW.task_id,
                'status', NEW.status,
                'worker_id', NEW.worker_id
            )::text
        );
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER task_executions_notify AFTER INSERT OR UPDATE OF status ON task_executions
    FOR EACH ROW EXECUTE FUNCTION voidrunner_notify_execution();

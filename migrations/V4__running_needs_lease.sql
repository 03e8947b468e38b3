-- voidrunner-db V4: a running execution always has a lease.
--
-- Executions reach `running` only through the claim, which sets the lease,
-- so the rescuer can always find and time out a running execution whose
-- worker died. Rows set running by hand before this version have no lease:
-- they get one that has already expired, so the rescuer times them out (and
-- retries them within the policy's attempts) instead of leaving them stuck.

UPDATE task_executions
SET lease_expires_at = now()
WHERE status = 'running' AND lease_expires_at IS NULL;

-- NOT VALID: enforced for every write from now on without scanning the
-- table under this migration's lock; V5 validates the existing rows.
ALTER TABLE task_executions
    ADD CONSTRAINT task_executions_running_has_lease
    CHECK (status <> 'running' OR lease_expires_at IS NOT NULL) NOT VALID;

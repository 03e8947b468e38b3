-- Reverts V6__notify_per_statement.sql: the V3 body and its row trigger, a
-- notification per row again.
DROP TRIGGER task_executions_notify_update ON task_executions;
DROP TRIGGER task_executions_notify_insert ON task_executions;

CREATE OR REPLACE FUNCTION voidrunner_notify_execution() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status)
       AND coalesce(current_setting('voidrunner.notify_events', true), '') <> 'off' THEN
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

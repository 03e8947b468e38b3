-- Reverts V3__optional_event_notify.sql: the V2 body, notifying always.
CREATE OR REPLACE FUNCTION voidrunner_notify_execution() RETURNS trigger
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

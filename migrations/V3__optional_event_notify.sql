-- voidrunner-db V3: execution events can be switched off per session.
--
-- NOTIFY serialises the commits of every transaction that sends one, which
-- measurably slows a busy queue. A session that sets
-- `voidrunner.notify_events = off` (DbConfig::notify_events = false sends it
-- at connect; or ALTER ROLE … SET) changes executions without notifying.

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

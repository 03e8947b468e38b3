-- voidrunner-db V6: execution events are sent once per statement, not once
-- per row.
--
-- NOTIFY serialises the commits of every transaction that sends one, and a
-- batched claim or completion changed many rows with a notification each.
-- Statement-level triggers read the statement's rows from its transition
-- tables and send them as JSON arrays of the same per-execution objects
-- V2 sent one by one: one notification for the statement, or as few as fit
-- when the events of a big statement do not fit in one (a NOTIFY payload
-- must be shorter than 8000 bytes). A statement with one event sends it as
-- the plain object V2 sent, so the listeners of earlier releases (and
-- other applications on the channel) still read the common case. Events
-- are read through a cursor, so a statement of any size needs the memory
-- of one payload, not of all its events at once. PostgreSQL allows transition tables
-- neither with a column list (UPDATE OF status) nor on a trigger for
-- several events, hence one trigger for INSERT and one for UPDATE; the
-- UPDATE one compares OLD and NEW rows, so a statement that changes no
-- status (a heartbeat) sends nothing. `voidrunner.notify_events = off`
-- still silences a session, as in V3.

DROP TRIGGER task_executions_notify ON task_executions;

CREATE OR REPLACE FUNCTION voidrunner_notify_execution() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    -- The longest payload NOTIFY accepts is 7999 bytes.
    max_bytes CONSTANT integer := 7999;
    changes refcursor;
    event text;
    chunk text := '';
    in_chunk integer := 0;
    sent integer := 0;
BEGIN
    IF coalesce(current_setting('voidrunner.notify_events', true), '') = 'off' THEN
        RETURN NULL;
    END IF;
    -- plpgsql plans a query when it first runs it, so each branch may name
    -- only the transition tables of its own trigger. Events keep the order
    -- in which the statement wrote the rows.
    IF TG_OP = 'INSERT' THEN
        OPEN changes FOR
            SELECT json_build_object(
                       'execution_id', n.id,
                       'task_id', n.task_id,
                       'status', n.status,
                       'worker_id', n.worker_id
                   )::text
            FROM (
                SELECT id, task_id, status, worker_id, row_number() OVER () AS ord
                FROM new_executions
            ) n
            ORDER BY n.ord;
    ELSE
        OPEN changes FOR
            SELECT json_build_object(
                       'execution_id', n.id,
                       'task_id', n.task_id,
                       'status', n.status,
                       'worker_id', n.worker_id
                   )::text
            FROM (
                SELECT id, task_id, status, worker_id, row_number() OVER () AS ord
                FROM new_executions
            ) n
            JOIN old_executions o ON o.id = n.id
            WHERE n.status IS DISTINCT FROM o.status
            ORDER BY n.ord;
    END IF;
    LOOP
        FETCH changes INTO event;
        EXIT WHEN NOT FOUND;
        -- One event is well under 2000 bytes (worker_id has at most 255
        -- characters), so it always fits in a chunk of its own: chunks are
        -- cut by size, whatever the worker ids are.
        IF in_chunk > 0 AND octet_length(chunk) + octet_length(event) + 3 > max_bytes THEN
            PERFORM pg_notify('voidrunner_execution_events', '[' || chunk || ']');
            sent := sent + in_chunk;
            chunk := '';
            in_chunk := 0;
        END IF;
        chunk := CASE WHEN in_chunk = 0 THEN event ELSE chunk || ',' || event END;
        in_chunk := in_chunk + 1;
    END LOOP;
    CLOSE changes;
    IF in_chunk = 1 AND sent = 0 THEN
        PERFORM pg_notify('voidrunner_execution_events', chunk);
    ELSIF in_chunk > 0 THEN
        PERFORM pg_notify('voidrunner_execution_events', '[' || chunk || ']');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER task_executions_notify_insert AFTER INSERT ON task_executions
    REFERENCING NEW TABLE AS new_executions
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_notify_execution();

CREATE TRIGGER task_executions_notify_update AFTER UPDATE ON task_executions
    REFERENCING OLD TABLE AS old_executions NEW TABLE AS new_executions
    FOR EACH STATEMENT EXECUTE FUNCTION voidrunner_notify_execution();

-- Reverts V7__plan_stable_queue.sql: no planner functions, the row
-- triggers fire for every update again, tasks' pages filled whole.
DROP FUNCTION voidrunner_executions_by_status_page(text, timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_executions_by_task_page(uuid, timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_executions_page(timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_tasks_by_status_page(text, integer, timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_tasks_by_user_page(uuid, integer, timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_tasks_page(integer, timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_users_page(timestamptz, uuid, bigint);
DROP FUNCTION voidrunner_prunable(timestamptz, bigint);
DROP FUNCTION voidrunner_expired_leases(bigint);
DROP FUNCTION voidrunner_claim_next(bigint);

DROP TRIGGER users_set_updated_at ON users;
CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION voidrunner_set_updated_at();
DROP TRIGGER tasks_set_updated_at ON tasks;
CREATE TRIGGER tasks_set_updated_at BEFORE UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION voidrunner_set_updated_at();
DROP TRIGGER task_executions_set_updated_at ON task_executions;
CREATE TRIGGER task_executions_set_updated_at BEFORE UPDATE ON task_executions
    FOR EACH ROW EXECUTE FUNCTION voidrunner_set_updated_at();

ALTER TABLE tasks RESET (fillfactor);

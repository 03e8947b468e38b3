-- Reverts V9__tenant_isolation.sql: row-level security off, its policies,
-- functions, indexes and constraints gone, and the executions' owner
-- column dropped (it is derived from the task, so nothing is lost).
ALTER TABLE task_executions DISABLE ROW LEVEL SECURITY;
ALTER TABLE tasks DISABLE ROW LEVEL SECURITY;
DROP POLICY task_executions_unbound ON task_executions;
DROP POLICY task_executions_tenant ON task_executions;
DROP POLICY tasks_unbound ON tasks;
DROP POLICY tasks_tenant ON tasks;
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_unbound();
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_executions_by_user_page(uuid, timestamptz, uuid, bigint);
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_tasks_by_user_status_page(uuid, text, integer, timestamptz, uuid, bigint);
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_in_scope(uuid);
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_scope();
DROP INDEX tasks_user_id_status_priority_created_at_id_idx;
DROP INDEX task_executions_user_id_created_at_id_idx;
DROP INDEX task_executions_task_id_user_id_idx;
ALTER TABLE task_executions DROP CONSTRAINT task_executions_task_owner_fkey;
ALTER TABLE tasks DROP CONSTRAINT tasks_id_user_id_key;
DROP TRIGGER task_executions_set_user_id ON task_executions;
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_execution_owner();
-- squawk-ignore ban-drop-column
ALTER TABLE task_executions DROP COLUMN user_id;

-- Reverts V1__initial_schema.sql. Indexes, constraints and triggers go with
-- their tables; children are dropped before parents.
DROP TABLE task_executions;
DROP TABLE tasks;
DROP TABLE users;
DROP FUNCTION voidrunner_set_updated_at();

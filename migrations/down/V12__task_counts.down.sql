-- Reverts V12__task_counts.sql: the counters' triggers, functions and
-- tables go (they hold nothing that is not derived from tasks).
DROP TRIGGER users_task_counts_gone ON users;
DROP TRIGGER tasks_counts_truncate ON tasks;
DROP TRIGGER tasks_counts_delete ON tasks;
DROP TRIGGER tasks_counts_update ON tasks;
DROP TRIGGER tasks_counts_insert ON tasks;
DROP FUNCTION voidrunner_task_counts_all();
DROP FUNCTION voidrunner_task_counts_of(uuid);
DROP FUNCTION voidrunner_recount_tasks();
DROP FUNCTION voidrunner_task_counts_truncated();
DROP FUNCTION voidrunner_task_counts_users_gone();
DROP FUNCTION voidrunner_task_counts_change();
DROP FUNCTION voidrunner_count_slot();
DROP TABLE task_counts_by_user;
DROP TABLE task_counts;
-- squawk-ignore ban-drop-sequence
DROP SEQUENCE task_counts_extra_slot;

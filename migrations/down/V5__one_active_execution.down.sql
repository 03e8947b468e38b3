-- Reverts V5__one_active_execution.sql (executions it cancelled stay
-- cancelled).
DROP INDEX task_executions_one_active_per_task_idx;

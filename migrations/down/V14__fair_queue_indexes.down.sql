-- Reverts V14__fair_queue_indexes.sql: the indexes of the fair claim.
DROP INDEX task_executions_user_claim_idx;
DROP INDEX task_executions_user_running_idx;

-- Reverts V13__execution_logs.sql: the log tables (with every partition
-- and every line), their triggers on task_executions and their functions.
DROP TRIGGER task_execution_log_chunks_checked_update ON task_execution_log_chunks;
DROP TRIGGER task_execution_log_chunks_checked ON task_execution_log_chunks;
DROP FUNCTION voidrunner_check_log_chunks();
DROP FUNCTION voidrunner_log_chunk_query(tsquery);
DROP TRIGGER task_execution_logs_checked ON task_execution_logs;
DROP TRIGGER task_execution_logs_notify ON task_execution_logs;
DROP FUNCTION voidrunner_notify_logs();
DROP TRIGGER task_executions_logs_owner ON task_executions;
DROP TRIGGER task_executions_logs_truncated ON task_executions;
DROP TRIGGER task_executions_logs_gone ON task_executions;
DROP FUNCTION voidrunner_execution_logs_owner();
DROP FUNCTION voidrunner_execution_logs_truncated();
DROP FUNCTION voidrunner_execution_logs_gone();
DROP FUNCTION voidrunner_log_partition_drop_expired(timestamptz);
DROP FUNCTION voidrunner_log_partition_waiting(text);
DROP FUNCTION voidrunner_log_partition_ensure(text, timestamptz);
DROP FUNCTION voidrunner_log_partition_make(regclass, regclass, timestamptz, timestamptz);
DROP FUNCTION voidrunner_log_partition_start(text, timestamptz);
DROP FUNCTION voidrunner_log_tail_page(uuid, timestamptz, bigint);
DROP FUNCTION voidrunner_log_after_page(uuid, timestamptz, bigint, bigint);
DROP FUNCTION voidrunner_log_partitions(regclass);
DROP TABLE task_execution_log_chunks;
DROP TABLE task_execution_logs;
ALTER TABLE task_executions DROP CONSTRAINT task_executions_created_at_range;

-- Reverts V11__task_sort_orders.sql: the sorted page function and the
-- indexes of the created_at, updated_at and name orders.
DROP FUNCTION voidrunner_tasks_sorted_page(text, boolean, uuid, text, text, timestamptz, integer, uuid, bigint, boolean);
DROP INDEX tasks_created_at_id_idx;
DROP INDEX tasks_user_id_created_at_id_idx;
DROP INDEX tasks_status_created_at_id_idx;
DROP INDEX tasks_user_id_status_created_at_id_idx;
DROP INDEX tasks_updated_at_id_idx;
DROP INDEX tasks_user_id_updated_at_id_idx;
DROP INDEX tasks_status_updated_at_id_idx;
DROP INDEX tasks_user_id_status_updated_at_id_idx;
DROP INDEX tasks_name_id_idx;
DROP INDEX tasks_user_id_name_id_idx;
DROP INDEX tasks_status_name_id_idx;
DROP INDEX tasks_user_id_status_name_id_idx;

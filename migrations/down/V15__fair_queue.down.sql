-- Reverts V15__fair_queue.sql: the fair claim and the concurrency caps.
DROP FUNCTION voidrunner_claim_fair(text, bigint, double precision, uuid, boolean);
DROP TABLE queue_user_locks;
DROP TABLE user_concurrency_limits;
DROP TABLE queue_settings;

//! This module holds no items; it exists to be read. Everything on this page
//! is taken from the code: the migrations (`migrations/V1__…` to `V8__…`),
//! [`validate`](crate::validate), the [`model`](crate::model) types, the
//! queue's statements (`src/pg/queue.rs`) and [`DbConfig`](crate::DbConfig).
//! If the page and the code ever disagree, the code is right and the page
//! has a bug.
//!
//! Contents: [schema](#schema), [validation](#validation),
//! [state machines](#state-machines), [queue life cycle](#queue-life-cycle),
//! [invariants](#invariants), [pool defaults](#pool-defaults).
//!
//! # Schema
//!
//! Three tables, created by V1 and extended by V2 to V8; every up migration
//! has a down script under `migrations/down/` that removes exactly what it
//! added. The names of constraints and indexes are part of the API: an
//! error caused by one names it ([`Error::constraint`](crate::Error::constraint)).
//!
//! Shared by all three tables:
//!
//! - Primary keys are `uuid` columns defaulting to `gen_random_uuid()`
//!   (built into PostgreSQL 13 and later). The crate itself always sends its
//!   own time-ordered UUIDv7 ([`UserId`](crate::UserId),
//!   [`TaskId`](crate::TaskId), [`ExecutionId`](crate::ExecutionId)); the
//!   default serves rows inserted by other clients.
//! - `created_at` and `updated_at` are `timestamptz NOT NULL DEFAULT now()`.
//!   Every UPDATE of the crate sets `updated_at = now()` itself. One trigger
//!   function, `voidrunner_set_updated_at()`, sets it for everyone else's
//!   updates, `BEFORE UPDATE` of each row, through the triggers
//!   `users_set_updated_at`, `tasks_set_updated_at` (V1) and
//!   `task_executions_set_updated_at` (V2); since V7 they fire only `WHEN
//!   (NEW.updated_at IS DISTINCT FROM now())`, so the crate's own writes
//!   skip a PL/pgSQL call per row and every row still ends up with
//!   `updated_at` = the updating transaction's `now()`.
//! - Statuses and script types are `varchar(50)` holding the lower-case
//!   names of [`TaskStatus`](crate::TaskStatus),
//!   [`ExecutionStatus`](crate::ExecutionStatus) and
//!   [`ScriptType`](crate::ScriptType).
//! - A CHECK constraint passes when its expression is NULL, so a rule on a
//!   nullable column (a return code, a description) applies only once the
//!   column is set.
//!
//! ## The users table
//!
//! | column | type | null | default |
//! |---|---|---|---|
//! | `id` | `uuid` | no | `gen_random_uuid()` |
//! | `email` | `varchar(255)` | no | |
//! | `password_hash` | `varchar(255)` | no | |
//! | `created_at` | `timestamptz` | no | `now()` |
//! | `updated_at` | `timestamptz` | no | `now()` |
//!
//! | constraint | enforces |
//! |---|---|
//! | `users_pkey` | primary key on `id` |
//! | `users_email_key` | UNIQUE `email`; its index also serves the look-up by email |
//! | `users_email_normalized` | `email` equals its own trimmed, lower-cased form, so uniqueness is in effect case-insensitive |
//! | `users_email_format` | `email` matches `^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$` |
//! | `users_password_hash_not_blank` | `password_hash` holds at least one character that is not white space |
//!
//! ## The tasks table
//!
//! | column | type | null | default |
//! |---|---|---|---|
//! | `id` | `uuid` | no | `gen_random_uuid()` |
//! | `user_id` | `uuid` | no | |
//! | `name` | `varchar(255)` | no | |
//! | `description` | `text` | yes | |
//! | `script_content` | `text` | no | |
//! | `script_type` | `varchar(50)` | no | `'python'` |
//! | `status` | `varchar(50)` | no | `'pending'` |
//! | `priority` | `integer` | no | `0` |
//! | `timeout_seconds` | `integer` | no | `10` |
//! | `metadata` | `jsonb` | no | `'{}'` |
//! | `created_at` | `timestamptz` | no | `now()` |
//! | `updated_at` | `timestamptz` | no | `now()` |
//!
//! | constraint | enforces |
//! |---|---|
//! | `tasks_pkey` | primary key on `id` |
//! | `tasks_user_id_fkey` | `user_id` references `users (id)` `ON DELETE CASCADE`: deleting a user deletes its tasks |
//! | `tasks_name_not_blank` | `name` holds a character that is not white space |
//! | `tasks_description_length` | `description` is at most 1000 characters (`char_length`) |
//! | `tasks_script_content_not_blank` | `script_content` holds a character that is not white space |
//! | `tasks_script_content_length` | `script_content` is at most 65535 characters |
//! | `tasks_script_type_valid` | `script_type` is `python`, `javascript`, `bash` or `go` |
//! | `tasks_status_valid` | `status` is `pending`, `running`, `completed`, `failed`, `timeout` or `cancelled` |
//! | `tasks_priority_range` | `priority` is between 0 and 10 (higher runs first) |
//! | `tasks_timeout_seconds_range` | `timeout_seconds` is between 1 and 3600 |
//! | `tasks_metadata_object` | `metadata` is a JSON object (`jsonb_typeof` is `object`) |
//!
//! ## The task_executions table
//!
//! One row per attempt to run a task. V1 created the first eleven columns;
//! V2 added the queue's columns, from `priority` down.
//!
//! | column | type | null | default | since |
//! |---|---|---|---|---|
//! | `id` | `uuid` | no | `gen_random_uuid()` | V1 |
//! | `task_id` | `uuid` | no | | V1 |
//! | `status` | `varchar(50)` | no | `'pending'` | V1 |
//! | `return_code` | `integer` | yes | | V1 |
//! | `stdout` | `text` | yes | | V1 |
//! | `stderr` | `text` | yes | | V1 |
//! | `execution_time_ms` | `integer` | yes | | V1 |
//! | `memory_usage_bytes` | `bigint` | yes | | V1 |
//! | `started_at` | `timestamptz` | yes | | V1 |
//! | `completed_at` | `timestamptz` | yes | | V1 |
//! | `created_at` | `timestamptz` | no | `now()` | V1 |
//! | `priority` | `integer` | no | `0` | V2 |
//! | `run_after` | `timestamptz` | no | `now()` | V2 |
//! | `attempt` | `integer` | no | `0` | V2 |
//! | `worker_id` | `varchar(255)` | yes | | V2 |
//! | `lease_expires_at` | `timestamptz` | yes | | V2 |
//! | `heartbeat_at` | `timestamptz` | yes | | V2 |
//! | `updated_at` | `timestamptz` | no | `now()` | V2 |
//!
//! What the V2 columns mean: `priority` is copied from the task when the
//! execution is queued, so the claim reads a single table; the execution is
//! not claimed before `run_after`; `attempt` counts the claims of the
//! execution's lineage (a retry starts from the attempt of the execution it
//! replaces, each claim adds one); `worker_id` names the worker that claimed
//! it, which owns it until `lease_expires_at`; `heartbeat_at` is the owner's
//! last heartbeat. When V2 ran, the executions still pending took their
//! task's priority and a `run_after` equal to their `created_at`; the other
//! rows were not rewritten.
//!
//! | constraint | since | enforces |
//! |---|---|---|
//! | `task_executions_pkey` | V1 | primary key on `id` |
//! | `task_executions_task_id_fkey` | V1 | `task_id` references `tasks (id)` `ON DELETE CASCADE`: deleting a task (or its user) deletes its executions |
//! | `task_executions_status_valid` | V1 | `status` is one of the six statuses, as for tasks |
//! | `task_executions_return_code_range` | V1 | `return_code` is between 0 and 255 |
//! | `task_executions_execution_time_ms_nonnegative` | V1 | `execution_time_ms >= 0` |
//! | `task_executions_memory_usage_bytes_nonnegative` | V1 | `memory_usage_bytes >= 0` |
//! | `task_executions_completed_after_started` | V1 | `completed_at >= started_at` when both are set |
//! | `task_executions_priority_range` | V2 | `priority` is between 0 and 10 |
//! | `task_executions_attempt_nonnegative` | V2 | `attempt >= 0` |
//! | `task_executions_worker_id_not_blank` | V2 | `worker_id`, when set, holds a character that is not white space |
//! | `task_executions_running_has_lease` | V4 | a `running` execution has a `lease_expires_at` |
//! | `task_executions_one_active_per_task_idx` | V5 | UNIQUE partial index: at most one `pending` or `running` execution per task |
//!
//! ## Indexes
//!
//! Every list of the repositories is a keyset page, and each has an index
//! that ends in the list's full sort key, so a page (first or later) is an
//! index range scan that never sorts. Indexes whose first column is
//! `user_id` or `task_id` also serve the foreign keys when a delete
//! cascades.
//!
//! The plans are not left to the statistics (see [plan-stable
//! statements](#plan-stable-statements-v7)): the plan tests
//! (`tests/repositories/explain.rs`, `tests/queue/plans.rs`) check each
//! list and each statement of the queue with fresh statistics and with
//! statistics taken while the tables were empty (or held one row), then
//! loaded: the index below is scanned, no table is scanned, and no more
//! index entries are read than the page or batch takes (a few per row).
//!
//! | index | columns | used by |
//! |---|---|---|
//! | `users_email_key` (of the constraint) | `email` | [`UserRepository::get_by_email`](crate::UserRepository::get_by_email) |
//! | `users_created_at_id_idx` | `created_at DESC, id DESC` | [`UserRepository::list`](crate::UserRepository::list) |
//! | `tasks_priority_created_at_id_idx` | `priority DESC, created_at DESC, id DESC` | [`TaskRepository::list`](crate::TaskRepository::list) |
//! | `tasks_user_id_priority_created_at_id_idx` | `user_id, priority DESC, created_at DESC, id DESC` | [`TaskRepository::list_by_user`](crate::TaskRepository::list_by_user); the cascade from `users` |
//! | `tasks_status_priority_created_at_id_idx` | `status, priority DESC, created_at DESC, id DESC` | [`TaskRepository::list_by_status`](crate::TaskRepository::list_by_status) |
//! | `tasks_metadata_idx` | GIN on `metadata` with `jsonb_path_ops` (containment `@>` is the one metadata operator the crate uses) | [`TaskRepository::search_by_metadata`](crate::TaskRepository::search_by_metadata), for selective filters |
//! | `task_executions_created_at_id_idx` | `created_at DESC, id DESC` | [`ExecutionRepository::list`](crate::ExecutionRepository::list) |
//! | `task_executions_task_id_created_at_id_idx` | `task_id, created_at DESC, id DESC` | [`ExecutionRepository::list_by_task`](crate::ExecutionRepository::list_by_task), [`latest_for_task`](crate::ExecutionRepository::latest_for_task); the cascade from `tasks` |
//! | `task_executions_status_created_at_id_idx` | `status, created_at DESC, id DESC` | [`ExecutionRepository::list_by_status`](crate::ExecutionRepository::list_by_status) |
//! | `task_executions_claim_idx` (V2) | `priority DESC, run_after, id` where `status = 'pending'` | [`ExecutionQueue::claim`](crate::ExecutionQueue::claim): the claim order, a scan that stops after the requested number of rows |
//! | `task_executions_lease_idx` (V2) | `lease_expires_at` where `status = 'running'` | [`ExecutionQueue::rescue_expired`](crate::ExecutionQueue::rescue_expired) |
//! | `task_executions_prune_idx` (V2) | `completed_at` where `status` is one of the four end states | [`ExecutionQueue::prune`](crate::ExecutionQueue::prune) |
//! | `task_executions_updated_at_id_idx` (V2) | `updated_at, id` | [`Database::subscribe_polling`](crate::Database::subscribe_polling), which reads changes in that order |
//! | `task_executions_one_active_per_task_idx` (V5) | UNIQUE `task_id` where `status` is `pending` or `running` | the invariant [one active execution per task](#invariants); the enqueue's look-up of a task's active execution |
//!
//! ## Execution events: the NOTIFY trigger
//!
//! V2 added the function `voidrunner_notify_execution()` and the trigger
//! `task_executions_notify`, which runs it `AFTER INSERT OR UPDATE OF
//! status` for each row. It sends `pg_notify` on the channel
//! `voidrunner_execution_events` ([`events::CHANNEL`](crate::events::CHANNEL))
//! with a JSON object of `execution_id`, `task_id`, `status` and `worker_id`,
//! for every new execution and for every update that really changes the
//! status (an update setting the same status sends nothing); V6, below,
//! gathers them into one notification per statement. NOTIFY is
//! transactional: listeners receive it when the transaction commits, and
//! never if it rolls back.
//!
//! V3 replaced the function so that it stays silent in a session whose
//! setting `voidrunner.notify_events` is `off`. The crate sends that setting
//! at connect when [`DbConfig::notify_events`](crate::DbConfig::notify_events)
//! is false; `ALTER ROLE … SET voidrunner.notify_events = off` does the same
//! for every session of a role. NOTIFY serialises the commits of the
//! transactions that send one, which is what a busy queue saves this way.
//!
//! V6 made it one notification per statement instead of one per row (a
//! batched claim or completion changes many rows, each of which used to
//! send one). The row trigger is gone; the function now runs from two
//! statement-level triggers with transition tables,
//! `task_executions_notify_insert` (`AFTER INSERT`) and
//! `task_executions_notify_update` (`AFTER UPDATE`, which pairs the old and
//! new rows by id and keeps those whose status changed: a heartbeat sends
//! nothing). PostgreSQL allows transition tables neither with a column list
//! nor on a trigger for several events, hence two. The payload is a JSON
//! array of the objects V2 sent one at a time, in the order the statement
//! wrote the rows. A NOTIFY payload must be shorter than 8000 bytes, so a
//! statement whose events do not fit sends them in as few arrays as fit,
//! cut by size (an event is well under 2000 bytes whatever its worker id);
//! a statement with a single event sends that object alone, as V2 did, so
//! listeners of earlier releases still read it. The events are read through
//! a cursor: a statement of any size (another application's bulk write)
//! needs the memory of one payload, not of all its events.
//! `voidrunner.notify_events = off` silences a session as in V3. The
//! listener of [`Database::subscribe`](crate::Database::subscribe) reads
//! arrays and, from an older trigger or another application, single
//! objects alike.
//!
//! ## V4 and V5
//!
//! V4 gave every running execution that had no lease one that has already
//! expired (so the rescuer times it out rather than leaving it stuck), then
//! added the CHECK `task_executions_running_has_lease` as `NOT VALID`:
//! enforced for every write from then on, without scanning the table under
//! the `ALTER TABLE` lock.
//!
//! V5 runs outside any transaction (its first line is
//! `-- voidrunner:no-transaction`; see [`migrate`](crate::migrate)), one
//! statement at a time, and can be run again from the top if interrupted. It
//! validates the V4 constraint (a scan that lets reads and writes go on),
//! cancels all but one active execution of any task that had several
//! (keeping a running one before a pending one, then the newest), drops the
//! index if an interrupted run left one (a failed concurrent build leaves
//! an invalid index behind), and builds the
//! unique partial index `task_executions_one_active_per_task_idx` with
//! `CREATE UNIQUE INDEX CONCURRENTLY`, so writes go on meanwhile.
//!
//! ## Plan-stable statements (V7, V8)
//!
//! A bulk enqueue into a table analyzed while it held few pending rows
//! used to make the planner expect a handful of candidates, read every
//! pending row through a bitmap, sort them and keep ten: a claim of 10 on
//! a fresh backlog of 40,000 read 121,369 buffers. PostgreSQL has no plan
//! hints; a function's `SET` clause can carry the planner's `enable_*`
//! settings to the function's own queries alone. V7 adds one PL/pgSQL
//! function per statement whose plan must be an ordered walk of one index,
//! each with sequential scans, bitmap scans, sorts, hash and merge joins
//! off (an index scan in the index's order, joined by nested loops, is the
//! only plan left) and `plan_cache_mode = force_generic_plan` (one cached
//! plan per session, not one per call). V8 replaces V7's claim function
//! (`voidrunner_claim_next`, which locked each execution before its task
//! and left the updates to the calling statement; kept, unused, for the
//! instances of the previous release during an upgrade) with
//! `voidrunner_claim`, gives the list pages declared result types, and
//! makes all of them find the tables through the caller's `search_path`,
//! as every statement of the crate does. They need `EXECUTE` (which
//! `PUBLIC` has unless revoked):
//!
//! | function | walks | called by |
//! |---|---|---|
//! | `voidrunner_claim(claimer, max_rows, lease_seconds)` (V8; refuses a blank claimer, `max_rows` below 1 and a lease that is not positive and finite with SQLSTATE 22023) | `task_executions_claim_idx`, one priority at a time: a probe finds the first pending row this query can see at or below the current priority, a range scan takes that priority's rows whose `run_after` has come from there on (so delayed rows of a higher priority, and the entries of rows claimed since the last vacuum before the probe's, are read once per claim at most); each candidate's task by primary key, locked only if it is pending, then the execution; then it claims them | [`ExecutionQueue::claim`](crate::ExecutionQueue::claim) |
//! | `voidrunner_expired_leases(max_rows)` | `task_executions_lease_idx`, oldest expiry first; each candidate's task by primary key | [`ExecutionQueue::rescue_expired`](crate::ExecutionQueue::rescue_expired) |
//! | `voidrunner_prunable(cutoff, max_rows)` | `task_executions_prune_idx`, oldest end first | [`ExecutionQueue::prune`](crate::ExecutionQueue::prune) |
//! | `voidrunner_users_page`, `voidrunner_tasks_page`, `voidrunner_tasks_by_user_page`, `voidrunner_tasks_by_status_page`, `voidrunner_executions_page`, `voidrunner_executions_by_task_page`, `voidrunner_executions_by_status_page` | the list's index above, from the cursor | the list methods, [`latest_for_task`](crate::ExecutionRepository::latest_for_task) |
//!
//! The claim makes its updates inside `voidrunner_claim`: a VOLATILE
//! function's queries see rows committed after the calling statement's
//! snapshot was taken, which that statement could not update. The rescue
//! and prune functions lock and return their rows, and the statements in
//! `src/pg/` update or delete them by primary key (a row they lock that the
//! statement cannot see, one inserted and already expired or ended while it
//! ran, is left for the next call). A filtered page compares its column
//! with `ANY (ARRAY[value])` and orders by it first, so that only its own
//! index gives its order (with an equality the planner drops the column
//! from the order, and the unfiltered list's index, walked with a filter,
//! would compete). Every function returns declared types, each column cast
//! to them, so a column type an operator changes to one that casts
//! (varchar to text) changes neither their result nor the prepared
//! statements that call them. Metadata search keeps a planner-chosen plan:
//! which index serves it depends on how many tasks the filter matches. The
//! statements around the functions take no condition on a status column
//! where a key will do (the row is locked and its status already checked),
//! so the planner never has a status index to walk instead of a primary
//! key.
//!
//! What the functions cannot skip are dead index entries: rows cancelled
//! or claimed since the last vacuum leave entries the walk passes over
//! (after the first pass, without reading the rows, unless a transaction
//! older than the change still runs anywhere on the server). A mass cancel
//! of the head of the queue makes every claim step over those entries until
//! a vacuum removes them (autovacuum does; `tests/queue/plans.rs` shows a
//! claim bounded again after one).
//!
//! V7 also sets `fillfactor = 90` on `tasks`, so that an update changing no
//! indexed column (queueing an already pending task, renaming one) can stay
//! on its page without new index entries (a HOT update). The updates of
//! `task_executions` all change an indexed column (`status`,
//! `lease_expires_at`, `updated_at`), so none can be HOT and free space on
//! its pages would buy nothing.
//!
//! # Validation
//!
//! The repositories check every input before sending any SQL; a failure is
//! an [`Error::Validation`](crate::Error::Validation) whose `field` names
//! the input, and nothing is written. The CHECK constraints above hold the
//! same rules for rows written by other clients. Lengths count characters
//! (Unicode scalar values), not bytes, as `varchar(n)` and `char_length`
//! do.
//!
//! **NUL characters.** PostgreSQL cannot store `U+0000` in `text`, nor
//! `\u0000` in `jsonb`, so every text input is refused when it holds one:
//! email, password, password hash, name, description, script, stdout,
//! stderr, worker id, and every key and string inside metadata or a
//! metadata filter.
//!
//! | field | rule | constant or policy |
//! |---|---|---|
//! | `email` | trimmed, then: ASCII only, not empty, at most 255 characters, matches the pattern of `users_email_format`; stored and looked up lower-cased ([`validate::email`](crate::validate::email) returns the normalised form) | [`EMAIL_MAX_CHARS`](crate::validate::EMAIL_MAX_CHARS) |
//! | `password` | the plain password, before the caller hashes it; never stored, never in an error message | [`PasswordPolicy`](crate::validate::PasswordPolicy), see below |
//! | `password_hash` | not blank, at most 255 characters | [`PASSWORD_HASH_MAX_CHARS`](crate::validate::PASSWORD_HASH_MAX_CHARS) |
//! | `name` | not blank after trimming, at most 255 characters | [`TASK_NAME_MAX_CHARS`](crate::validate::TASK_NAME_MAX_CHARS) |
//! | `description` | optional; at most 1000 characters | [`DESCRIPTION_MAX_CHARS`](crate::validate::DESCRIPTION_MAX_CHARS) |
//! | `script_content` | not blank, at most 65535 characters, no denied pattern | [`SCRIPT_MAX_CHARS`](crate::validate::SCRIPT_MAX_CHARS), [`ScriptPolicy`](crate::validate::ScriptPolicy) |
//! | `script_type` | `python`, `javascript`, `bash` or `go` (a type, so only text from outside can be wrong: parsing it fails on `script_type`) | [`ScriptType`](crate::ScriptType) |
//! | `status` | one of the six statuses (parsing text fails on `status`) | [`TaskStatus`](crate::TaskStatus), [`ExecutionStatus`](crate::ExecutionStatus) |
//! | `priority` | 0 to 10 | [`PRIORITY_RANGE`](crate::validate::PRIORITY_RANGE) |
//! | `timeout_seconds` | 1 to 3600 | [`TIMEOUT_SECONDS_RANGE`](crate::validate::TIMEOUT_SECONDS_RANGE) |
//! | `metadata` (and a search `filter`) | a JSON object within the size and depth limits; every number must read back unchanged from `jsonb` (floats are stored as exact decimals) | [`MetadataPolicy`](crate::validate::MetadataPolicy) |
//! | `return_code` | 0 to 255 | [`RETURN_CODE_RANGE`](crate::validate::RETURN_CODE_RANGE) |
//! | `execution_time_ms` | `>= 0` (an `i32`) | |
//! | `memory_usage_bytes` | `>= 0` (an `i64`) | |
//! | `started_at`, `completed_at`, `run_after` | not before 4714-11-24 BC, the earliest `timestamptz`; `completed_at` not before `started_at`, counting the times already stored | [`POSTGRES_MIN_UNIX_MICROS`](crate::validate::POSTGRES_MIN_UNIX_MICROS) |
//! | `stdout`, `stderr` | never refused for their length: output longer than [`DbConfig::max_output_bytes`](crate::DbConfig::max_output_bytes) (default 1 MiB) is cut at a character boundary and a marker line is appended | [`truncate_output`](crate::validate::truncate_output) |
//! | `worker_id` | not blank, at most 255 characters | [`WORKER_ID_MAX_CHARS`](crate::validate::WORKER_ID_MAX_CHARS) |
//! | `lease` | 1 ms to 24 hours | [`MAX_LEASE`](crate::validate::MAX_LEASE) |
//! | `limit` of a claim | 1 to 1000 | [`MAX_CLAIM`](crate::validate::MAX_CLAIM) |
//! | `tasks`, `task_ids` of a batch | at most 50,000 per call (`create_many`, `enqueue_many`; `import` streams and has no limit) | [`MAX_BATCH`](crate::validate::MAX_BATCH) |
//! | `batch_size` of a rescue | 1 to 1000 | [`MAX_CLAIM`](crate::validate::MAX_CLAIM) |
//! | `max_attempts` of a rescue | `>= 0` | [`RescuePolicy`](crate::RescuePolicy) |
//! | `retry_delay` of a rescue | at most 30 days | [`MAX_RETRY_DELAY`](crate::validate::MAX_RETRY_DELAY) |
//! | `older_than`, `batch_size` of a prune | at most 100 × 365 days; a batch of at least 1 | [`MAX_PRUNE_AGE`](crate::validate::MAX_PRUNE_AGE) |
//! | `limit`, `cursor` of a page | see [pagination](#pagination) | |
//!
//! ## Configurable policies
//!
//! [`ValidationPolicy`](crate::validate::ValidationPolicy) gathers the three
//! policies; a task repository built with
//! [`PgTaskRepository::with_policy`](crate::PgTaskRepository::with_policy)
//! uses it (the default policy otherwise). Each deserialises with serde,
//! missing fields taking their defaults.
//!
//! **Passwords** ([`PasswordPolicy`](crate::validate::PasswordPolicy),
//! checked by [`validate::password`](crate::validate::password), which the
//! caller runs before hashing):
//!
//! | field | default | [`strict()`](crate::validate::PasswordPolicy::strict) |
//! |---|---|---|
//! | `min_chars` | 8 | 8 |
//! | `max_chars` | 128 | 128 |
//! | `require_upper` (an upper-case letter) | true | true |
//! | `require_lower` (a lower-case letter) | true | true |
//! | `require_digit` (an ASCII digit) | true | true |
//! | `require_special` (neither letter, digit nor white space) | false | true |
//!
//! **Scripts** ([`ScriptPolicy`](crate::validate::ScriptPolicy)): a script
//! containing one of `deny_patterns` is refused. Matching is a
//! case-insensitive substring search; empty patterns are ignored. The
//! default list, [`ScriptPolicy::DEFAULT_DENY`](crate::validate::ScriptPolicy::DEFAULT_DENY),
//! holds five patterns: `rm -rf`, `rm -fr`, the fork bomb `:(){ :|:& };:`,
//! `mkfs.` and `of=/dev/sd`.
//! [`ScriptPolicy::allow_all`](crate::validate::ScriptPolicy::allow_all)
//! has none. This guards against accidents; it is no sandbox, and isolating
//! the scripts is the workers' job.
//!
//! **Metadata** ([`MetadataPolicy`](crate::validate::MetadataPolicy)), the
//! same for stored metadata and for a search filter:
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `max_bytes` | 65536 | most bytes of the compact JSON text |
//! | `max_depth` | 16 | deepest nesting, the top-level object being depth 1; a policy above [`METADATA_DEPTH_LIMIT`](crate::validate::METADATA_DEPTH_LIMIT) (100, what the JSON reader decodes back) is refused with [`Error::Config`](crate::Error::Config) |
//!
//! # State machines
//!
//! Both state machines are pure functions,
//! [`TaskStatus::can_transition_to`](crate::TaskStatus::can_transition_to)
//! and [`ExecutionStatus::can_transition_to`](crate::ExecutionStatus::can_transition_to);
//! the hand-made changes (task `update_status`, `cancel`, an execution's
//! end status set by hand) and the enqueue derive from them the statuses a
//! row may come from, while claim, complete and rescue name theirs in their
//! SQL.
//!
//! ## Tasks
//!
//! | from | allowed to |
//! |---|---|
//! | `pending` | `running`, `cancelled` |
//! | `running` | `completed`, `failed`, `timeout`, `cancelled` |
//! | `failed`, `timeout`, `cancelled` | `pending` (a retry) |
//! | `completed` | nothing: final |
//!
//! Setting the status a task already has is allowed and changes nothing:
//! the task row is not written, so `updated_at` stays. (Setting `cancelled`
//! on a cancelled task still cancels an active execution that another
//! client left behind.) `failed`, `timeout` and `cancelled` have ended a run
//! but are not final.
//!
//! ## Executions
//!
//! | from | allowed to |
//! |---|---|
//! | `pending` | `running`, `cancelled` |
//! | `running` | `completed`, `failed`, `timeout`, `cancelled` |
//! | `completed`, `failed`, `timeout`, `cancelled` | nothing: final |
//!
//! Unlike a task, same to same is not a transition: cancelling a cancelled
//! execution is an [`Error::InvalidTransition`](crate::Error::InvalidTransition).
//! An execution is `pending` only when inserted, and becomes `running` only
//! through [`ExecutionQueue::claim`](crate::ExecutionQueue::claim), which
//! sets the lease; asking
//! [`ExecutionRepository::update_status`](crate::ExecutionRepository::update_status)
//! for `running` is a validation error. A retry is a new execution.
//!
//! ## Where they are enforced
//!
//! In the UPDATE itself, on the locked row. Each status-changing statement
//! first locks the row (`FOR NO KEY UPDATE`, after the task's lock; see the
//! [lock order](#lock-order)), and its UPDATE carries the allowed previous
//! statuses in its `WHERE` clause, checked against that row's latest
//! committed version. A change committed by someone else between a read and
//! the write is therefore seen, and an illegal transition cannot slip
//! through; when the UPDATE matches nothing, the statement returns the
//! status it found, and the error is an
//! [`Error::InvalidTransition`](crate::Error::InvalidTransition) naming both
//! statuses (or [`Error::LeaseLost`](crate::Error::LeaseLost) for a worker).
//!
//! A task's status is set by hand only to `pending` (a retry) or `cancelled`
//! ([`TaskRepository::update_status`](crate::TaskRepository::update_status);
//! anything else is refused by
//! [`validate::task_status_by_hand`](crate::validate::task_status_by_hand)).
//! Cancelling a task also cancels its active execution in the same
//! statement. Every other task status follows the task's execution, in the
//! statement that changes the execution:
//!
//! | statement | execution | task |
//! |---|---|---|
//! | enqueue (also [`ExecutionRepository::create`](crate::ExecutionRepository::create)) | inserted `pending` | `pending`, `failed`, `timeout`, `cancelled` → `pending` |
//! | claim | `pending` → `running` | `pending` → `running` |
//! | complete | `running` → `completed`, `failed` or `timeout` | `running` → the same status |
//! | cancel | `pending` or `running` → `cancelled` | `pending` or `running` → `cancelled` |
//! | an end status set by hand on the execution | `running` → `completed`, `failed` or `timeout` | `running` → the same status |
//! | rescue | `running` → `timeout` | `running` → `timeout`, or → `pending` when a retry is queued (`timeout` then `pending`, both allowed) |
//! | delete of an active execution | deleted | `pending` or `running` → `cancelled` |
//!
//! # Queue life cycle
//!
//! [`ExecutionQueue`](crate::ExecutionQueue), implemented by
//! [`PgExecutionQueue`](crate::PgExecutionQueue). Every operation is a
//! single statement.
//!
//! 1. **Enqueue** ([`enqueue`](crate::ExecutionQueue::enqueue),
//!    [`enqueue_many`](crate::ExecutionQueue::enqueue_many)). The task is
//!    locked first. If it has an active execution, that execution comes
//!    back unchanged: enqueueing is idempotent. Otherwise a `pending`
//!    execution is inserted with the task's priority and `run_after` (now
//!    unless given) and the task moves to `pending`; a `completed` task is
//!    an `InvalidTransition`. The statement also checks that the task it
//!    locked is the version its snapshot sees; if another transaction
//!    changed the task in between, it writes nothing and runs again, up to
//!    16 times, then gives up with [`Error::Unavailable`](crate::Error::Unavailable).
//!    `enqueue_many` does the same for up to 50,000 tasks in one `unnest`
//!    statement, all or nothing, locks them in id order, queues a task
//!    named twice once and returns the executions in input order.
//! 2. **Claim** ([`claim`](crate::ExecutionQueue::claim)`(worker, n,
//!    lease)`). Picks up to `n` executions that are `pending`, whose
//!    `run_after` has come and whose task is `pending`, highest priority
//!    first, then earliest `run_after`, then id, through
//!    `voidrunner_claim` ([V8](#plan-stable-statements-v7-v8)), which locks
//!    each candidate's task, if it is pending, then the execution, `FOR NO
//!    KEY UPDATE SKIP LOCKED` (the crate's lock order), until it has `n`,
//!    so a claim never waits: rows another transaction holds (another
//!    worker's claim, a cancel in progress) are passed over until the next
//!    claim, and an execution whose task is held or not pending is not
//!    locked at all. One lock can outlive a skip: a task locked whose
//!    execution another session holds without the task (a second
//!    application locking against the lock order) stays locked, unclaimed,
//!    until the claim's transaction ends; at once for a claim of its own,
//!    but a claim inside [`Database::transaction`](crate::Database::transaction)
//!    keeps it until that commits (PostgreSQL releases a row lock only with
//!    its transaction or subtransaction, and a subtransaction per candidate
//!    would cost every claim). Each claimed
//!    execution becomes `running` with `started_at`, `heartbeat_at` = now,
//!    `worker_id`, `lease_expires_at` = now + lease and `attempt` + 1 (held at
//!    `i32::MAX` rather than overflowing); its task becomes `running`. The
//!    worker gets the script, its type and its timeout
//!    ([`ClaimedExecution`](crate::ClaimedExecution)). A claimed row that
//!    cannot be decoded is ended as `failed` at once rather than left
//!    leased to nobody.
//! 3. **Heartbeat** ([`heartbeat`](crate::ExecutionQueue::heartbeat);
//!    one worker's in-flight set with
//!    [`heartbeat_many`](crate::ExecutionQueue::heartbeat_many), a fleet's
//!    with [`heartbeat_batch`](crate::ExecutionQueue::heartbeat_batch) and
//!    the [`Heartbeater`](crate::Heartbeater), each checked alike).
//!    While the execution is `running` and owned by that worker, its lease
//!    becomes now + lease and `heartbeat_at` now; the new end is returned.
//!    Otherwise [`Error::LeaseLost`](crate::Error::LeaseLost) with a
//!    [`LeaseLostReason`](crate::LeaseLostReason): `Cancelled` (stop
//!    running it), `Expired` (the rescuer timed it out), `Finished`, or
//!    `NotOwner`.
//! 4. **Complete** ([`complete`](crate::ExecutionQueue::complete)). The
//!    owner reports an [`Outcome`](crate::Outcome): `completed`, `failed` or
//!    `timeout`, with return code, output and usage. The execution ends
//!    with `completed_at` (never before `started_at`) and its lease cleared;
//!    the running task takes the same status. Refused with `LeaseLost`,
//!    changing nothing, once the worker no longer owns it. A lease in the
//!    past does not matter by itself: until the rescuer has acted nobody
//!    else can own the execution, so a late heartbeat or result is still
//!    taken.
//! 5. **Finish by hand** ([`cancel`](crate::ExecutionQueue::cancel), or an
//!    end status through
//!    [`ExecutionRepository::update_status`](crate::ExecutionRepository::update_status)).
//!    `cancel` ends a `pending` or `running` execution at once and cancels
//!    its task; a running worker learns it at its next heartbeat or
//!    completion (`LeaseLost` with reason `Cancelled`) and from the events.
//! 6. **Rescue** ([`rescue_expired`](crate::ExecutionQueue::rescue_expired)).
//!    Running executions whose `lease_expires_at` has passed, oldest lease
//!    first, at most `batch_size` of them, are locked with their tasks `SKIP
//!    LOCKED` and become `timeout`. The UPDATE re-checks status and lease on
//!    the locked row, so an execution completed or heartbeaten meanwhile is
//!    left alone. The expired lease stays on the row (which is how a late
//!    worker is told `Expired`).
//! 7. **Attempts and retries.** A rescued execution whose `attempt` is below
//!    [`RescuePolicy::max_attempts`](crate::RescuePolicy::max_attempts) and
//!    whose task is still `running` gets a new `pending` execution carrying
//!    the same priority and attempt, claimable after
//!    [`retry_delay`](crate::RescuePolicy::retry_delay); the task goes back
//!    to `pending`. Otherwise the task becomes `timeout`. A cancelled task
//!    is never retried. [`RescuePolicy`](crate::RescuePolicy) defaults:
//!    `max_attempts` 1 (the first claim already makes `attempt` 1, so no
//!    retry), `retry_delay` 0, `batch_size` 1000.
//! 8. **Prune** ([`prune`](crate::ExecutionQueue::prune)`(older_than,
//!    batch)`). Deletes ended executions whose `completed_at` is older than
//!    `older_than`, in batches of `batch` rows (`FOR UPDATE SKIP LOCKED`,
//!    each batch its own short statement) until a batch comes back short.
//!    `pending` and `running` rows are never touched.
//!
//! # Invariants
//!
//! These hold at every commit, whatever the mix of calls, concurrency and
//! cancelled futures; the randomized model test `tests/queue/invariants.rs`
//! checks them after every step.
//!
//! - **At most one active execution per task.** `pending` or `running`;
//!   enforced by the unique partial index
//!   `task_executions_one_active_per_task_idx` (another client inserting a
//!   second one gets a unique violation). Enqueue and
//!   [`ExecutionRepository::create`](crate::ExecutionRepository::create)
//!   return the active execution instead of adding one.
//! - **A running execution has a lease.** CHECK
//!   `task_executions_running_has_lease`; the claim is the only way into
//!   `running` and sets the lease, so the rescuer can always find the work
//!   of a dead worker.
//! - **A task's status agrees with its executions.** A `pending` task's
//!   active execution, if it has one, is `pending`; a `running` task has
//!   exactly one `running` execution; a task in any other status has no
//!   active execution.
//! - **Cancelled work never runs.** Cancelling a task cancels its active
//!   execution in the same statement, and a claim takes only executions
//!   whose task is `pending`.
//! - **Completed once.** Only the worker holding the running execution can
//!   complete it, once.
//!
//! ## Lock order
//!
//! One order everywhere: a user, then that user's tasks in id order, then
//! their executions. Every statement that writes an execution locks its
//! task first (enqueue, complete, cancel, heartbeat, the end statuses set
//! by hand, [`ExecutionRepository::update`](crate::ExecutionRepository::update)
//! and [`delete`](crate::ExecutionRepository::delete)); `enqueue_many` locks
//! its tasks in id order; deleting a user locks the user row, then its
//! tasks in id order, then lets the cascade delete them. `claim`,
//! `rescue_expired` and `prune` lock with `SKIP LOCKED` and never wait. So
//! the crate's own calls cannot deadlock one another, deletes included. A
//! transaction of yours keeps that guarantee by following the same order.
//!
//! ## Pagination
//!
//! Every list is a keyset page ([`PageRequest`](crate::PageRequest),
//! [`Page`](crate::Page)): tasks in `priority DESC, created_at DESC, id
//! DESC` order, users and executions in `created_at DESC, id DESC`.
//!
//! - **Limit.** [`DEFAULT_PAGE_LIMIT`](crate::model::DEFAULT_PAGE_LIMIT)
//!   (20) rows when none is given; a larger limit is capped at
//!   [`MAX_PAGE_LIMIT`](crate::model::MAX_PAGE_LIMIT) (100); 0 is a
//!   validation error on `limit`. One row more than the limit is read, to
//!   know whether a next page exists: `next_cursor` is `None` on the last
//!   page.
//! - **Cursor.** Opaque text holding the sort key and id of the page's last
//!   row, the list it belongs to (its name and filter) and a checksum. An
//!   altered cursor, or one of another list or filter, is a validation
//!   error on `cursor`, never a silently wrong page.
//! - **No row skipped or repeated.** The next page holds the rows strictly
//!   after the cursor in the list's order, an index condition rather than
//!   an offset. A walk over every page therefore returns each row exactly
//!   once even while rows are inserted (a row inserted behind the cursor is
//!   simply not part of the walk), and a late page costs what the first
//!   does. A row that no longer decodes fails its page with
//!   [`Error::Decode`](crate::Error::Decode) rather than being left out.
//!   The one caveat: `created_at` and `id` never change, but a task's
//!   priority can, and a task whose priority is updated during the walk may
//!   move across the cursor.
//!
//! # Pool defaults
//!
//! The defaults of [`DbConfig`](crate::DbConfig); the [`config`](crate::config)
//! module lists their environment variables and accepted ranges.
//!
//! | setting | default |
//! |---|---|
//! | [`max_connections`](crate::DbConfig::max_connections) | 25 |
//! | [`min_connections`](crate::DbConfig::min_connections) (opened at connect, kept while idle) | 5 |
//! | [`max_lifetime`](crate::DbConfig::max_lifetime) | 1 hour |
//! | [`idle_timeout`](crate::DbConfig::idle_timeout) | 30 minutes |
//! | [`connect_timeout`](crate::DbConfig::connect_timeout) | 10 seconds |
//! | [`wait_timeout`](crate::DbConfig::wait_timeout) (then [`Error::Timeout`](crate::Error::Timeout) rather than a hang) | 5 seconds |
//! | [`recycle_timeout`](crate::DbConfig::recycle_timeout) | 5 seconds |
//! | [`statement_timeout`](crate::DbConfig::statement_timeout) (server setting) | 30 seconds |
//! | [`idle_in_transaction_timeout`](crate::DbConfig::idle_in_transaction_timeout) (server `idle_in_transaction_session_timeout`) | 60 seconds |
//! | [`reaper_interval`](crate::DbConfig::reaper_interval) | 30 seconds |
//! | [`application_name`](crate::DbConfig::application_name) | `voidrunner-db` |
//! | [`notify_events`](crate::DbConfig::notify_events) | true |
//! | [`migration_lock_timeout`](crate::DbConfig::migration_lock_timeout) | 2 seconds |
//! | [`migration_retries`](crate::DbConfig::migration_retries) | 5 |
//! | [`slow_statement`](crate::DbConfig::slow_statement) | 1 second |
//! | [`max_output_bytes`](crate::DbConfig::max_output_bytes) | 1 MiB (1,048,576 bytes) |
//!
//! [`Database::health_check`](crate::Database::health_check) reports
//! whether a query round-trips, its latency, the server version and the
//! pool's statistics ([`PoolStatus`](crate::PoolStatus): size, idle, in
//! use, waiting, max).

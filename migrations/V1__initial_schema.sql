-- voidrunner-db V1: users, tasks and task executions (SPEC §1).
--
-- Every rule the crate validates in Rust is also a named CHECK constraint here,
-- so a row written by another client cannot break the invariants either. The
-- constraint names are part of the crate's API: errors report them.

CREATE FUNCTION voidrunner_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE users (
    id            uuid         NOT NULL DEFAULT gen_random_uuid(),
    email         varchar(255) NOT NULL,
    password_hash varchar(255) NOT NULL,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    updated_at    timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT users_pkey PRIMARY KEY (id),
    -- The unique index behind this constraint also serves get-by-email.
    CONSTRAINT users_email_key UNIQUE (email),
    -- Stored normalised, so the unique index is case-insensitive in effect.
    CONSTRAINT users_email_normalized CHECK (email = lower(btrim(email))),
    CONSTRAINT users_email_format
        CHECK (email ~ '^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$'),
    CONSTRAINT users_password_hash_not_blank CHECK (password_hash ~ '[^[:space:]]')
);

CREATE TABLE tasks (
    id              uuid         NOT NULL DEFAULT gen_random_uuid(),
    user_id         uuid         NOT NULL,
    name            varchar(255) NOT NULL,
    description     text,
    script_content  text         NOT NULL,
    script_type     varchar(50)  NOT NULL DEFAULT 'python',
    status          varchar(50)  NOT NULL DEFAULT 'pending',
    priority        integer      NOT NULL DEFAULT 0,
    timeout_seconds integer      NOT NULL DEFAULT 10,
    metadata        jsonb        NOT NULL DEFAULT '{}',
    created_at      timestamptz  NOT NULL DEFAULT now(),
    updated_at      timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT tasks_pkey PRIMARY KEY (id),
    CONSTRAINT tasks_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT tasks_name_not_blank CHECK (name ~ '[^[:space:]]'),
    CONSTRAINT tasks_description_length CHECK (char_length(description) <= 1000),
    CONSTRAINT tasks_script_content_not_blank CHECK (script_content ~ '[^[:space:]]'),
    CONSTRAINT tasks_script_content_length CHECK (char_length(script_content) <= 65535),
    CONSTRAINT tasks_script_type_valid
        CHECK (script_type IN ('python', 'javascript', 'bash', 'go')),
    CONSTRAINT tasks_status_valid
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'timeout', 'cancelled')),
    CONSTRAINT tasks_priority_range CHECK (priority BETWEEN 0 AND 10),
    CONSTRAINT tasks_timeout_seconds_range CHECK (timeout_seconds BETWEEN 1 AND 3600),
    CONSTRAINT tasks_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

CREATE TABLE task_executions (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    task_id            uuid        NOT NULL,
    status             varchar(50) NOT NULL DEFAULT 'pending',
    return_code        integer,
    stdout             text,
    stderr             text,
    execution_time_ms  integer,
    memory_usage_bytes bigint,
    started_at         timestamptz,
    completed_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_executions_pkey PRIMARY KEY (id),
    CONSTRAINT task_executions_task_id_fkey FOREIGN KEY (task_id)
        REFERENCES tasks (id) ON DELETE CASCADE,
    CONSTRAINT task_executions_status_valid
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'timeout', 'cancelled')),
    CONSTRAINT task_executions_return_code_range CHECK (return_code BETWEEN 0 AND 255),
    CONSTRAINT task_executions_execution_time_ms_nonnegative CHECK (execution_time_ms >= 0),
    CONSTRAINT task_executions_memory_usage_bytes_nonnegative CHECK (memory_usage_bytes >= 0),
    CONSTRAINT task_executions_completed_after_started CHECK (completed_at >= started_at)
);

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION voidrunner_set_updated_at();
CREATE TRIGGER tasks_set_updated_at BEFORE UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION voidrunner_set_updated_at();

-- Indexes: one per keyset page order the repositories serve, each ending in the
-- full sort key so a page is an index range scan with no sort. The leading
-- user_id / task_id columns also cover the foreign keys for cascading deletes.
CREATE INDEX users_created_at_id_idx ON users (created_at DESC, id DESC);

CREATE INDEX tasks_priority_created_at_id_idx
    ON tasks (priority DESC, created_at DESC, id DESC);
CREATE INDEX tasks_user_id_priority_created_at_id_idx
    ON tasks (user_id, priority DESC, created_at DESC, id DESC);
CREATE INDEX tasks_status_priority_created_at_id_idx
    ON tasks (status, priority DESC, created_at DESC, id DESC);
-- jsonb_path_ops: smaller and faster than the default opclass, and containment
-- (@>) is the only metadata operator the crate uses.
CREATE INDEX tasks_metadata_idx ON tasks USING gin (metadata jsonb_path_ops);

CREATE INDEX task_executions_created_at_id_idx
    ON task_executions (created_at DESC, id DESC);
CREATE INDEX task_executions_task_id_created_at_id_idx
    ON task_executions (task_id, created_at DESC, id DESC);
CREATE INDEX task_executions_status_created_at_id_idx
    ON task_executions (status, created_at DESC, id DESC);

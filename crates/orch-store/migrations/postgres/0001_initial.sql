-- orch schema, version 1 (PostgreSQL).
--
-- The same tables and columns as the SQLite schema. Times are milliseconds since the Unix epoch
-- from the database clock; JSON is stored as TEXT, verbatim, exactly as on SQLite. Enumerations
-- (status, state) are plain TEXT decoded by orch, which reports an unknown value as corrupt data
-- instead of guessing.

CREATE TABLE projects (
    id               TEXT   NOT NULL PRIMARY KEY,
    repo_path        TEXT   NOT NULL,
    next_item_number BIGINT NOT NULL DEFAULT 1,
    created_at       BIGINT NOT NULL
);

CREATE TABLE work_items (
    id             TEXT   NOT NULL PRIMARY KEY,
    project_id     TEXT   NOT NULL REFERENCES projects (id),
    title          TEXT   NOT NULL,
    body           TEXT   NOT NULL,
    -- `stage` and `status` mirror progress_json so they can be queried.
    stage          TEXT   NOT NULL,
    status         TEXT   NOT NULL,
    progress_json  TEXT   NOT NULL,
    blocked_reason TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE INDEX work_items_by_project ON work_items (project_id, created_at);
CREATE INDEX work_items_by_created ON work_items (created_at);
CREATE INDEX work_items_by_status ON work_items (status);

CREATE TABLE stage_runs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id          TEXT   NOT NULL REFERENCES work_items (id),
    project_id       TEXT   NOT NULL REFERENCES projects (id),
    stage            TEXT   NOT NULL,
    attempt          BIGINT NOT NULL,
    state            TEXT   NOT NULL,
    -- Bumped by every claim and by cancellation; a worker's writes must carry the current value.
    epoch            BIGINT NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    feedback_json    TEXT   NOT NULL,
    checkpoint_json  TEXT   NOT NULL,
    verdict_json     TEXT,
    usage_json       TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    UNIQUE (item_id, stage, attempt)
);

-- An item has at most one active run: the database refuses a second one.
CREATE UNIQUE INDEX stage_runs_one_active_per_item
    ON stage_runs (item_id) WHERE state IN ('queued', 'running', 'waiting');
-- Claims look for the oldest queued run, or a running one whose lease expired.
CREATE INDEX stage_runs_claim ON stage_runs (state, created_at, id);

CREATE TABLE events (
    item_id   TEXT   NOT NULL REFERENCES work_items (id),
    seq       BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    kind      TEXT   NOT NULL,
    run_id    BIGINT REFERENCES stage_runs (id),
    data_json TEXT   NOT NULL,
    PRIMARY KEY (item_id, seq)
);

-- The event log is history: nothing may rewrite it, not even a hand-typed statement.
CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END;
$$;
CREATE TRIGGER events_are_never_updated BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
CREATE TRIGGER events_are_never_deleted BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
-- TRUNCATE skips row triggers, so it gets a statement trigger of its own.
CREATE TRIGGER events_are_never_truncated BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

CREATE TABLE inbox (
    source       TEXT   NOT NULL,
    delivery_id  TEXT   NOT NULL,
    received_at  BIGINT NOT NULL,
    body         BYTEA  NOT NULL,
    processed_at BIGINT,
    PRIMARY KEY (source, delivery_id)
);

CREATE INDEX inbox_unprocessed ON inbox (received_at) WHERE processed_at IS NULL;

-- Work items that came from a tracker: the tracker's id of each, unique per project, so a
-- webhook and the reconciliation poll that both see the same item file it once.
CREATE TABLE external_items (
    project_id  TEXT NOT NULL REFERENCES projects (id),
    external_id TEXT NOT NULL,
    item_id     TEXT NOT NULL UNIQUE REFERENCES work_items (id),
    PRIMARY KEY (project_id, external_id)
);

-- Where a follower of the event log stopped (the last event it handled), so a restart neither
-- repeats nor loses.
CREATE TABLE cursors (
    name     TEXT   NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL
);

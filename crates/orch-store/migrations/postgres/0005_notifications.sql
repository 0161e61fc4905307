-- Outgoing notifications (approval awaited, blocked, deployed, prod restored, spend limit): one
-- row per receiver and per event that asked for it, written by the event follower in the same
-- transaction that moves its cursor past the event, so a restart neither loses nor doubles one.
-- `body` is exactly what is sent (the signature covers it, so every retry is byte-identical);
-- no secret is ever stored here. `attempts` counts claims and fences a sender whose claim
-- expired: its late answer changes nothing.
CREATE TABLE notifications (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    receiver        TEXT    NOT NULL,
    item_id         TEXT    NOT NULL REFERENCES work_items (id),
    event_seq       BIGINT  NOT NULL,
    kind            TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    finished_at     BIGINT,
    UNIQUE (receiver, item_id, event_seq)
);

CREATE INDEX notifications_due ON notifications (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX notifications_by_item ON notifications (item_id, id);

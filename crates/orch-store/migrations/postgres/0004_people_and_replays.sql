-- A webhook delivery is known by its body too: a captured delivery sent again under a new
-- delivery id (the id is an unsigned header) is the same delivery. Rows stored before this
-- version have no hash; a replay of one of those is still caught by reading the state back.
ALTER TABLE inbox ADD COLUMN body_sha256 TEXT;
CREATE UNIQUE INDEX inbox_by_body ON inbox (source, body_sha256);

-- People who act on items under their own name. Only the SHA-256 of a person's API token is
-- kept (the token is 256 random bits, so the hash cannot be guessed back); a revoked person
-- keeps their row, so history keeps meaning who they were.
CREATE TABLE people (
    name         TEXT   NOT NULL PRIMARY KEY,
    token_sha256 TEXT   NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

-- A tracker account (`plane:<user uuid>`, `gitea:<user id>`, `github:<user id>`) that is a
-- person: the tracker's user id, never a display name its owner can edit.
CREATE TABLE tracker_accounts (
    account TEXT NOT NULL PRIMARY KEY,
    person  TEXT NOT NULL REFERENCES people (name)
);

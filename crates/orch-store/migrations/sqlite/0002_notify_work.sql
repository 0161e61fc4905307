-- Version 2 on PostgreSQL adds a NOTIFY trigger that wakes idle workers. SQLite has no such
-- channel: processes sharing one SQLite file poll. Kept so both backends number alike.
SELECT 1;

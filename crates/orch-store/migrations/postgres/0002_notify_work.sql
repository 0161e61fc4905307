-- Wakes idle workers: every time a stage run becomes claimable (inserted or set back to
-- 'queued'), the committing transaction notifies channel `orch_work`. A hint only: workers
-- still poll, so a lost notification costs at most one poll interval.
CREATE FUNCTION orch_notify_work() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('orch_work', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER stage_runs_notify_work
    AFTER INSERT OR UPDATE OF state ON stage_runs
    FOR EACH ROW WHEN (NEW.state = 'queued')
    EXECUTE FUNCTION orch_notify_work();

-- Screening keys: one row per portfolio entry and sector category or
-- location, so that one GiST index on (country, key, period) returns only
-- genuine candidates. With the (country, period) index alone, a dense
-- country's entries in the period were all read from the heap and most
-- thrown away (see docs/performance.md).
CREATE TABLE portfolio_keys (
    entry bigint NOT NULL REFERENCES portfolio ON DELETE CASCADE,
    country text NOT NULL,
    key text NOT NULL,
    period daterange NOT NULL
);
CREATE INDEX portfolio_keys_screen ON portfolio_keys USING gist (country, key, period);
CREATE INDEX portfolio_keys_entry ON portfolio_keys (entry);

-- Kept by the database itself, whoever writes the portfolio; inactive
-- entries have no keys and so are never candidates.
CREATE FUNCTION portfolio_keys_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM portfolio_keys WHERE entry = OLD.id;
    END IF;
    IF NEW.active THEN
        INSERT INTO portfolio_keys (entry, country, key, period)
        SELECT NEW.id, NEW.country, k, NEW.period
        FROM (SELECT 'c:' || unnest(NEW.categories) UNION SELECT 'l:' || unnest(NEW.locations)) AS keys(k);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER portfolio_keys_sync AFTER INSERT OR UPDATE ON portfolio
    FOR EACH ROW EXECUTE FUNCTION portfolio_keys_sync();

INSERT INTO portfolio_keys (entry, country, key, period)
SELECT p.id, p.country, k, p.period
FROM portfolio p, LATERAL (SELECT 'c:' || unnest(p.categories) UNION SELECT 'l:' || unnest(p.locations)) AS keys(k)
WHERE p.active;

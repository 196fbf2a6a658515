-- Text similarity was pg_trgm's similarity(candidate body, subject text),
-- which makes the trigrams of both texts again at every call. On
-- descriptions of a realistic length (about 500 characters) that was most of
-- a screening's time: about 90 µs a candidate, and a dense slice holds
-- thousands (docs/performance.md, "Text similarity from trigrams made once").
-- Each portfolio entry now keeps the trigrams of its text, made when the
-- text is written; a screening makes its subject's once and counts the
-- trigrams in common with contrib's intarray, about 8 µs a candidate.
--
-- The similarity is pg_trgm's to the last bit: the same trigrams
-- (show_trgm), the same formula (shared / (mine + theirs - shared), 0 when
-- either side has none) and the same float4 rounding. A test compares the
-- two over texts in several scripts (TrigramSimilarityTests).

-- An intarray installed elsewhere beforehand would be found by IF NOT
-- EXISTS below and leave the schema empty: say so rather than fail on a
-- missing function.
DO $$
DECLARE installed_in text;
BEGIN
    SELECT n.nspname INTO installed_in FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'intarray';
    IF installed_in <> 'intarray' THEN
        RAISE EXCEPTION 'pbc needs the extension intarray in the schema intarray; it is installed in %', installed_in
            USING HINT = 'once, as its owner: CREATE SCHEMA intarray; ALTER EXTENSION intarray SET SCHEMA intarray;';
    END IF;
END $$;

-- In a schema of its own: in public, intarray's &&, @> and <@ on integer
-- arrays would take the place of the built-in operators wherever an
-- integer array is compared, and GIN's default operator class does not
-- serve them. Its functions are called schema-qualified below.
CREATE SCHEMA IF NOT EXISTS intarray;
CREATE EXTENSION IF NOT EXISTS intarray SCHEMA intarray;

-- A text's trigrams as pg_trgm makes them, each as the integer of its three
-- bytes, sorted. show_trgm prints a trigram of ASCII letters, digits and
-- spaces as itself, any other as 0x and six hex digits of the same
-- integer, so the mapping loses nothing: as many integers as trigrams.
CREATE FUNCTION trigram_set(body text) RETURNS int[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(code ORDER BY code), '{}')
    FROM unnest(show_trgm(body)) AS t,
         LATERAL (SELECT CASE WHEN length(t) = 8 AND left(t, 2) = '0x' THEN ('x' || substr(t, 3))::bit(24)::int
                              ELSE (ascii(substr(t, 1, 1)) << 16) | (ascii(substr(t, 2, 1)) << 8) | ascii(substr(t, 3, 1))
                         END AS code) AS c
$$;

-- pg_trgm's similarity of two trigram sets: shared / (a + b - shared),
-- written as 1 / ((a + b) / shared - 1) so that the shared count appears
-- once when PostgreSQL inlines the function into a query (each appearance
-- would be counted again). Computed in float8 and rounded to float4 it is
-- the float4 quotient pg_trgm computes: for counts this small the float8
-- error is far below the distance to a float4 rounding boundary.
CREATE FUNCTION trigram_similarity(a int[], b int[]) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(1 / ((cardinality(a) + cardinality(b))::float8
                         / nullif(intarray.icount(a OPERATOR(intarray.&) b), 0) - 1), 0)::float4::float8
$$;

ALTER TABLE portfolio ADD COLUMN trigrams int[] NOT NULL DEFAULT '{}';

-- Kept by the database itself, whoever writes the portfolio. A task's
-- portfolio row is upserted at every step with its text unchanged; making
-- the trigrams again would cost about 100 µs each time for nothing.
CREATE FUNCTION portfolio_trigrams_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.body IS DISTINCT FROM OLD.body THEN
        NEW.trigrams := trigram_set(NEW.body);
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER portfolio_trigrams_sync BEFORE INSERT OR UPDATE OF body ON portfolio
    FOR EACH ROW EXECUTE FUNCTION portfolio_trigrams_sync();

-- The screening keys depend on these columns only: an update of a title, a
-- description or the trigrams (the backfill below) no longer rewrites them.
DROP TRIGGER portfolio_keys_sync ON portfolio;
CREATE TRIGGER portfolio_keys_sync AFTER INSERT OR UPDATE OF country, period, categories, locations, active ON portfolio
    FOR EACH ROW EXECUTE FUNCTION portfolio_keys_sync();

UPDATE portfolio SET trigrams = trigram_set(body);

-- As sql/0010's, with the similarity from the kept trigrams. The subject's
-- are made once per screening: the materialized CTE keeps PostgreSQL from
-- folding trigram_set(subject_text) into the per-candidate expressions.
CREATE OR REPLACE FUNCTION screening_candidates(
    subject_ref text, subject_country text, subject_keys text[], subject_start date, subject_end date, tolerance_days int,
    subject_sectors text[], subject_categories text[], subject_locations text[], subject_agencies text[], subject_text text,
    weight_sector float8, weight_period float8, weight_location float8, weight_text float8, weight_participants float8,
    threshold float8, after_entry bigint DEFAULT 0)
RETURNS TABLE (ref text, agency text, agencies text[], sectors text[], locations text[], start date, finish date,
               external_ids text[], text_similarity float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH subject AS MATERIALIZED (SELECT trigram_set(subject_text) AS trigrams)
    SELECT p.ref, p.agency, p.agencies, p.sectors, p.locations, lower(p.period), upper(p.period) - 1, p.external_ids, s.text
    FROM subject, portfolio p,
         LATERAL (SELECT trigram_similarity(p.trigrams, subject.trigrams) AS text) s,
         LATERAL (SELECT (weight_sector * CASE WHEN p.sectors && subject_sectors THEN 1
                                               WHEN p.categories && subject_categories THEN 0.6 ELSE 0 END
                          + weight_period + weight_location * (p.locations && subject_locations)::int
                          + weight_text * s.text + weight_participants * (p.agencies && subject_agencies)::int
                         ) / (weight_sector + weight_period + weight_location + weight_text + weight_participants) AS bound) b
    WHERE p.id IN (
        SELECT k.entry FROM portfolio_keys k
        WHERE k.country = subject_country AND k.key = ANY (subject_keys)
          AND k.period && daterange(subject_start - tolerance_days, subject_end + tolerance_days, '[]')
          AND k.entry > after_entry)
      AND p.active AND p.ref <> subject_ref AND p.id > after_entry
      AND b.bound >= threshold - 1e-9
    ORDER BY b.bound DESC, p.ref
    LIMIT 1000
$$;

-- As sql/0014's, with the similarity from the kept trigrams.
CREATE OR REPLACE FUNCTION screening_entries(refs text[], subject_country text, subject_text text)
RETURNS TABLE (ref text, agency text, agencies text[], sectors text[], locations text[], start date, finish date,
               external_ids text[], text_similarity float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH subject AS MATERIALIZED (SELECT trigram_set(subject_text) AS trigrams)
    SELECT p.ref, p.agency, p.agencies, p.sectors, p.locations, lower(p.period), upper(p.period) - 1, p.external_ids,
           trigram_similarity(p.trigrams, subject.trigrams)
    FROM subject, portfolio p
    WHERE p.ref = ANY (refs) AND p.country = subject_country AND p.active
$$;

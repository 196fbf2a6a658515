-- `pbc overlaps scan` screens every entry, so it found each pair twice, once
-- from each side, and scored it twice. With `after_entry`, a screening
-- looks only at entries of a higher id: the scan passes each entry's id and
-- scores each pair once. A submission passes nothing (0) and sees every
-- candidate, as before. Otherwise the function is sql/0007's.

DROP FUNCTION screening_candidates(text, text, text[], date, date, int, text[], text[], text[], text[], text,
                         float8, float8, float8, float8, float8, float8);

CREATE FUNCTION screening_candidates(
    subject_ref text, subject_country text, subject_keys text[], subject_start date, subject_end date, tolerance_days int,
    subject_sectors text[], subject_categories text[], subject_locations text[], subject_agencies text[], subject_text text,
    weight_sector float8, weight_period float8, weight_location float8, weight_text float8, weight_participants float8,
    threshold float8, after_entry bigint DEFAULT 0)
RETURNS TABLE (ref text, agency text, agencies text[], sectors text[], locations text[], start date, finish date,
               external_ids text[], text_similarity float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT p.ref, p.agency, p.agencies, p.sectors, p.locations, lower(p.period), upper(p.period) - 1, p.external_ids, s.text
    FROM portfolio p,
         LATERAL (SELECT similarity(p.body, subject_text)::float8 AS text) s,
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

REVOKE EXECUTE ON FUNCTION screening_candidates(text, text, text[], date, date, int, text[], text[], text[], text[], text,
                         float8, float8, float8, float8, float8, float8, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION screening_candidates(text, text, text[], date, date, int, text[], text[], text[], text[], text,
                         float8, float8, float8, float8, float8, float8, bigint) TO pbc_app;

-- The who-does-what-where report split an activity's budget equally among
-- its countries and among all its sector codes of every vocabulary. IATI
-- gives each recipient country a percentage (the rest going to regions), and
-- each sector vocabulary describes the whole activity again: an activity
-- coded 74020 (100%) and in two other vocabularies counted a sixth of its
-- budget under 74020, and one coded only in DAC categories (vocabulary 2)
-- counted under no sector at all.
--
-- The import now works out each activity's shares (BudgetShares.swift) and
-- keeps them here. Activities imported before keep their countries'
-- percentages but not their sectors', so they are filled in below from what
-- is kept: countries by their percentages, sectors in equal parts within
-- the vocabulary the report takes. Importing their file again takes the
-- sector percentages (each such activity counts as updated once).
-- An activity with no countries (as `countries` defaults) has no shares.
ALTER TABLE activities ADD COLUMN budget_shares jsonb NOT NULL
    DEFAULT '{"countries": [], "sectors": []}' CHECK (jsonb_typeof(budget_shares) = 'object');

WITH countries AS (
    SELECT a.id, c.value ->> 'code' AS code, c.ordinality,
           CASE WHEN c.value ->> 'percentage' ~ '^[0-9]+(\.[0-9]+)?$' THEN (c.value ->> 'percentage')::numeric END AS percentage,
           jsonb_array_length(a.regions) > 0 AS with_regions
    FROM activities a, jsonb_array_elements(a.countries) WITH ORDINALITY AS c(value, ordinality)
),
country_totals AS (
    SELECT id, count(*) AS n, sum(percentage) AS total, bool_and(percentage IS NOT NULL) AS all_stated, bool_or(with_regions) AS with_regions
    FROM countries GROUP BY id
),
country_shares AS (
    SELECT c.id, jsonb_agg(jsonb_build_object('code', c.code, 'share',
               CASE WHEN t.all_stated AND t.total > 0
                    THEN c.percentage / CASE WHEN t.with_regions THEN greatest(t.total, 100) ELSE t.total END
                    ELSE 1.0 / t.n END) ORDER BY c.ordinality) AS shares
    FROM countries c JOIN country_totals t USING (id)
    GROUP BY c.id
),
-- One vocabulary: DAC codes, else DAC categories (when an activity has no
-- codes, its categories are its own), else the first other vocabulary.
vocabulary AS (
    SELECT a.id,
           CASE WHEN cardinality(a.sectors) > 0 THEN a.sectors
                WHEN cardinality(a.sector_categories) > 0 THEN a.sector_categories
                ELSE ARRAY(SELECT DISTINCT o.code FROM jsonb_array_elements_text(a.other_sectors) AS o(code)
                           WHERE split_part(o.code, ':', 1) = split_part(a.other_sectors ->> 0, ':', 1))
           END AS codes
    FROM activities a
),
sector_shares AS (
    SELECT v.id, coalesce((SELECT jsonb_agg(jsonb_build_object('code', s.code, 'share', 1.0 / cardinality(v.codes)) ORDER BY s.code)
                           FROM unnest(v.codes) AS s(code)), '[]') AS shares
    FROM vocabulary v
)
UPDATE activities a
SET budget_shares = jsonb_build_object('countries', coalesce(c.shares, '[]'), 'sectors', s.shares)
FROM sector_shares s LEFT JOIN country_shares c USING (id)
WHERE a.id = s.id;

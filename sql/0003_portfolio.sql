-- The portfolio: every task plus activities imported from outside, screened
-- for overlap with one index-backed query.

-- Activities imported from IATI (or CSV): they run no workflow.
CREATE TABLE activities (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    identifier text NOT NULL CHECK (identifier <> ''),
    reporting_agency text NOT NULL REFERENCES agencies,
    title text NOT NULL CHECK (title <> ''),
    description text NOT NULL DEFAULT '',
    status text,
    countries jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(countries) = 'array'),
    regions jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(regions) = 'array'),
    sectors text[] NOT NULL DEFAULT '{}',
    sector_categories text[] NOT NULL DEFAULT '{}',
    other_sectors jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(other_sectors) = 'array'),
    locations text[] NOT NULL DEFAULT '{}',
    participants jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(participants) = 'array'),
    period_start date,
    period_end date,
    budget_amount numeric(20, 2) CHECK (budget_amount >= 0),
    budget_currency text CHECK (budget_currency ~ '^[A-Z]{3}$'),
    gender_marker integer CHECK (gender_marker BETWEEN 0 AND 3),
    content_hash text NOT NULL,
    source text NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT activity_period_in_order CHECK (period_start <= period_end),
    -- The same agency reporting the same identifier is the same activity: imports update it in place.
    CONSTRAINT activities_identity UNIQUE (reporting_agency, identifier)
);

-- One row per task or activity and country, as screening reads them.
CREATE TABLE portfolio (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- A task's ref or an activity's identifier (two publishers may report the same one).
    ref text NOT NULL,
    country text NOT NULL REFERENCES countries,
    kind text NOT NULL CHECK (kind IN ('task', 'activity')),
    task_id uuid REFERENCES tasks,
    activity_id uuid REFERENCES activities,
    agency text NOT NULL,
    agencies text[] NOT NULL,
    period daterange NOT NULL CHECK (NOT isempty(period)),
    sectors text[] NOT NULL,
    categories text[] NOT NULL,
    locations text[] NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    external_ids text[] NOT NULL DEFAULT '{}',
    -- Entries that ended as rejected, withdrawn or merged are no candidates.
    active boolean NOT NULL DEFAULT true,
    UNIQUE (task_id, country),
    UNIQUE (activity_id, country),
    CHECK ((kind = 'task') = (task_id IS NOT NULL) AND (kind = 'activity') = (activity_id IS NOT NULL))
);

-- Same country and overlapping period (btree_gist lets one GiST index hold both) ...
CREATE INDEX portfolio_country_period ON portfolio USING gist (country, period) WHERE active;
-- ... and a shared sector category or location.
CREATE INDEX portfolio_categories ON portfolio USING gin (categories) WHERE active;
CREATE INDEX portfolio_locations ON portfolio USING gin (locations) WHERE active;

-- Whose activities an overlap names, for visibility.
ALTER TABLE task_overlaps ADD COLUMN components jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(components) = 'object');

-- The domain of SPEC section 2. Constraints live here as well as in Swift,
-- so that no code path can store what the domain forbids.

CREATE TABLE agencies (
    id text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 300),
    kind text NOT NULL CHECK (kind IN ('un_entity', 'bilateral', 'regional_organization', 'ifi', 'ngo',
                                       'government', 'secretariat', 'external')),
    iati_ref text UNIQUE CHECK (iati_ref <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE countries (
    code text PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
    alpha2 text NOT NULL UNIQUE CHECK (alpha2 ~ '^[A-Z]{2}$'),
    name text NOT NULL CHECK (name <> '')
);

-- The Peacebuilding Commission's country configurations.
CREATE TABLE pbc_configurations (
    country text PRIMARY KEY REFERENCES countries,
    chair text,
    pbf_eligibility text CHECK (pbf_eligibility IN ('eligible', 'not_eligible')),
    pbf_eligible_until date
);

-- OECD DAC CRS purpose codes; the 3-digit category is derived.
CREATE TABLE sectors (
    code text PRIMARY KEY CHECK (code ~ '^[0-9]{5}$'),
    name text NOT NULL CHECK (name <> ''),
    category text GENERATED ALWAYS AS (left(code, 3)) STORED
);

CREATE TABLE principals (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    role text NOT NULL CHECK (role IN ('liaison', 'coordinator', 'approver', 'observer', 'admin', 'system')),
    agency text REFERENCES agencies,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT liaisons_have_an_agency CHECK (role <> 'liaison' OR agency IS NOT NULL)
);

-- Tokens are kept only as SHA-256 hashes.
CREATE TABLE api_tokens (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    principal uuid NOT NULL REFERENCES principals,
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    CHECK (expires_at IS NULL OR expires_at > created_at)
);

CREATE TABLE queues (
    name text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9-]*$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE queue_members (
    queue text NOT NULL REFERENCES queues,
    principal uuid NOT NULL REFERENCES principals,
    PRIMARY KEY (queue, principal)
);

-- Every version of every workflow ever loaded; tasks pin theirs.
CREATE TABLE workflow_definitions (
    name text NOT NULL CHECK (name ~ '^[a-z][a-z0-9-]*$'),
    version integer NOT NULL CHECK (version >= 1),
    content_hash text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    source text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

CREATE SEQUENCE task_ref_numbers;

CREATE TABLE tasks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ref text NOT NULL UNIQUE
        DEFAULT 'PBC-' || to_char(now() AT TIME ZONE 'UTC', 'YYYY') || '-' || lpad(nextval('task_ref_numbers')::text, 6, '0')
        CHECK (ref ~ '^PBC-[0-9]{4}-[0-9]{6,}$'),
    workflow text NOT NULL,
    workflow_version integer NOT NULL,
    state text NOT NULL CHECK (state ~ '^[a-z][a-z0-9_]*$'),
    version bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    title text NOT NULL CHECK (length(btrim(title)) BETWEEN 1 AND 500),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 20000),
    lead_agency text NOT NULL REFERENCES agencies,
    country text REFERENCES countries,
    locations text[] NOT NULL DEFAULT '{}',
    sectors text[] NOT NULL DEFAULT '{}',
    period_start date,
    period_end date,
    budget_amount numeric(20, 2) CHECK (budget_amount >= 0),
    budget_currency text CHECK (budget_currency ~ '^[A-Z]{3}$'),
    priority text NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    fields jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(fields) = 'object'),
    external_refs jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(external_refs) = 'object'),
    queue text,
    assignee uuid REFERENCES principals,
    due_at timestamptz,
    created_by uuid REFERENCES principals,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (workflow, workflow_version) REFERENCES workflow_definitions,
    CONSTRAINT period_complete CHECK ((period_start IS NULL) = (period_end IS NULL)),
    CONSTRAINT period_in_order CHECK (period_start <= period_end),
    CONSTRAINT budget_complete CHECK ((budget_amount IS NULL) = (budget_currency IS NULL)),
    CONSTRAINT sectors_are_codes CHECK (array_to_string(sectors, ',') ~ '^([0-9]{5}(,[0-9]{5})*)?$')
);

CREATE INDEX tasks_lead_agency ON tasks (lead_agency);
CREATE INDEX tasks_state ON tasks (workflow, state);
CREATE INDEX tasks_queue ON tasks (queue) WHERE queue IS NOT NULL;

-- Sectors are an array (for screening with GIN) whose codes must exist.
CREATE FUNCTION tasks_sectors_exist() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unknown text;
BEGIN
    SELECT code INTO unknown FROM unnest(NEW.sectors) AS code
    WHERE NOT EXISTS (SELECT 1 FROM sectors s WHERE s.code = code) LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown sector code %', unknown
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'tasks_sectors_exist', TABLE = 'tasks', COLUMN = 'sectors';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tasks_sectors_exist BEFORE INSERT OR UPDATE OF sectors ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_sectors_exist();

CREATE TABLE task_participants (
    task_id uuid NOT NULL REFERENCES tasks,
    agency text NOT NULL REFERENCES agencies,
    role text NOT NULL CHECK (role IN ('funding', 'implementing', 'accountable')),
    PRIMARY KEY (task_id, agency, role)
);
CREATE INDEX task_participants_agency ON task_participants (agency);

-- Every committed change, in one global sequence, written in the same
-- transaction as the change. A task's history is its events.
CREATE TABLE events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id uuid REFERENCES tasks,
    actor uuid REFERENCES principals,
    actor_name text NOT NULL,
    type text NOT NULL CHECK (type ~ '^[a-z]+(\.[a-z_]+)+$'),
    action text,
    from_state text,
    to_state text,
    comment text,
    data jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(data) = 'object'),
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_task ON events (task_id, seq);

-- Append-only, whoever asks: triggers fire for the table's owner too.
CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege', TABLE = 'events';
END;
$$;
CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

-- task.submit is idempotent per agency and key: the same key with the same
-- content gives the first result again; with other content, a conflict.
CREATE TABLE idempotency_keys (
    agency text NOT NULL REFERENCES agencies,
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_hash text NOT NULL,
    task_id uuid NOT NULL REFERENCES tasks,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agency, key)
);

-- What screening found; resolutions come with the overlap issue.
CREATE TABLE task_overlaps (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id uuid NOT NULL REFERENCES tasks,
    other_ref text NOT NULL,
    score double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    reasons jsonb NOT NULL CHECK (jsonb_typeof(reasons) = 'array' AND jsonb_array_length(reasons) > 0),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    detected_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (task_id, other_ref)
);
CREATE INDEX task_overlaps_open ON task_overlaps (task_id) WHERE status = 'open';

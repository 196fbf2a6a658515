-- Defence in depth: PostgreSQL itself keeps an agency's tasks from other
-- agencies' liaisons, whatever a request handler asks for.
--
-- pbc serves as the role pbc_app (SET ROLE after connecting): it owns no
-- table and does not bypass row-level security, so the policies below bind
-- it. In production pbc logs in as a member of pbc_app that owns nothing
-- either, and the owner runs the migrations (docs/operations.md).
-- Every transaction pbc opens says whose it is, with SET LOCAL at BEGIN:
--   pbc.scope = 'all'     coordinators, approvers, observers, admins, pbc itself
--   pbc.scope = 'agency'  a liaison, with pbc.agency = their agency
-- A transaction that says nothing sees no task at all. SET LOCAL ends with
-- the transaction, so a scope never passes to the next user of a pooled
-- connection.
--
-- Making the role needs CREATEROLE (or a superuser) the first time; on a
-- server where the migrating role lacks it, an administrator runs
--   CREATE ROLE pbc_app NOLOGIN; GRANT pbc_app TO <the role pbc logs in as>;
-- once, and the migration finds it.
DO $$
BEGIN
    BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pbc_app') THEN
            BEGIN
                CREATE ROLE pbc_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
            EXCEPTION
                -- Another database's migration made it at the same moment.
                WHEN duplicate_object OR unique_violation THEN NULL;
            END;
        END IF;
        -- The role pbc logs in as switches to pbc_app, so it must be a member.
        IF NOT pg_has_role(current_user, 'pbc_app', 'MEMBER') THEN
            EXECUTE format('GRANT pbc_app TO %I', current_user);
        END IF;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'pbc runs as the role pbc_app, which % may neither create nor join', current_user
            USING HINT = format('once, as a superuser: CREATE ROLE pbc_app NOLOGIN; GRANT pbc_app TO %I;', current_user);
    END;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pbc_app' AND (rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION 'the role pbc_app must neither be a superuser nor bypass row-level security';
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO pbc_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO pbc_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO pbc_app;
-- The audit trail is appended to and read, never changed (the triggers of
-- 0002 refuse it too). The migrations' record is the owner's to write; pbc
-- serving as a member of pbc_app reads it, to find nothing to apply.
REVOKE UPDATE, DELETE, TRUNCATE ON events FROM pbc_app;
REVOKE ALL ON pbc_schema_migrations FROM pbc_app;
GRANT SELECT ON pbc_schema_migrations TO pbc_app;
-- Tables of later migrations are pbc_app's to use as well; a table of task
-- data needs its own policy below.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO pbc_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO pbc_app;

-- Whether the transaction's principal may see a task: everything for scope
-- 'all'; for scope 'agency', tasks the agency leads or takes part in.
-- SECURITY DEFINER, so that it reads tasks and participants as their owner
-- (without the policies that call it).
CREATE FUNCTION pbc_sees_task(task uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT CASE current_setting('pbc.scope', true)
        WHEN 'all' THEN true
        WHEN 'agency' THEN
            EXISTS (SELECT 1 FROM tasks t WHERE t.id = task AND t.lead_agency = current_setting('pbc.agency', true))
            OR EXISTS (SELECT 1 FROM task_participants p WHERE p.task_id = task AND p.agency = current_setting('pbc.agency', true))
        ELSE false
    END
$$;

-- Whether the transaction's agency takes part in a task (for the tasks
-- policy itself, which checks the lead agency on the row: a row being
-- inserted is not yet there for pbc_sees_task to find).
CREATE FUNCTION pbc_agency_takes_part(task uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM task_participants p WHERE p.task_id = task AND p.agency = current_setting('pbc.agency', true))
$$;

ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tasks_of_the_principal ON tasks TO pbc_app
    USING (current_setting('pbc.scope', true) = 'all'
           OR (current_setting('pbc.scope', true) = 'agency'
               AND (lead_agency = current_setting('pbc.agency', true) OR pbc_agency_takes_part(id))));

ALTER TABLE task_participants ENABLE ROW LEVEL SECURITY;
CREATE POLICY participants_of_visible_tasks ON task_participants TO pbc_app
    USING (current_setting('pbc.scope', true) = 'all' OR pbc_sees_task(task_id));

ALTER TABLE task_overlaps ENABLE ROW LEVEL SECURITY;
CREATE POLICY overlaps_of_visible_tasks ON task_overlaps TO pbc_app
    USING (current_setting('pbc.scope', true) = 'all' OR pbc_sees_task(task_id));

-- Events carry the agencies of their task as the change left them (0006);
-- an agency that joined a task later reads its whole history too.
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_of_the_principal ON events TO pbc_app
    USING (current_setting('pbc.scope', true) = 'all'
           OR (current_setting('pbc.scope', true) = 'agency'
               AND (current_setting('pbc.agency', true) = ANY (agencies) OR pbc_sees_task(task_id))));

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY keys_of_the_principal ON idempotency_keys TO pbc_app
    USING (current_setting('pbc.scope', true) = 'all'
           OR (current_setting('pbc.scope', true) = 'agency' AND agency = current_setting('pbc.agency', true)));

-- Imported activities are published data; a task's portfolio row holds its
-- description, so it is the task's agencies' like the task.
ALTER TABLE portfolio ENABLE ROW LEVEL SECURITY;
CREATE POLICY portfolio_of_the_principal ON portfolio TO pbc_app
    USING (kind = 'activity' OR current_setting('pbc.scope', true) = 'all' OR pbc_sees_task(task_id));

-- The two reads of other agencies' entries that SPEC sections 4 and 7 allow,
-- and nothing more: screening (the fields scoring needs and the text
-- similarity, never the text) and the few fields of the other side of an
-- overlap that let agencies talk.

-- Candidates for overlap with a subject (PortfolioScreener): same country,
-- a shared key within the period and tolerance, active, not the subject
-- itself, and an upper bound of the score at or above the threshold. Every
-- candidate is examined; of those that pass, the 1,000 with the highest
-- bound are returned, so that in a slice with more, the strongest are kept.
CREATE FUNCTION screening_candidates(
    subject_ref text, subject_country text, subject_keys text[], subject_start date, subject_end date, tolerance_days int,
    subject_sectors text[], subject_categories text[], subject_locations text[], subject_agencies text[], subject_text text,
    weight_sector float8, weight_period float8, weight_location float8, weight_text float8, weight_participants float8,
    threshold float8)
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
          AND k.period && daterange(subject_start - tolerance_days, subject_end + tolerance_days, '[]'))
      AND p.active AND p.ref <> subject_ref
      AND b.bound >= threshold - 1e-9
    ORDER BY b.bound DESC, p.ref
    LIMIT 1000
$$;

-- The other side of an overlap, as much as a liaison of another agency may
-- see: ref, kind, title, lead agency, country, sectors, period.
CREATE FUNCTION overlap_peer(peer_ref text, peer_country text)
RETURNS TABLE (ref text, kind text, title text, agency text, country text, sectors text[], start date, finish date)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT p.ref, p.kind, p.title, p.agency, p.country, p.sectors, lower(p.period), upper(p.period) - 1
    FROM portfolio p WHERE p.ref = peer_ref AND p.country = peer_country
    LIMIT 1
$$;

REVOKE EXECUTE ON FUNCTION pbc_sees_task(uuid), pbc_agency_takes_part(uuid),
    screening_candidates(text, text, text[], date, date, int, text[], text[], text[], text[], text,
                         float8, float8, float8, float8, float8, float8),
    overlap_peer(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pbc_sees_task(uuid), pbc_agency_takes_part(uuid),
    screening_candidates(text, text, text[], date, date, int, text[], text[], text[], text[], text,
                         float8, float8, float8, float8, float8, float8),
    overlap_peer(text, text) TO pbc_app;

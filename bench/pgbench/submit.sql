-- What pbc sends PostgreSQL for one task.submit that finds no overlap
-- (run with -M extended, as pbc sends parameters; captured with log_statement = all; docs/performance.md). Values vary as
-- pbc-bench's submissions do: 40 countries, 24 sectors, 500 districts. :version is
-- pbf-project's newest, which new tasks start under (bench/compare passes it with -D).
-- It runs as pbc_app (bench/compare sets PGOPTIONS), with the scope pbc sets in each
-- transaction; pbc sends that with its BEGIN in one round trip, which pgbench's extended
-- protocol cannot, so pgbench makes one round trip more per transaction.
\set n random(1, 2000000000)
\set c random(1, 40)
\set s random(1, 24)
\set d random(0, 499)
\set y random(2027, 2029)
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT set_config('pbc.scope', 'all', true), set_config('pbc.agency', '', true);
SELECT request_hash, task_id FROM idempotency_keys WHERE agency = 'pbso' AND key = 'pgbench-' || (:client_id::int)::text || '-' || (:n::int)::text;
SELECT (ARRAY['SLE','LBR','GIN','CAF','COL','SOM','SSD','MLI','BFA','NER','TCD','CMR','NGA','COD','BDI','RWA','UGA','KEN','ETH','SDN','YEM','SYR','IRQ','LBN','AFG','PAK','MMR','PHL','LKA','NPL','HTI','GTM','HND','SLV','VEN','ECU','PER','BOL','MOZ','ZWE'])[:c::int] AS country,
       (ARRAY['15220','15110','15130','15150','15160','15170','15180','15210','15230','15240','15250','15261','11220','12220','13020','14030','16010','21020','23111','31120','31110','43010','72010','73010'])[:s::int] AS sector \gset
SELECT (SELECT code FROM countries WHERE code = :country::text OR alpha2 = :country::text),
       ARRAY(SELECT a FROM unnest('{pbso}'::text[]) AS a WHERE a NOT IN (SELECT id FROM agencies) ORDER BY a),
       ARRAY(SELECT s FROM unnest(ARRAY[:sector::text]) AS s WHERE s NOT IN (SELECT code FROM sectors) ORDER BY s);
INSERT INTO tasks (workflow, workflow_version, state, title, description, lead_agency, country, locations, sectors,
                   period_start, period_end, budget_amount, budget_currency, priority, fields, external_refs,
                   queue, queued_at, due_at, next_reminder_at, open_to_all_agencies, created_by)
VALUES ('pbf-project', :version, 'draft', 'pgbench programme ' || (:n::int)::text, 'Bench programme ' || (:n::int)::text, 'pbso', :country::text, ARRAY['District ' || (:d::int)::text], ARRAY[:sector::text],
        make_date(:y::int, 1, 1), make_date(:y::int + 1, 12, 31), 900000.00, 'USD', 'normal', '{"facility": "IRF", "genderMarker": 2}', '{}',
        NULL, NULL, NULL, NULL, false, NULL)
RETURNING id \gset
SELECT t.id, t.ref, t.workflow, t.workflow_version, t.state, t.version, t.title, t.description, t.lead_agency,
       t.country, t.locations, t.sectors, t.period_start, t.period_end, t.budget_amount, t.budget_currency,
       t.priority, t.fields, t.external_refs, t.queue, t.assignee, h.name AS holder_name, t.lease_id,
       t.lease_expires_at, t.due_at, t.queued_at, t.created_at, t.updated_at,
       ARRAY(SELECT p.agency || ':' || p.role FROM task_participants p WHERE p.task_id = t.id ORDER BY p.agency, p.role) AS participants,
       (SELECT count(*) FROM task_overlaps o WHERE o.task_id = t.id AND o.status = 'open') AS open_overlaps
FROM tasks t LEFT JOIN principals h ON h.id = t.assignee
WHERE (t.id = :id::uuid OR (:id::uuid IS NULL AND t.ref = :id::text)) AND (NOT false OR t.lead_agency = NULL OR t.open_to_all_agencies) \gset task_
INSERT INTO idempotency_keys (agency, key, request_hash, task_id)
VALUES ('pbso', 'pgbench-' || (:client_id::int)::text || '-' || (:n::int)::text, md5(:n::text) || md5(:client_id::text), :id::uuid);
SELECT pg_advisory_xact_lock(7412, id)
FROM (SELECT DISTINCT hashtext(:country::text || ' ' || abs(hashtext(key) % 64)) AS id
      FROM unnest(ARRAY['c:' || left(:sector::text, 3), 'l' || ':' || 'district ' || (:d::int)::text]) AS key ORDER BY id) AS ids;
SELECT ref, agency, agencies, sectors, locations, start, finish, external_ids, text_similarity AS text
FROM screening_candidates(
    'none', :country::text, ARRAY['c:' || left(:sector::text, 3), 'l' || ':' || 'district ' || (:d::int)::text],
    make_date(:y::int, 1, 1), make_date(:y::int + 1, 12, 31), 90, ARRAY[:sector::text], ARRAY[left(:sector::text, 3)],
    ARRAY['district ' || (:d::int)::text], '{pbso}', 'pgbench programme ' || (:n::int)::text || ' Bench programme ' || (:n::int)::text,
    0.3, 0.2, 0.15, 0.25, 0.1, 0.5);
UPDATE tasks SET state = 'technical_review', fields = '{"facility": "IRF", "genderMarker": 2}', version = version + 1,
    queue = 'pbso-review', queued_at = now(), due_at = now() + interval '15 days',
    breached_at = NULL, next_reminder_at = NULL, open_to_all_agencies = false,
    assignee = NULL, lease_id = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id = :id::uuid
RETURNING version, updated_at;
WITH kept AS (
    INSERT INTO portfolio (ref, country, kind, task_id, agency, agencies, period, sectors, categories, locations, title, body,
                           external_ids, active)
    VALUES (:task_ref::text, :country::text, 'task', :id::uuid, 'pbso', '{pbso}', daterange(make_date(:y::int, 1, 1), make_date(:y::int + 1, 12, 31), '[]'),
            ARRAY[:sector::text], ARRAY[left(:sector::text, 3)], ARRAY['district ' || (:d::int)::text], 'pgbench programme ' || (:n::int)::text,
            'pgbench programme ' || (:n::int)::text || ' Bench programme ' || (:n::int)::text, '{}', true)
    ON CONFLICT (task_id, country) DO UPDATE SET
        ref = EXCLUDED.ref, agency = EXCLUDED.agency, agencies = EXCLUDED.agencies, period = EXCLUDED.period,
        sectors = EXCLUDED.sectors, categories = EXCLUDED.categories, locations = EXCLUDED.locations,
        title = EXCLUDED.title, body = EXCLUDED.body, external_ids = EXCLUDED.external_ids, active = EXCLUDED.active
    RETURNING id)
DELETE FROM portfolio WHERE task_id = :id::uuid AND id NOT IN (SELECT id FROM kept);
WITH written AS (
    INSERT INTO events (task_id, actor, actor_name, type, action, from_state, to_state, comment, data)
    SELECT coalesce(task::uuid, (SELECT id FROM tasks WHERE ref = peer)), actor::uuid, actor_name, type, action, from_state, to_state,
           comment, data::jsonb
    FROM unnest(ARRAY[:id::text, :id::text, :id::text, :id::text], ARRAY[NULL, NULL, NULL, NULL]::text[], ARRAY[NULL, NULL, NULL, NULL]::text[],
                ARRAY['pgbench', 'pgbench', 'system', 'system'],
                ARRAY['task.created', 'task.transitioned', 'task.transitioned', 'task.transitioned'],
                ARRAY[NULL, 'submit', 'screen', 'clear_screening'], ARRAY[NULL, 'draft', 'submitted', 'screening'],
                ARRAY['draft', 'submitted', 'screening', 'technical_review'], ARRAY[NULL, NULL, NULL, NULL]::text[],
                ARRAY['{"workflow":"pbf-project","workflowVersion":' || :version || '}', '{}', '{}', '{}'])
        WITH ORDINALITY AS e(task, peer, actor, actor_name, type, action, from_state, to_state, comment, data, position)
    WHERE peer IS NULL OR EXISTS (SELECT 1 FROM tasks WHERE ref = peer)
    ORDER BY position
    RETURNING seq)
SELECT pg_notify('pbc_events', max(seq)::text) FROM written;
SELECT other_ref, score, reasons, status FROM (
    SELECT other_ref, score, reasons, status FROM task_overlaps WHERE task_id = :id::uuid
    UNION ALL
    SELECT s.ref, o.score, o.reasons, o.status
    FROM task_overlaps o, LATERAL overlap_subject(o.id) s
    WHERE o.other_ref = (SELECT ref FROM tasks WHERE id = :id::uuid)
      AND NOT EXISTS (SELECT 1 FROM task_overlaps d WHERE d.task_id = :id::uuid AND d.other_ref = s.ref)) AS both_sides
ORDER BY status = 'open' DESC, score DESC, other_ref;
COMMIT;

-- What pbc sends PostgreSQL for queue.claim and then task.act (recommend)
-- under the lease: two transactions, as pbc-bench's claim-act flow makes.
-- One pgbench transaction here is one claim plus one action.
-- It runs as pbc_app (bench/compare sets PGOPTIONS), with the scope pbc sets in each
-- transaction; pbc sends that with its BEGIN in one round trip, which pgbench's extended
-- protocol cannot, so pgbench makes one round trip more per transaction.
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT set_config('pbc.scope', 'all', true), set_config('pbc.agency', '', true);
WITH next AS (
    SELECT t.id, t.assignee AS previous, h.name AS previous_name, t.lease_expires_at AS previous_expiry
    FROM tasks t LEFT JOIN principals h ON h.id = t.assignee
    WHERE t.queue = 'pbso-review'
      AND (t.assignee IS NULL OR t.lease_expires_at <= now())
      AND (false OR EXISTS (
          SELECT 1 FROM queue_members m JOIN queues q ON q.name = 'pbso-review'
          WHERE m.principal = (SELECT id FROM principals WHERE name = 'bench-coordinator') AND (m.queue = q.name OR m.queue = q.refines)))
      AND (NOT false OR t.lead_agency = 'pbso'
           OR EXISTS (SELECT 1 FROM task_participants p WHERE p.task_id = t.id AND p.agency = 'pbso'))
    ORDER BY t.priority_rank, t.due_at, t.queued_at, t.id
    LIMIT 1
    FOR NO KEY UPDATE OF t SKIP LOCKED)
UPDATE tasks t SET assignee = (SELECT id FROM principals WHERE name = 'bench-coordinator'), lease_id = gen_random_uuid(),
    lease_expires_at = now() + interval '15 minutes', version = t.version + 1, updated_at = now()
FROM next WHERE t.id = next.id
RETURNING t.id, next.previous_name, next.previous_expiry \gset
SELECT t.id, t.ref, t.workflow, t.workflow_version, t.state, t.version, t.title, t.description, t.lead_agency,
       t.country, t.locations, t.sectors, t.period_start, t.period_end, t.budget_amount, t.budget_currency,
       t.priority, t.fields, t.external_refs, t.queue, t.assignee, h.name AS holder_name, t.lease_id,
       t.lease_expires_at, t.due_at, t.queued_at, t.created_at, t.updated_at,
       ARRAY(SELECT p.agency || ':' || p.role FROM task_participants p WHERE p.task_id = t.id ORDER BY p.agency, p.role) AS participants,
       (SELECT count(*) FROM task_overlaps o WHERE o.task_id = t.id AND o.status = 'open') AS open_overlaps
FROM tasks t LEFT JOIN principals h ON h.id = t.assignee
WHERE (t.id = :id::uuid OR (:id::uuid IS NULL AND t.ref = :id::text)) AND (NOT false OR t.lead_agency = NULL OR t.open_to_all_agencies) \gset task_
WITH written AS (
    INSERT INTO events (task_id, actor, actor_name, type, action, from_state, to_state, comment, data)
    SELECT coalesce(task::uuid, (SELECT id FROM tasks WHERE ref = peer)), actor::uuid, actor_name, type, action, from_state, to_state,
           comment, data::jsonb
    FROM unnest(ARRAY[:id::text], ARRAY[NULL]::text[], ARRAY[NULL]::text[], ARRAY['pgbench'], ARRAY['task.claimed'], ARRAY[NULL]::text[], ARRAY[NULL]::text[],
                ARRAY[NULL]::text[], ARRAY[NULL]::text[], ARRAY['{"leaseExpiresAt":"2026-11-29T12:00:00.000Z"}'])
        WITH ORDINALITY AS e(task, peer, actor, actor_name, type, action, from_state, to_state, comment, data, position)
    WHERE peer IS NULL OR EXISTS (SELECT 1 FROM tasks WHERE ref = peer)
    ORDER BY position
    RETURNING seq)
SELECT pg_notify('pbc_events', max(seq)::text) FROM written;
COMMIT;
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT set_config('pbc.scope', 'all', true), set_config('pbc.agency', '', true);
SELECT t.id, t.ref, t.workflow, t.workflow_version, t.state, t.version, t.title, t.description, t.lead_agency,
       t.country, t.locations, t.sectors, t.period_start, t.period_end, t.budget_amount, t.budget_currency,
       t.priority, t.fields, t.external_refs, t.queue, t.assignee, h.name AS holder_name, t.lease_id,
       t.lease_expires_at, t.due_at, t.queued_at, t.created_at, t.updated_at,
       ARRAY(SELECT p.agency || ':' || p.role FROM task_participants p WHERE p.task_id = t.id ORDER BY p.agency, p.role) AS participants,
       (SELECT count(*) FROM task_overlaps o WHERE o.task_id = t.id AND o.status = 'open') AS open_overlaps
FROM tasks t LEFT JOIN principals h ON h.id = t.assignee
WHERE (t.id = NULL OR (NULL::uuid IS NULL AND t.ref = :task_ref::text)) AND (NOT false OR t.lead_agency = NULL OR t.open_to_all_agencies)
FOR NO KEY UPDATE OF t;
UPDATE tasks SET state = 'jsc_approval', fields = '{"facility": "PRF", "genderMarker": 2}', version = version + 1,
    queue = 'jsc-approval', queued_at = now(), due_at = now() + interval '20 days',
    breached_at = NULL, next_reminder_at = NULL, open_to_all_agencies = false,
    assignee = NULL, lease_id = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id = :id::uuid
RETURNING version, updated_at;
WITH kept AS (
    INSERT INTO portfolio (ref, country, kind, task_id, agency, agencies, period, sectors, categories, locations, title, body,
                           external_ids, active)
    VALUES (:task_ref::text, 'SLE', 'task', :id::uuid, 'undp', '{undp}', daterange('2027-01-01', '2028-12-31', '[]'),
            '{15220}', '{152}', ARRAY[lower(:task_locations::text::text[]::text)], :task_title::text, :task_title::text || ' ', '{}', true)
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
    FROM unnest(ARRAY[:id::text, :id::text], ARRAY[NULL, NULL]::text[], ARRAY[NULL, NULL]::text[], ARRAY['pgbench', 'system'], ARRAY['task.transitioned', 'task.transitioned'],
                ARRAY['recommend', 'route_to_jsc'], ARRAY['technical_review', 'approval_routing'], ARRAY['approval_routing', 'jsc_approval'],
                ARRAY[NULL, NULL]::text[], ARRAY['{}', '{}'])
        WITH ORDINALITY AS e(task, peer, actor, actor_name, type, action, from_state, to_state, comment, data, position)
    WHERE peer IS NULL OR EXISTS (SELECT 1 FROM tasks WHERE ref = peer)
    ORDER BY position
    RETURNING seq)
SELECT pg_notify('pbc_events', max(seq)::text) FROM written;
COMMIT;

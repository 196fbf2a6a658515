-- Queues, claims with leases and SLAs (SPEC section 5), and what event
-- streams filter on (SPEC section 6).

-- Routing may refine a queue by country (pbso-review-BDI): upper case is allowed.
ALTER TABLE queues DROP CONSTRAINT queues_name_check;
ALTER TABLE queues
    ADD CONSTRAINT queue_names CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9-]*$'),
    -- A queue routing refines from; members of that queue may work this one.
    ADD COLUMN refines text REFERENCES queues;

ALTER TABLE tasks
    -- When the task entered its queue: its age there.
    ADD COLUMN queued_at timestamptz,
    -- A holder (assignee) always has a lease; a claim's lease expires, an assignment's does not.
    ADD COLUMN lease_id uuid,
    ADD COLUMN lease_expires_at timestamptz,
    -- Set when the sweep finds the task past due_at in its state, so a breach is handled once.
    ADD COLUMN breached_at timestamptz,
    ADD COLUMN next_reminder_at timestamptz,
    ADD COLUMN priority_rank smallint NOT NULL GENERATED ALWAYS AS (
        CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END) STORED,
    ADD CONSTRAINT holders_have_leases CHECK ((assignee IS NULL) = (lease_id IS NULL)),
    ADD CONSTRAINT lease_expiry_needs_a_lease CHECK (lease_expires_at IS NULL OR lease_id IS NOT NULL);

UPDATE tasks SET queued_at = updated_at WHERE queue IS NOT NULL;

-- queue.claim: the most urgent unheld task (priority, then due date, then age).
DROP INDEX tasks_queue;
CREATE INDEX tasks_claim_order ON tasks (queue, priority_rank, due_at, queued_at) WHERE queue IS NOT NULL;
CREATE INDEX tasks_assignee ON tasks (assignee) WHERE assignee IS NOT NULL;
-- The sweep's three scans.
CREATE INDEX tasks_due ON tasks (due_at) WHERE due_at IS NOT NULL AND breached_at IS NULL;
CREATE INDEX tasks_lease_expiry ON tasks (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
CREATE INDEX tasks_reminders ON tasks (next_reminder_at) WHERE next_reminder_at IS NOT NULL;

-- Each event carries the task's queue, country and agencies as they were
-- when it was written, so a stream filters and scopes on them in order.
ALTER TABLE events
    ADD COLUMN queue text,
    ADD COLUMN country text,
    ADD COLUMN agencies text[] NOT NULL DEFAULT '{}';

CREATE FUNCTION events_take_task_context() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.task_id IS NOT NULL THEN
        SELECT t.queue, t.country,
               ARRAY[t.lead_agency] || COALESCE((SELECT array_agg(DISTINCT p.agency ORDER BY p.agency)
                                                 FROM task_participants p WHERE p.task_id = t.id AND p.agency <> t.lead_agency), '{}')
        INTO NEW.queue, NEW.country, NEW.agencies
        FROM tasks t WHERE t.id = NEW.task_id;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER events_take_task_context BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_take_task_context();

-- Streams read events by seq. A transaction that took seq 10 must not
-- commit after one that took seq 11, or a reader at 11 would never see 10:
-- writers of events take this lock before the first seq is drawn and hold it
-- to commit, so events become visible in seq order. (Commits that NOTIFY are
-- serialized by PostgreSQL already; this makes the order that of the seqs.)
CREATE FUNCTION events_in_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7411, 1);
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_in_commit_order BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_in_commit_order();

-- Events written before this migration get their context once. The
-- append-only trigger is lifted for this one statement, inside the migration's
-- transaction; no recorded value changes, columns are only filled in.
ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete;
UPDATE events e SET queue = t.queue, country = t.country,
    agencies = ARRAY[t.lead_agency] || COALESCE((SELECT array_agg(DISTINCT p.agency ORDER BY p.agency)
                                                 FROM task_participants p WHERE p.task_id = t.id AND p.agency <> t.lead_agency), '{}')
FROM tasks t WHERE t.id = e.task_id;
ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete;

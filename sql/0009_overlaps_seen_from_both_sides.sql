-- An overlap is stored on the task whose screening found it (task_id), and
-- names the other entry by ref. When the other entry is a task too, its
-- agencies must learn of the overlap as well: a liaison sees what overlaps
-- with their work, whichever of the two was submitted last (SPEC section 1).

-- Whether the transaction's principal may see the task with this ref (as
-- pbc_sees_task, by ref): an overlap's other side.
CREATE FUNCTION pbc_sees_task_ref(task_ref text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT CASE current_setting('pbc.scope', true)
        WHEN 'all' THEN true
        WHEN 'agency' THEN EXISTS (
            SELECT 1 FROM tasks t
            WHERE t.ref = task_ref
              AND (t.lead_agency = current_setting('pbc.agency', true)
                   OR EXISTS (SELECT 1 FROM task_participants p WHERE p.task_id = t.id AND p.agency = current_setting('pbc.agency', true))))
        ELSE false
    END
$$;

-- The other side reads the overlap (never changes it: resolving is a
-- coordinator's, in scope 'all').
CREATE POLICY overlaps_of_the_other_side ON task_overlaps FOR SELECT TO pbc_app
    USING (pbc_sees_task_ref(other_ref));

-- The task an overlap is stored on, as much as the other side's liaison may
-- see of it (the fields of overlap_peer), and only for a caller who may see
-- the overlap.
CREATE FUNCTION overlap_subject(overlap uuid)
RETURNS TABLE (ref text, kind text, title text, agency text, country text, sectors text[], start date, finish date)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT t.ref, 'task', t.title, t.lead_agency, t.country, t.sectors, t.period_start, t.period_end
    FROM task_overlaps o JOIN tasks t ON t.id = o.task_id
    WHERE o.id = overlap AND (pbc_sees_task(o.task_id) OR pbc_sees_task_ref(o.other_ref))
$$;

REVOKE EXECUTE ON FUNCTION pbc_sees_task_ref(text), overlap_subject(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pbc_sees_task_ref(text), overlap_subject(uuid) TO pbc_app;

-- A task's overlaps found from the other side.
CREATE INDEX task_overlaps_other ON task_overlaps (other_ref);

-- An overlap is closed when one of its two programs ends (rejected,
-- withdrawn or merged) before a coordinator resolved it: nothing is left to
-- deconflict, and it no longer holds the other task back. resolution_data
-- says which program ended and how ({"ended": ref, "state": state}); an
-- `overlap.closed` event on each task of the pair says so in their history.
ALTER TABLE task_overlaps
    DROP CONSTRAINT task_overlaps_status_check,
    ADD CONSTRAINT task_overlaps_status_check CHECK (status IN ('open', 'resolved', 'closed'));

-- Closes the open overlaps of a task that has ended, on both sides of each
-- pair, and returns them: the overlap, the task holding it, that task's
-- ref, the other side. A liaison who withdraws their own program closes
-- overlap rows held by other agencies' tasks, which row-level security
-- would hide from the UPDATE; so pbc does it on its own behalf, as the
-- tables' owner. It acts only on a task that has ended, and says so from
-- the task itself.
CREATE FUNCTION close_overlaps_of_ended(ended_task uuid)
RETURNS TABLE (overlap uuid, holder uuid, holder_ref text, other_ref text)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE task_overlaps o
    SET status = 'closed', resolution_data = jsonb_build_object('ended', e.ref, 'state', e.state), resolved_at = now()
    FROM tasks e, tasks h
    WHERE e.id = ended_task AND e.state IN ('rejected', 'withdrawn', 'merged')
      AND h.id = o.task_id AND o.status = 'open' AND (o.task_id = e.id OR o.other_ref = e.ref)
    RETURNING o.id, h.id, h.ref, o.other_ref
$$;

-- Overlaps of programs that ended before this migration are closed now, the
-- same way, each with an `overlap.closed` event on both tasks of its pair.
-- (Deconfliction cases opened for them are left for a coordinator to dismiss.)
WITH closed AS (
    SELECT e.ref AS ended, e.state, c.holder, c.holder_ref, c.other_ref
    FROM tasks e, LATERAL close_overlaps_of_ended(e.id) c
    WHERE e.state IN ('rejected', 'withdrawn', 'merged')
)
INSERT INTO events (task_id, actor_name, type, data)
SELECT holder, 'system', 'overlap.closed', jsonb_build_object('other', other_ref, 'ended', ended, 'state', state) FROM closed
UNION ALL
SELECT t.id, 'system', 'overlap.closed', jsonb_build_object('other', c.holder_ref, 'ended', c.ended, 'state', c.state)
FROM closed c JOIN tasks t ON t.ref = c.other_ref;

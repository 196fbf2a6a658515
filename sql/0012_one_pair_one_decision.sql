-- A pair of overlapping tasks may have a row on each side (each task's
-- screening found the other). Screening a task again must see the other
-- side's row even where row-level security hides that task from the
-- screened task's liaison, or the pair would end up decided on one side and
-- open on the other. These two functions look past it, for one pair at a
-- time, as the tables' owner.

-- Whether the other side has settled the pair (resolved or closed), so that
-- an edit's screening does not record it again, open, on its own side.
CREATE FUNCTION overlap_settled_by_other_side(task_ref text, other_task_ref text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM task_overlaps r JOIN tasks t ON t.id = r.task_id
        WHERE t.ref = other_task_ref AND r.other_ref = task_ref AND r.status <> 'open')
$$;

-- Opens the other side's rows of the pairs a resubmitted task found again,
-- where they were resolved: the pair is undecided again, on both sides.
-- Returns how many were opened.
CREATE FUNCTION reopen_other_sides(task uuid, other_refs text[]) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH opened AS (
        UPDATE task_overlaps o
        SET status = 'open', resolution = NULL, resolution_data = '{}', resolved_by = NULL, resolved_at = NULL
        FROM tasks other, tasks this
        WHERE this.id = task AND other.ref = ANY (other_refs) AND o.task_id = other.id AND o.other_ref = this.ref
          AND o.status = 'resolved'
        RETURNING 1)
    SELECT count(*)::integer FROM opened
$$;

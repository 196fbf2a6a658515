-- overlap.list read every overlap of the table before it took a page:
-- nothing served its order (detected_at, id), and each row called
-- overlap_subject, which the planner took for a function of 1,000 rows,
-- twice, the second time for every row of the pair's other side. With
-- 522,779 overlaps a coordinator's first page took 73 s, a task's 40 s
-- (docs/performance.md, "Overlap lists").
CREATE INDEX task_overlaps_found ON task_overlaps (detected_at, id);
-- The list shows open overlaps unless told otherwise, and the older ones are
-- mostly resolved: a walk in order would pass all of those first.
CREATE INDEX task_overlaps_open_found ON task_overlaps (detected_at, id) WHERE status = 'open';

ALTER FUNCTION overlap_subject(uuid) ROWS 1;

-- Whether the other row of an overlap's pair (stored on the other task, when
-- both tasks' screenings found it) was found before it: the list shows a pair
-- once, as first found. Past row-level security, as overlap_subject: whoever
-- sees one row of a pair sees the other (sql/0012).
CREATE FUNCTION overlap_twin_found_before(overlap uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM task_overlaps o
        JOIN tasks holder ON holder.id = o.task_id
        JOIN tasks other ON other.ref = o.other_ref
        JOIN task_overlaps twin ON twin.task_id = other.id AND twin.other_ref = holder.ref
        WHERE o.id = overlap AND (twin.detected_at, twin.id) < (o.detected_at, o.id))
$$;

REVOKE EXECUTE ON FUNCTION overlap_twin_found_before(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION overlap_twin_found_before(uuid) TO pbc_app;

-- A liaison's overlap list walked the overlaps in the order they were found
-- and kept those row-level security let the agency see, which it decides
-- row by row with two function calls (about 16 µs a row). An agency with few
-- overlaps among many walked all of them: 8.35 s for an agency with 44 among
-- 522,779 open overlaps (docs/performance.md, "Overlap lists").
--
-- The page of the transaction's agency's overlaps, in the list's order (found,
-- then id), after the overlap `after` when given, of one status or of any:
-- the ids only, for the list to read as the liaison, under row-level
-- security. An overlap is the agency's when it sees the task it is stored on
-- or the task it names (the two policies on task_overlaps, 0007 and 0009).
-- A pair that both tasks' screenings found is counted once, as first found.
--
-- An agency with `many` overlaps or fewer (a pair found from both sides
-- counted twice) has them gathered from its own tasks and sorted, about
-- 0.2 µs an overlap. One with more walks the list in order and tests each
-- row against its tasks held in hash tables, not with a function call,
-- about 0.5 µs a row: so many overlaps are mostly spread through the list,
-- and a page is soon filled; at worst, all of them the newest, the walk
-- passes every older overlap. `many` is a parameter for the tests, which
-- take both ways on a few overlaps. Every query here is run with EXECUTE,
-- so that each is planned for the status it is given (the open overlaps
-- have their own index, 0018).
CREATE FUNCTION overlap_page_of_agency(only_status text, after uuid, page integer, many integer DEFAULT 100000)
RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp ROWS 50 AS $$
DECLARE
    caller text := current_setting('pbc.agency', true);
    task_ids uuid[];
    task_refs text[];
    after_found timestamptz;
    counted integer;
BEGIN
    IF current_setting('pbc.scope', true) IS DISTINCT FROM 'agency' THEN
        RAISE EXCEPTION 'overlap_page_of_agency lists the overlaps of a liaison''s agency, and this transaction has none';
    END IF;
    SELECT array_agg(mine.id), array_agg(mine.ref) INTO task_ids, task_refs FROM (
        SELECT t.id, t.ref FROM tasks t WHERE t.lead_agency = caller
        UNION
        SELECT t.id, t.ref FROM task_participants p JOIN tasks t ON t.id = p.task_id WHERE p.agency = caller) mine;
    IF task_ids IS NULL THEN
        RETURN;
    END IF;
    SELECT o.detected_at INTO after_found FROM task_overlaps o WHERE o.id = after;

    EXECUTE $q$
        SELECT count(*) FROM (
            SELECT 1 FROM task_overlaps o WHERE o.task_id = ANY ($1) AND ($3::text IS NULL OR o.status = $3)
            UNION ALL
            SELECT 1 FROM task_overlaps o WHERE o.other_ref = ANY ($2) AND ($3::text IS NULL OR o.status = $3)
            LIMIT $4) counted
        $q$ INTO counted USING task_ids, task_refs, only_status, many + 1;

    IF counted <= many THEN
        -- Gathered apart (MATERIALIZED), or the planner, seeing the LIMIT,
        -- walks the list in order after all; and sorted apart (OFFSET 0), so
        -- that the twin test runs only for the rows the page takes.
        RETURN QUERY EXECUTE $q$
            WITH gathered AS MATERIALIZED (
                SELECT o.id, o.detected_at FROM task_overlaps o
                WHERE (o.task_id = ANY ($1) OR o.other_ref = ANY ($2))
                  AND ($3::text IS NULL OR o.status = $3)
                  AND ($4::uuid IS NULL OR (o.detected_at, o.id) > ($5, $4)))
            SELECT sorted.id FROM (SELECT g.id FROM gathered g ORDER BY g.detected_at, g.id OFFSET 0) sorted
            WHERE NOT overlap_twin_found_before(sorted.id)
            LIMIT $6
            $q$ USING task_ids, task_refs, only_status, after, after_found, page;
    ELSE
        RETURN QUERY EXECUTE $q$
            SELECT o.id FROM task_overlaps o
            WHERE (o.task_id IN (SELECT unnest($1::uuid[])) OR o.other_ref IN (SELECT unnest($2::text[])))
              AND ($3::text IS NULL OR o.status = $3)
              AND ($4::uuid IS NULL OR (o.detected_at, o.id) > ($5, $4))
              AND NOT overlap_twin_found_before(o.id)
            ORDER BY o.detected_at, o.id
            LIMIT $6
            $q$ USING task_ids, task_refs, only_status, after, after_found, page;
    END IF;
END
$$;

REVOKE EXECUTE ON FUNCTION overlap_page_of_agency(text, uuid, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION overlap_page_of_agency(text, uuid, integer, integer) TO pbc_app;

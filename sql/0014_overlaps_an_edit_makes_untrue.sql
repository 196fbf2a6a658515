-- An edit of a program's dates, country, sectors or locations is screened
-- again. Until now that screening only added the pairs it found: a pair
-- still open that the edited program no longer overlaps (moved to another
-- country, say) stayed open, held both programs back, and kept its old
-- reasons. Now such a pair is closed, on both sides, with `edited` (the
-- edited task's ref) in its resolution data. Only undecided pairs close:
-- a resolution stays, as before. A pair an edit closed that a later
-- screening finds again (the edit undone) is open again, on both sides.
-- A pair still open that the edit finds again takes its new score and
-- reasons, on both sides. An import that updates an activity in place
-- closes or rescores the tasks' open pairs with it the same way (pbc's
-- ActivityImporter, with `edited` naming the activity).

-- What scoring needs of some entries in one country, past row-level
-- security (another agency's tasks), as `screening_candidates` returns it:
-- the open pairs an edit's screening did not return are scored one by one,
-- since that screening returns at most 1,000 candidates.
CREATE FUNCTION screening_entries(refs text[], subject_country text, subject_text text)
RETURNS TABLE (ref text, agency text, agencies text[], sectors text[], locations text[], start date, finish date,
               external_ids text[], text_similarity float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT p.ref, p.agency, p.agencies, p.sectors, p.locations, lower(p.period), upper(p.period) - 1, p.external_ids,
           similarity(p.body, subject_text)::float8
    FROM portfolio p
    WHERE p.ref = ANY (refs) AND p.country = subject_country AND p.active
$$;

-- Closes the open rows of the pairs of `edited` and each of `other_refs`,
-- on both sides (the other side's row may be another agency's). Rows are
-- locked in id order, as a resolution locks a pair's rows.
CREATE FUNCTION close_untrue_overlaps(edited uuid, other_refs text[])
RETURNS TABLE (overlap uuid, holder uuid, holder_ref text, other_ref text)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH pair_rows AS (
        SELECT o.id FROM task_overlaps o JOIN tasks h ON h.id = o.task_id, tasks e
        WHERE e.id = edited AND o.status = 'open'
          AND ((o.task_id = e.id AND o.other_ref = ANY (other_refs)) OR (o.other_ref = e.ref AND h.ref = ANY (other_refs)))
        ORDER BY o.id
        FOR UPDATE OF o)
    UPDATE task_overlaps o SET status = 'closed', resolution_data = jsonb_build_object('edited', e.ref), resolved_at = now()
    FROM pair_rows r, tasks e, tasks h
    WHERE o.id = r.id AND o.status = 'open' AND e.id = edited AND h.id = o.task_id
    RETURNING o.id, h.id, h.ref, o.other_ref
$$;

-- A pair an edit closed is not settled: a later screening that finds it
-- again records it. Otherwise as sql/0012's.
CREATE OR REPLACE FUNCTION overlap_settled_by_other_side(task_ref text, other_task_ref text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM task_overlaps r JOIN tasks t ON t.id = r.task_id
        WHERE t.ref = other_task_ref AND r.other_ref = task_ref AND r.status <> 'open'
          AND NOT (r.status = 'closed' AND r.resolution_data ? 'edited'))
$$;

-- Makes the other side's rows of the pairs a screening of `task` found
-- agree with its own: each takes the new score and reasons (both are
-- symmetric) and is open, whether it was open already (the reasons then say
-- why as the programs now stand, not as they stood when first found),
-- closed by an edit, or, with `reopen_resolved` (a resubmission), resolved.
-- Rows closed because a program ended, and otherwise resolved ones, stay.
-- It replaces sql/0012's reopen_other_sides, which opened resolved rows
-- with the scores they had. Returns how many rows it changed.
CREATE FUNCTION sync_other_sides(task uuid, other_refs text[], new_scores float8[], new_reasons jsonb[], reopen_resolved boolean)
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH synced AS (
        UPDATE task_overlaps o
        SET score = f.score, reasons = f.reasons, status = 'open', resolution = NULL, resolution_data = '{}', resolved_by = NULL,
            resolved_at = NULL
        FROM unnest(other_refs, new_scores, new_reasons) AS f(other_ref, score, reasons), tasks other, tasks this
        WHERE this.id = task AND other.ref = f.other_ref AND o.task_id = other.id AND o.other_ref = this.ref
          AND (o.status = 'open' OR (o.status = 'closed' AND o.resolution_data ? 'edited') OR (reopen_resolved AND o.status = 'resolved'))
        RETURNING 1)
    SELECT count(*)::integer FROM synced
$$;

DROP FUNCTION reopen_other_sides(uuid, text[]);

REVOKE EXECUTE ON FUNCTION screening_entries(text[], text, text), close_untrue_overlaps(uuid, text[]),
    sync_other_sides(uuid, text[], float8[], jsonb[], boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION screening_entries(text[], text, text), close_untrue_overlaps(uuid, text[]),
    sync_other_sides(uuid, text[], float8[], jsonb[], boolean) TO pbc_app;

-- The other side of an overlap, as listed: its row in the country of the
-- pair, or, once it has moved to another country, its row there. Before, a
-- pair whose program moved away dropped out of `overlap.list`, decided or
-- not. Otherwise as sql/0007's.
CREATE OR REPLACE FUNCTION overlap_peer(peer_ref text, peer_country text)
RETURNS TABLE (ref text, kind text, title text, agency text, country text, sectors text[], start date, finish date)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT p.ref, p.kind, p.title, p.agency, p.country, p.sectors, lower(p.period), upper(p.period) - 1
    FROM portfolio p WHERE p.ref = peer_ref
    ORDER BY p.country = peer_country DESC, p.country
    LIMIT 1
$$;

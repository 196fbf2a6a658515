-- A deconfliction case opened on an overlap that closes is dismissed by
-- pbc, whoever's step closed the overlap. The dismissal ran under that
-- step's row-level security, which was enough while only coordinators and
-- the lead agency's liaisons closed overlaps: a case counts the two
-- programs' lead agencies among its own. A resubmission now closes the
-- pairs its screening no longer finds, and a liaison of an agency that only
-- takes part in the program may resubmit it; such a liaison does not see
-- the case, which stayed open on a closed overlap. No case was left so
-- before this version, so there is nothing to repair.
CREATE FUNCTION dismiss_cases_of(case_workflow text, overlap_ids text[], end_states text[])
RETURNS TABLE (id uuid, state text)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH moot AS (
        SELECT c.id, c.state FROM tasks c
        WHERE c.workflow = case_workflow AND c.state <> ALL (end_states) AND lower(c.fields->>'overlap') = ANY (overlap_ids)
        ORDER BY c.id
        FOR NO KEY UPDATE)
    UPDATE tasks t SET state = 'dismissed', queue = NULL, due_at = NULL, breached_at = NULL, next_reminder_at = NULL,
        assignee = NULL, lease_id = NULL, lease_expires_at = NULL, version = t.version + 1, updated_at = now()
    FROM moot WHERE t.id = moot.id
    RETURNING t.id, moot.state
$$;

REVOKE EXECUTE ON FUNCTION dismiss_cases_of(text, text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dismiss_cases_of(text, text[], text[]) TO pbc_app;

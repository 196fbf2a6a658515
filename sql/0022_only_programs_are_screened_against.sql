-- Only programs are portfolio entries: the tasks of a workflow that screens
-- its tasks for overlap (a state with `screen: true`, as pbf-project's
-- screening), besides imported activities. Earlier versions wrote a row for
-- every task that named a country and a period, so a progress report, an
-- assistance request or a deconfliction case that named them was screened
-- against as if it were a program, and a program could be held in
-- deconfliction by its own semi-annual report. pbc writes no row for them
-- now. Here their rows go, and the overlaps still open with them close, on
-- both sides, with resolution_data {"notProgram": ref} and an
-- `overlap.closed` event on each task of the pair; a deconfliction case
-- opened on one of them is dismissed, as pbc dismisses cases whose overlap
-- closed (sql/0013).
--
-- Which workflow versions screen is read from their stored definitions. A
-- definition that says `screen:` anywhere is taken for one that screens,
-- so that a doubt keeps the rows; pbc itself, reading the parsed
-- definition, drops any such row at the task's next step.
CREATE TEMPORARY TABLE not_programs ON COMMIT DROP AS
SELECT t.id, t.ref
FROM tasks t JOIN workflow_definitions w ON w.name = t.workflow AND w.version = t.workflow_version
WHERE w.source !~ '\mscreen\s*:';

WITH closed AS (
    UPDATE task_overlaps o
    SET status = 'closed', resolution_data = jsonb_build_object('notProgram', n.ref), resolved_at = now()
    FROM not_programs n
    WHERE o.status = 'open' AND (o.task_id = n.id OR o.other_ref = n.ref)
    RETURNING o.task_id AS holder, o.other_ref, n.ref AS not_program),
-- A pair may be stored on one side only (the task whose screening found
-- it); the event goes to both tasks of the pair all the same, once each.
sides AS (
    SELECT holder AS task, other_ref AS other, not_program FROM closed
    UNION
    SELECT t.id, h.ref, c.not_program FROM closed c JOIN tasks t ON t.ref = c.other_ref JOIN tasks h ON h.id = c.holder)
INSERT INTO events (task_id, actor_name, type, data)
SELECT task, 'system', 'overlap.closed', jsonb_build_object('other', other, 'notProgram', not_program)
FROM sides ORDER BY task, other;

-- The end states are deconfliction-case's, as every version of it so far declares them.
WITH moot AS (
    SELECT c.id, c.state
    FROM tasks c JOIN task_overlaps o ON o.id::text = lower(c.fields->>'overlap')
    WHERE c.workflow = 'deconfliction-case' AND o.status = 'closed' AND o.resolution_data ? 'notProgram'
      AND c.state NOT IN ('distinct', 'coordinate', 'merge', 'sequence', 'withdraw', 'dismissed')
    ORDER BY c.id
    FOR NO KEY UPDATE OF c),
dismissed AS (
    UPDATE tasks t SET state = 'dismissed', queue = NULL, due_at = NULL, breached_at = NULL, next_reminder_at = NULL,
        assignee = NULL, lease_id = NULL, lease_expires_at = NULL, version = t.version + 1, updated_at = now()
    FROM moot WHERE t.id = moot.id
    RETURNING t.id, moot.state)
INSERT INTO events (task_id, actor_name, type, action, from_state, to_state, comment)
SELECT id, 'system', 'task.transitioned', 'dismiss', state, 'dismissed',
       'the overlap was closed: one side is not a program; nothing is left to agree'
FROM dismissed ORDER BY id;

DELETE FROM portfolio p USING not_programs n WHERE p.task_id = n.id;

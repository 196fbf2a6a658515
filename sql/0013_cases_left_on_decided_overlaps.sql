-- A deconfliction case whose overlap was decided without it has nothing
-- left to agree, and its own resolution would be refused as made already.
-- pbc now dismisses such a case when the overlap closes (a program ended,
-- an activity was cancelled), and refuses to resolve an overlap past its
-- open case. Earlier versions left cases stuck both ways: on overlaps this
-- schema's 0011 closed, and on overlaps a coordinator resolved directly.
-- They are dismissed here, as pbc itself, with the event that says why.
-- The end states are deconfliction-case's (Config/workflows), as every
-- version of it so far declares them.
WITH moot AS (
    SELECT c.id, c.state, o.status
    FROM tasks c JOIN task_overlaps o ON o.id::text = lower(c.fields->>'overlap')
    WHERE c.workflow = 'deconfliction-case' AND o.status <> 'open'
      AND c.state NOT IN ('distinct', 'coordinate', 'merge', 'sequence', 'withdraw', 'dismissed')
    ORDER BY c.id
    FOR NO KEY UPDATE OF c),
dismissed AS (
    UPDATE tasks t SET state = 'dismissed', queue = NULL, due_at = NULL, breached_at = NULL, next_reminder_at = NULL,
        assignee = NULL, lease_id = NULL, lease_expires_at = NULL, version = t.version + 1, updated_at = now()
    FROM moot WHERE t.id = moot.id
    RETURNING t.id, moot.state, moot.status)
INSERT INTO events (task_id, actor_name, type, action, from_state, to_state, comment)
SELECT id, 'system', 'task.transitioned', 'dismiss', state, 'dismissed',
       CASE status WHEN 'closed' THEN 'the overlap was closed: a program on one side ended; nothing is left to agree'
                   ELSE 'the overlap was resolved without this case; nothing is left to agree' END
FROM dismissed ORDER BY id;

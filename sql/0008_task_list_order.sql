-- task.list pages tasks in ref order (length, then text, so that
-- PBC-2026-1000000 follows PBC-2026-999999) with a keyset cursor. With this
-- index a page is read in order and stops after `limit` matches, instead of
-- sorting every matching task (docs/performance.md).
CREATE INDEX tasks_ref_order ON tasks ((length(ref)), ref);

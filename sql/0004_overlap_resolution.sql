-- How an overlap was resolved (SPEC section 4), by whom and when.
ALTER TABLE task_overlaps
    ADD COLUMN resolution text CHECK (resolution IN ('distinct', 'coordinate', 'merge', 'sequence', 'withdraw')),
    ADD COLUMN resolution_data jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(resolution_data) = 'object'),
    ADD COLUMN resolved_by uuid REFERENCES principals,
    ADD COLUMN resolved_at timestamptz,
    ADD CONSTRAINT resolved_overlaps_say_how CHECK ((status = 'resolved') = (resolution IS NOT NULL));

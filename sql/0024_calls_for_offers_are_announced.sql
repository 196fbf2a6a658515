-- What happens to a task while it is open to all agencies (a call for
-- offers, sql/0023) is announced to all: its events carry the flag, as they
-- carry the task's agencies, and every liaison's stream and history read
-- them. So an agency learns of a call from `pbc watch`, and sees the offers
-- made to it. Events written before the call opened or after it closed
-- stay with the task's own agencies.
ALTER TABLE events ADD COLUMN open_to_all_agencies boolean NOT NULL DEFAULT false;

CREATE OR REPLACE FUNCTION events_take_task_context() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.task_id IS NOT NULL THEN
        SELECT t.queue, t.country,
               ARRAY[t.lead_agency] || COALESCE((SELECT array_agg(DISTINCT p.agency ORDER BY p.agency)
                                                 FROM task_participants p WHERE p.task_id = t.id AND p.agency <> t.lead_agency), '{}'),
               t.open_to_all_agencies
        INTO NEW.queue, NEW.country, NEW.agencies, NEW.open_to_all_agencies
        FROM tasks t WHERE t.id = NEW.task_id;
    END IF;
    RETURN NEW;
END;
$$;

DROP POLICY events_of_the_principal ON events;
CREATE POLICY events_of_the_principal ON events TO pbc_app
    USING (current_setting('pbc.scope', true) = 'all'
           OR (current_setting('pbc.scope', true) = 'agency'
               AND (current_setting('pbc.agency', true) = ANY (agencies) OR open_to_all_agencies OR pbc_sees_task(task_id))));

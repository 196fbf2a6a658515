-- A progress report names the funded project it reports on (its ref, in the
-- field `project`); a project's page lists its reports, so they are found
-- by that field rather than by reading every report.
CREATE INDEX tasks_reports_by_project ON tasks ((fields->>'project')) WHERE workflow = 'progress-report';

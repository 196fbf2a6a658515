import Coordination
import Foundation
import Postgres

/// What `task.list` filters by; nil means any.
public struct TaskFilter: Sendable, Hashable {
    public var state: String?
    public var workflow: String?
    public var country: String?
    public var sector: String?
    public var agency: String?
    public var queue: String?
    public var assignee: UUID?
    /// Found in the title or description, ignoring case.
    public var text: String?
    public var limit: Int
    /// The last ref of the previous page.
    public var cursor: String?

    public init(
        state: String? = nil, workflow: String? = nil, country: String? = nil, sector: String? = nil, agency: String? = nil,
        queue: String? = nil, assignee: UUID? = nil, text: String? = nil, limit: Int = 50, cursor: String? = nil
    ) {
        self.state = state
        self.workflow = workflow
        self.country = country
        self.sector = sector
        self.agency = agency
        self.queue = queue
        self.assignee = assignee
        self.text = text
        self.limit = limit
        self.cursor = cursor
    }
}

/// The fields `task.update` may change; nil leaves a field as it is.
public struct TaskChanges: Sendable, Hashable {
    public var title: String?
    public var description: String?
    public var country: String?
    public var locations: [String]?
    public var sectors: [String]?
    public var period: Period?
    public var budget: Money?
    public var priority: Priority?
    public var participants: [Participant]?
    public var externalRefs: [String: String]?

    public init() {}

    /// The names of the fields set, for the event.
    public var names: [String] {
        var names: [String] = []
        if title != nil { names.append("title") }
        if description != nil { names.append("description") }
        if country != nil { names.append("country") }
        if locations != nil { names.append("locations") }
        if sectors != nil { names.append("sectors") }
        if period != nil { names.append("period") }
        if budget != nil { names.append("budget") }
        if priority != nil { names.append("priority") }
        if participants != nil { names.append("participants") }
        if externalRefs != nil { names.append("externalRefs") }
        return names
    }
}

/// An overlap screening found for a task.
public struct StoredOverlap: Sendable, Hashable {
    /// What `overlap.resolve` takes.
    public var id: UUID
    public var other: String
    public var score: Double
    public var reasons: [String]
    public var status: String
    /// How it was resolved: `distinct`, `coordinate`, `merge`, `sequence` or `withdraw`.
    public var resolution: String?
    /// What the resolution settled (`OverlapView.resolutionData`).
    public var resolutionData: [String: String]
    /// The task whose screening found it. Only the overlaps a task's own
    /// screening found count among its open overlaps for its workflow
    /// (`open_overlaps`, `no_open_overlaps`); the others hold back the task
    /// that found them (docs/overlap.md).
    public var foundBy: String
}

extension TaskStore {
    /// The tasks `principal` may see that match, in the order they were created.
    public func list(_ filter: TaskFilter, as principal: Principal) async throws -> (items: [StoredTask], nextCursor: String?) {
        let restricted = principal.role == .liaison
        let own = restricted ? principal.agency : nil
        let limit = max(1, min(filter.limit, 500))
        return try await transaction(as: principal) { connection in
            var filter = filter
            filter.country = try await checkFilterNames(
                state: filter.state, workflow: filter.workflow, country: filter.country, sector: filter.sector, agency: filter.agency,
                queue: filter.queue, on: connection)
            let rows = try await connection.query("""
                SELECT t.id::text, t.ref FROM tasks t
                WHERE (\(filter.state)::text IS NULL OR t.state = \(filter.state))
                  AND (\(filter.workflow)::text IS NULL OR t.workflow = \(filter.workflow))
                  AND (\(filter.country)::text IS NULL OR t.country = \(filter.country))
                  AND (\(filter.sector)::text IS NULL OR \(filter.sector) = ANY (t.sectors)
                       OR (length(\(filter.sector)) = 3 AND EXISTS (SELECT 1 FROM unnest(t.sectors) AS s WHERE left(s, 3) = \(filter.sector))))
                  AND (\(filter.agency)::text IS NULL OR t.lead_agency = \(filter.agency)
                       OR t.id = ANY (ARRAY(SELECT p.task_id FROM task_participants p WHERE p.agency = \(filter.agency))))
                  AND (\(filter.queue)::text IS NULL OR t.queue = \(filter.queue))
                  AND (\(filter.assignee)::uuid IS NULL OR t.assignee = \(filter.assignee))
                  AND (\(filter.text)::text IS NULL OR strpos(lower(t.title || ' ' || t.description), lower(\(filter.text))) > 0)
                  AND (NOT \(restricted) OR t.lead_agency = \(own) OR t.open_to_all_agencies
                       OR t.id = ANY (ARRAY(SELECT p.task_id FROM task_participants p WHERE p.agency = \(own))))
                  AND (\(filter.cursor)::text IS NULL OR (length(t.ref), t.ref) > (length(\(filter.cursor)), \(filter.cursor)))
                ORDER BY length(t.ref), t.ref
                LIMIT \(limit + 1)
                """)
            let items = try await loadAll(try rows.prefix(limit).map { UUID(uuidString: try $0.decode(String.self, at: 0))! }, on: connection)
            return (items, rows.count > limit ? items.last?.ref : nil)
        }
    }

    /// A filter naming what does not exist is a mistake to report, not a
    /// search that finds nothing: each name is checked against the workflows
    /// and the reference data, every bad one reported at once. Returns the
    /// country as stored (alpha-3), given as alpha-3 or alpha-2 in any case.
    func checkFilterNames(
        state: String? = nil, workflow: String? = nil, country: String?, sector: String? = nil, agency: String? = nil, queue: String? = nil,
        on connection: PostgresConnection
    ) async throws -> String? {
        var errors: [FieldError] = []
        if let workflow, workflows.latest[workflow] == nil {
            errors.append(FieldError("workflow", "no workflow \(workflow); there are \(workflows.latest.keys.sorted().joined(separator: ", "))"))
        }
        if let state, !workflows.all.contains(where: { $0.state(state) != nil }) {
            errors.append(FieldError("state", "no workflow has a state \(state)"))
        }
        guard country != nil || sector != nil || agency != nil || queue != nil else {
            guard errors.isEmpty else { throw StoreError.validation(errors) }
            return nil
        }
        let row = try await connection.query("""
            SELECT (SELECT code FROM countries WHERE code = upper(\(country)) OR alpha2 = upper(\(country))),
                   \(sector)::text IS NULL OR EXISTS (SELECT 1 FROM sectors WHERE code = \(sector) OR (length(\(sector)) = 3 AND left(code, 3) = \(sector))),
                   \(agency)::text IS NULL OR EXISTS (SELECT 1 FROM agencies WHERE id = \(agency)),
                   \(queue)::text IS NULL OR EXISTS (SELECT 1 FROM queues WHERE name = \(queue))
            """).first!
        let code = try row.decode(String?.self, at: 0)
        if let country, code == nil { errors.append(FieldError("country", "unknown country \(country)")) }
        if let sector, try !row.decode(Bool.self, at: 1) {
            errors.append(FieldError("sector", "unknown sector code or category \(sector) (a 5-digit purpose code, or its first 3 digits)"))
        }
        if let agency, try !row.decode(Bool.self, at: 2) { errors.append(FieldError("agency", "unknown agency \(agency)")) }
        if let queue, try !row.decode(Bool.self, at: 3) { errors.append(FieldError("queue", "no queue \(queue)")) }
        guard errors.isEmpty else { throw StoreError.validation(errors) }
        return code
    }

    /// Changes a task's own fields at `expectedVersion`: its lead agency's
    /// liaisons and coordinators may, while the task is not finished.
    public func update(_ key: String, expectedVersion: Int, changes: TaskChanges, by principal: Principal) async throws -> StoredTask {
        guard !changes.names.isEmpty else {
            throw StoreError.validation([FieldError("changes", "name at least one field to change")])
        }
        return try await transaction(as: principal) { connection in
            guard var task = try await load(key, visibleTo: principal, forUpdate: true, on: connection) else {
                throw StoreError(.notFound, "no task \(key)")
            }
            switch principal.role {
            case .coordinator, .admin, .system: break
            case .liaison where principal.agency == task.record.leadAgency: break
            default: throw StoreError(.forbidden, "only the lead agency's liaisons and coordinators edit a task")
            }
            guard task.version == expectedVersion else {
                throw StoreError(
                    .conflict, "task \(task.ref) is at version \(task.version), not \(expectedVersion): reload it and try again",
                    currentVersion: task.version)
            }
            if hasEnded(task) {
                throw StoreError(.refused, "task \(task.ref) is \(task.state) and can no longer change", state: task.state)
            }
            var record = task.record
            if let value = changes.title { record.title = value }
            if let value = changes.description { record.description = value }
            if let value = changes.country { record.country = value }
            if let value = changes.locations { record.locations = value }
            if let value = changes.sectors { record.sectors = value }
            if let value = changes.period { record.period = value }
            if let value = changes.budget { record.budget = value }
            if let value = changes.priority { record.priority = value }
            if let value = changes.participants { record.participants = value }
            if let value = changes.externalRefs { record.externalRefs = value }
            try await checkValues(&record, on: connection)
            if !Set(changes.names).isDisjoint(with: ["country", "sectors", "locations"]) {
                try await PortfolioScreener.lockKeys(
                    ofEntry: task.ref, becoming: PortfolioScreener.entry(for: record, ref: task.ref, country: record.country), on: connection)
            }
            let refs = try PostgresJSONB(encoding: record.externalRefs)
            try await connection.query("""
                UPDATE tasks SET title = \(record.title), description = \(record.description), country = \(record.country),
                    locations = \(record.locations), sectors = \(record.sectors),
                    period_start = \(record.period.map { PostgresDate(iso: $0.start.iso)! }),
                    period_end = \(record.period.map { PostgresDate(iso: $0.end.iso)! }),
                    budget_amount = \(record.budget.flatMap { PostgresNumeric($0.amount) }), budget_currency = \(record.budget?.currency),
                    priority = \(record.priority.rawValue), external_refs = \(refs), version = version + 1, updated_at = now()
                WHERE id = \(task.id)
                """)
            if let participants = changes.participants {
                try await connection.query("DELETE FROM task_participants WHERE task_id = \(task.id)")
                for participant in participants {
                    try await connection.query(
                        "INSERT INTO task_participants (task_id, agency, role) VALUES (\(task.id), \(participant.agency), \(participant.role.rawValue))")
                }
            }
            try recordEvent(PendingEvents.Event(task: task.id, actor: principal, type: "task.updated", data: try Self.json(["changed": changes.names])))
            task = try await load(task.id.uuidString, visibleTo: nil, forUpdate: false, on: connection)!
            try await writePortfolioRows(task, on: connection)
            if changes.period != nil { try await scheduleReports(for: task, on: connection) }
            // An edit of a program's dates, country, sectors or locations is screened again.
            if isProgram(task), !Set(changes.names).isDisjoint(with: ["period", "country", "sectors", "locations"]) {
                try await rescreen(task, on: connection)
                // As the screening left it: the answer counts the overlaps it opened and closed.
                task = try await load(task.id.uuidString, visibleTo: nil, forUpdate: false, on: connection)!
            }
            return task
        }
    }

    /// Adds a comment to a task's history. Observers only read.
    public func comment(_ key: String, text: String, by principal: Principal) async throws -> StoredEvent {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw StoreError.validation([FieldError("comment", "must not be empty")]) }
        if let tooLong = FreeText.refusal(text, field: "comment") { throw StoreError.validation([tooLong]) }
        guard principal.role != .observer else { throw StoreError(.forbidden, "observers read; they do not comment") }
        return try await transaction(as: principal) { connection in
            guard let task = try await load(key, visibleTo: principal, forUpdate: false, on: connection) else {
                throw StoreError(.notFound, "no task \(key)")
            }
            // One statement, the transaction's last: the event and the NOTIFY that announces it.
            let rows = try await connection.query("""
                WITH written AS (
                    INSERT INTO events (task_id, actor, actor_name, type, comment)
                    VALUES (\(task.id), \(principal.id), \(principal.name), 'task.commented', \(text))
                    RETURNING seq, at)
                SELECT seq, at, pg_notify(\(Self.eventChannel), seq::text) FROM written
                """)
            let row = rows.first!
            return StoredEvent(
                seq: try row.decode(Int.self, at: 0), type: "task.commented", actor: principal.name, action: nil, fromState: nil,
                toState: nil, comment: text, data: PostgresJSONB(text: "{}"), at: try row.decode(Date.self, at: 1))
        }
    }

    /// What screening found for a task: open ones first, and of those, first
    /// the ones that hold it back (its own screening found them).
    func storedOverlaps(of task: StoredTask, on connection: PostgresConnection) async throws -> [StoredOverlap] {
        // Found by its own screening, and by the screening of another task
        // that found it (`overlap_subject` names that task), each pair once.
        try await connection.query("""
            SELECT id, other_ref, score, reasons, status, resolution, resolution_data, found_by FROM (
                SELECT id, other_ref, score, reasons, status, resolution, resolution_data, \(task.ref) AS found_by
                FROM task_overlaps WHERE task_id = \(task.id)
                UNION ALL
                SELECT o.id, s.ref, o.score, o.reasons, o.status, o.resolution, o.resolution_data, s.ref
                FROM task_overlaps o, LATERAL overlap_subject(o.id) s
                WHERE o.other_ref = \(task.ref)
                  AND NOT EXISTS (SELECT 1 FROM task_overlaps d WHERE d.task_id = \(task.id) AND d.other_ref = s.ref)) AS both_sides
            ORDER BY status = 'open' DESC, found_by = \(task.ref) DESC, score DESC, other_ref
            """).map { row in
            StoredOverlap(
                id: try row.decode(UUID.self, "id"), other: try row.decode(String.self, "other_ref"), score: try row.decode(Double.self, "score"),
                reasons: try row.decode(PostgresJSONB.self, "reasons").decode([String].self), status: try row.decode(String.self, "status"),
                resolution: try row.decode(String?.self, "resolution"),
                resolutionData: try row.decode(PostgresJSONB.self, "resolution_data").decode([String: String].self),
                foundBy: try row.decode(String.self, "found_by"))
        }
    }
}

import Coordination
import Foundation
import Postgres

/// A queue as its members see it.
public struct QueueSummary: Sendable, Hashable {
    public var name: String
    /// The queue routing refined this one from, if any.
    public var refines: String?
    /// Tasks waiting in the queue, held or not.
    public var depth: Int
    /// Of those, held under a live lease or an assignment.
    public var claimed: Int
    public var oldestQueuedAt: Date?
    public var breached: Int
    public var dueSoon: Int
}

/// What one sweep did.
public struct SweepReport: Sendable, Hashable {
    public var leasesExpired: [String] = []
    public var breached: [String] = []
    public var reminded: [String] = []
    public var isEmpty: Bool { leasesExpired.isEmpty && breached.isEmpty && reminded.isEmpty }
}

/// Queues, claims with leases, assignment and the SLA sweep (SPEC section 5).
extension TaskStore {
    /// How long a "due soon" horizon is in `queue.list`.
    public static let dueSoonWindow: TimeInterval = 24 * 3600

    /// Makes sure every queue a workflow or route names exists, with what it refines.
    public func syncQueues() async throws {
        try await Self.syncQueues(workflows: workflows, routing: routing, on: pool)
    }

    public static func syncQueues(workflows: WorkflowRegistry, routing: Routing, on pool: PostgresPool) async throws {
        var names = Set<String>()
        for definition in workflows.all {
            for state in definition.states {
                if let queue = state.queue { names.insert(queue) }
                if let queue = state.escalate { names.insert(queue) }
            }
        }
        let refinements = routing.refinements
        names.formUnion(refinements.map(\.refines))
        try await pool.withTransaction { connection in
            for name in names.sorted() {
                try await connection.query("INSERT INTO queues (name) VALUES (\(name)) ON CONFLICT (name) DO NOTHING")
            }
            for (queue, refines) in refinements {
                try await connection.query("""
                    INSERT INTO queues (name, refines) VALUES (\(queue), \(refines))
                    ON CONFLICT (name) DO UPDATE SET refines = EXCLUDED.refines
                    """)
            }
        }
    }

    // MARK: Reading queues

    /// The queues `principal` works (admins and observers: all), with their figures.
    public func queues(for principal: Principal) async throws -> [QueueSummary] {
        let now = now()
        let everyQueue = principal.role == .admin || principal.role == .observer
        let restricted = principal.role == .liaison
        let rows = try await transaction(as: principal) { connection in
            try await connection.query("""
                SELECT q.name, q.refines, count(t.id) AS depth,
                       count(t.id) FILTER (WHERE t.assignee IS NOT NULL AND (t.lease_expires_at IS NULL OR t.lease_expires_at > \(now))) AS claimed,
                       min(t.queued_at) AS oldest,
                       count(t.id) FILTER (WHERE t.due_at <= \(now)) AS breached,
                       count(t.id) FILTER (WHERE t.due_at > \(now) AND t.due_at <= \(now.addingTimeInterval(Self.dueSoonWindow))) AS due_soon
                FROM queues q
                LEFT JOIN tasks t ON t.queue = q.name
                    AND (NOT \(restricted) OR t.lead_agency = \(principal.agency)
                         OR t.id = ANY (ARRAY(SELECT p.task_id FROM task_participants p WHERE p.agency = \(principal.agency))))
                WHERE \(everyQueue) OR EXISTS (
                    SELECT 1 FROM queue_members m WHERE m.principal = \(principal.id) AND (m.queue = q.name OR m.queue = q.refines))
                GROUP BY q.name, q.refines
                ORDER BY q.name
                """)
        }
        return try rows.map { row in
            QueueSummary(
                name: try row.decode(String.self, "name"), refines: try row.decode(String?.self, "refines"),
                depth: try row.decode(Int.self, "depth"), claimed: try row.decode(Int.self, "claimed"),
                oldestQueuedAt: try row.decode(Date?.self, "oldest"), breached: try row.decode(Int.self, "breached"),
                dueSoon: try row.decode(Int.self, "due_soon"))
        }
    }

    /// A queue's tasks, most urgent first (priority, then due date, then age).
    public func queueTasks(
        _ queue: String, as principal: Principal, limit: Int = 50, cursor: String? = nil
    ) async throws -> (items: [StoredTask], nextCursor: String?) {
        let limit = max(1, min(limit, 500))
        let after = try cursor.map(QueueCursor.init(text:))
        return try await transaction(as: principal) { connection in
            try await requireMember(of: queue, principal, on: connection, toWork: false)
            let restricted = principal.role == .liaison
            let rows = try await connection.query("""
                SELECT t.id::text, t.priority_rank, COALESCE(t.due_at, 'infinity')::text AS due,
                       COALESCE(t.queued_at, t.created_at)::text AS queued
                FROM tasks t
                WHERE t.queue = \(queue)
                  AND (NOT \(restricted) OR t.lead_agency = \(principal.agency)
                       OR t.id = ANY (ARRAY(SELECT p.task_id FROM task_participants p WHERE p.agency = \(principal.agency))))
                  AND (\(after == nil) OR (t.priority_rank, COALESCE(t.due_at, 'infinity'), COALESCE(t.queued_at, t.created_at), t.id::text)
                       > (\(after?.rank), \(after?.due)::timestamptz, \(after?.queued)::timestamptz, \(after?.id)))
                ORDER BY t.priority_rank, COALESCE(t.due_at, 'infinity'), COALESCE(t.queued_at, t.created_at), t.id::text
                LIMIT \(limit + 1)
                """)
            let page = Array(rows.prefix(limit))
            let items = try await loadAll(try page.map { UUID(uuidString: try $0.decode(String.self, at: 0))! }, on: connection)
            let last = try page.last.map { row in
                QueueCursor(
                    rank: try row.decode(Int.self, at: 1), due: try row.decode(String.self, at: 2),
                    queued: try row.decode(String.self, at: 3), id: try row.decode(String.self, at: 0))
            }
            return (items, rows.count > limit ? last?.text : nil)
        }
    }

    // MARK: Claims and leases

    /// The holder columns of a task row (`assignee`, `holder_name`, `lease_id`, `lease_expires_at`).
    static func holder(_ row: PostgresRow) throws -> StoredTask.Holder? {
        guard let principal = try row.decode(UUID?.self, "assignee"), let lease = try row.decode(UUID?.self, "lease_id") else { return nil }
        return StoredTask.Holder(
            principal: principal, name: try row.decode(String.self, "holder_name"), lease: lease,
            expiresAt: try row.decode(Date?.self, "lease_expires_at"))
    }

    /// Gives `principal` the most urgent task of `queue` that no one holds, under
    /// a lease of `lease`; nil when there is none. Claimers skip each other's
    /// locked rows, so they never wait on each other nor get the same task.
    public func claim(_ queue: String, lease: Duration, by principal: Principal) async throws -> StoredTask? {
        try await transaction(as: principal) { connection in
            let now = now()
            let restricted = principal.role == .liaison
            let rows = try await connection.query("""
                WITH next AS (
                    SELECT t.id, t.assignee AS previous, h.name AS previous_name, t.lease_expires_at AS previous_expiry
                    FROM tasks t LEFT JOIN principals h ON h.id = t.assignee
                    WHERE t.queue = \(queue)
                      AND (t.assignee IS NULL OR t.lease_expires_at <= \(now))
                      AND (\(principal.role == .admin) OR EXISTS (
                          SELECT 1 FROM queue_members m JOIN queues q ON q.name = \(queue)
                          WHERE m.principal = \(principal.id) AND (m.queue = q.name OR m.queue = q.refines)))
                      AND (NOT \(restricted) OR t.lead_agency = \(principal.agency)
                           OR t.id = ANY (ARRAY(SELECT p.task_id FROM task_participants p WHERE p.agency = \(principal.agency))))
                    ORDER BY t.priority_rank, t.due_at, t.queued_at, t.id
                    LIMIT 1
                    FOR NO KEY UPDATE OF t SKIP LOCKED)
                UPDATE tasks t SET assignee = \(principal.id), lease_id = gen_random_uuid(),
                    lease_expires_at = \(now.adding(lease)), version = t.version + 1, updated_at = now()
                FROM next WHERE t.id = next.id
                RETURNING t.id, next.previous_name, next.previous_expiry
                """)
            guard let row = rows.first else {
                // Nothing claimed: say why if the caller may not claim here, else the queue is empty.
                try await requireMember(of: queue, principal, on: connection, toWork: true)
                return nil
            }
            let id = try row.decode(UUID.self, at: 0)
            var data: [String: String] = ["leaseExpiresAt": InternetTime.string(now.adding(lease))]
            if let previous = try row.decode(String?.self, at: 1), let expiry = try row.decode(Date?.self, at: 2) {
                // The last holder's lease ran out before the sweep noticed: say so.
                data["previousHolder"] = previous
                data["previousLeaseExpiredAt"] = InternetTime.string(expiry)
            }
            try recordEvent("task.claimed", task: id, by: principal, data: data)
            return try await load(id.uuidString, visibleTo: nil, forUpdate: false, on: connection)
        }
    }

    /// Extends the lease `principal` holds on the task by `lease` from now.
    public func renew(_ key: String, lease: UUID?, for duration: Duration, by principal: Principal) async throws -> StoredTask {
        try await changeHolding(key, by: principal) { task, connection in
            try checkOwnLease(task, lease: lease, by: principal)
            let expiry = now().adding(duration)
            try await connection.query(
                "UPDATE tasks SET lease_expires_at = \(expiry), version = version + 1, updated_at = now() WHERE id = \(task.id)")
            try recordEvent("task.lease_renewed", task: task.id, by: principal, data: ["leaseExpiresAt": InternetTime.string(expiry)])
        }
    }

    /// Gives the task back to its queue. Its holder may; so may a coordinator or admin.
    public func release(_ key: String, lease: UUID?, by principal: Principal) async throws -> StoredTask {
        try await changeHolding(key, by: principal) { task, connection in
            guard let holder = task.holder else { throw StoreError(.conflict, "task \(task.ref) is not held by anyone") }
            if holder.principal == principal.id {
                try checkOwnLease(task, lease: lease, by: principal)
            } else if !principal.role.reassigns {
                throw StoreError(.forbidden, "task \(task.ref) is held by \(holder.name); only they or a coordinator can release it")
            }
            try await clearHolding(task.id, on: connection)
            try recordEvent("task.released", task: task.id, by: principal, data: ["holder": holder.name])
        }
    }

    /// Hands the task to a named person, with no expiry: coordinators and admins only.
    public func assign(_ key: String, to assigneeKey: String, by principal: Principal) async throws -> StoredTask {
        guard principal.role.reassigns else { throw StoreError(.forbidden, "only coordinators and admins assign tasks") }
        return try await changeHolding(key, by: principal) { task, connection in
            let assignee = try await worker(assigneeKey, on: connection)
            try await hand(task.id, to: assignee, from: task.holder, by: principal, on: connection)
        }
    }

    /// Moves every task `from` holds to `to`, or back to their queues when `to` is nil;
    /// one transaction. Returns the refs moved, in order.
    public func reassignAll(from fromKey: String, to toKey: String?, by principal: Principal) async throws -> [String] {
        guard principal.role.reassigns else { throw StoreError(.forbidden, "only coordinators and admins reassign tasks") }
        return try await transaction(as: principal) { connection in
            let from = try await worker(fromKey, on: connection, anyRole: true)
            var to: Principal?
            if let toKey { to = try await worker(toKey, on: connection) }
            let rows = try await connection.query("""
                SELECT id, ref FROM tasks WHERE assignee = \(from.id) ORDER BY length(ref), ref FOR NO KEY UPDATE
                """)
            var moved: [String] = []
            for row in rows {
                let id = try row.decode(UUID.self, at: 0)
                guard let task = try await load(id.uuidString, visibleTo: nil, forUpdate: false, on: connection) else { continue }
                if let to {
                    try await hand(id, to: to, from: task.holder, by: principal, on: connection)
                } else {
                    try await clearHolding(id, on: connection)
                    try recordEvent("task.released", task: id, by: principal, data: ["holder": from.name])
                }
                moved.append(try row.decode(String.self, at: 1))
            }
            return moved
        }
    }

    /// Refuses an action by a queue worker on a task someone else holds, and an
    /// action under a lease that is no longer held.
    func checkHolding(_ task: StoredTask, lease: UUID?, by principal: Principal) throws {
        if lease != nil {
            try checkOwnLease(task, lease: lease, by: principal)
            return
        }
        guard let holder = task.holder, principal.role != .liaison else { return }
        if holder.principal == principal.id {
            try checkOwnLease(task, lease: nil, by: principal)
        } else if holder.isHeld(at: now()) {
            throw StoreError(
                .conflict, "task \(task.ref) is held by \(holder.name)\(holder.expiresAt.map { " until \(InternetTime.string($0))" } ?? ""); "
                    + "it can be acted on once released or reassigned")
        }
    }

    /// The caller's own lease: present, the one named (if any), not expired.
    private func checkOwnLease(_ task: StoredTask, lease: UUID?, by principal: Principal) throws {
        guard let holder = task.holder, holder.principal == principal.id, lease == nil || lease == holder.lease else {
            throw StoreError(
                .conflict, "lease \(lease.map { $0.uuidString.lowercased() + " " } ?? "")on task \(task.ref) is no longer yours"
                    + (task.holder.map { "; it is held by \($0.name)" } ?? "; it is back in its queue"))
        }
        if !holder.isHeld(at: now()) {
            throw StoreError(.conflict, "your lease on task \(task.ref) expired at \(InternetTime.string(holder.expiresAt!)); claim it again")
        }
    }

    private func changeHolding(
        _ key: String, by principal: Principal, _ change: @Sendable (StoredTask, PostgresConnection) async throws -> Void
    ) async throws -> StoredTask {
        try await transaction(as: principal) { connection in
            guard let task = try await load(key, visibleTo: principal, forUpdate: true, on: connection) else {
                throw StoreError(.notFound, "no task \(key)")
            }
            try await change(task, connection)
            return try await load(task.id.uuidString, visibleTo: nil, forUpdate: false, on: connection)!
        }
    }

    private func hand(_ id: UUID, to assignee: Principal, from holder: StoredTask.Holder?, by principal: Principal, on connection: PostgresConnection) async throws {
        try await connection.query("""
            UPDATE tasks SET assignee = \(assignee.id), lease_id = gen_random_uuid(), lease_expires_at = NULL,
                version = version + 1, updated_at = now()
            WHERE id = \(id)
            """)
        var data = ["assignee": assignee.name]
        if let holder { data["previousHolder"] = holder.name }
        try recordEvent("task.assigned", task: id, by: principal, data: data)
    }

    private func clearHolding(_ id: UUID, on connection: PostgresConnection) async throws {
        try await connection.query("""
            UPDATE tasks SET assignee = NULL, lease_id = NULL, lease_expires_at = NULL, version = version + 1, updated_at = now()
            WHERE id = \(id)
            """)
    }

    /// A principal who can hold tasks, by name or id.
    private func worker(_ key: String, on connection: PostgresConnection, anyRole: Bool = false) async throws -> Principal {
        let rows = try await connection.query(
            "SELECT id, name, role, agency FROM principals WHERE id::text = \(key.lowercased()) OR name = \(key)")
        guard let row = rows.first else { throw StoreError(.notFound, "no principal \(key)") }
        let principal = Principal(
            id: try row.decode(UUID.self, at: 0), name: try row.decode(String.self, at: 1),
            role: Role(rawValue: try row.decode(String.self, at: 2))!, agency: try row.decode(String?.self, at: 3))
        guard anyRole || principal.role == .coordinator || principal.role == .approver else {
            throw StoreError.validation([FieldError("to", "\(principal.name) is \(principal.role.withArticle); tasks are held by coordinators and approvers")])
        }
        return principal
    }

    /// Whether `principal` is a member of `queue` or of the queue it refines; admins always are.
    private func requireMember(of queue: String, _ principal: Principal, on connection: PostgresConnection, toWork: Bool) async throws {
        let rows = try await connection.query("""
            SELECT EXISTS (SELECT 1 FROM queue_members m WHERE m.principal = \(principal.id) AND (m.queue = q.name OR m.queue = q.refines))
            FROM queues q WHERE q.name = \(queue)
            """)
        guard let row = rows.first else { throw StoreError(.notFound, "no queue \(queue)") }
        if try row.decode(Bool.self, at: 0) || principal.role == .admin || (!toWork && principal.role == .observer) { return }
        throw StoreError(.forbidden, "\(principal.name) is not a member of queue \(queue)")
    }


    // MARK: The sweep

    /// Expired leases back to their queues, SLA breaches handled once each,
    /// reminders sent; at most `limit` of each. One instance sweeps at a time:
    /// nil when another holds the sweep lock.
    public func sweep(limit: Int = 500) async throws -> SweepReport? {
        try await transaction(as: nil) { connection -> SweepReport? in
            let locked = try await connection.query("SELECT pg_try_advisory_xact_lock(7411, 2)")
            guard try locked.first!.decode(Bool.self, at: 0) else { return nil }
            let now = now()
            var report = SweepReport()

            for row in try await connection.query("""
                SELECT t.id, t.ref, h.name, t.lease_expires_at FROM tasks t JOIN principals h ON h.id = t.assignee
                WHERE t.lease_expires_at <= \(now) ORDER BY t.lease_expires_at LIMIT \(limit) FOR NO KEY UPDATE OF t SKIP LOCKED
                """)
            {
                let id = try row.decode(UUID.self, at: 0)
                try await clearHolding(id, on: connection)
                try recordEvent(
                    "task.lease_expired", task: id, by: nil,
                    data: ["holder": try row.decode(String.self, at: 2), "expiredAt": InternetTime.string(try row.decode(Date.self, at: 3))])
                report.leasesExpired.append(try row.decode(String.self, at: 1))
            }

            for row in try await connection.query("""
                SELECT id, ref, workflow, workflow_version, state, due_at, priority, queue FROM tasks
                WHERE due_at <= \(now) AND breached_at IS NULL ORDER BY due_at LIMIT \(limit) FOR NO KEY UPDATE SKIP LOCKED
                """)
            {
                let id = try row.decode(UUID.self, at: 0)
                let state = workflows.definition(try row.decode(String.self, at: 2), version: try row.decode(Int.self, at: 3))?
                    .state(try row.decode(String.self, at: 4))
                let priority = Priority(rawValue: try row.decode(String.self, at: 6)) ?? .normal
                var data = ["state": try row.decode(String.self, at: 4), "dueAt": InternetTime.string(try row.decode(Date.self, at: 5))]
                if let escalation = state?.escalate {
                    guard let task = try await load(id.uuidString, visibleTo: nil, forUpdate: false, on: connection) else { continue }
                    let queue = routing.route(escalation, for: task.record)
                    try await connection.query("""
                        UPDATE tasks SET breached_at = \(now), queue = \(queue), queued_at = \(now),
                            assignee = NULL, lease_id = NULL, lease_expires_at = NULL, version = version + 1, updated_at = now()
                        WHERE id = \(id)
                        """)
                    data["escalatedFrom"] = try row.decode(String?.self, at: 7) ?? ""
                    data["escalatedTo"] = queue
                } else {
                    try await connection.query("""
                        UPDATE tasks SET breached_at = \(now), priority = \(priority.raised.rawValue), version = version + 1, updated_at = now()
                        WHERE id = \(id)
                        """)
                    data["priorityFrom"] = priority.rawValue
                    data["priorityTo"] = priority.raised.rawValue
                }
                try recordEvent("sla.breached", task: id, by: nil, data: data)
                report.breached.append(try row.decode(String.self, at: 1))
            }

            for row in try await connection.query("""
                SELECT id, ref, workflow, workflow_version, state, due_at FROM tasks
                WHERE next_reminder_at <= \(now) ORDER BY next_reminder_at LIMIT \(limit) FOR NO KEY UPDATE SKIP LOCKED
                """)
            {
                let id = try row.decode(UUID.self, at: 0)
                let dueAt = try row.decode(Date?.self, at: 5)
                let state = workflows.definition(try row.decode(String.self, at: 2), version: try row.decode(Int.self, at: 3))?
                    .state(try row.decode(String.self, at: 4))
                let next = state?.nextReminder(dueAt: dueAt, after: now)
                try await connection.query("UPDATE tasks SET next_reminder_at = \(next) WHERE id = \(id)")
                // Past the due date, the breach speaks instead.
                guard let dueAt, dueAt > now else { continue }
                try recordEvent(
                    "sla.reminder", task: id, by: nil,
                    data: ["state": try row.decode(String.self, at: 4), "dueAt": InternetTime.string(dueAt)])
                report.reminded.append(try row.decode(String.self, at: 1))
            }
            return report
        }
    }
}

/// Where `queue.tasks` left off: the urgency key of the last task given.
struct QueueCursor {
    var rank: Int
    /// Timestamps as PostgreSQL prints them, so they go back exact to the microsecond.
    var due: String
    var queued: String
    var id: String

    init(rank: Int, due: String, queued: String, id: String) {
        (self.rank, self.due, self.queued, self.id) = (rank, due, queued, id)
    }

    init(text: String) throws {
        let parts = Data(base64Encoded: text).flatMap { String(data: $0, encoding: .utf8) }?.split(separator: "|", omittingEmptySubsequences: false)
        let timestamp = #"^(infinity|[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?[+-][0-9]{2}(:[0-9]{2})?)$"#
        guard let parts, parts.count == 4, let rank = Int(parts[0]), UUID(uuidString: String(parts[3])) != nil,
            parts[1...2].allSatisfy({ $0.range(of: timestamp, options: .regularExpression) != nil })
        else {
            throw StoreError.validation([FieldError("cursor", "not a cursor this server gave out")])
        }
        self.init(rank: rank, due: String(parts[1]), queued: String(parts[2]), id: String(parts[3]))
    }

    var text: String { Data("\(rank)|\(due)|\(queued)|\(id)".utf8).base64EncodedString() }
}

extension Role {
    /// Coordinators and admins move tasks between people.
    var reassigns: Bool { self == .coordinator || self == .admin }
}

extension Date {
    func adding(_ duration: Duration) -> Date {
        addingTimeInterval(Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
    }
}

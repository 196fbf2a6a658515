import Coordination
import Foundation
import Postgres

/// What a subscriber wants to hear about; an empty list matches everything.
public struct EventFilter: Sendable, Hashable {
    public var queues: [String] = []
    public var tasks: [UUID] = []
    public var countries: [String] = []
    public var agencies: [String] = []
    public var types: [String] = []

    public init(queues: [String] = [], tasks: [UUID] = [], countries: [String] = [], agencies: [String] = [], types: [String] = []) {
        self.queues = queues
        self.tasks = tasks
        self.countries = countries
        self.agencies = agencies
        self.types = types
    }
}

/// An event as a stream carries it: with its task and where the task was.
public struct StreamEvent: Sendable, Hashable {
    public var event: StoredEvent
    public var taskRef: String?
    public var queue: String?
    public var country: String?
}

/// Reading the event log for streams (SPEC section 6).
extension TaskStore {
    /// Every type of event pbc writes. A subscription naming another is a
    /// typo that would wait forever for nothing, so it is refused.
    /// `EventTypeTests` checks that the store writes no type missing here.
    public static let eventTypes: Set<String> = [
        "task.created", "task.transitioned", "task.updated", "task.commented", "task.claimed", "task.lease_renewed", "task.lease_expired",
        "task.assigned", "task.released", "overlap.detected", "overlap.resolved", "overlap.closed", "sla.breached", "sla.reminder",
    ]

    /// Refuses a subscription's queues and agencies that do not exist, and
    /// types pbc never writes: each would match nothing, silently.
    public func checkSubscriptionNames(queues: [String], agencies: [String], types: [String]) async throws {
        var errors: [FieldError] = []
        for type in types where !Self.eventTypes.contains(type) {
            errors.append(FieldError("types", "\(type) is not an event type; there are \(Self.eventTypes.sorted().joined(separator: ", "))"))
        }
        if !queues.isEmpty || !agencies.isEmpty {
            let rows = try await pool.query("""
                SELECT 'queues', q FROM unnest(\(queues)) AS q WHERE NOT EXISTS (SELECT 1 FROM queues WHERE name = q)
                UNION ALL
                SELECT 'agencies', a FROM unnest(\(agencies)) AS a WHERE NOT EXISTS (SELECT 1 FROM agencies WHERE id = a)
                """)
            for row in rows {
                let (field, name) = (try row.decode(String.self, at: 0), try row.decode(String.self, at: 1))
                errors.append(FieldError(field, field == "queues" ? "no queue \(name)" : "unknown agency \(name)"))
            }
        }
        guard errors.isEmpty else { throw StoreError.validation(errors) }
    }

    /// The seq of the newest event, 0 when there is none: a position in the
    /// log, read by pbc itself (in no one's scope, which would hide events).
    public func newestEventSeq() async throws -> Int {
        try await transaction(as: nil) { try await $0.query("SELECT COALESCE(max(seq), 0) FROM events") }.first!.decode(Int.self, at: 0)
    }

    /// Refuses a replay from `since` when the first event it would give is older
    /// than `retention`, or when `since` is ahead of the log. Positions and
    /// times of the log only, read by pbc itself.
    public func checkReplayable(since: Int, retention: Duration) async throws {
        let rows = try await transaction(as: nil) { connection in
            try await connection.query("""
                SELECT (SELECT at FROM events WHERE seq > \(since) ORDER BY seq LIMIT 1),
                       (SELECT COALESCE(max(seq), 0) FROM events)
                """)
        }
        let newest = try rows.first!.decode(Int.self, at: 1)
        if since > newest {
            throw StoreError.validation([FieldError("since", "\(since) is ahead of the newest event (\(newest))")])
        }
        if let first = try rows.first!.decode(Date?.self, at: 0), first < now().adding(.zero - retention) {
            throw StoreError(
                .historyGone, "events after \(since) are older than the replay window (\(retention.components.seconds / 86_400) days); "
                    + "read old history with task.history, or subscribe without since")
        }
    }

    /// The task ids behind refs or ids, each one visible to `principal`.
    public func taskIDs(_ keys: [String], visibleTo principal: Principal) async throws -> [UUID] {
        try await transaction(as: principal) { connection in
            var ids: [UUID] = []
            for key in keys {
                guard let task = try await load(key, visibleTo: principal, forUpdate: false, on: connection) else {
                    throw StoreError(.notFound, "no task \(key)")
                }
                ids.append(task.id)
            }
            return ids
        }
    }

    /// Country codes as stored (alpha-3), from alpha-3 or alpha-2.
    public func countryCodes(_ codes: [String]) async throws -> [String] {
        guard !codes.isEmpty else { return [] }
        let rows = try await pool.query("""
            SELECT c.given, k.code FROM unnest(\(codes)) AS c(given)
            LEFT JOIN countries k ON k.code = upper(c.given) OR k.alpha2 = upper(c.given)
            """)
        var found: [String] = []
        var errors: [FieldError] = []
        for row in rows {
            if let code = try row.decode(String?.self, at: 1) { found.append(code) } else {
                errors.append(FieldError("countries", "unknown country \(try row.decode(String.self, at: 0))"))
            }
        }
        guard errors.isEmpty else { throw StoreError.validation(errors) }
        return found
    }

    /// Events after `seq` that match `filter` and that `principal` may see, oldest first.
    /// Liaisons see events of tasks their agency leads or takes part in, and
    /// those written while a task was open to all agencies (a call for offers).
    /// The task's ref is looked up by id for each event given, not joined:
    /// when the planner expected few events, the join read every task under
    /// row-level security for each one (26 ms an event with 4,000 tasks).
    public func events(after seq: Int, matching filter: EventFilter, visibleTo principal: Principal, limit: Int) async throws -> [StreamEvent] {
        let restricted = principal.role == .liaison
        let rows = try await transaction(as: principal) { connection in
            try await connection.query("""
                SELECT e.seq, e.type, e.actor_name, e.action, e.from_state, e.to_state, e.comment, e.data, e.at,
                       (SELECT t.ref FROM tasks t WHERE t.id = e.task_id) AS ref, e.queue, e.country
                FROM events e
                WHERE e.seq > \(seq)
                  AND (cardinality(\(filter.queues)) = 0 OR e.queue = ANY (\(filter.queues)))
                  AND (cardinality(\(filter.tasks.map { $0.uuidString })::uuid[]) = 0 OR e.task_id = ANY (\(filter.tasks.map { $0.uuidString })::uuid[]))
                  AND (cardinality(\(filter.countries)) = 0 OR e.country = ANY (\(filter.countries)))
                  AND (cardinality(\(filter.agencies)) = 0 OR e.agencies && \(filter.agencies))
                  AND (cardinality(\(filter.types)) = 0 OR e.type = ANY (\(filter.types)))
                  AND (NOT \(restricted) OR \(principal.agency) = ANY (e.agencies) OR e.open_to_all_agencies)
                ORDER BY e.seq
                LIMIT \(limit)
                """)
        }
        return try rows.map { row in
            StreamEvent(
                event: StoredEvent(
                    seq: try row.decode(Int.self, "seq"), type: try row.decode(String.self, "type"),
                    actor: try row.decode(String.self, "actor_name"), action: try row.decode(String?.self, "action"),
                    fromState: try row.decode(String?.self, "from_state"), toState: try row.decode(String?.self, "to_state"),
                    comment: try row.decode(String?.self, "comment"), data: try row.decode(PostgresJSONB.self, "data"),
                    at: try row.decode(Date.self, "at")),
                taskRef: try row.decode(String?.self, "ref"), queue: try row.decode(String?.self, "queue"),
                country: try row.decode(String?.self, "country"))
        }
    }
}

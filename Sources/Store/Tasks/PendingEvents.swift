import Foundation
import Postgres
import Synchronization

/// The events of one transaction, kept until its end and then written in
/// one statement with the NOTIFY that wakes every instance.
///
/// Writers of events hold the events lock from their first event to commit
/// (`sql/0006`: it keeps seqs visible in order). Writing the events last
/// makes that hold one statement and the commit, however long the
/// transaction was before.
final class PendingEvents: Sendable {
    struct Event: Sendable {
        var task: UUID?
        /// Instead of `task`: a task named by ref that the transaction's
        /// principal may not see, whose agencies pbc tells of something on
        /// its own behalf (an overlap found with it). An event naming no task
        /// (an activity's identifier) is not written.
        var peerRef: String? = nil
        var actor: Principal?
        var type: String
        var action: String? = nil
        var from: String? = nil
        var to: String? = nil
        var comment: String? = nil
        /// A JSON object.
        var data: String = "{}"
    }

    /// The events of the transaction this task runs in (`TaskStore.transaction`).
    @TaskLocal static var current: PendingEvents?

    /// `current`, where an event outside a `TaskStore.transaction` is a bug.
    static var ofThisTransaction: PendingEvents {
        guard let current else { preconditionFailure("an event recorded outside TaskStore.transaction") }
        return current
    }

    private let events = Mutex<[Event]>([])

    func append(_ event: Event) { events.withLock { $0.append(event) } }

    func write(on connection: PostgresConnection) async throws {
        let events = events.withLock { $0 }
        guard !events.isEmpty else { return }
        // Events on a task of another agency pass row-level security only in
        // pbc's scope. Nothing but this statement and the commit follow, so
        // the widening covers these events alone.
        if events.contains(where: { $0.peerRef != nil }) { try await Scope.widen(on: connection) }
        func column(_ value: (Event) -> String?) -> PostgresNullableTextArray { PostgresNullableTextArray(events.map(value)) }
        try await connection.query("""
            WITH written AS (
                INSERT INTO events (task_id, actor, actor_name, type, action, from_state, to_state, comment, data)
                SELECT coalesce(task::uuid, (SELECT id FROM tasks WHERE ref = peer)), actor::uuid, actor_name, type, action, from_state, to_state,
                       comment, data::jsonb
                FROM unnest(\(column { $0.task?.uuidString }), \(column(\.peerRef)), \(column { $0.actor?.id.uuidString }),
                            \(column { $0.actor?.name ?? "system" }), \(column(\.type)), \(column(\.action)), \(column(\.from)), \(column(\.to)),
                            \(column(\.comment)), \(column(\.data)))
                    WITH ORDINALITY AS e(task, peer, actor, actor_name, type, action, from_state, to_state, comment, data, position)
                WHERE peer IS NULL OR EXISTS (SELECT 1 FROM tasks WHERE ref = peer)
                ORDER BY position
                RETURNING seq)
            SELECT pg_notify(\(TaskStore.eventChannel), max(seq)::text) FROM written
            """)
    }
}

extension TaskStore {
    /// A transaction of `principal` (nil: pbc itself), in its `Scope`, whose
    /// events (`recordEvent`) are written at its end, with the NOTIFY. Reads
    /// run in one too, so that row-level security knows whose they are.
    func transaction<Result: Sendable>(
        as principal: Principal?, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await pool.withTransaction(settings: Scope(principal).settings) { connection in
            let events = PendingEvents()
            let result = try await PendingEvents.$current.withValue(events) { try await body(connection) }
            try await events.write(on: connection)
            return result
        }
    }

    /// Records an event of the current transaction (see `transaction`).
    func recordEvent(_ event: PendingEvents.Event) throws {
        PendingEvents.ofThisTransaction.append(event)
    }

    /// An event whose data is a flat object of strings.
    func recordEvent(_ type: String, task: UUID, by principal: Principal?, data: [String: String]) throws {
        try recordEvent(PendingEvents.Event(task: task, actor: principal, type: type, data: try Self.json(data)))
    }

    static func json<Value: Encodable>(_ value: Value) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

import Postgres

/// Whose rows a transaction may touch, as PostgreSQL's row-level security
/// reads it (`sql/0007_row_level_security.sql`): set with `SET LOCAL` at
/// BEGIN, so that it ends with the transaction. The store's own filters say
/// the same; the policies hold even where a filter is forgotten.
enum Scope: Sendable, Equatable {
    /// Every task: coordinators, approvers, observers, admins and pbc itself.
    case all
    /// The tasks an agency leads or takes part in: a liaison's.
    case agency(String)

    /// A principal's scope; nil is pbc itself (sweeps, imports, the event hub).
    init(_ principal: Principal?) {
        if let principal, principal.role == .liaison {
            // A liaison without an agency (the schema forbids it) sees nothing.
            self = .agency(principal.agency ?? "")
        } else {
            self = .all
        }
    }

    var settings: [(name: String, value: String)] {
        switch self {
        case .all: [("pbc.scope", "all"), ("pbc.agency", "")]
        case .agency(let agency): [("pbc.scope", "agency"), ("pbc.agency", agency)]
        }
    }

    /// Widens the rest of the current transaction to every task, for a step
    /// pbc takes on its own behalf inside a person's transaction: applying
    /// the resolution a deconfliction case agreed touches the other agency's
    /// task, and an overlap found with another agency's task is recorded in
    /// that task's history (`PendingEvents.write`, just before the commit).
    /// It lasts to the end of the transaction, so that the events the step
    /// records (written at the end) are allowed too.
    static func widen(on connection: PostgresConnection) async throws {
        try await connection.query("SELECT set_config('pbc.scope', 'all', true), set_config('pbc.agency', '', true)")
    }
}

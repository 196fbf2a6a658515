import Coordination
import Crypto
import Foundation
import Postgres

/// Agencies, principals and API tokens, for `pbc admin`.
public struct AdminStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    public func addAgency(id: String, name: String, kind: AgencyKind, iatiRef: String?) async throws {
        var errors: [FieldError] = []
        if id.range(of: "^[a-z0-9][a-z0-9-]{0,62}$", options: .regularExpression) == nil {
            errors.append(FieldError("id", "must be a lowercase slug such as gac-canada"))
        }
        if name.trimmingCharacters(in: .whitespaces).isEmpty { errors.append(FieldError("name", "must not be empty")) }
        guard errors.isEmpty else { throw StoreError.validation(errors) }
        do {
            try await pool.query("INSERT INTO agencies (id, name, kind, iati_ref) VALUES (\(id), \(name), \(kind.rawValue), \(iatiRef))")
        } catch let error as PostgresError where error.sqlState == PostgresError.SQLState.uniqueViolation {
            throw StoreError(.conflict, error.constraint == "agencies_pkey" ? "agency \(id) exists already" : "IATI organisation \(iatiRef ?? "") belongs to another agency")
        }
    }

    public struct AgencyRow: Sendable, Hashable {
        public var id: String
        public var name: String
        public var kind: String
        public var iatiRef: String?
    }

    public func agencies() async throws -> [AgencyRow] {
        try await pool.query("SELECT id, name, kind, iati_ref FROM agencies ORDER BY id").map { row in
            AgencyRow(
                id: try row.decode(String.self, at: 0), name: try row.decode(String.self, at: 1),
                kind: try row.decode(String.self, at: 2), iatiRef: try row.decode(String?.self, at: 3))
        }
    }

    public func addPrincipal(name: String, role: Role, agency: String?) async throws -> Principal {
        if role == .liaison, agency == nil {
            throw StoreError.validation([FieldError("agency", "a liaison must belong to an agency")])
        }
        do {
            let rows = try await pool.query(
                "INSERT INTO principals (name, role, agency) VALUES (\(name), \(role.rawValue), \(agency)) RETURNING id")
            return Principal(id: try rows.first!.decode(UUID.self, at: 0), name: name, role: role, agency: agency)
        } catch let error as PostgresError where error.sqlState == PostgresError.SQLState.uniqueViolation {
            throw StoreError(.conflict, "a principal named \(name) exists already")
        } catch let error as PostgresError where error.sqlState == PostgresError.SQLState.foreignKeyViolation {
            throw StoreError.validation([FieldError("agency", "unknown agency \(agency ?? "")")])
        }
    }

    public func principal(named name: String) async throws -> Principal {
        let rows = try await pool.query("SELECT id, name, role, agency FROM principals WHERE name = \(name)")
        guard let row = rows.first else { throw StoreError(.notFound, "no principal named \(name)") }
        return try Self.principal(row)
    }

    /// Makes the principal a member of the queue: they see it in `queue.list`
    /// and may claim from it and from the queues routing refines from it.
    public func addQueueMember(queue: String, principal name: String) async throws {
        let principal = try await principal(named: name)
        guard principal.role != .observer, principal.role != .system else {
            throw StoreError.validation([FieldError("principal", "\(name) is \(principal.role.withArticle); queue members work tasks")])
        }
        let known = try await pool.query("SELECT 1 FROM queues WHERE name = \(queue)")
        guard known.first != nil else {
            let names = try await pool.query("SELECT string_agg(name, ', ' ORDER BY name) FROM queues").first?.decode(String?.self, at: 0)
            throw StoreError(.notFound, "no queue \(queue); queues: \(names ?? "none")")
        }
        try await pool.query("INSERT INTO queue_members (queue, principal) VALUES (\(queue), \(principal.id)) ON CONFLICT DO NOTHING")
    }

    /// Ends a membership; the principal keeps any task they hold until it is released or reassigned.
    public func removeQueueMember(queue: String, principal name: String) async throws {
        let principal = try await principal(named: name)
        let rows = try await pool.query("DELETE FROM queue_members WHERE queue = \(queue) AND principal = \(principal.id) RETURNING 1")
        guard rows.first != nil else { throw StoreError(.notFound, "\(name) is not a member of queue \(queue)") }
    }

    /// Queue names with their members' names.
    public func queueMembers() async throws -> [(queue: String, members: [String])] {
        try await pool.query("""
            SELECT q.name, COALESCE(array_agg(p.name ORDER BY p.name) FILTER (WHERE p.name IS NOT NULL), '{}')
            FROM queues q LEFT JOIN queue_members m ON m.queue = q.name LEFT JOIN principals p ON p.id = m.principal
            GROUP BY q.name ORDER BY q.name
            """).map { (try $0.decode(String.self, at: 0), try $0.decode([String].self, at: 1)) }
    }

    static func principal(_ row: PostgresRow) throws -> Principal {
        Principal(
            id: try row.decode(UUID.self, "id"), name: try row.decode(String.self, "name"),
            role: Role(rawValue: try row.decode(String.self, "role"))!, agency: try row.decode(String?.self, "agency"))
    }

    /// A new token for the principal. Only its SHA-256 is stored: the token
    /// itself exists once, in what this returns.
    public func createToken(for principalName: String, expiresAt: Date? = nil) async throws -> (id: UUID, token: String) {
        let principal = try await principal(named: principalName)
        var bytes = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255, using: &generator) }
        let token = "pbc_" + Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        let rows = try await pool.query("""
            INSERT INTO api_tokens (principal, token_hash, expires_at)
            VALUES (\(principal.id), decode(\(Self.tokenHash(token)), 'hex'), \(expiresAt)) RETURNING id
            """)
        return (try rows.first!.decode(UUID.self, at: 0), token)
    }

    /// Revokes a token, named by its id or by the token itself.
    public func revokeToken(_ idOrToken: String) async throws {
        let rows: PostgresRows
        if let id = UUID(uuidString: idOrToken) {
            rows = try await pool.query("UPDATE api_tokens SET revoked_at = now() WHERE id = \(id) AND revoked_at IS NULL RETURNING id")
        } else {
            rows = try await pool.query("""
                UPDATE api_tokens SET revoked_at = now()
                WHERE token_hash = decode(\(Self.tokenHash(idOrToken)), 'hex') AND revoked_at IS NULL RETURNING id
                """)
        }
        guard !rows.isEmpty else { throw StoreError(.notFound, "no active token \(idOrToken.hasPrefix("pbc_") ? "with that value" : idOrToken)") }
    }

    /// The principal a token belongs to, when it is neither revoked nor expired.
    /// The row is found by the token's SHA-256; the stored hash is then compared
    /// with the computed one in constant time, so that no timing depends on secret bytes.
    public func authenticate(token: String) async throws -> Principal? {
        let hash = Self.tokenHash(token)
        let rows = try await pool.query("""
            SELECT p.id, p.name, p.role, p.agency, encode(t.token_hash, 'hex') AS stored
            FROM api_tokens t JOIN principals p ON p.id = t.principal
            WHERE t.token_hash = decode(\(hash), 'hex') AND t.revoked_at IS NULL
              AND (t.expires_at IS NULL OR t.expires_at > now())
            """)
        guard let row = rows.first, Self.constantTimeEqual(Array(try row.decode(String.self, "stored").utf8), Array(hash.utf8)) else {
            return nil
        }
        return try Self.principal(row)
    }

    /// Equal bytes, in a time that depends only on the length.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    static func tokenHash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).hex
    }
}

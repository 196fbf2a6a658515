import NIOPosix
import Postgres

/// Creating and dropping whole databases, for the local cluster and tests.
public enum Database {
    /// The role pbc runs every statement as, but the migrations
    /// (`sql/0007_row_level_security.sql` makes it): it owns no table and
    /// does not bypass row-level security, so the policies bind it.
    public static let serviceRole = "pbc_app"

    /// Creates `name` on the server of `target` unless it exists; connects to the `postgres` database to do it.
    public static func createIfMissing(
        _ name: String, template: String? = nil, on target: ConnectionTarget, threadPool: NIOThreadPool
    ) async throws {
        let connection = try await PostgresConnection.connect(to: target.database("postgres"), on: threadPool)
        do {
            let exists = try await connection.query("SELECT 1 FROM pg_database WHERE datname = \(name)")
            if exists.isEmpty {
                var sql = "CREATE DATABASE \(try await connection.quoteIdentifier(name))"
                if let template { sql += " TEMPLATE \(try await connection.quoteIdentifier(template))" }
                try await connection.execute(unsafeSQL: sql)
            }
            await connection.close()
        } catch {
            await connection.close()
            throw error
        }
    }
}

import Foundation
import JSONRPC
import Postgres
import Store
import Testing
import TestSupport

/// pbc may log in as a role that owns nothing: a member of pbc_app
/// (sql/0007), as docs/operations.md advises for production, with the
/// migrations run by the tables' owner. Then even a session that undid
/// `SET ROLE` would be bound by row-level security.
@Suite struct ServiceRoleTests {
    @Test func pbcServesWhenItLogsInAsAMemberOfTheServiceRoleThatOwnsNothing() async throws {
        let owner = try await ServerHarness.start("service_login")
        let role = "pbct_server_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await TestDatabase.connect(owner.target)
        try await admin.execute(unsafeSQL: "CREATE ROLE \(role) LOGIN IN ROLE pbc_app")
        // Started as that role on the migrated database: it finds nothing to migrate and serves.
        let server = try await owner.another(loggingInAs: role)
        let ref = try await server.withSession("undp-liaison") { client -> String in
            let submitted = try await client.call("task.submit", params: ServerHarness.project(key: "login-1"))
            guard case .string(let ref)? = submitted?["result"]?["task"]?["ref"] else {
                Issue.record("submit failed: \(String(describing: submitted))")
                return ""
            }
            let read = try await client.call("task.get", id: 2, params: #"{"task":"\#(ref)"}"#)
            #expect(read?["result"]?["task"]?["ref"] == .string(ref))
            return ref
        }
        try await server.withSession("wfp-liaison") { client in
            let hidden = try await client.call("task.get", params: #"{"task":"\#(ref)"}"#)
            #expect(hidden?["error"]?["code"] == .integer(-32004))
        }
        let sessions = try await admin.query("SELECT count(*) FROM pg_stat_activity WHERE usename = \(role) AND datname = current_database()")
        #expect(try sessions.first!.decode(Int.self, at: 0) > 0)
        let owned = try await admin.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = \(role)")
        #expect(try owned.first!.decode(Int.self, at: 0) == 0)
        // Logged in as that role, back to itself (no SET ROLE) and saying no scope: no task.
        let direct = try await TestDatabase.connect(owner.target.setting("user", to: role))
        try await direct.execute(unsafeSQL: "RESET ROLE")
        let seen = try await direct.query("SELECT count(*) FROM tasks")
        #expect(try seen.first!.decode(Int.self, at: 0) == 0)
        let all = try await admin.query("SELECT count(*) FROM tasks WHERE ref = \(ref)")
        #expect(try all.first!.decode(Int.self, at: 0) == 1)
        await direct.close()
        await server.stop()
        await owner.stop()
        try? await admin.execute(unsafeSQL: "DROP ROLE \(role)")
        await admin.close()
    }

    /// A role that may not apply a pending migration is told who can.
    @Test func aPendingMigrationNeedsTheOwner() async throws {
        let owner = try await ServerHarness.start("service_pending")
        let role = "pbct_server_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await TestDatabase.connect(owner.target)
        try await admin.execute(unsafeSQL: "CREATE ROLE \(role) LOGIN IN ROLE pbc_app")
        let directory = Scratch.directory.appendingPathComponent("pbc-sql-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: TestDatabase.migrationsDirectory, to: directory)
        try "CREATE TABLE later (id int);".write(to: directory.appendingPathComponent("9999_later.sql"), atomically: true, encoding: .utf8)
        let connection = try await TestDatabase.connect(owner.target.setting("user", to: role))
        let refused = await #expect(throws: PostgresError.self) { _ = try await Migrator(directory: directory).migrate(on: connection) }
        #expect(refused?.message.contains("sql/9999_later.sql failed: permission denied") == true)
        #expect(refused?.message.contains("migrations run as the role that owns pbc's tables") == true)
        await connection.close()
        await owner.stop()
        try? await admin.execute(unsafeSQL: "DROP ROLE \(role)")
        await admin.close()
    }
}

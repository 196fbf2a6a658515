import Coordination
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// Defence in depth (sql/0007_row_level_security.sql): whatever SQL a handler
/// sends, PostgreSQL itself keeps an agency's tasks from other agencies'
/// liaisons. The statements here are the ones a buggy handler could send:
/// no agency filter at all.
@Suite struct RowLevelSecurityTests {
    /// UNDP leads a project in Burundi with UNICEF; WFP submits a similar one,
    /// which screening sends to deconfliction naming UNDP's.
    func twoAgencies(_ h: Harness) async throws -> (undps: StoredTask, wfps: StoredTask) {
        let (undps, _, _) = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "undp-1", by: h.undp)
        var similar = Harness.project(title: "Youth and women in local peace committees, Gitega")
        similar.leadAgency = "wfp"
        similar.participants = []
        let (wfps, _, _) = try await h.tasks.submit(similar, workflow: "pbf-project", idempotencyKey: "wfp-1", by: h.wfp)
        return (undps, wfps)
    }

    /// A transaction as the store opens one for a principal, running `sql` with nothing but the scope to limit it.
    func rows(_ h: Harness, scope: String?, agency: String = "", _ sql: PostgresQuery) async throws -> PostgresRows {
        let settings = scope.map { [(name: "pbc.scope", value: $0), (name: "pbc.agency", value: agency)] } ?? []
        return try await h.service.withTransaction(settings: settings) { try await $0.query(sql) }
    }

    func strings(_ h: Harness, scope: String?, agency: String = "", _ sql: PostgresQuery) async throws -> [String] {
        try await rows(h, scope: scope, agency: agency, sql).map { try $0.decode(String.self, at: 0) }
    }

    @Test func pbcServesAsARoleThatOwnsNothingAndDoesNotBypassThePolicies() async throws {
        let h = try await Harness("rls_role")
        let row = try await h.service.query("""
            SELECT current_user::text, r.rolsuper, r.rolbypassrls,
                   (SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user)
            FROM pg_roles r WHERE r.rolname = current_user
            """).first!
        #expect(try row.decode(String.self, at: 0) == Database.serviceRole)
        #expect(try row.decode(Bool.self, at: 1) == false)
        #expect(try row.decode(Bool.self, at: 2) == false)
        #expect(try row.decode(Int.self, at: 3) == 0)
        let protected = try await h.pool.query("""
            SELECT relname::text FROM pg_class WHERE relrowsecurity AND relnamespace = 'public'::regnamespace ORDER BY relname
            """).map { try $0.decode(String.self, at: 0) }
        #expect(protected == ["events", "idempotency_keys", "portfolio", "task_overlaps", "task_participants", "tasks"])
    }

    @Test func aTransactionThatDoesNotSayWhoseItIsSeesNoTask() async throws {
        let h = try await Harness("rls_unscoped")
        _ = try await twoAgencies(h)
        let counts: PostgresQuery = """
            SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM task_participants), (SELECT count(*) FROM events),
                   (SELECT count(*) FROM task_overlaps), (SELECT count(*) FROM idempotency_keys),
                   (SELECT count(*) FROM portfolio WHERE kind = 'task')
            """
        let owner = try await h.pool.query(counts).first!
        #expect(try (0..<6).map { try owner.decode(Int.self, at: $0) }.allSatisfy { $0 > 0 })
        for scope in [nil, "", "ALL", "everything"] {
            let seen = try await rows(h, scope: scope, agency: "undp", counts).first!
            #expect(try (0..<6).map { try seen.decode(Int.self, at: $0) } == [0, 0, 0, 0, 0, 0], "scope \(scope ?? "unset")")
        }
        // A scope does not outlive its transaction on a pooled connection.
        _ = try await rows(h, scope: "all", counts)
        let after = try await h.service.withConnection { connection in
            try await connection.query("SELECT count(*), current_setting('pbc.scope', true) FROM tasks").first!
        }
        #expect(try after.decode(Int.self, at: 0) == 0)
        #expect(try after.decode(String?.self, at: 1) ?? "" == "")
    }

    @Test func aLiaisonsTransactionReadsOnlyItsAgencysTasksWhateverTheQuery() async throws {
        let h = try await Harness("rls_reads")
        let (undps, wfps) = try await twoAgencies(h)
        #expect(try await strings(h, scope: "agency", agency: "wfp", "SELECT ref FROM tasks ORDER BY ref") == [wfps.ref])
        #expect(try await strings(h, scope: "agency", agency: "undp", "SELECT ref FROM tasks ORDER BY ref") == [undps.ref])
        // UNICEF takes part in UNDP's project, so reads it and its history.
        #expect(try await strings(h, scope: "agency", agency: "unicef", "SELECT ref FROM tasks ORDER BY ref") == [undps.ref])
        #expect(try await strings(h, scope: "all", "SELECT ref FROM tasks ORDER BY ref").count == 2)
        let undpEvents: PostgresQuery = "SELECT type FROM events WHERE task_id = \(undps.id)"
        #expect(try await strings(h, scope: "agency", agency: "wfp", undpEvents) == [])
        #expect(try await strings(h, scope: "agency", agency: "unicef", undpEvents).isEmpty == false)
        // Of UNDP's task, WFP reads no participant, no overlap, no key, and not its description in the portfolio.
        for sql: PostgresQuery in [
            "SELECT agency FROM task_participants WHERE task_id = \(undps.id)",
            "SELECT other_ref FROM task_overlaps WHERE task_id = \(undps.id)",
            "SELECT key FROM idempotency_keys WHERE agency = 'undp'",
            "SELECT body FROM portfolio WHERE ref = \(undps.ref)",
        ] {
            #expect(try await strings(h, scope: "agency", agency: "wfp", sql) == [], "\(sql.sql)")
        }
        // What SPEC sections 4 and 7 allow WFP all the same: screening found UNDP's
        // program, and WFP's overlap names it with enough to talk.
        #expect(wfps.state == "deconfliction")
        let overlaps = try await h.tasks.listOverlaps(task: wfps.ref, status: "open", limit: 10, as: h.wfp).items
        #expect(overlaps.map(\.other.ref) == [undps.ref])
        #expect(overlaps.first?.other.title == undps.record.title)
        #expect(overlaps.first?.other.leadAgency == "undp")
        // Imported activities are published data: every scope reads them.
        _ = try await h.importer.importIATI(files: [ImportTests.ebola])
        let activities: PostgresQuery = "SELECT count(*)::text FROM portfolio WHERE kind = 'activity'"
        let imported = try await h.pool.query(activities).map { try $0.decode(String.self, at: 0) }
        #expect(imported != ["0"])
        #expect(try await strings(h, scope: "agency", agency: "wfp", activities) == imported)
        #expect(try await strings(h, scope: "agency", agency: "wfp", "SELECT ref FROM portfolio WHERE kind = 'task'") == [wfps.ref])
    }

    @Test func aLiaisonsTransactionCannotChangeOrAddToAnotherAgencysTask() async throws {
        let h = try await Harness("rls_writes")
        let (undps, _) = try await twoAgencies(h)
        let changed = try await rows(h, scope: "agency", agency: "wfp", "UPDATE tasks SET title = 'hijacked' WHERE id = \(undps.id) RETURNING id")
        #expect(changed.count == 0)
        let removed = try await rows(h, scope: "agency", agency: "wfp", "DELETE FROM task_participants WHERE task_id = \(undps.id) RETURNING agency")
        #expect(removed.count == 0)
        // Writing into another agency's task is refused outright, not skipped.
        for sql: PostgresQuery in [
            "INSERT INTO events (task_id, actor_name, type, comment) VALUES (\(undps.id), 'lena (wfp)', 'task.commented', 'planted')",
            "INSERT INTO task_participants (task_id, agency, role) VALUES (\(undps.id), 'wfp', 'implementing')",
            "UPDATE tasks SET lead_agency = 'undp' WHERE lead_agency = 'wfp'",
        ] {
            let refused = await #expect(throws: PostgresError.self, "\(sql.sql)") { _ = try await rows(h, scope: "agency", agency: "wfp", sql) }
            #expect(refused?.sqlState == "42501", "\(sql.sql)")  // insufficient_privilege: the policy's WITH CHECK
        }
        // UNDP reads the overlap that WFP's screening stored against UNDP's task (sql/0009), and cannot change it.
        #expect(try await strings(h, scope: "agency", agency: "undp", "SELECT status FROM task_overlaps WHERE other_ref = \(undps.ref)") == ["open"])
        for sql: PostgresQuery in [
            "UPDATE task_overlaps SET status = 'resolved' WHERE other_ref = \(undps.ref) RETURNING id",
            "DELETE FROM task_overlaps WHERE other_ref = \(undps.ref) RETURNING id",
        ] {
            #expect(try await rows(h, scope: "agency", agency: "undp", sql).count == 0, "\(sql.sql)")
        }
        #expect(try await h.pool.query("SELECT status FROM task_overlaps WHERE other_ref = \(undps.ref)").map { try $0.decode(String.self, at: 0) } == ["open"])
        let after = try await h.pool.query("SELECT title, (SELECT count(*) FROM task_participants WHERE task_id = \(undps.id)) FROM tasks WHERE id = \(undps.id)").first!
        #expect(try after.decode(String.self, at: 0) == undps.record.title)
        #expect(try after.decode(Int.self, at: 1) == 1)
        #expect(try await h.invariantViolations() == [])
        // The audit trail takes no UPDATE or DELETE from pbc, whatever the scope.
        let rewrite = await #expect(throws: PostgresError.self) {
            _ = try await rows(h, scope: "all", "UPDATE events SET comment = 'rewritten' WHERE task_id = \(undps.id)")
        }
        #expect(rewrite?.sqlState == "42501")
    }
}

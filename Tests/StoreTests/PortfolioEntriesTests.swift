import Coordination
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// Only programs are screened against: the tasks of a workflow that screens
/// (pbf-project), and imported activities. A progress report, an assistance
/// request or a deconfliction case may name a country, places and a period,
/// and is still no program.
@Suite struct PortfolioEntriesTests {
    /// A report on the program, in its place, sector and period.
    static func report(on program: StoredTask) -> TaskRecord {
        var report = program.record
        report.title = "Semi-annual report: " + program.record.title
        report.budget = nil
        report.fields = Harness.report(on: program).fields
        return report
    }

    static func entries(_ h: Harness, _ ref: String) async throws -> Int {
        try await h.pool.query("SELECT count(*) FROM portfolio WHERE ref = \(ref)").first!.decode(Int.self, at: 0)
    }

    @Test func aReportInAProgramsPlaceAndPeriodIsNoOverlap() async throws {
        let h = try await Harness("portfolio_programs_only")
        let program = try await h.fund(Harness.project(), key: "program")
        let report = try await h.tasks.create(Self.report(on: program), workflow: "progress-report", by: h.undp)
        #expect(try await Self.entries(h, program.ref) == 1)
        #expect(try await Self.entries(h, report.ref) == 0)

        // A second agency's like program meets the first, not the report on it.
        var like = Harness.project(title: "Women in local peace committees")
        like.leadAgency = "unicef"
        like.participants = []
        let (_, _, overlaps) = try await h.tasks.submit(like, workflow: "pbf-project", idempotencyKey: "like", by: h.unicef)
        #expect(overlaps.map(\.other) == [program.ref])

        // Moving the report's dates screens nothing and records nothing.
        var changes = TaskChanges()
        changes.period = Period(start: CalendarDate(iso: "2027-01-01")!, end: CalendarDate(iso: "2027-06-30")!)
        let moved = try await h.tasks.update(report.ref, expectedVersion: report.version, changes: changes, by: h.undp)
        #expect(try await h.tasks.detail(moved.ref, as: h.coordinator).overlaps.isEmpty)
        #expect(try await Self.entries(h, report.ref) == 0)

        // Who does what where counts the two programs, not the report.
        let rows = try await h.tasks.whoWhatWhere(ReportFilter(country: "BDI"), as: h.coordinator)
        #expect(rows.filter { $0.sector == "15220" }.map(\.entries).reduce(0, +) == 2, "\(rows)")
        #expect(try await h.invariantViolations() == [])
    }

    /// Earlier versions screened against such tasks; sql/0022 closes what
    /// they found, dismisses the cases opened on it, and drops their rows.
    @Test func theMigrationClosesOverlapsEarlierVersionsFoundWithNonPrograms() async throws {
        let h = try await Harness("portfolio_programs_migration")
        let program = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "program", by: h.undp).task
        var like = Harness.project(title: "Semi-annual report: youth and women in local peace committees")
        like.leadAgency = "unicef"
        like.participants = []
        let (other, _, overlaps) = try await h.tasks.submit(like, workflow: "pbf-project", idempotencyKey: "like", by: h.unicef)
        let overlap = try #require(overlaps.first)
        let opened = try await h.tasks.create(Harness.caseDraft(for: overlap.id), workflow: "deconfliction-case", by: h.coordinator)
        // The second, as an earlier version left a report: a portfolio row, screened against.
        try await h.pool.query("UPDATE tasks SET workflow = 'progress-report', workflow_version = (SELECT max(version) FROM workflow_definitions WHERE name = 'progress-report') WHERE id = \(other.id)")
        let untouched = try await h.pool.query("SELECT count(*) FROM portfolio").first!.decode(Int.self, at: 0)
        #expect(untouched == 2)

        let migration = try String(
            contentsOf: TestDatabase.migrationsDirectory.appendingPathComponent("0022_only_programs_are_screened_against.sql"), encoding: .utf8)
        try await h.pool.withConnection { connection in
            try await connection.withTransaction { try await $0.execute(unsafeSQL: migration) }
        }

        #expect(try await Self.entries(h, program.ref) == 1)
        #expect(try await Self.entries(h, other.ref) == 0)
        let pair = try await h.pool.query("""
            SELECT t.ref, o.status, o.resolution_data::text FROM task_overlaps o JOIN tasks t ON t.id = o.task_id ORDER BY t.ref
            """).map { "\(try $0.decode(String.self, at: 0)) \(try $0.decode(String.self, at: 1)) \(try $0.decode(String.self, at: 2))" }
        // Stored on the side whose screening found it.
        #expect(pair == ["\(other.ref) closed {\"notProgram\": \"\(other.ref)\"}"])
        let closedEvents = try await h.pool.query("""
            SELECT t.ref, e.data::text FROM events e JOIN tasks t ON t.id = e.task_id WHERE e.type = 'overlap.closed' ORDER BY t.ref
            """).map { "\(try $0.decode(String.self, at: 0)) \(try $0.decode(String.self, at: 1))" }
        #expect(closedEvents == [
            "\(program.ref) {\"other\": \"\(other.ref)\", \"notProgram\": \"\(other.ref)\"}",
            "\(other.ref) {\"other\": \"\(program.ref)\", \"notProgram\": \"\(other.ref)\"}",
        ])
        let dismissed = try await h.tasks.get(opened.ref, as: h.coordinator)
        #expect(dismissed.state == "dismissed")
        // The program is no longer held in deconfliction by it.
        #expect(try await h.tasks.get(program.ref, as: h.coordinator).openOverlaps == 0)
        #expect(try await h.tasks.get(other.ref, as: h.coordinator).openOverlaps == 0)
    }
}

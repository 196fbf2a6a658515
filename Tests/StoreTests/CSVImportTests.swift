import Coordination
import Foundation
import Postgres
import Store
import Testing
import TestSupport

@Suite struct CSVImportTests {
    static let fixture = TestDatabase.repositoryRoot.appendingPathComponent("Tests/Fixtures/activities.csv").path

    @Test func aDocumentedCSVImportsOnceAndSkipsBadRowsWithReasons() async throws {
        let h = try await Harness("csv")
        let first = try await ActivityImporter(pool: h.service).importCSV(file: Self.fixture)
        #expect(first.imported == 2)
        #expect(first.skipped == ["no title": 1, "end date before start date": 1, "a sector that is neither a 5-digit code nor a 3-digit category": 1])
        let second = try await ActivityImporter(pool: h.service).importCSV(file: Self.fixture)
        #expect(second.unchanged == 2)
        #expect(second.imported == 0)
        let row = try #require(try await h.pool.query(
            "SELECT reporting_agency, description, budget_amount::text, budget_currency FROM activities WHERE identifier = 'GAC-BDI-2027-01'").first)
        #expect(try row.decode(String.self, at: 0) == "gac-canada")
        #expect(try row.decode(String.self, at: 1) == #"Support to women mediators, with "listening clubs""#)
        #expect(try row.decode(String.self, at: 2) == "2500000.00")
        #expect(try row.decode(String.self, at: 3) == "CAD")
        // Two countries, two portfolio rows; the participant agency takes part in screening.
        let rows = try await h.pool.query("SELECT country FROM portfolio WHERE ref = 'EU-LBR-2026-07' ORDER BY 1").map { try $0.decode(String.self, at: 0) }
        #expect(rows == ["LBR", "SLE"])
        let agencies = try await h.pool.query("SELECT agencies FROM portfolio WHERE ref = 'GAC-BDI-2027-01'").first!.decode([String].self, at: 0)
        #expect(agencies == ["gac-canada", "unwomen"])
        // A task like the imported activity lands in deconfliction naming it.
        var similar = Harness.project(title: "Women mediators and peace in Gitega")
        similar.sectors = ["15220"]
        let (task, _, _) = try await h.tasks.submit(similar, workflow: "pbf-project", idempotencyKey: "csv", by: h.undp)
        #expect(try await h.tasks.getWithOverlaps(task.ref, as: h.coordinator).overlaps.contains { $0.other == "GAC-BDI-2027-01" })
    }

    @Test func aCSVWithUnknownOrMissingColumnsIsRefused() async throws {
        let h = try await Harness("csv_bad")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbc-csv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let unknown = directory.appendingPathComponent("unknown.csv")
        try "identifier,publisher,title,colour\nX,eu,T,blue\n".write(to: unknown, atomically: true, encoding: .utf8)
        let error = await #expect(throws: IATIFileError.self) { _ = try await ActivityImporter(pool: h.service).importCSV(file: unknown.path) }
        #expect(error?.description.contains("unknown column colour") == true)
        let missing = directory.appendingPathComponent("missing.csv")
        try "identifier,title\nX,T\n".write(to: missing, atomically: true, encoding: .utf8)
        let noPublisher = await #expect(throws: IATIFileError.self) { _ = try await ActivityImporter(pool: h.service).importCSV(file: missing.path) }
        #expect(noPublisher?.description.contains("the column publisher is required") == true)
    }
}

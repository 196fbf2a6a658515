import Coordination
import Foundation
import Logging
import Postgres
import Store
import Testing
import TestSupport

@Suite struct CSVImportTests {
    static let fixture = TestDatabase.repositoryRoot.appendingPathComponent("Tests/Fixtures/activities.csv").path

    @Test func aDocumentedCSVImportsOnceAndSkipsBadRowsWithReasons() async throws {
        let h = try await Harness("csv")
        let first = try await h.importer.importCSV(file: Self.fixture)
        #expect(first.imported == 2)
        #expect(
            first.skipped == [
                "no title": 1, "end date before start date": 1, "a sector that is neither a 5-digit code nor a 3-digit category": 1,
                "a country that is not an ISO 3166 code of Config/countries.yaml": 1,
                "a status that is not an IATI activity status code (1 to 6)": 1,
            ])
        let second = try await h.importer.importCSV(file: Self.fixture)
        #expect(second.unchanged == 2)
        #expect(second.imported == 0)
        let row = try #require(try await h.pool.query(
            "SELECT reporting_agency, description, budgets -> 0 ->> 'amount', budgets -> 0 ->> 'currency', jsonb_array_length(budgets) FROM activities WHERE identifier = 'GAC-BDI-2027-01'").first)
        #expect(try row.decode(String.self, at: 0) == "gac-canada")
        #expect(try row.decode(String.self, at: 1) == #"Support to women mediators, with "listening clubs""#)
        #expect(try row.decode(String.self, at: 2) == "2500000.00")
        #expect(try row.decode(String.self, at: 3) == "CAD")
        #expect(try row.decode(Int.self, at: 4) == 1)
        // Two countries, two portfolio rows; the participant agency takes part in screening.
        let rows = try await h.pool.query("SELECT country FROM portfolio WHERE ref = 'EU-LBR-2026-07' ORDER BY 1").map { try $0.decode(String.self, at: 0) }
        #expect(rows == ["LBR", "SLE"])
        let agencies = try await h.pool.query("SELECT agencies FROM portfolio WHERE ref = 'GAC-BDI-2027-01'").first!.decode([String].self, at: 0)
        #expect(agencies == ["gac-canada", "unwomen"])
        // A task like the imported activity lands in deconfliction naming it.
        let similar = Self.likeTheGitegaActivity()
        let (task, _, _) = try await h.tasks.submit(similar, workflow: "pbf-project", idempotencyKey: "csv", by: h.undp)
        #expect(try await h.tasks.detail(task.ref, as: h.coordinator).overlaps.contains { $0.other == "GAC-BDI-2027-01" })
    }

    @Test func aCSVWithUnknownOrMissingColumnsIsRefused() async throws {
        let h = try await Harness("csv_bad")
        let directory = Scratch.directory.appendingPathComponent("pbc-csv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let unknown = directory.appendingPathComponent("unknown.csv")
        try "identifier,publisher,title,colour\nX,eu,T,blue\n".write(to: unknown, atomically: true, encoding: .utf8)
        let error = await #expect(throws: ImportStopped.self) { _ = try await h.importer.importCSV(file: unknown.path) }
        #expect(error?.description.contains("unknown column colour") == true)
        let missing = directory.appendingPathComponent("missing.csv")
        try "identifier,title\nX,T\n".write(to: missing, atomically: true, encoding: .utf8)
        let noPublisher = await #expect(throws: ImportStopped.self) { _ = try await h.importer.importCSV(file: missing.path) }
        #expect(noPublisher?.description.contains("the column publisher is required") == true)
    }

    /// What spreadsheet programs write is read as they mean it: a byte-order
    /// mark, CR LF line ends, a quoted field over two lines, a blank line.
    /// A row whose fields do not match the header's columns (an unquoted
    /// comma) is skipped, not imported with every field after it shifted.
    /// A quote that is never closed, or text after a closing quote, stops the
    /// file at its line: a lenient reader would import what follows as one
    /// garbled activity. What came before stays imported and is reported.
    @Test func aMalformedCSVStopsAtItsLineAndKeepsWhatCameBefore() async throws {
        let h = try await Harness("csv_malformed")
        let directory = Scratch.directory.appendingPathComponent("pbc-csv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func write(_ name: String, _ bytes: [UInt8]) throws -> String {
            let url = directory.appendingPathComponent(name)
            try Data(bytes).write(to: url)
            return url.path
        }
        func importing(_ path: String) async throws -> ImportStopped? {
            await #expect(throws: ImportStopped.self) { _ = try await h.importer.importCSV(file: path) }
        }
        func titles() async throws -> [String] {
            try await h.pool.query("SELECT title FROM activities ORDER BY identifier").map { try $0.decode(String.self, at: 0) }
        }

        let shifted = try write(
            "shifted.csv",
            [0xEF, 0xBB, 0xBF]
                + Array(
                    "identifier,publisher,title,countries\r\nM-1,eu,\"Peace, justice\r\nand security\",BI\r\n\r\nM-2,eu,Peace, justice,BI\r\nM-3,eu,Mediation,BI\r\nM-4,eu,\"Dialogue\" clubs,BI\r\nM-5,eu,After,BI\r\n"
                        .utf8))
        let afterQuote = try #require(try await importing(shifted))
        #expect(afterQuote.description == "\(shifted):7: text after the closing quote of field 3 (a quote inside a quoted field is written twice)")
        #expect(afterQuote.before.imported == 2)
        #expect(afterQuote.before.skipped == ["not as many fields as the header has columns": 1])
        #expect(try await titles() == ["Peace, justice\r\nand security", "Mediation"])

        let open = try write("open.csv", Array("identifier,publisher,title\nO-1,eu,One\nO-2,eu,\"Two\nO-3,eu,Three\nO-4,eu,Four\n".utf8))
        let neverClosed = try #require(try await importing(open))
        #expect(neverClosed.description == "\(open):3: the quoted field that begins on this line never ends (a quote is missing)")
        #expect(neverClosed.before.imported == 1)
        #expect(try await titles() == ["Peace, justice\r\nand security", "Mediation", "One"])

        let latin1 = try write("latin1.csv", Array("identifier,publisher,title\nL-1,eu,Dialogue ".utf8) + [0xE9, 0x0A])
        #expect(try await importing(latin1)?.description == "\(latin1):2: not UTF-8 text")
        let twice = try write("twice.csv", Array("identifier,publisher,title,title\n".utf8))
        #expect(try await importing(twice)?.description == "\(twice): the column title appears twice")
        let empty = try write("empty.csv", [])
        #expect(try await importing(empty)?.description == "\(empty): empty; a CSV file begins with a header row")
        #expect(try await importing(directory.path)?.description == "\(directory.path): a directory, not a file")
        #expect(try await titles().count == 3)
    }

    /// A budget is an amount and an ISO 4217 code in capitals; it is kept to
    /// the cent. A row whose budget is not so is skipped with that reason,
    /// not left for the schema's constraint to refuse in its own words.
    @Test func aBudgetIsAnAmountToTheCentAndAnISOCode() async throws {
        let h = try await Harness("csv_budgets")
        let file = Scratch.directory.appendingPathComponent("pbc-csv-budgets-\(UUID().uuidString).csv")
        try """
            identifier,publisher,title,countries,budget,currency
            B-1,eu,Accented code,BI,1000.00,ÄBC
            B-2,eu,Half a cent,BI,1000.005,EUR
            B-3,eu,Lower case,BI,5,usd
            B-4,eu,Negative,BI,-5,EUR

            """.write(to: file, atomically: true, encoding: .utf8)
        let summary = try await h.importer.importCSV(file: file.path)
        #expect(summary.imported == 1)
        #expect(summary.skipped == ["a budget without an ISO 4217 currency": 2, "a budget that is not a positive decimal": 1])
        let stored = try await h.pool.query("SELECT identifier, budgets::text FROM activities").map {
            "\(try $0.decode(String.self, at: 0)) \(try $0.decode(String.self, at: 1))"
        }
        #expect(stored == [#"B-2 [{"amount": "1000.01", "currency": "EUR"}]"#])
    }

    /// Imports one activity in Gitega with this IATI status, from a file in `directory`.
    /// A program that overlaps the activity of `importGitegaActivity` as it is first imported.
    static func likeTheGitegaActivity() -> TaskRecord {
        var similar = Harness.project(title: "Women mediators and peace in Gitega")
        similar.sectors = ["15220"]
        return similar
    }

    static func importGitegaActivity(
        status: String, start: String = "2027-01-01", end: String = "2028-12-31", country: String = "BI", location: String = "Gitega",
        _ h: Harness, in directory: URL
    ) async throws -> ImportSummary {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("status-\(status)-\(start)-\(country).csv")
        try """
            identifier,publisher,title,description,countries,sectors,locations,start,end,status
            GAC-BDI-2027-01,gac-canada,"Women, peace and security in Gitega",Support to women mediators,\(country),15220,\(location),\(start),\(end),\(status)

            """.write(to: file, atomically: true, encoding: .utf8)
        return try await h.importer.importCSV(file: file.path)
    }

    /// An activity imported again as cancelled (IATI status 5) is no program
    /// to deconflict with: a task's open overlap with it is closed, with its
    /// event, a case opened on it is dismissed, and the task can go on to
    /// review. Imported again as going on, it overlaps again.
    @Test func anActivityCancelledOnReimportClosesTheOverlapsWithIt() async throws {
        let h = try await Harness("csv_cancelled")
        let directory = Scratch.directory.appendingPathComponent("pbc-csv-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        func importing(status: String) async throws -> ImportSummary { try await Self.importGitegaActivity(status: status, h, in: directory) }
        #expect(try await importing(status: "2").imported == 1)
        let similar = Self.likeTheGitegaActivity()
        let (task, _, overlaps) = try await h.tasks.submit(similar, workflow: "pbf-project", idempotencyKey: "csv", by: h.undp)
        #expect(task.state == "deconfliction")
        #expect(overlaps.map(\.other) == ["GAC-BDI-2027-01"])
        let deconfliction = try await h.tasks.create(
            Harness.caseDraft(for: try #require(overlaps.first).id, title: "Women mediators in Gitega: who does what"), workflow: "deconfliction-case", by: h.coordinator)

        #expect(try await importing(status: "5").updated == 1)
        // The case opened on it has nothing left to agree: pbc dismisses it.
        let dismissed = try await h.tasks.get(deconfliction.ref, as: h.coordinator)
        #expect(dismissed.state == "dismissed")
        #expect(try await h.tasks.history(deconfliction.ref, as: h.coordinator).last?.comment == "GAC-BDI-2027-01 was cancelled: nothing is left to agree")
        let closed = try await h.tasks.listOverlaps(task: task.ref, status: "closed", limit: 10, as: h.coordinator).items
        #expect(closed.map(\.resolutionData) == [["ended": "GAC-BDI-2027-01", "state": "cancelled"]])
        #expect(try await h.tasks.history(task.ref, as: h.coordinator).last?.type == "overlap.closed")
        let current = try await h.tasks.get(task.ref, as: h.coordinator)
        #expect(try await h.tasks.act(task.ref, action: "deconflicted", expectedVersion: current.version, by: h.coordinator).state == "technical_review")

        // The publisher takes the cancellation back: the pair is open again, and the task hears of it.
        #expect(try await importing(status: "2").updated == 1)
        #expect(try await h.tasks.get(task.ref, as: h.coordinator).openOverlaps == 1)
        #expect(try await h.tasks.history(task.ref, as: h.coordinator).last?.type == "overlap.detected")
        #expect(try await h.invariantViolations() == [])
    }

    /// An activity updated in place that no longer overlaps a task (its
    /// publisher moved it years later) has its open overlap closed, as an
    /// edit of the task closes one, and the case opened on it dismissed; an
    /// update that still overlaps keeps it open, with its new reasons.
    /// Before, the overlap stayed open for ever, with the reasons it had.
    /// The task's own screening, finding it again after an edit, opens it
    /// again, and so does an import that moves the activity back.
    @Test func anActivityMovedOnReimportClosesTheOverlapsItNoLongerHas() async throws {
        let h = try await Harness("csv_moved")
        let directory = Scratch.directory.appendingPathComponent("pbc-csv-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(try await Self.importGitegaActivity(status: "2", h, in: directory).imported == 1)
        let similar = Self.likeTheGitegaActivity()
        let (task, _, overlaps) = try await h.tasks.submit(similar, workflow: "pbf-project", idempotencyKey: "csv", by: h.undp)
        #expect(overlaps.map(\.other) == ["GAC-BDI-2027-01"])
        let deconfliction = try await h.tasks.create(
            Harness.caseDraft(for: try #require(overlaps.first).id, title: "Women mediators in Gitega: who does what"), workflow: "deconfliction-case", by: h.coordinator)
        func open() async throws -> [String] {
            try await h.tasks.listOverlaps(task: task.ref, status: "open", limit: 10, as: h.coordinator).items.map(\.other.ref)
        }

        #expect(try await Self.importGitegaActivity(status: "2", start: "2027-03-01", h, in: directory).updated == 1)
        #expect(try await open() == ["GAC-BDI-2027-01"])
        // Still an overlap, which says why as the activity now stands.
        let rescored = try await h.tasks.listOverlaps(task: task.ref, status: "open", limit: 10, as: h.coordinator).items.first?.reasons
        #expect(rescored?.contains("period 0.89: periods share 488 days (89% of the shorter)") == true, "\(rescored ?? [])")
        #expect(try await Self.importGitegaActivity(status: "2", start: "2032-01-01", end: "2033-12-31", h, in: directory).updated == 1)
        #expect(try await open() == [])
        let closed = try await h.tasks.listOverlaps(task: task.ref, status: "closed", limit: 10, as: h.coordinator).items
        #expect(closed.map(\.resolutionData) == [["edited": "GAC-BDI-2027-01"]])
        #expect(try await h.tasks.history(task.ref, as: h.coordinator).last?.type == "overlap.closed")
        #expect(try await h.tasks.get(deconfliction.ref, as: h.coordinator).state == "dismissed")
        #expect(try await h.tasks.history(deconfliction.ref, as: h.coordinator).last?.comment
            == "GAC-BDI-2027-01 was updated and no longer overlaps: nothing is left to agree")
        var current = try await h.tasks.get(task.ref, as: h.coordinator)
        current = try await h.tasks.act(task.ref, action: "deconflicted", expectedVersion: current.version, by: h.coordinator)
        #expect(current.state == "technical_review")

        var later = TaskChanges()
        later.period = Period(start: CalendarDate(iso: "2032-01-01")!, end: CalendarDate(iso: "2033-06-30")!)
        _ = try await h.tasks.update(task.ref, expectedVersion: current.version, changes: later, by: h.undp)
        #expect(try await open() == ["GAC-BDI-2027-01"])

        // The publisher moves the activity away and back: the import closes
        // the pair and opens it again, and tells the task each time.
        #expect(try await Self.importGitegaActivity(status: "2", start: "2027-03-01", h, in: directory).updated == 1)
        #expect(try await open() == [])
        #expect(try await Self.importGitegaActivity(status: "2", start: "2032-01-01", end: "2033-12-31", h, in: directory).updated == 1)
        #expect(try await open() == ["GAC-BDI-2027-01"])
        struct Detected: Decodable, Equatable {
            let other: String
            let score: Double
        }
        let told = try #require(try await h.tasks.history(task.ref, as: h.coordinator).last)
        #expect(told.type == "overlap.detected")
        let reopened = try #require(try await h.tasks.listOverlaps(task: task.ref, status: "open", limit: 10, as: h.coordinator).items.first)
        #expect(try told.data.decode(Detected.self) == Detected(other: "GAC-BDI-2027-01", score: reopened.score))
        #expect(try await h.invariantViolations() == [])
    }

    /// An update that finds a pair still overlapping rewrites its score and
    /// reasons; a coordinator's resolution of that pair, committed while the
    /// import waited for the row, stays: the import does not reopen it (had
    /// it tried, the database would have refused the row, and the activity's
    /// update would have been skipped).
    @Test func anUpdateWaitingForAPairBeingResolvedLeavesTheResolution() async throws {
        let h = try await Harness("csv_update_waits_for_resolution")
        let directory = Scratch.directory.appendingPathComponent("pbc-csv-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try await Self.importGitegaActivity(status: "2", h, in: directory)
        let similar = Self.likeTheGitegaActivity()
        let task = try await h.tasks.submit(similar, workflow: "pbf-project", idempotencyKey: "csv", by: h.undp).task
        try await h.pool.withConnection { resolver in
            // A resolution as `overlap.resolve` writes it, not yet committed.
            try await resolver.execute(unsafeSQL: """
                BEGIN;
                UPDATE task_overlaps o SET status = 'resolved', resolution = 'distinct', resolved_at = now()
                FROM tasks t WHERE t.id = o.task_id AND t.ref = '\(task.ref)' AND o.other_ref = 'GAC-BDI-2027-01'
                """)
            async let updated = Self.importGitegaActivity(status: "2", start: "2027-03-01", h, in: directory)
            #expect(try await transactionsWaitingForALock(h) > 0)
            try await resolver.execute(unsafeSQL: "COMMIT")
            let summary = try await updated
            #expect(summary.updated == 1, "\(summary)")
        }
        let pairs = try await h.tasks.listOverlaps(task: task.ref, status: nil, limit: 10, as: h.coordinator).items
        #expect(pairs.map(\.status) == ["resolved"])
        #expect(pairs.map(\.resolution) == ["distinct"])
    }

    /// A cancellation that must wait for one of the overlap rows it closes
    /// (a resolution or screening holds it) waits holding no events lock:
    /// the holder of the row writes its events at its end, under that lock,
    /// and the two would deadlock. The import counts its retries in the log.
    @Test func aCancellationWaitingForAnOverlapRowDoesNotDeadlockWithItsHolder() async throws {
        let retries = Retries()
        var logger = Logger(label: "pbc.postgres") { _ in retries }
        logger.logLevel = .debug
        let h = try await Harness("csv_cancel_waits", logger: logger)
        let directory = Scratch.directory.appendingPathComponent("pbc-csv-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        func importing(status: String) async throws -> ImportSummary { try await Self.importGitegaActivity(status: status, h, in: directory) }
        _ = try await importing(status: "2")
        var similar = Self.likeTheGitegaActivity()
        let first = try await h.tasks.submit(similar, workflow: "pbf-project", idempotencyKey: "first", by: h.undp).task
        similar.leadAgency = "unicef"
        similar.participants = []
        let second = try await h.tasks.submit(similar, workflow: "pbf-project", idempotencyKey: "second", by: h.unicef).task
        try await h.pool.withConnection { holder in
            // The second task's overlap with the activity, the later of the two rows the cancellation closes.
            try await holder.execute(unsafeSQL: """
                BEGIN;
                SELECT 1 FROM task_overlaps o JOIN tasks t ON t.id = o.task_id
                WHERE t.ref = '\(second.ref)' AND o.other_ref = 'GAC-BDI-2027-01' FOR UPDATE OF o
                """)
            async let cancelled = importing(status: "5")
            #expect(try await transactionsWaitingForALock(h) > 0)
            // What the holder does last: its events, under the events lock.
            try await holder.execute(unsafeSQL: "SELECT pg_advisory_xact_lock(7411, 1); COMMIT")
            #expect(try await cancelled.updated == 1)
        }
        #expect(retries.count == 0, "the cancellation deadlocked and ran again")
        for task in [first, second] {
            let closed = try await h.tasks.listOverlaps(task: task.ref, status: "closed", limit: 10, as: h.coordinator).items
            #expect(closed.map(\.other.ref).contains("GAC-BDI-2027-01"))
        }
    }
}

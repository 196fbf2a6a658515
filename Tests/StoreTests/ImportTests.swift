import Coordination
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// The real IATI files in ../shared/data/iati beside the repository.
let iatiDirectory = TestDatabase.repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/data/iati")
let iatiFixturesPresent = FileManager.default.fileExists(atPath: iatiDirectory.appendingPathComponent("ebola-response-liberia-sierra-leone.xml").path)

@Suite(.enabled(if: iatiFixturesPresent, "../shared/data/iati is absent: the IATI import tests need its real files"))
struct ImportTests {
    static let ebola = iatiDirectory.appendingPathComponent("ebola-response-liberia-sierra-leone.xml").path

    /// The portfolio and activities as text, to compare before and after.
    func snapshot(_ h: Harness) async throws -> [String] {
        try await h.pool.query("""
            SELECT a.identifier || '|' || a.reporting_agency || '|' || a.content_hash || '|' || a.updated_at::text || '|' ||
                   coalesce((SELECT string_agg(p.country || ':' || p.period::text || ':' || p.active::text, ',' ORDER BY p.country)
                             FROM portfolio p WHERE p.activity_id = a.id), '')
            FROM activities a ORDER BY 1
            """).map { try $0.decode(String.self, at: 0) }
    }

    @Test func theEbolaFileImportsOnceAndAgainChangesNothing() async throws {
        let h = try await Harness("iati_ebola")
        let first = try await h.importer.importIATI(files: [Self.ebola])
        // Every 2.0x activity is imported or skipped with a stated reason.
        #expect(first.total == 100)
        #expect(first.imported >= 90, "\(first)")
        #expect(first.updated + first.unchanged == 0)
        for reason in first.skipped.keys { #expect(!reason.isEmpty) }
        let before = try await snapshot(h)
        #expect(before.count == first.imported)
        let second = try await h.importer.importIATI(files: [Self.ebola])
        #expect(second.imported == 0)
        #expect(second.updated == 0)
        #expect(second.unchanged == first.imported)
        #expect(second.skipped == first.skipped)
        #expect(try await snapshot(h) == before)
        // Liberia and Sierra Leone are in the portfolio; unknown publishers became external agencies.
        let countries = try await h.pool.query("SELECT country, count(*) FROM portfolio WHERE kind = 'activity' GROUP BY 1 ORDER BY 2 DESC")
        let byCountry = Dictionary(uniqueKeysWithValues: try countries.map { (try $0.decode(String.self, at: 0), try $0.decode(Int.self, at: 1)) })
        #expect((byCountry["LBR"] ?? 0) >= 20)
        #expect((byCountry["SLE"] ?? 0) >= 15)
        let external = try await h.pool.query("SELECT count(*) FROM agencies WHERE kind = 'external'").first!.decode(Int.self, at: 0)
        #expect(external > 0)
        // The summary names, by reason, every activity kept that no screening can meet: exactly those with no portfolio row.
        let outside = try await h.pool.query("SELECT count(*) FROM activities a WHERE NOT EXISTS (SELECT 1 FROM portfolio p WHERE p.activity_id = a.id)")
        #expect(first.unscreened == ["no country of Config/countries.yaml (regions only, or a code it lacks)": 12])
        #expect(try outside.first!.decode(Int.self, at: 0) == 12)
        #expect(second.unscreened == first.unscreened)
        // Sixteen programs still running in Liberia, Sierra Leone, Guinea and elsewhere state no end: each is
        // screened up to the latest date it reports, and keeps the period it states.
        #expect(first.reportedPeriods == ["no end date": 16])
        #expect(second.reportedPeriods == first.reportedPeriods)
        let running = try await h.pool.query("""
            SELECT p.ref, p.country, lower(p.period)::text, (upper(p.period) - 1)::text FROM portfolio p JOIN activities a ON a.id = p.activity_id
            WHERE a.period_end IS NULL ORDER BY 1
            """).map { row in try (0..<4).map { try row.decode(String.self, at: $0) }.joined(separator: " ") }
        #expect(running.count == 16)
        // GlobalGiving's Kidsave orphan relief: in implementation when its publisher last updated it, on 2019-09-28.
        #expect(running.contains("US-EIN-300108263-GGProj:19252 SLE 2014-12-20 2019-09-28"), "\(running)")
        // AFD's Guinean programme: its last transaction, on 2020-02-24, is later than the update.
        #expect(running.contains("FR-3-CGN120201 GIN 2015-05-27 2020-02-24"), "\(running)")
        // USAID states countries and sectors on each transaction, not on the activity: its Ebola response
        // in Mali is screened there, by its DAC code (the three others name only 998, no country).
        let mali = try await h.pool.query("SELECT country, sectors FROM portfolio WHERE ref = 'US-GOV-1-AID-OFDA-G-15-00045'")
        #expect(try mali.map { "\(try $0.decode(String.self, at: 0)) \(try $0.decode([String].self, at: 1))" } == [#"MLI ["72010", "99:7001"]"#])
    }

    @Test func aSubmissionThatDuplicatesAnImportedActivityLandsInDeconflictionNamingIt() async throws {
        let h = try await Harness("iati_duplicate")
        _ = try await h.importer.importIATI(files: [Self.ebola])
        // An imported Liberian health activity with sectors and a period.
        let row = try #require(try await h.pool.query("""
            SELECT ref, title, sectors, lower(period), upper(period) - 1 FROM portfolio
            WHERE kind = 'activity' AND country = 'LBR' AND cardinality(sectors) > 0 AND upper(period) - lower(period) > 60
            ORDER BY ref LIMIT 1
            """).first)
        let identifier = try row.decode(String.self, at: 0)
        var duplicate = Harness.project(title: try row.decode(String.self, at: 1))
        duplicate.country = "LBR"
        duplicate.locations = []
        duplicate.sectors = try row.decode([String].self, at: 2)
        duplicate.period = Period(
            start: CalendarDate(iso: try row.decode(PostgresDate.self, at: 3).iso)!, end: CalendarDate(iso: try row.decode(PostgresDate.self, at: 4).iso)!)
        duplicate.participants = []
        let (task, _, _) = try await h.tasks.submit(duplicate, workflow: "pbf-project", idempotencyKey: "dup", by: h.undp)
        #expect(task.state == "deconfliction")
        let overlaps = try await h.tasks.detail(task.ref, as: h.coordinator).overlaps
        #expect(overlaps.contains { $0.other == identifier }, "\(overlaps.map(\.other))")
        #expect(overlaps.allSatisfy { !$0.reasons.isEmpty })
        // An imported activity is not pbc's to end or move: resolutions that would are refused, naming why.
        let withActivity = try #require(overlaps.first { $0.other == identifier })
        let refusals: [(Resolution, FieldError)] = [
            (.merge(survivor: task.ref), FieldError("survivor", "both sides of a merge must be tasks; \(identifier) is an imported activity")),
            (.withdraw(task: identifier), FieldError("task", "must be the task \(task.ref)")),
            (.sequence(task: identifier, period: duplicate.period!), FieldError("task", "must be the task \(task.ref)")),
        ]
        for (resolution, expected) in refusals {
            let refused = await #expect(throws: StoreError.self) {
                _ = try await h.tasks.resolveOverlap(withActivity.id, as: resolution, comment: nil, by: h.coordinator)
            }
            #expect(refused?.fieldErrors == [expected], "\(resolution)")
        }
        #expect(try await h.tasks.detail(task.ref, as: h.coordinator).overlaps.first { $0.id == withActivity.id }?.status == "open")
        // One that shares nothing with the portfolio goes to review.
        var unrelated = Harness.project(title: "Judicial reform in Bujumbura")
        unrelated.sectors = ["15130"]
        unrelated.locations = ["Bujumbura"]
        let (other, _, _) = try await h.tasks.submit(unrelated, workflow: "pbf-project", idempotencyKey: "other", by: h.undp)
        #expect(other.state == "technical_review")
    }

    @Test func theScanFindsTheOverlappingEbolaProgramsInLiberiaAndSierraLeoneAndExplainsEach() async throws {
        let h = try await Harness("iati_scan")
        _ = try await h.importer.importIATI(files: [Self.ebola])
        let scan = PortfolioScan(pool: h.service, configuration: OverlapConfiguration())
        var reported: [(done: Int, total: Int)] = []
        var clusters: [(heading: PortfolioScan.Cluster, pairs: [PortfolioScan.Pair])] = []
        let totals = try await scan.scan { done, total in
            reported.append((done, total))
        } cluster: {
            clusters.append(($0, []))
        } overlap: {
            clusters[clusters.count - 1].pairs.append($0)
        }
        // Progress counts every active entry once, up to the total.
        let active = try await h.pool.query("SELECT count(*) FROM portfolio WHERE active").first!.decode(Int.self, at: 0)
        #expect(reported.map(\.done) == Array(0...active))
        #expect(reported.allSatisfy { $0.total == active })
        let countries = Set(clusters.map(\.heading.country))
        #expect(countries.isSuperset(of: ["LBR", "SLE"]), "\(countries)")
        let liberia = try #require(clusters.first { $0.heading.country == "LBR" }?.heading)
        #expect(liberia.members.count >= 5)
        // Each member with its agency's name, for people: GlobalGiving, not only us-ein-300108263.
        #expect(liberia.members.contains { $0.agency == "us-ein-300108263" && $0.agencyName == "GlobalGiving" })
        #expect(liberia.members.allSatisfy { $0.title.localizedCaseInsensitiveContains("ebola") || $0.title.localizedCaseInsensitiveContains("liberia") })
        for (heading, pairs) in clusters {
            // Each cluster's overlaps follow it, as many as it said, strongest first, each between two of its members.
            #expect(pairs.count == heading.overlaps)
            #expect(pairs.map(\.score) == pairs.map(\.score).sorted(by: >))
            #expect(heading.members.map(\.ref) == heading.members.map(\.ref).sorted())
            for pair in pairs {
                #expect(pair.score >= 0.5 && pair.score <= 1)
                #expect(pair.reasons.count == 5)
                #expect(pair.reasons.first?.hasPrefix("sector ") == true)
                #expect(Set(heading.members.map(\.ref)).isSuperset(of: [pair.first, pair.second]))
            }
        }
        // Largest first; the whole adds up; no pair is reported twice.
        #expect(clusters.map(\.heading.members.count) == clusters.map(\.heading.members.count).sorted(by: >))
        #expect(clusters.count > 5)
        let pairs = clusters.flatMap { cluster in cluster.pairs.map { "\(cluster.heading.country) \($0.first) \($0.second)" } }
        #expect(totals == PortfolioScan.Totals(clusters: clusters.count, overlaps: pairs.count, entries: clusters.map(\.heading.members.count).reduce(0, +)))
        // An activity in two countries is screened in each: its pairs may be reported once for each.
        #expect(Set(pairs).count == pairs.count)
        // The parts of one programme (IATI related activities: parent, child, sibling) are no overlap of each other:
        // not FCDO's three components of its Burundi programme, nor UNDP's Guinean project and its own output.
        // Two programmes of one publisher still are: UNDP's two projects in Guinea.
        let found = Set(clusters.flatMap { $0.pairs.map { [$0.first, $0.second].sorted().joined(separator: " ~ ") } })
        for part in ["GB-GOV-1-300832-102 ~ GB-GOV-1-300832-111", "GB-GOV-1-300832-102 ~ GB-GOV-1-300832-112",
                     "GB-GOV-1-300832-111 ~ GB-GOV-1-300832-112", "XM-DAC-41114-OUTPUT-00100692 ~ XM-DAC-41114-PROJECT-00094465"] {
            #expect(!found.contains(part), "\(part)")
        }
        #expect(found.contains("XM-DAC-41114-PROJECT-00094465 ~ XM-DAC-41114-PROJECT-00105838"), "\(found.sorted())")
        var sierraLeone: [PortfolioScan.Cluster] = []
        let onlySierraLeone = try await scan.scan(country: "sl", cluster: { sierraLeone.append($0) })
        #expect(onlySierraLeone.clusters > 0 && onlySierraLeone.clusters == sierraLeone.count)
        #expect(sierraLeone.allSatisfy { $0.country == "SLE" })
        let unknown = await #expect(throws: StoreError.self) { _ = try await scan.scan(country: "XX") }
        #expect(unknown?.fieldErrors.map(\.reason) == ["unknown country XX"])
    }

    @Test func whoDoesWhatWhereCountsAndSumsPerCurrency() async throws {
        let h = try await Harness("iati_report")
        _ = try await h.importer.importIATI(files: [Self.ebola])
        var task = Harness.project()
        task.sectors = ["15220", "15180"]  // 1,500,000 USD split over two sectors
        _ = try await h.tasks.submit(task, workflow: "pbf-project", idempotencyKey: "r", by: h.undp)
        let all = try await h.tasks.whoWhatWhere(ReportFilter(), as: h.coordinator)
        #expect(Set(all.map(\.country)).isSuperset(of: ["LBR", "SLE", "BDI"]))
        let burundi = all.filter { $0.country == "BDI" && $0.agency == "undp" }
        #expect(burundi.map(\.sector).sorted() == ["15180", "15220"])
        #expect(burundi.allSatisfy { $0.entries == 1 && $0.budgets == ["USD": "750000.00"] })
        let liberia = try await h.tasks.whoWhatWhere(ReportFilter(country: "LR"), as: h.coordinator)
        #expect(!liberia.isEmpty)
        #expect(liberia.allSatisfy { $0.country == "LBR" })
        #expect(liberia.reduce(0) { $0 + $1.entries } >= 30)
        // Each row names its agency: GlobalGiving, not only the id made from its IATI identifier.
        #expect(Set(liberia.filter { $0.agency == "us-ein-300108263" }.map(\.agencyName)) == ["GlobalGiving"])
        #expect(burundi.allSatisfy { $0.agencyName == "United Nations Development Programme" })
        // After the task's end nothing remains: the programs that state no end count up to the latest date
        // they report, as screening takes them, not for ever. GlobalGiving's in Sierra Leone were in
        // implementation when last updated, on 2019-09-28: in a report from September 2019, not from October.
        let future = try await h.tasks.whoWhatWhere(ReportFilter(from: CalendarDate(iso: "2030-01-01")), as: h.coordinator)
        #expect(future.isEmpty, "\(future)")
        let september = try await h.tasks.whoWhatWhere(ReportFilter(country: "SL", from: CalendarDate(iso: "2019-09-01")), as: h.coordinator)
        #expect(september.contains { $0.agency == "us-ein-300108263" }, "\(september)")
        let october = try await h.tasks.whoWhatWhere(ReportFilter(country: "SL", from: CalendarDate(iso: "2019-10-01")), as: h.coordinator)
        #expect(!october.contains { $0.agency == "us-ein-300108263" }, "\(october)")
        let reviewing = try await h.tasks.whoWhatWhere(ReportFilter(status: "technical_review"), as: h.coordinator)
        #expect(!reviewing.isEmpty && reviewing.allSatisfy { $0.country == "BDI" })
        let implementing = try await h.tasks.whoWhatWhere(ReportFilter(status: "2"), as: h.coordinator)
        #expect(!implementing.isEmpty && !implementing.contains { $0.agency == "undp" && $0.sector == "15180" })
        // A misspelt status is refused, not answered with an empty report that reads as "nobody is there".
        let misspelt = await #expect(throws: StoreError.self) { _ = try await h.tasks.whoWhatWhere(ReportFilter(status: "tecnical_review"), as: h.coordinator) }
        #expect(misspelt?.fieldErrors.map(\.field) == ["status"])
        // A liaison's report leaves out other agencies' tasks (imported public activities stay).
        let wfp = try await h.tasks.whoWhatWhere(ReportFilter(country: "BDI"), as: h.wfp)
        #expect(!wfp.contains { $0.agency == "undp" && $0.sector == "15220" })
    }

    @Test func everyShippedFileParsesAndBadFilesAreRefusedClearly() async throws {
        let h = try await Harness("iati_files")
        let files = ["activity-standard-example-annotated.xml", "many-elements.xml"].map { iatiDirectory.appendingPathComponent($0).path }
        let summary = try await h.importer.importIATI(files: files)
        #expect(summary.total == 3)
        // many-elements.xml reports one identifier twice: the second is an update, not a second activity.
        #expect(summary.imported == 2, "\(summary)")
        #expect(summary.updated + summary.unchanged == 1)

        let directory = Scratch.directory.appendingPathComponent("pbc-iati-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let broken = directory.appendingPathComponent("broken.xml")
        try "<iati-activities version=\"2.03\">\n<iati-activity>\n<iati-identifier>X-1</iati-identifier>\n<title><narrative>T</title>\n</iati-activities>\n"
            .write(to: broken, atomically: true, encoding: .utf8)
        let notWellFormed = await #expect(throws: ImportStopped.self) { _ = try await h.importer.importIATI(files: [broken.path]) }
        #expect(notWellFormed?.description.hasPrefix("\(broken.path):4:") == true, "\(String(describing: notWellFormed))")
        #expect(notWellFormed?.description.contains("not well-formed XML (an end tag that does not match its start tag)") == true)
        let old = directory.appendingPathComponent("old.xml")
        try "<iati-activities version=\"1.05\"><iati-activity><iati-identifier>X-1</iati-identifier></iati-activity></iati-activities>"
            .write(to: old, atomically: true, encoding: .utf8)
        let refused = await #expect(throws: ImportStopped.self) { _ = try await h.importer.importIATI(files: [old.path]) }
        #expect(refused?.description.contains("IATI version 1.05 is not supported") == true)
        let missing = await #expect(throws: ImportStopped.self) { _ = try await h.importer.importIATI(files: ["/nonexistent.xml"]) }
        #expect(missing?.description == "/nonexistent.xml: cannot read the file")
        let folder = await #expect(throws: ImportStopped.self) { _ = try await h.importer.importIATI(files: [directory.path]) }
        #expect(folder?.description == "\(directory.path): a directory, not a file")
        #expect(try await h.pool.query("SELECT count(*) FROM activities WHERE identifier = 'X-1'").first!.decode(Int.self, at: 0) == 0)
    }
}

import Coordination
import Foundation
@testable import Store
import Testing
import TestSupport

/// Activities that state no end (or no start) are screened over the period
/// their own reported dates show (docs/import.md, "Activities without an end date").
@Suite struct ReportedPeriodTests {
    /// One activity of an IATI 2.03 file, with what these tests vary.
    static func activity(
        _ identifier: String, title: String, country: String, status: String, lastUpdated: String, dates: [String: String] = [:],
        transactions: [String] = [], budget: (start: String, end: String)? = nil
    ) -> String {
        let activityDates = dates.sorted { $0.key < $1.key }.map { #"<activity-date type="\#($0.key)" iso-date="\#($0.value)"/>"# }.joined()
        let budgetElement = budget.map {
            #"<budget type="1"><period-start iso-date="\#($0.start)"/><period-end iso-date="\#($0.end)"/><value currency="USD">1000</value></budget>"#
        } ?? ""
        let transactionElements = transactions.map {
            #"<transaction><transaction-type code="3"/><transaction-date iso-date="\#($0)"/><value>100</value></transaction>"#
        }.joined()
        return """
            <iati-activity last-updated-datetime="\(lastUpdated)T10:00:00Z">
            <iati-identifier>\(identifier)</iati-identifier>
            <reporting-org ref="XM-DAC-41114"><narrative>UNDP</narrative></reporting-org>
            <title><narrative>\(title)</narrative></title>
            <activity-status code="\(status)"/>\(activityDates)
            <recipient-country code="\(country)"/>
            <sector code="15220" vocabulary="1"/>
            <location><name><narrative>Gitega</narrative></name></location>\(budgetElement)\(transactionElements)
            </iati-activity>
            """
    }

    @Test func anActivityThatStatesNoEndIsScreenedUpToTheLatestDateItReports() async throws {
        let h = try await Harness("reported_period")
        let title = "Youth and women in local peace committees"
        let activities = [
            // Closed: its last transaction is the latest date it ran; the later update says nothing of that.
            Self.activity(
                "XM-A-CLOSED", title: title, country: "BI", status: "4", lastUpdated: "2026-10-01", dates: ["2": "2024-01-01"],
                transactions: ["2024-02-01", "2024-11-30"]),
            // Still in implementation when its record was last updated.
            Self.activity("XM-B-RUNNING", title: title, country: "BI", status: "2", lastUpdated: "2026-11-01", dates: ["2": "2025-01-01"]),
            // No start: from its budget's period start.
            Self.activity(
                "XM-C-NO-START", title: "Community policing", country: "LR", status: "2", lastUpdated: "2026-01-01", dates: ["3": "2028-12-31"],
                budget: ("2026-07-01", "2027-06-30")),
            // No dates at all: over its transactions.
            Self.activity(
                "XM-D-NO-DATES", title: "Community radio", country: "LR", status: "3", lastUpdated: "2027-01-01",
                transactions: ["2026-09-30", "2026-01-15"]),
            // In the pipeline, nothing reported after its planned start: left out, as before.
            Self.activity("XM-E-PIPELINE", title: "Land dialogue", country: "LR", status: "1", lastUpdated: "2026-03-01", dates: ["1": "2026-01-01"]),
            // Updated before it started: no span.
            Self.activity("XM-F-EARLY", title: "Land registry", country: "LR", status: "2", lastUpdated: "2026-02-01", dates: ["2": "2026-05-01"]),
            // A transaction and an update dated in 2099 show nothing of when it ran: up to its last transaction before.
            Self.activity(
                "XM-G-FUTURE", title: "Land courts", country: "LR", status: "2", lastUpdated: "2099-01-01", dates: ["2": "2025-06-01"],
                transactions: ["2099-06-30", "2025-09-30"]),
        ]
        let directory = Scratch.directory.appendingPathComponent("pbc-reported-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("activities.xml")
        try #"<iati-activities version="2.03">"#.appending(activities.joined(separator: "\n")).appending("</iati-activities>\n")
            .write(to: file, atomically: true, encoding: .utf8)

        let summary = try await h.importer.importIATI(files: [file.path])
        #expect(summary.imported == 7)
        #expect(summary.reportedPeriods == ["no end date": 3, "no start date": 1, "no start or end date": 1])
        #expect(summary.unscreened == ["no end date, and no other date reported that shows when it ran": 2])
        let periods = try await h.pool.query("""
            SELECT a.identifier, coalesce((SELECT lower(p.period)::text || ' ' || (upper(p.period) - 1)::text FROM portfolio p WHERE p.activity_id = a.id), 'none'),
                   coalesce(a.period_start::text, '-') || ' ' || coalesce(a.period_end::text, '-')
            FROM activities a ORDER BY 1
            """).map { try "\($0.decode(String.self, at: 0)): \($0.decode(String.self, at: 1)) (stated \($0.decode(String.self, at: 2)))" }
        #expect(periods == [
            "XM-A-CLOSED: 2024-01-01 2024-11-30 (stated 2024-01-01 -)",
            "XM-B-RUNNING: 2025-01-01 2026-11-01 (stated 2025-01-01 -)",
            "XM-C-NO-START: 2026-07-01 2028-12-31 (stated - 2028-12-31)",
            "XM-D-NO-DATES: 2026-01-15 2026-09-30 (stated - -)",
            "XM-E-PIPELINE: none (stated 2026-01-01 -)",
            "XM-F-EARLY: none (stated 2026-05-01 -)",
            "XM-G-FUTURE: 2025-06-01 2025-09-30 (stated 2025-06-01 -)",
        ])
        // Read back as a coordinator deciding an overlap reads it: the period stated, and the one screening uses.
        let running = try #require(try await h.tasks.activities(identifier: "XM-B-RUNNING", as: h.undp).first)
        #expect(running.publisher == "undp" && running.start == "2025-01-01" && running.end == nil)
        #expect(running.screened.map { "\($0.country) \($0.start) \($0.end) \($0.active)" } == ["BDI 2025-01-01 2026-11-01 true"])
        #expect(try await h.tasks.activities(identifier: "XM-E-PIPELINE", as: h.undp).first?.screened == [])
        #expect(try await h.tasks.activities(identifier: "XM-NONE", as: h.undp).isEmpty)
        // The same file again changes nothing.
        let again = try await h.importer.importIATI(files: [file.path])
        #expect(again.unchanged == 7)
        #expect(again.reportedPeriods == summary.reportedPeriods)

        // A program planned where the running one works, from 2027 (61 days after its last update, within
        // the tolerance of 90), lands in deconfliction naming it; the closed one, whose last transaction was
        // over two years before, is no overlap.
        let (task, _, _) = try await h.tasks.submit(Harness.project(title: title), workflow: "pbf-project", idempotencyKey: "reported", by: h.undp)
        #expect(task.state == "deconfliction")
        let overlaps = try await h.tasks.detail(task.ref, as: h.coordinator).overlaps
        #expect(overlaps.map(\.other) == ["XM-B-RUNNING"])
    }

    /// A date after the day of the import shows nothing of when the activity
    /// ran: it is left out, so the period screened does not move from one
    /// day's import to the next's, and the same file is not an update each day.
    @Test func aDateAfterTheImportIsLeftOutAndThePeriodHoldsFromDayToDay() throws {
        var activity = IATIActivity(line: 1)
        activity.version = "2.03"
        activity.identifier = "XM-LATER"
        activity.reportingOrg = .init(ref: "XM-DAC-41114")
        activity.titles = [.init(text: "Land courts")]
        activity.status = "2"
        activity.dates = ["2": "2025-06-01"]
        activity.lastUpdated = "2099-01-01T10:00:00Z"
        activity.transactionDates = [CalendarDate(iso: "2026-11-30")!, CalendarDate(iso: "2026-12-15")!]
        func screened(on day: String) throws -> String? {
            let mapped = try ActivityImporter.map(activity, today: CalendarDate(iso: day)!).get()
            return mapped.reportedPeriod.map { "\($0.start) \($0.end)" }
        }
        #expect(try screened(on: "2026-11-30") == "2025-06-01 2026-11-30")
        #expect(try screened(on: "2026-12-01") == "2025-06-01 2026-11-30")
        // The day a dated transaction is reached, it shows the program ran until then.
        #expect(try screened(on: "2026-12-15") == "2025-06-01 2026-12-15")
    }
}

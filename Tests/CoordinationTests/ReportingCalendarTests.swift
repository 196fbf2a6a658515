import Coordination
import Foundation
import Testing

@Suite struct ReportingCalendarTests {
    static func date(_ text: String) -> CalendarDate { CalendarDate(iso: text)! }

    static func shipped() throws -> ReportingCalendar {
        let url = Fixtures.root.appendingPathComponent("Config/reporting.yaml")
        return try ReportingCalendar.load(yaml: String(contentsOf: url, encoding: .utf8), file: "reporting.yaml")
    }

    /// Every yearly report that falls after the first transfer and by the
    /// end, and the final one after the end, in date order.
    @Test func theShippedCalendarGivesThePBFReports() throws {
        let calendar = try Self.shipped()
        let due = calendar.reports(funded: Self.date("2027-01-15"), end: Self.date("2028-06-30"))
        #expect(due.map { "\($0.type) \($0.date)" } == [
            "semi-annual 2027-06-15", "annual 2027-11-15", "semi-annual 2028-06-15", "final 2028-09-28",
        ])
        // Funded after mid-June: that year's semi-annual report is not owed.
        #expect(calendar.reports(funded: Self.date("2027-07-01"), end: Self.date("2027-12-31")).map { "\($0.type) \($0.date)" } == [
            "annual 2027-11-15", "final 2028-03-30",
        ])
        // A report due on the day of the first transfer is not owed; one due on the last day is.
        #expect(calendar.reports(funded: Self.date("2027-06-15"), end: Self.date("2027-11-15")).map { "\($0.type) \($0.date)" } == [
            "annual 2027-11-15", "final 2028-02-13",
        ])
    }

    @Test func aDayThatSomeYearsLackFallsInThoseThatHaveIt() throws {
        let calendar = try ReportingCalendar.load(yaml: "reports:\n  - type: annual\n    due: \"02-29\"\n", file: "r.yaml")
        #expect(calendar.reports(funded: Self.date("2027-01-01"), end: Self.date("2029-12-31")).map(\.date) == [Self.date("2028-02-29")])
    }

    @Test(arguments: [
        ("reports: []\ncolour: red\n", "one key, reports"),
        ("reports:\n  - due: \"06-15\"\n", "a mapping with its type"),
        ("reports:\n  - type: annual\n    due: \"13-01\"\n", "due of report annual is a day of the year, MM-DD"),
        ("reports:\n  - type: annual\n    due: \"02-30\"\n", "not 02-30"),
        ("reports:\n  - type: final\n    after_end: soon\n", "after_end of report final is a number of days, such as 90d, not soon"),
        ("reports:\n  - type: final\n", "is due either every year"),
        ("reports:\n  - type: final\n    due: \"06-15\"\n    after_end: 90d\n", "is due either every year"),
        ("reports:\n  - type: annual\n    due: \"11-15\"\n    colour: red\n", "unknown key colour in report annual"),
        ("reports:\n  - type: annual\n    due: \"11-15\"\n  - type: annual\n    due: \"11-15\"\n", "listed twice"),
    ])
    func aBrokenCalendarSaysWhy(_ yaml: String, _ reason: String) {
        #expect {
            _ = try ReportingCalendar.load(yaml: yaml, file: "reporting.yaml")
        } throws: { error in
            (error as? ConfigError)?.message.contains(reason) == true
        }
    }
}

import Foundation
import Yams

/// The reports due on a funded project and when each falls due, read from
/// `Config/reporting.yaml`. pbc schedules them as progress reports when a
/// project enters a state that says `schedule_reports: true`.
public struct ReportingCalendar: Sendable, Hashable {
    public struct Entry: Sendable, Hashable {
        /// The report's `reportType`.
        public var type: String
        public var when: When
        public var line: Int

        public enum When: Sendable, Hashable {
            /// Every year of the project's period, on this day (`due: "06-15"`).
            case yearly(month: Int, day: Int)
            /// Once, this many days after the period ends (`after_end: 90d`).
            case afterEnd(days: Int)
        }
    }

    /// One report a project owes.
    public struct Due: Sendable, Hashable {
        public var type: String
        public var date: CalendarDate
    }

    public var entries: [Entry]

    public init(entries: [Entry] = []) { self.entries = entries }

    /// The reports due on a project funded on `funded` whose period ends on
    /// `end`, by date: each yearly one that falls after the funding and by
    /// the end, and each one due after the end.
    public func reports(funded: CalendarDate, end: CalendarDate) -> [Due] {
        var due: [Due] = []
        for entry in entries {
            switch entry.when {
            case .yearly(let month, let day):
                guard funded.year <= end.year else { continue }
                for year in funded.year...end.year {
                    // A day that some years lack (29 February) falls in those that have it.
                    guard let date = CalendarDate(year: year, month: month, day: day), date > funded, date <= end else { continue }
                    due.append(Due(type: entry.type, date: date))
                }
            case .afterEnd(let days):
                due.append(Due(type: entry.type, date: end.adding(days: days)))
            }
        }
        let order = entries.map(\.type)
        return due.sorted { ($0.date, order.firstIndex(of: $0.type) ?? 0) < ($1.date, order.firstIndex(of: $1.type) ?? 0) }
    }

    /// For a report due once after the period's end (the final one), how
    /// many days after; nil for a yearly one or a type the calendar lacks.
    public func afterEnd(_ type: String) -> Int? {
        entries.lazy.compactMap { entry -> Int? in
            if entry.type == type, case .afterEnd(let days) = entry.when { days } else { nil }
        }.first
    }

    /// Every entry's type is one a report can have (`types`: the progress
    /// report's `reportType`), so that funding cannot fail on one.
    public func check(types: FieldType?, file: String) throws {
        guard let types else { return }
        for entry in entries where types.accepting(.string(entry.type)) == nil {
            throw ConfigError(file: file, line: entry.line, message: "report type \(entry.type) is not one a progress report can have: \(types)")
        }
    }

    /// Reads `reports:`, a list of `{type, due: "MM-DD"}` or `{type, after_end: Nd}`.
    public static func load(yaml text: String, file: String) throws -> ReportingCalendar {
        guard let root = try ConfigError.compose(yaml: text, file: file) else { return ReportingCalendar() }
        guard let mapping = root.mapping, Set(mapping.keys.compactMap(\.string)) == ["reports"], let list = mapping["reports"]?.sequence else {
            throw ConfigError(file: file, line: root.mark?.line, message: "a reporting calendar has one key, reports: a list of {type, due} or {type, after_end}")
        }
        var entries: [Entry] = []
        for node in list {
            let line = node.mark?.line ?? 0
            guard let report = node.mapping, let type = report["type"]?.string, !type.isEmpty else {
                throw ConfigError(file: file, line: line, message: "a report is a mapping with its type: {type: annual, due: \"11-15\"}")
            }
            let unknown = Set(report.keys.compactMap(\.string)).subtracting(["type", "due", "after_end"])
            if let key = unknown.sorted().first {
                throw ConfigError(file: file, line: line, message: "unknown key \(key) in report \(type) (known: after_end, due, type)")
            }
            let when: Entry.When
            switch (report["due"]?.string, report["after_end"]?.string) {
            case (let day?, nil):
                // A leap year takes every day a year can have.
                guard let date = CalendarDate(iso: "2000-" + day) else {
                    throw ConfigError(file: file, line: line, message: "due of report \(type) is a day of the year, MM-DD, such as \"06-15\", not \(day)")
                }
                when = .yearly(month: date.month, day: date.day)
            case (nil, let after?):
                guard after.hasSuffix("d"), let days = Int(after.dropLast()), days >= 0 else {
                    throw ConfigError(file: file, line: line, message: "after_end of report \(type) is a number of days, such as 90d, not \(after)")
                }
                when = .afterEnd(days: days)
            default:
                throw ConfigError(file: file, line: line, message: "report \(type) is due either every year (due: \"MM-DD\") or after the end (after_end: Nd)")
            }
            if entries.contains(where: { $0.type == type && $0.when == when }) {
                throw ConfigError(file: file, line: line, message: "report \(type) is listed twice with the same due date")
            }
            entries.append(Entry(type: type, when: when, line: line))
        }
        return ReportingCalendar(entries: entries)
    }
}

extension CalendarDate {
    /// The date, if the year has that day.
    public init?(year: Int, month: Int, day: Int) {
        guard (1...9999).contains(year), (1...12).contains(month), (1...Self.daysIn(month: month, year: year)).contains(day) else { return nil }
        self.init(iso: String(format: "%04d-%02d-%02d", year, month, day))
    }

    /// The day `days` after this one.
    public func adding(days: Int) -> CalendarDate {
        CalendarDate(Date(timeIntervalSince1970: TimeInterval((daysSinceEpoch + days) * 86_400)))
    }
}

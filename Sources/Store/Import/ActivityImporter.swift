import Coordination
import Crypto
import Foundation
import Postgres
import Synchronization

/// What an import did.
public struct ImportSummary: Sendable, Equatable {
    public var imported = 0
    public var updated = 0
    public var unchanged = 0
    /// Skipped activities, counted by reason.
    public var skipped: [String: Int] = [:]
    /// Activities kept that no screening can meet, counted by reason: they
    /// need a period and a country (docs/overlap.md), and whoever imports
    /// them should know which lack one.
    public var unscreened: [String: Int] = [:]
    /// Activities screened over the period their reported dates show, since
    /// they state no end or no start, counted by what they lack
    /// (docs/import.md, "Activities without an end date").
    public var reportedPeriods: [String: Int] = [:]

    public init() {}
    public var skippedCount: Int { skipped.values.reduce(0, +) }
    public var total: Int { imported + updated + unchanged + skippedCount }
}

/// A file that stopped an import part-way. Each activity is stored in a
/// transaction of its own, so what came before it stays imported; `before`
/// says what that was, and importing the fixed file again leaves it unchanged.
public struct ImportStopped: Error, CustomStringConvertible, Sendable {
    public let error: IATIFileError
    public let before: ImportSummary
    public var description: String { error.description }
}

/// An activity as pbc keeps it.
struct MappedActivity: Codable, Equatable {
    struct Country: Codable, Equatable { var code: String; var percentage: String? }
    struct Party: Codable, Equatable { var ref: String?; var name: String?; var role: String }
    /// The sum of an activity's budgets in one currency, to the cent.
    struct Budget: Codable, Equatable {
        var currency: String
        var amount: String

        init(currency: String, total: Decimal) {
            var raw = total
            var rounded = Decimal()
            NSDecimalRound(&rounded, &raw, 2, .plain)
            // Written as tasks' amounts are, with two decimals: 1500.00.
            let digits = rounded.description.split(separator: ".", omittingEmptySubsequences: false)
            let cents = digits.count == 2 ? String(digits[1]) : ""
            self.currency = currency
            self.amount = "\(digits[0]).\(cents.padding(toLength: 2, withPad: "0", startingAt: 0))"
        }
    }

    var identifier: String
    var reportingRef: String
    /// A pbc agency id named directly (CSV); otherwise the publisher is found by `reportingRef`.
    var publisherAgency: String?
    var reportingName: String?
    var title: String
    var description: String
    var status: String?
    var countries: [Country]
    var regions: [Country]
    var sectors: [String]
    var categories: [String]
    var otherSectors: [String]
    var locations: [String]
    var participants: [Party]
    var start: String?
    var end: String?
    /// A sum per currency, in the order the currencies are first named.
    var budgets: [Budget]
    /// How each budget divides in the who-does-what-where report.
    var budgetShares: BudgetShares
    var genderMarker: Int?
    /// When it states no end, no start or neither: the period its own
    /// reported dates show it ran, which screening uses (`reportedPeriod`).
    /// Nil when it states both, so the hash of such an activity is what it was.
    var reportedPeriod: ReportedPeriod? = nil
    /// Its parent, children and siblings (IATI `related-activity` types 1
    /// to 3), by identifier: with its own, the external identifiers that
    /// make the same publisher's parts of one programme no overlap of each
    /// other (`OverlapScoring.isDuplicate`). Nil when none, so the hash of
    /// an activity without them is what it was.
    var related: [String]? = nil

    struct ReportedPeriod: Codable, Equatable {
        var start: String
        var end: String
    }

    /// The period screening uses: the one it states, else the one it reports.
    var screenedPeriod: (start: String, end: String)? {
        if let start, let end { return (start, end) }
        return reportedPeriod.map { ($0.start, $0.end) }
    }

    /// What it does not state, as the import summary names it.
    var missingDates: String? {
        switch (start, end) {
        case (nil, nil): "no start or end date"
        case (nil, _): "no start date"
        case (_, nil): "no end date"
        default: nil
        }
    }
}

/// Imports activities from outside into the portfolio: they take part in
/// screening and run no workflow. The same publisher and identifier update in place.
public struct ActivityImporter: Sendable {
    let pool: PostgresPool
    /// For the states in which a deconfliction case has ended: one opened on
    /// an overlap with an activity imported again as cancelled is dismissed.
    let workflows: WorkflowRegistry
    /// To score again the tasks' open overlaps with an activity updated in
    /// place: those it no longer has are closed.
    let overlap: OverlapConfiguration

    public init(pool: PostgresPool, workflows: WorkflowRegistry, overlap: OverlapConfiguration) {
        self.pool = pool
        self.workflows = workflows
        self.overlap = overlap
    }

    /// Maps one IATI activity, or says why it is skipped.
    /// `today`: a transaction or an update dated later shows nothing of when
    /// the activity ran, and is left out (counted as today, it would move the
    /// activity's screened period, and make each day's import an update).
    static func map(_ activity: IATIActivity, today: CalendarDate = CalendarDate(Date())) -> Result<MappedActivity, SkipReason> {
        guard let version = activity.version, !version.hasPrefix("1.") else {
            return .failure(SkipReason("IATI version \(activity.version ?? "unknown") is not 2.0x"))
        }
        guard let identifier = activity.identifier else { return .failure(SkipReason("no iati-identifier")) }
        guard let reporting = activity.reportingOrg, let reportingRef = reporting.ref else {
            return .failure(SkipReason("no reporting organisation identifier"))
        }
        func english(_ narratives: [IATIActivity.Narrative]) -> String? {
            (narratives.first { $0.language?.lowercased().hasPrefix("en") == true } ?? narratives.first)?.text
        }
        guard let title = english(activity.titles) else { return .failure(SkipReason("no title")) }
        let general = activity.descriptions.filter { $0.type == nil || $0.type == "1" }.map(\.narrative)
        let description = english(general) ?? english(activity.descriptions.map(\.narrative)) ?? ""
        // Actual dates before planned ones: 2 actual start, 1 planned start, 4 actual end, 3 planned end.
        let start = activity.dates["2"] ?? activity.dates["1"]
        let end = activity.dates["4"] ?? activity.dates["3"]
        for date in [start, end].compactMap({ $0 }) where CalendarDate(iso: String(date.prefix(10))) == nil {
            return .failure(SkipReason("a date that is not YYYY-MM-DD"))
        }
        let startDate = start.flatMap { CalendarDate(iso: String($0.prefix(10))) }
        let endDate = end.flatMap { CalendarDate(iso: String($0.prefix(10))) }
        if let startDate, let endDate, endDate < startDate { return .failure(SkipReason("end date before start date")) }
        let budgetStarts = activity.budgets.compactMap { $0.start.flatMap { CalendarDate(iso: String($0.prefix(10))) } }
        let budgetEnds = activity.budgets.compactMap { $0.end.flatMap { CalendarDate(iso: String($0.prefix(10))) } }
        // Still in implementation (status 2) when its record was last updated: it ran until then.
        let updatedRunning = activity.status == "2" ? activity.lastUpdated.flatMap { CalendarDate(iso: String($0.prefix(10))) } : nil
        let related = Set(activity.related).subtracting([identifier]).sorted()
        // What happened is what is dated by today; a budget may plan ahead.
        let happened = (activity.transactionDates + [updatedRunning].compactMap { $0 }).filter { $0 <= today }
        let reported = Self.reportedPeriod(
            start: startDate, end: endDate,
            earliest: budgetStarts + [activity.transactionDates.min()].compactMap { $0 },
            latest: budgetEnds + happened)
        // Countries and regions, and sectors, are stated on the activity or
        // else on each of its transactions; those are taken once each, with
        // no percentages (the report divides in equal parts).
        let onActivity = !activity.countries.isEmpty || !activity.regions.isEmpty
        let recipientCountries = onActivity ? activity.countries : Self.distinct(activity.transactionCountries)
        let recipientRegions = onActivity ? activity.regions : Self.distinct(activity.transactionRegions)
        let statedSectors = activity.sectors.isEmpty ? Self.distinct(activity.transactionSectors) : activity.sectors
        var sectors: [String] = []
        var categories: [String] = []
        var others: [String] = []
        var stated: [(vocabulary: BudgetShares.Vocabulary, sector: BudgetShares.Stated)] = []
        for sector in statedSectors {
            let vocabulary = sector.vocabulary ?? "1"
            switch vocabulary {
            case "1" where sector.code.count == 5 && sector.code.allSatisfy(\.isNumber):
                sectors.append(sector.code)
                stated.append((.dac, .init(code: sector.code, percentage: sector.percentage)))
            case "2" where sector.code.count == 3 && sector.code.allSatisfy(\.isNumber):
                categories.append(sector.code)
                stated.append((.dacCategory, .init(code: sector.code, percentage: sector.percentage)))
            default:
                others.append("\(vocabulary):\(sector.code)")
                stated.append((.other(vocabulary), .init(code: "\(vocabulary):\(sector.code)", percentage: sector.percentage)))
            }
        }
        categories = Array(Set(categories + sectors.map { String($0.prefix(3)) })).sorted()
        // Budgets: a sum per currency. A revised budget (type 2) replaces the
        // original (type 1) of the same period, so an activity that reports
        // both is not counted twice.
        let revisedPeriods = Set(activity.budgets.filter { $0.type == "2" }.map { [$0.start, $0.end] })
        var currencies: [String] = []
        var sums: [String: Decimal] = [:]
        for budget in activity.budgets where budget.type == "2" || !revisedPeriods.contains([budget.start, budget.end]) {
            guard let value = BudgetShares.decimal(budget.amount), value >= 0,
                  let currency = (budget.currency ?? activity.defaultCurrency)?.uppercased(),
                  currency.count == 3, currency.allSatisfy({ $0.isASCII && $0.isLetter })
            else { continue }
            if sums[currency] == nil { currencies.append(currency) }
            sums[currency, default: 0] += value
        }
        let budgets = currencies.map { MappedActivity.Budget(currency: $0, total: sums[$0]!) }
        let roles = ["1": "funding", "2": "accountable", "4": "implementing"]
        let participants = activity.participants.compactMap { party -> MappedActivity.Party? in
            guard let role = party.role.flatMap({ roles[$0] }) else { return nil }
            return MappedActivity.Party(ref: party.ref, name: english(party.names), role: role)
        }
        let countries = recipientCountries.map { (code: $0.code.uppercased(), percentage: $0.percentage) }
        return .success(MappedActivity(
            identifier: identifier, reportingRef: reportingRef, publisherAgency: nil, reportingName: english(reporting.names), title: title,
            description: description, status: activity.status,
            countries: countries.map { .init(code: $0.code, percentage: $0.percentage) },
            regions: recipientRegions.map { .init(code: $0.code, percentage: $0.percentage) }, sectors: Array(Set(sectors)).sorted(),
            categories: categories, otherSectors: others, locations: activity.locations, participants: participants,
            start: startDate?.iso, end: endDate?.iso, budgets: budgets,
            budgetShares: BudgetShares(
                countries: countries.map { .init(code: $0.code, percentage: $0.percentage) }, withRegions: !recipientRegions.isEmpty,
                sectors: stated),
            genderMarker: activity.genderSignificance.flatMap(Int.init).flatMap { (0...3).contains($0) ? $0 : nil },
            reportedPeriod: reported,
            related: related.isEmpty ? nil : related))
    }

    /// The period an activity that states no end, no start or neither is
    /// screened over: what its own reported dates show it ran. Many
    /// publishers leave out the end of a program still running; left out of
    /// screening, it would overlap nothing. `latest` are the dates it shows
    /// it ran until (its last transaction, its budgets' period ends, the day
    /// its record was last updated while in implementation), `earliest` those
    /// it shows it ran from (its first transaction, its budgets' period
    /// starts). Nil when it states both, or when those dates make no span
    /// (nothing after its start): a guessed end would flag programs that
    /// never met.
    static func reportedPeriod(
        start: CalendarDate?, end: CalendarDate?, earliest: [CalendarDate], latest: [CalendarDate]
    ) -> MappedActivity.ReportedPeriod? {
        guard start == nil || end == nil, let from = start ?? earliest.min(), let until = end ?? latest.max(), from < until else { return nil }
        return .init(start: from.iso, end: until.iso)
    }

    /// Each code once (case ignored), in the order first named.
    private static func distinct(_ coded: [IATIActivity.Coded]) -> [IATIActivity.Coded] {
        var seen: Set<[String]> = []
        return coded.filter { seen.insert([$0.vocabulary ?? "1", $0.code.uppercased()]).inserted }
    }

    public struct SkipReason: Error, Hashable, Sendable {
        public let reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// Records one mapped activity and counts the outcome; a data error skips it.
    /// `countries` are the codes pbc knows, alpha-2 and alpha-3.
    private func record(_ mapped: MappedActivity, source: String, countries: Set<String>, into summary: inout ImportSummary) async throws {
        do {
            switch try await store(mapped, source: source) {
            case .imported: summary.imported += 1
            case .updated: summary.updated += 1
            case .unchanged: summary.unchanged += 1
            }
            if mapped.screenedPeriod == nil, let missing = mapped.missingDates {
                summary.unscreened["\(missing), and no other date reported that shows when it ran", default: 0] += 1
            } else if !mapped.countries.contains(where: { countries.contains($0.code) }) {
                summary.unscreened["no country of Config/countries.yaml (regions only, or a code it lacks)", default: 0] += 1
            } else if let missing = mapped.missingDates {
                summary.reportedPeriods[missing, default: 0] += 1
            }
        } catch let error as PostgresError where error.sqlState?.hasPrefix("22") == true || error.sqlState?.hasPrefix("23") == true {
            // The database refused this activity's values (a data or integrity error); the others go on.
            // Any other failure is not the activity's and stops the import.
            summary.skipped["refused by the database: \(error.message)", default: 0] += 1
        }
    }

    /// A file to import is one pbc may read, and not a directory (which the
    /// readers would report as malformed XML or as a system error).
    static func checkReadable(_ file: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), isDirectory.boolValue {
            throw IATIFileError(description: "\(file): a directory, not a file")
        }
        guard FileManager.default.isReadableFile(atPath: file) else { throw IATIFileError(description: "\(file): cannot read the file") }
    }

    /// The country codes pbc knows, alpha-2 and alpha-3.
    private func knownCountries() async throws -> Set<String> {
        Set(try await pool.query("SELECT alpha2, code FROM countries").flatMap { [try $0.decode(String.self, at: 0), try $0.decode(String.self, at: 1)] })
    }

    /// Imports every activity of the files, in order; a bad activity is skipped with its reason, a bad file stops the import.
    public func importIATI(files: [String], progress: (@Sendable (String, Double, Int) -> Void)? = nil) async throws -> ImportSummary {
        var summary = ImportSummary()
        let countries = try await knownCountries()
        do {
            for file in files {
                try Self.checkReadable(file)
                var count = 0
                let fraction = Fraction()
                for try await activity in IATIReader.activities(in: file, progress: { fraction.value = $0 }) {
                    count += 1
                    switch Self.map(activity) {
                    case .failure(let skip):
                        summary.skipped[skip.reason, default: 0] += 1
                    case .success(let mapped):
                        try await record(mapped, source: URL(fileURLWithPath: file).lastPathComponent, countries: countries, into: &summary)
                    }
                    progress?(file, fraction.value, count)
                }
            }
        } catch let error as IATIFileError {
            throw ImportStopped(error: error, before: summary)
        }
        return summary
    }

    /// The columns of `pbc import csv`, documented in docs/import.md.
    public static let csvColumns = [
        "identifier", "publisher", "title", "description", "countries", "sectors", "locations", "start", "end", "budget", "currency",
        "status", "participants",
    ]

    /// Imports a CSV file of activities with the columns of `csvColumns`
    /// (identifier, publisher and title required); lists are separated by `;`.
    public func importCSV(file: String, progress: (@Sendable (Int) -> Void)? = nil) async throws -> ImportSummary {
        var summary = ImportSummary()
        do {
            try Self.checkReadable(file)
            guard let handle = FileHandle(forReadingAtPath: file) else { throw IATIFileError(description: "\(file): cannot read the file") }
            defer { try? handle.close() }
            var rows = CSVRows(reading: handle)
            func next() throws -> CSVRows.Row? {
                do {
                    return try rows.next()
                } catch let error as CSVRows.Malformed {
                    throw IATIFileError(description: "\(file):\(error.line): \(error.message)")
                } catch {
                    throw IATIFileError(description: "\(file): cannot read the file (\(error))")
                }
            }
            guard let header = try next()?.fields else { throw IATIFileError(description: "\(file): empty; a CSV file begins with a header row") }
            if let unknown = header.first(where: { !Self.csvColumns.contains($0) }) {
                throw IATIFileError(description: "\(file): unknown column \(unknown) (columns: \(Self.csvColumns.joined(separator: ", ")))")
            }
            if let twice = header.first(where: { name in header.filter { $0 == name }.count > 1 }) {
                throw IATIFileError(description: "\(file): the column \(twice) appears twice")
            }
            if let missing = ["identifier", "publisher", "title"].first(where: { !header.contains($0) }) {
                throw IATIFileError(description: "\(file): the column \(missing) is required")
            }
            // Countries are named by code; one pbc does not know would leave the
            // activity out of every screening.
            let countries = try await knownCountries()
            var count = 0
            while let row = try next() {
                count += 1
                // A row of more fields than columns is most often an unquoted
                // comma, of fewer a line broken by hand: every field after it
                // would land in the wrong column.
                let mapped =
                    row.fields.count == header.count
                    ? Self.map(csv: Dictionary(uniqueKeysWithValues: zip(header, row.fields)), countries: countries)
                    : .failure(SkipReason("not as many fields as the header has columns"))
                switch mapped {
                case .failure(let skip): summary.skipped[skip.reason, default: 0] += 1
                case .success(let mapped): try await record(mapped, source: URL(fileURLWithPath: file).lastPathComponent, countries: countries, into: &summary)
                }
                progress?(count)
            }
        } catch let error as IATIFileError {
            throw ImportStopped(error: error, before: summary)
        }
        return summary
    }

    /// IATI's ActivityStatus codelist: pipeline, implementation, finalisation,
    /// closed, cancelled, suspended.
    static let activityStatuses: Set<String> = ["1", "2", "3", "4", "5", "6"]

    /// Maps one CSV row, or says why it is skipped; `countries` are the
    /// codes pbc knows, alpha-2 and alpha-3.
    static func map(csv fields: [String: String], countries known: Set<String>) -> Result<MappedActivity, SkipReason> {
        func value(_ name: String) -> String? { fields[name].flatMap { $0.isEmpty ? nil : $0 } }
        func list(_ name: String) -> [String] {
            (value(name) ?? "").split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        guard let identifier = value("identifier") else { return .failure(SkipReason("no identifier")) }
        guard let publisher = value("publisher") else { return .failure(SkipReason("no publisher")) }
        guard let title = value("title") else { return .failure(SkipReason("no title")) }
        let start = value("start")
        let end = value("end")
        for date in [start, end].compactMap({ $0 }) where CalendarDate(iso: date) == nil {
            return .failure(SkipReason("a date that is not YYYY-MM-DD"))
        }
        if let start, let end, CalendarDate(iso: end)! < CalendarDate(iso: start)! { return .failure(SkipReason("end date before start date")) }
        let countries = list("countries").map { $0.uppercased() }
        if countries.contains(where: { !known.contains($0) }) {
            return .failure(SkipReason("a country that is not an ISO 3166 code of Config/countries.yaml"))
        }
        if let status = value("status"), !Self.activityStatuses.contains(status) {
            return .failure(SkipReason("a status that is not an IATI activity status code (1 to 6)"))
        }
        var sectors: [String] = []
        var categories: [String] = []
        for code in list("sectors") {
            if code.count == 5, code.allSatisfy(\.isNumber) { sectors.append(code) }
            else if code.count == 3, code.allSatisfy(\.isNumber) { categories.append(code) }
            else { return .failure(SkipReason("a sector that is neither a 5-digit code nor a 3-digit category")) }
        }
        var budgets: [MappedActivity.Budget] = []
        if let amount = value("budget") {
            guard let total = PostgresNumeric(amount)?.decimal, total >= 0 else { return .failure(SkipReason("a budget that is not a positive decimal")) }
            guard let currency = value("currency"), currency.count == 3, currency.allSatisfy({ $0.isASCII && $0.isUppercase }) else {
                return .failure(SkipReason("a budget without an ISO 4217 currency"))
            }
            budgets = [.init(currency: currency, total: total)]
        }
        var participants: [MappedActivity.Party] = []
        for entry in list("participants") {
            let parts = entry.split(separator: ":").map(String.init)
            guard parts.count == 2, ["funding", "implementing", "accountable"].contains(parts[1]) else {
                return .failure(SkipReason("a participant that is not AGENCY:ROLE"))
            }
            participants.append(.init(ref: parts[0], name: nil, role: parts[1]))
        }
        return .success(MappedActivity(
            identifier: identifier, reportingRef: publisher, publisherAgency: publisher, reportingName: nil, title: title,
            description: value("description") ?? "", status: value("status"), countries: countries.map { .init(code: $0, percentage: nil) },
            regions: [], sectors: Array(Set(sectors)).sorted(), categories: Array(Set(categories + sectors.map { String($0.prefix(3)) })).sorted(),
            otherSectors: [], locations: list("locations"), participants: participants, start: start, end: end,
            budgets: budgets,
            budgetShares: BudgetShares(
                countries: countries.map { .init(code: $0, percentage: nil) }, withRegions: false,
                sectors: sectors.map { (.dac, .init(code: $0)) } + categories.map { (.dacCategory, .init(code: $0)) }),
            genderMarker: nil))
    }

    /// An activity imported again as cancelled is no program to deconflict
    /// with: the tasks' open overlaps with it are closed, as those with a
    /// task that ended are (sql/0011), each with an `overlap.closed` event,
    /// unless another publisher's activity of the same identifier goes on;
    /// the deconfliction cases opened on them are dismissed.
    private func closeOverlaps(withCancelled ref: String, on connection: PostgresConnection) async throws {
        struct Closed: Encodable {
            let other: String
            let ended: String
            let state = "cancelled"
        }
        let closed = try await connection.query("""
            UPDATE task_overlaps o
            SET status = 'closed', resolution_data = jsonb_build_object('ended', \(ref)::text, 'state', 'cancelled'), resolved_at = now()
            WHERE o.status = 'open' AND o.other_ref = \(ref)
              AND NOT EXISTS (SELECT 1 FROM portfolio p WHERE p.ref = \(ref) AND p.active)
            RETURNING o.task_id, o.id
            """)
        try await announce(closed, data: Closed(other: ref, ended: ref), because: "\(ref) was cancelled: nothing is left to agree", on: connection)
    }

    /// The `overlap.closed` events of the tasks' overlaps just closed (rows
    /// of task id and overlap id), and the cases opened on them dismissed.
    /// The events come after every row is locked, as a TaskStore
    /// transaction writes them last: their lock (sql/0006) is held from
    /// the first event to commit, and held while this waited for a row it
    /// deadlocked with the transactions that lock rows first.
    private func announce(
        _ closed: PostgresRows, data: some Encodable, because reason: String, with events: PendingEvents = PendingEvents(),
        on connection: PostgresConnection
    ) async throws {
        let json = try TaskStore.json(data)
        for row in closed {
            events.append(PendingEvents.Event(task: try row.decode(UUID.self, at: 0), type: "overlap.closed", data: json))
        }
        try await TaskStore.dismissCases(
            of: try closed.map { try $0.decode(UUID.self, at: 1).uuidString.lowercased() }, because: reason,
            endStates: workflows.terminalStates(of: TaskStore.caseWorkflow), events: events, on: connection)
        try await events.write(on: connection)
    }

    /// An activity updated in place (other dates, another country, other
    /// sectors or places) may no longer overlap the tasks it was flagged
    /// against, or overlap again those it had stopped overlapping: each
    /// pair still open, or closed by an edit or by the activity's
    /// cancellation, is scored again, as the task's screening would score
    /// it now. One that overlaps takes its new score and reasons, as an edit
    /// of the task rewrites them, and a closed one is open again, with an
    /// `overlap.detected` event, as a later screening of the task would open
    /// it. An open one that no longer overlaps is closed as an edit closes it
    /// (sql/0014, `edited` naming the activity), with its events and its case
    /// dismissed.
    private func rescoreOverlaps(with ref: String, on connection: PostgresConnection) async throws {
        struct Closed: Encodable {
            let other: String
            let edited: String
        }
        struct Detected: Encodable {
            let other: String
            let score: Double
            let reasons: [String]
        }
        // The pairs' rows are locked here, in id order as a resolution locks
        // a pair's, so that one resolved while this waited is left out, and
        // the events are written once every row is locked (`announce`).
        let events = PendingEvents()
        let pairs = try await connection.query("""
            SELECT o.id::text, o.task_id, t.ref, o.status = 'open' FROM task_overlaps o JOIN tasks t ON t.id = o.task_id
            WHERE o.other_ref = \(ref)
              AND (o.status = 'open' OR (o.status = 'closed' AND (o.resolution_data ? 'edited' OR o.resolution_data ->> 'ended' = \(ref))))
            ORDER BY o.id
            FOR UPDATE OF o
            """).map { row in
                (id: try row.decode(String.self, at: 0), taskID: try row.decode(UUID.self, at: 1), task: try row.decode(String.self, at: 2),
                 open: try row.decode(Bool.self, at: 3))
            }
        guard !pairs.isEmpty else { return }
        // Scored from the activity's side, one query per country it is in,
        // not per task: scores and reasons are symmetric (OverlapScoringTests).
        let rows = try await connection.query("""
            SELECT ref, agency, agencies, country, sectors, locations, lower(period) AS start, upper(period) - 1 AS finish, external_ids, body
            FROM portfolio WHERE ref = \(ref) AND active
            """)
        var found: [String: OverlapFinding] = [:]
        for row in rows {
            let activity = try PortfolioScreener.entry(of: row, country: try row.decode(String.self, "country"))
            for finding in try await PortfolioScreener.findings(
                for: activity, text: try row.decode(String.self, "body"), among: pairs.map(\.task), on: connection, configuration: overlap)
            {
                found[finding.other] = finding
            }
        }
        let still = pairs.compactMap { pair in found[pair.task].map { (pair: pair, finding: $0) } }
        if !still.isEmpty {
            try await connection.query("""
                UPDATE task_overlaps o SET score = f.score::float8, reasons = f.reasons::jsonb, status = 'open', resolution_data = '{}',
                    resolved_at = NULL
                FROM unnest(\(still.map(\.pair.id)), \(still.map { String($0.finding.score) }), \(try still.map { try TaskStore.json($0.finding.reasons) }))
                     AS f(id, score, reasons)
                WHERE o.id = f.id::uuid
                """)
            for (pair, finding) in still where !pair.open {
                events.append(PendingEvents.Event(
                    task: pair.taskID, type: "overlap.detected",
                    data: try TaskStore.json(Detected(other: ref, score: finding.score, reasons: finding.reasons))))
            }
        }
        let untrue = pairs.filter { $0.open && found[$0.task] == nil }.map(\.id)
        guard !untrue.isEmpty else { return try await events.write(on: connection) }
        let closed = try await connection.query("""
            UPDATE task_overlaps o
            SET status = 'closed', resolution_data = jsonb_build_object('edited', \(ref)::text), resolved_at = now()
            WHERE o.id = ANY (\(untrue)::uuid[])
            RETURNING o.task_id, o.id
            """)
        try await announce(closed, data: Closed(other: ref, edited: ref), because: "\(ref) was updated and no longer overlaps: nothing is left to agree", with: events,
            on: connection)
    }

    /// The parser thread's progress, read by the importer.
    final class Fraction: Sendable {
        private let stored = Mutex(0.0)
        var value: Double {
            get { stored.withLock { $0 } }
            set { stored.withLock { $0 = newValue } }
        }
    }

    enum Outcome { case imported, updated, unchanged }

    private func store(_ activity: MappedActivity, source: String) async throws -> Outcome {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let hash = SHA256.hash(data: try encoder.encode(activity)).hex
        // An import is pbc's own work, over every agency's portfolio.
        return try await pool.withTransaction(settings: Scope.all.settings) { connection in
            let agency: String
            if let named = activity.publisherAgency,
                let known = try await connection.query("SELECT id FROM agencies WHERE id = \(named)").first
            {
                agency = try known.decode(String.self, at: 0)
            } else {
                agency = try await agencyID(forIATI: activity.reportingRef, name: activity.reportingName, on: connection)
            }
            let existing = try await connection.query(
                "SELECT id, content_hash FROM activities WHERE reporting_agency = \(agency) AND identifier = \(activity.identifier) FOR UPDATE")
            if let row = existing.first, try row.decode(String.self, at: 1) == hash { return .unchanged }
            let countries = try PostgresJSONB(encoding: activity.countries)
            let regions = try PostgresJSONB(encoding: activity.regions)
            let others = try PostgresJSONB(encoding: activity.otherSectors)
            let participants = try PostgresJSONB(encoding: activity.participants)
            let shares = try PostgresJSONB(encoding: activity.budgetShares)
            let start = activity.start.flatMap { PostgresDate(iso: $0) }
            let end = activity.end.flatMap { PostgresDate(iso: $0) }
            let budgets = try PostgresJSONB(encoding: activity.budgets)
            let rows = try await connection.query("""
                INSERT INTO activities (identifier, reporting_agency, title, description, status, countries, regions, sectors,
                                        sector_categories, other_sectors, locations, participants, period_start, period_end,
                                        budgets, budget_shares, gender_marker, content_hash, source)
                VALUES (\(activity.identifier), \(agency), \(activity.title), \(activity.description), \(activity.status), \(countries),
                        \(regions), \(activity.sectors), \(activity.categories), \(others), \(activity.locations), \(participants),
                        \(start), \(end), \(budgets), \(shares), \(activity.genderMarker.map(Int32.init)), \(hash),
                        \(source))
                ON CONFLICT (reporting_agency, identifier) DO UPDATE SET
                    title = EXCLUDED.title, description = EXCLUDED.description, status = EXCLUDED.status, countries = EXCLUDED.countries,
                    regions = EXCLUDED.regions, sectors = EXCLUDED.sectors, sector_categories = EXCLUDED.sector_categories,
                    other_sectors = EXCLUDED.other_sectors, locations = EXCLUDED.locations, participants = EXCLUDED.participants,
                    period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, budgets = EXCLUDED.budgets,
                    budget_shares = EXCLUDED.budget_shares, gender_marker = EXCLUDED.gender_marker,
                    content_hash = EXCLUDED.content_hash, source = EXCLUDED.source, updated_at = now()
                RETURNING id
                """)
            let id = try rows.first!.decode(UUID.self, at: 0)
            // Its screening keys, as its portfolio rows below hold them.
            let categories = Array(Set(activity.categories + activity.otherSectors)).sorted()
            let locations = activity.locations.map { $0.lowercased() }
            // Changed: under the keys it had, so that a submission screened
            // against it meanwhile has its overlap closed below if it no
            // longer holds, and under those it will have, so that a pair
            // opened again below is not opened with a program ending there
            // meanwhile (PortfolioScreener).
            if !existing.isEmpty {
                try await PortfolioScreener.lockKeys(
                    ofEntry: activity.identifier, becomingIn: activity.countries.map(\.code), categories: categories, locations: locations,
                    on: connection)
            }
            try await connection.query("DELETE FROM portfolio WHERE activity_id = \(id)")
            // Screened over the period it states, else the one its reported dates show.
            if let period = activity.screenedPeriod, let from = PostgresDate(iso: period.start), let until = PostgresDate(iso: period.end) {
                var agencies: Set<String> = [agency]
                let refs = activity.participants.compactMap(\.ref)
                // Participants are named by IATI organisation identifier, or (in CSV) by agency id.
                for row in try await connection.query("SELECT id FROM agencies WHERE iati_ref = ANY (\(refs)) OR id = ANY (\(refs))") {
                    agencies.insert(try row.decode(String.self, at: 0))
                }
                // Cancelled activities (IATI status 5) are no candidates.
                let active = activity.status != "5"
                try await connection.query("""
                    INSERT INTO portfolio (ref, country, kind, activity_id, agency, agencies, period, sectors, categories, locations,
                                           title, body, external_ids, active)
                    SELECT \(activity.identifier), c.code, 'activity', \(id), \(agency), \(Array(agencies).sorted()),
                           daterange(\(from), \(until), '[]'), \(activity.sectors + activity.otherSectors), \(categories), \(locations),
                           \(activity.title),
                           \(PortfolioScreener.body(title: activity.title, description: activity.description)),
                           \([activity.identifier] + (activity.related ?? [])), \(active)
                    FROM countries c WHERE c.alpha2 = ANY (\(activity.countries.map(\.code))) OR c.code = ANY (\(activity.countries.map(\.code)))
                    ON CONFLICT (activity_id, country) DO NOTHING
                    """)
            }
            if activity.status == "5" {
                try await closeOverlaps(withCancelled: activity.identifier, on: connection)
            } else if !existing.isEmpty {
                try await rescoreOverlaps(with: activity.identifier, on: connection)
            }
            return existing.isEmpty ? .imported : .updated
        }
    }

    /// The agency that publishes under an IATI organisation identifier; an
    /// unknown publisher becomes an agency of kind `external`.
    private func agencyID(forIATI ref: String, name: String?, on connection: PostgresConnection) async throws -> String {
        if let known = try await connection.query("SELECT id FROM agencies WHERE iati_ref = \(ref)").first {
            return try known.decode(String.self, at: 0)
        }
        var slug = String(ref.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" }).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        if slug.isEmpty || !(slug.first!.isLetter || slug.first!.isNumber) { slug = "iati-\(slug)" }
        slug = String(slug.prefix(50))
        let suffix = SHA256.hash(data: Data(ref.utf8)).prefix(3).hex
        for id in [slug, "\(slug)-\(suffix)"] {
            let inserted = try await connection.query("""
                INSERT INTO agencies (id, name, kind, iati_ref) VALUES (\(id), \(name ?? ref), 'external', \(ref))
                ON CONFLICT DO NOTHING RETURNING id
                """)
            if !inserted.isEmpty { return id }
            if let known = try await connection.query("SELECT id FROM agencies WHERE iati_ref = \(ref)").first {
                return try known.decode(String.self, at: 0)
            }
        }
        throw PostgresError(.server, message: "cannot name an agency for IATI organisation \(ref)")
    }
}

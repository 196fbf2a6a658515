import Coordination
import Foundation
import Postgres

/// Screens a task against the portfolio: candidates from one index-backed
/// query (same country, period within the tolerance, a shared category or
/// location, still active), scored by `OverlapScoring`.
public struct PortfolioScreener: Screener {
    let connection: PostgresConnection
    let configuration: OverlapConfiguration
    /// The task's own ref, which is not a candidate for itself.
    let subjectRef: String

    public init(connection: PostgresConnection, configuration: OverlapConfiguration, subjectRef: String) {
        self.connection = connection
        self.configuration = configuration
        self.subjectRef = subjectRef
    }

    public func screen(_ task: TaskRecord) async throws -> [OverlapFinding] {
        guard let subject = Self.entry(for: task, ref: subjectRef, country: task.country) else { return [] }
        try await Self.lockKeys(of: subject, on: connection)
        return try await Self.findings(for: subject, text: Self.body(title: task.title, description: task.description), on: connection, configuration: configuration)
    }

    /// Each entry scored on its own: `screen` returns at most 1,000 candidates.
    public func screen(_ task: TaskRecord, against others: [String]) async throws -> [OverlapFinding] {
        guard let subject = Self.entry(for: task, ref: subjectRef, country: task.country) else { return [] }
        return try await Self.findings(
            for: subject, text: Self.body(title: task.title, description: task.description), among: others, on: connection,
            configuration: configuration)
    }

    /// The portfolio's view of a task; nil when it has no country or period to screen by.
    static func entry(for task: TaskRecord, ref: String, country: String?) -> PortfolioEntry? {
        guard let country, let period = task.period else { return nil }
        return PortfolioEntry(
            ref: ref, agency: task.leadAgency, agencies: task.agencies, country: country, sectors: Set(task.sectors),
            locations: Set(task.locations), period: period, externalIDs: Set(task.externalRefs.values))
    }

    /// What trigram similarity compares: the title and the start of the description.
    static func body(title: String, description: String) -> String {
        String((title + " " + description).prefix(2000))
    }

    /// The screening keys (`portfolio_keys`, sql/0005) a subject shares with its candidates: its categories and locations.
    public static func keys(of subject: PortfolioEntry) -> [String] {
        keys(categories: subject.categories, locations: subject.locations)
    }

    static func keys(categories: some Sequence<String>, locations: some Sequence<String>) -> [String] {
        categories.map { "c:\($0)" } + locations.map { "l:\($0)" }
    }

    /// The class of the advisory locks on screening keys (`pg_advisory_xact_lock(class, key)`;
    /// 7411 is the events' and the sweeper's).
    static let keyLockClass: Int32 = 7412

    /// A country's keys fall into this many locks. A task may name hundreds
    /// of locations, and a lock per key would take as many entries of
    /// PostgreSQL's shared lock table (64 per connection by default), which
    /// a few such screenings at once could exhaust. Two screenings that share
    /// a key still share its lock; two that share none wait for each other
    /// only when their keys happen to fall together.
    static let keyLocksPerCountry = 64

    /// Two screenings that could find each other share a country and a key.
    /// Each holds a lock on its keys until its transaction ends, so the later
    /// one searches after the earlier one's portfolio row is committed, and
    /// sees it: of two programs submitted at the same moment, the later is
    /// flagged, as if they had come an hour apart. Without the locks, each
    /// search would run before the other commits and neither would be found.
    /// The locks are taken in one order, by lock id, so that two screenings
    /// never wait for each other in a cycle.
    public static func lockKeys(of subject: PortfolioEntry, on connection: PostgresConnection) async throws {
        let keys = keys(of: subject)
        try await lockKeys(countries: Array(repeating: subject.country, count: keys.count), keys: keys, on: connection)
    }

    /// The same locks for an entry already in the portfolio (a task, or an
    /// activity's rows in each of its countries), taken by whatever ends it:
    /// a screening that found it as a candidate then either commits its
    /// overlap before the ending closes the entry's overlaps, or searches
    /// after the ending and no longer finds it. Without them a program
    /// withdrawn while another submission was screened against it kept that
    /// overlap open. Read from the entry's columns, since an ended entry has
    /// no screening keys left (`portfolio_keys_sync`, sql/0005).
    ///
    /// An edit that changes the entry's keys passes what it becomes as
    /// `becoming`: it takes the old keys' locks and the new ones' at once,
    /// so that a screening that found it under its old keys commits before
    /// the keys change, and whatever ends it later, under the new keys
    /// alone, sees that overlap.
    static func lockKeys(ofEntry ref: String, becoming: PortfolioEntry? = nil, on connection: PostgresConnection) async throws {
        let keys = becoming.map(keys(of:)) ?? []
        try await lockKeys(countries: Array(repeating: becoming?.country ?? "", count: keys.count), keys: keys, ofEntries: [ref], on: connection)
    }

    /// The same for both entries of a pair, taken at once by a resolution
    /// before it locks the pair's rows: a resolution may end either program,
    /// and every change takes keys before overlap rows, so that it never
    /// holds a pair's rows while it waits for keys that an import (or a
    /// screening) holds while it waits for those rows.
    static func lockKeys(ofEntries refs: [String], on connection: PostgresConnection) async throws {
        try await lockKeys(countries: [], keys: [], ofEntries: refs, on: connection)
    }

    /// The same for an imported activity updated in place, which is scored
    /// again against the tasks it had pairs with and may open a pair once
    /// more where it now is: the locks of its rows' keys and of the keys it
    /// will have (its `categories` and `locations` in each of `countries`,
    /// alpha-2 or alpha-3), at once. A program ending there meanwhile then
    /// either commits first, and the pair is not opened with it, or comes
    /// after, and closes the pair opened. Without the new keys' locks a pair
    /// could be opened again with a program withdrawn in between (the one
    /// explanation found for a concurrent random walk that failed so once).
    static func lockKeys(
        ofEntry ref: String, becomingIn countries: [String], categories: [String], locations: [String], on connection: PostgresConnection
    ) async throws {
        try await lockKeys(
            countries: [], keys: [], ofEntries: [ref], crossing: (countries, keys(categories: categories, locations: locations)), on: connection)
    }

    /// One statement for all the locks, so that they are taken in one order:
    /// the given keys, every key of `crossing` in every one of its countries
    /// (as the countries table knows them), and the keys of the rows of the
    /// portfolio entries `entries` as they stand.
    private static func lockKeys(
        countries: [String], keys: [String], ofEntries entries: [String] = [], crossing: (countries: [String], keys: [String]) = ([], []),
        on connection: PostgresConnection
    ) async throws {
        guard !keys.isEmpty || !entries.isEmpty else { return }
        try await connection.query("""
            SELECT pg_advisory_xact_lock(\(keyLockClass), id)
            FROM (SELECT DISTINCT hashtext(k.country || ' ' || abs(hashtext(k.key) % \(keyLocksPerCountry))) AS id
                  FROM (SELECT * FROM unnest(\(countries), \(keys)) AS given(country, key)
                        UNION ALL
                        SELECT c.code, k FROM countries c, unnest(\(crossing.keys)::text[]) AS k
                        WHERE c.alpha2 = ANY (\(crossing.countries)) OR c.code = ANY (\(crossing.countries))
                        UNION ALL
                        SELECT p.country, k FROM portfolio p,
                               LATERAL (SELECT 'c:' || unnest(p.categories) UNION SELECT 'l:' || unnest(p.locations)) AS held(k)
                        WHERE p.ref = ANY (\(entries))) AS k(country, key)
                  ORDER BY id) AS ids
            """)
    }

    /// Scored candidates at or above the threshold, highest first; duplicates
    /// left out. With `after`, only entries of a higher portfolio id are
    /// candidates; the portfolio scan passes each entry's own id, so that it
    /// meets each pair once.
    public static func findings(
        for subject: PortfolioEntry, text: String, on connection: PostgresConnection, configuration: OverlapConfiguration,
        after entry: Int64 = 0
    ) async throws -> [OverlapFinding] {
        let keys = keys(of: subject)
        let weights = configuration.weights
        // `screening_candidates` (sql/0007, sql/0010) reads every agency's entries, which
        // a liaison's transaction may not, and returns what scoring needs. Rows
        // that cannot reach the threshold stay in the database: each is
        // shipped only if an upper bound of its score does (the period counted
        // whole, a shared code, location or agency counted as fully shared).
        // The exact score is OverlapScoring's, in `scored`.
        let rows = try await connection.query("""
            SELECT ref, agency, agencies, sectors, locations, start, finish, external_ids, text_similarity AS text
            FROM screening_candidates(
                \(subject.ref), \(subject.country), \(keys), \(PostgresDate(iso: subject.period.start.iso)!), \(PostgresDate(iso: subject.period.end.iso)!),
                \(Int32(configuration.toleranceDays)), \(Array(subject.sectors)), \(Array(subject.categories)), \(Array(subject.locations)),
                \(Array(subject.agencies)), \(text), \(weights.sector), \(weights.period), \(weights.location), \(weights.text),
                \(weights.participants), \(configuration.threshold), \(entry))
            """)
        return scored(try candidates(rows, country: subject.country), against: subject, configuration: configuration)
    }

    /// The overlaps `subject` has with these entries alone (by ref), however
    /// many others it has: `findings` returns at most 1,000 candidates. An
    /// entry no longer active in the subject's country, or no longer a
    /// candidate, is no overlap.
    static func findings(
        for subject: PortfolioEntry, text: String, among refs: [String], on connection: PostgresConnection,
        configuration: OverlapConfiguration
    ) async throws -> [OverlapFinding] {
        guard !refs.isEmpty else { return [] }
        // `screening_entries` (sql/0014) reads them past row-level security, as `screening_candidates` does.
        let rows = try await connection.query("""
            SELECT ref, agency, agencies, sectors, locations, start, finish, external_ids, text_similarity AS text
            FROM screening_entries(\(refs), \(subject.country), \(text))
            """)
        let candidates = try candidates(rows, country: subject.country).filter {
            OverlapScoring.isCandidate(subject, $0.entry, configuration: configuration)
        }
        return scored(candidates, against: subject, configuration: configuration)
    }

    /// The entries of `screening_candidates` or `screening_entries` rows, with their text similarity.
    private static func candidates(_ rows: PostgresRows, country: String) throws -> [(entry: PortfolioEntry, text: Double)] {
        try rows.map { row in (try entry(of: row, country: country), try row.decode(Double.self, "text")) }
    }

    /// A portfolio row as scoring sees it, from the columns `ref`, `agency`,
    /// `agencies`, `sectors`, `locations`, `start`, `finish` (the last day)
    /// and `external_ids`.
    static func entry(of row: PostgresRow, country: String) throws -> PortfolioEntry {
        PortfolioEntry(
            ref: try row.decode(String.self, "ref"), agency: try row.decode(String.self, "agency"),
            agencies: Set(try row.decode([String].self, "agencies")), country: country,
            sectors: Set(try row.decode([String].self, "sectors")), locations: Set(try row.decode([String].self, "locations")),
            period: Period(
                start: CalendarDate(iso: try row.decode(PostgresDate.self, "start").iso)!,
                end: CalendarDate(iso: try row.decode(PostgresDate.self, "finish").iso)!),
            externalIDs: Set(try row.decode([String].self, "external_ids")))
    }

    /// Candidates scored at or above the threshold, highest first; duplicates left out.
    private static func scored(
        _ candidates: [(entry: PortfolioEntry, text: Double)], against subject: PortfolioEntry, configuration: OverlapConfiguration
    ) -> [OverlapFinding] {
        var findings: [OverlapFinding] = []
        for (candidate, text) in candidates where !OverlapScoring.isDuplicate(subject, candidate) {
            let (score, components) = OverlapScoring.score(subject, candidate, textSimilarity: text, configuration: configuration)
            if score >= configuration.threshold {
                findings.append(OverlapFinding(other: candidate.ref, score: (score * 1000).rounded() / 1000, reasons: OverlapScoring.reasons(components)))
            }
        }
        return findings.sorted { ($0.score, $1.other) > ($1.score, $0.other) }
    }

    /// Rewrites a task's portfolio rows as the task now stands; a task that
    /// is no `program` (its workflow never screens) has none.
    static func record(_ task: StoredTask, program: Bool, on connection: PostgresConnection) async throws {
        guard program, let entry = entry(for: task.record, ref: task.ref, country: task.record.country), let period = task.record.period else {
            try await connection.query("DELETE FROM portfolio WHERE task_id = \(task.id)")
            return
        }
        let active = !TaskStore.endedStates.contains(task.state)
        // One statement: the row upserted, then any row of a country the task no longer has removed.
        try await connection.query("""
            WITH kept AS (
                INSERT INTO portfolio (ref, country, kind, task_id, agency, agencies, period, sectors, categories, locations, title, body,
                                       external_ids, active)
                VALUES (\(task.ref), \(entry.country), 'task', \(task.id), \(entry.agency), \(Array(entry.agencies).sorted()),
                        daterange(\(PostgresDate(iso: period.start.iso)!), \(PostgresDate(iso: period.end.iso)!), '[]'),
                        \(Array(entry.sectors).sorted()), \(Array(entry.categories).sorted()), \(Array(entry.locations).sorted()),
                        \(task.record.title), \(body(title: task.record.title, description: task.record.description)),
                        \(Array(entry.externalIDs).sorted()), \(active))
                ON CONFLICT (task_id, country) DO UPDATE SET
                    ref = EXCLUDED.ref, agency = EXCLUDED.agency, agencies = EXCLUDED.agencies, period = EXCLUDED.period,
                    sectors = EXCLUDED.sectors, categories = EXCLUDED.categories, locations = EXCLUDED.locations,
                    title = EXCLUDED.title, body = EXCLUDED.body, external_ids = EXCLUDED.external_ids, active = EXCLUDED.active
                RETURNING id)
            DELETE FROM portfolio WHERE task_id = \(task.id) AND id NOT IN (SELECT id FROM kept)
            """)
    }
}

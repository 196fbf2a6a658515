import Coordination
import Foundation
import Postgres

/// Screens the whole portfolio against itself, for data that arrived by
/// import, and groups the overlaps into clusters of entries linked by them.
public struct PortfolioScan: Sendable {
    let pool: PostgresPool
    let configuration: OverlapConfiguration

    public init(pool: PostgresPool, configuration: OverlapConfiguration) {
        self.pool = pool
        self.configuration = configuration
    }

    public struct Member: Sendable, Hashable {
        public var ref: String
        public var title: String
        public var agency: String
        public var kind: String
    }

    public struct Pair: Sendable, Hashable {
        public var first: String
        public var second: String
        public var score: Double
        public var reasons: [String]
    }

    public struct Cluster: Sendable, Hashable {
        public var country: String
        public var members: [Member]
        public var pairs: [Pair]
    }

    /// The clusters, largest first; `country` (alpha-3 or alpha-2, any case)
    /// narrows the scan. Every active entry is screened as a submission is
    /// (`PortfolioScreener.findings`: the same candidates, bound and
    /// scoring), against the entries after it, so that each pair is scored
    /// once; a page of entries per transaction, and `progress` hears how
    /// many of how many are done. Only overlaps are kept in memory, never
    /// the candidates that fell short.
    public func scan(country: String? = nil, progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) async throws -> [Cluster] {
        // An administrator's scan of every agency's portfolio.
        let (code, total) = try await pool.withTransaction(settings: Scope.all.settings) { connection -> (String?, Int) in
            var code: String?
            if let country {
                guard let row = try await connection.query("SELECT code FROM countries WHERE code = upper(\(country)) OR alpha2 = upper(\(country))").first else {
                    throw StoreError.validation([FieldError("country", "unknown country \(country)")])
                }
                code = try row.decode(String.self, at: 0)
            }
            let total = try await connection.query(
                "SELECT count(*) FROM portfolio WHERE active AND (\(code)::text IS NULL OR country = \(code))").first!.decode(Int.self, at: 0)
            return (code, total)
        }
        var members: [String: Member] = [:]
        var pairsByCountry: [String: [String: Pair]] = [:]
        var done = 0
        var after: Int64 = 0
        progress(0, total)
        while true {
            let last = try await pool.withTransaction(settings: Scope.all.settings) { connection -> Int64? in
                let page = try await connection.query("""
                    SELECT id, ref, country, kind, title, agency, agencies, sectors, locations, lower(period) AS start, upper(period) - 1 AS finish,
                           external_ids, body
                    FROM portfolio WHERE active AND (\(code)::text IS NULL OR country = \(code)) AND id > \(after)
                    ORDER BY id LIMIT 200
                    """)
                for row in page {
                    let ref = try row.decode(String.self, "ref")
                    let entry = PortfolioEntry(
                        ref: ref, agency: try row.decode(String.self, "agency"), agencies: Set(try row.decode([String].self, "agencies")),
                        country: try row.decode(String.self, "country"), sectors: Set(try row.decode([String].self, "sectors")),
                        locations: Set(try row.decode([String].self, "locations")),
                        period: Period(
                            start: CalendarDate(iso: try row.decode(PostgresDate.self, "start").iso)!,
                            end: CalendarDate(iso: try row.decode(PostgresDate.self, "finish").iso)!),
                        externalIDs: Set(try row.decode([String].self, "external_ids")))
                    members[ref] = Member(
                        ref: ref, title: try row.decode(String.self, "title"), agency: entry.agency, kind: try row.decode(String.self, "kind"))
                    // Each pair is met once: from the entry of the lower id.
                    let findings = try await PortfolioScreener.findings(
                        for: entry, text: try row.decode(String.self, "body"), on: connection, configuration: configuration,
                        after: try row.decode(Int64.self, "id"))
                    for finding in findings {
                        // Two publishers may report one identifier: a pair of refs is kept once.
                        let (first, second) = ref < finding.other ? (ref, finding.other) : (finding.other, ref)
                        pairsByCountry[entry.country, default: [:]]["\(first) \(second)"] = pairsByCountry[entry.country]?["\(first) \(second)"]
                            ?? Pair(first: first, second: second, score: finding.score, reasons: finding.reasons)
                    }
                    done += 1
                    progress(done, total)
                }
                return page.isEmpty ? nil : try page[page.count - 1].decode(Int64.self, "id")
            }
            guard let last else { break }
            after = last
        }
        // Entries linked by overlaps form a cluster (union-find), per country.
        var clusters: [Cluster] = []
        for (country, found) in pairsByCountry {
            let pairs = Array(found.values)
            var parent: [String: String] = [:]
            func root(_ ref: String) -> String {
                var node = ref
                while let next = parent[node], next != node { node = next }
                return node
            }
            for pair in pairs {
                parent[pair.first] = parent[pair.first] ?? pair.first
                parent[pair.second] = parent[pair.second] ?? pair.second
                let (x, y) = (root(pair.first), root(pair.second))
                if x != y { parent[max(x, y)] = min(x, y) }
            }
            let groups = Dictionary(grouping: pairs) { root($0.first) }
            for (_, groupPairs) in groups {
                let refs = Set(groupPairs.flatMap { [$0.first, $0.second] })
                clusters.append(Cluster(
                    country: country, members: refs.sorted().compactMap { members[$0] },
                    pairs: groupPairs.sorted { ($0.score, $1.first, $1.second) > ($1.score, $0.first, $0.second) }))
            }
        }
        return clusters.sorted { ($0.members.count, $1.country, $1.members.first?.ref ?? "") > ($1.members.count, $0.country, $0.members.first?.ref ?? "") }
    }
}

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

    /// The clusters, largest first; `country` (alpha-3 or alpha-2) narrows the scan.
    public func scan(country: String? = nil) async throws -> [Cluster] {
        // An administrator's scan of every agency's portfolio.
        let rows = try await pool.withTransaction(settings: Scope.all.settings) { connection in
            try await connection.query("""
                SELECT a.country, a.ref AS a_ref, a.title AS a_title, a.agency AS a_agency, a.kind AS a_kind, a.agencies AS a_agencies,
                       a.sectors AS a_sectors, a.locations AS a_locations, lower(a.period) AS a_start, upper(a.period) - 1 AS a_end,
                       a.external_ids AS a_ids,
                       b.ref AS b_ref, b.title AS b_title, b.agency AS b_agency, b.kind AS b_kind, b.agencies AS b_agencies,
                       b.sectors AS b_sectors, b.locations AS b_locations, lower(b.period) AS b_start, upper(b.period) - 1 AS b_end,
                       b.external_ids AS b_ids, similarity(a.body, b.body) AS text
                FROM portfolio a
                JOIN portfolio b ON b.country = a.country AND b.id > a.id AND b.active AND b.ref <> a.ref
                    AND b.period && daterange(lower(a.period) - \(configuration.toleranceDays)::int, upper(a.period) + \(configuration.toleranceDays)::int)
                    AND (b.categories && a.categories OR b.locations && a.locations)
                WHERE a.active AND (\(country)::text IS NULL OR a.country = \(country)
                                    OR a.country = (SELECT code FROM countries WHERE alpha2 = \(country)))
                """)
        }
        var members: [String: Member] = [:]
        var pairsByCountry: [String: [Pair]] = [:]
        for row in rows {
            func entry(_ side: String) throws -> PortfolioEntry {
                PortfolioEntry(
                    ref: try row.decode(String.self, "\(side)_ref"), agency: try row.decode(String.self, "\(side)_agency"),
                    agencies: Set(try row.decode([String].self, "\(side)_agencies")), country: try row.decode(String.self, "country"),
                    sectors: Set(try row.decode([String].self, "\(side)_sectors")), locations: Set(try row.decode([String].self, "\(side)_locations")),
                    period: Period(
                        start: CalendarDate(iso: try row.decode(PostgresDate.self, "\(side)_start").iso)!,
                        end: CalendarDate(iso: try row.decode(PostgresDate.self, "\(side)_end").iso)!),
                    externalIDs: Set(try row.decode([String].self, "\(side)_ids")))
            }
            let (a, b) = (try entry("a"), try entry("b"))
            guard !OverlapScoring.isDuplicate(a, b) else { continue }
            let (score, components) = OverlapScoring.score(a, b, textSimilarity: try row.decode(Double.self, "text"), configuration: configuration)
            guard score >= configuration.threshold else { continue }
            for side in ["a", "b"] {
                let ref = try row.decode(String.self, "\(side)_ref")
                members[ref] = Member(
                    ref: ref, title: try row.decode(String.self, "\(side)_title"), agency: try row.decode(String.self, "\(side)_agency"),
                    kind: try row.decode(String.self, "\(side)_kind"))
            }
            let (first, second) = a.ref < b.ref ? (a.ref, b.ref) : (b.ref, a.ref)
            pairsByCountry[a.country, default: []].append(
                Pair(first: first, second: second, score: (score * 1000).rounded() / 1000, reasons: OverlapScoring.reasons(components)))
        }
        // Entries linked by overlaps form a cluster (union-find), per country.
        var clusters: [Cluster] = []
        for (country, pairs) in pairsByCountry {
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
                    pairs: groupPairs.sorted { ($0.score, $1.first) > ($1.score, $0.first) }))
            }
        }
        return clusters.sorted { ($0.members.count, $1.country, $1.members.first?.ref ?? "") > ($1.members.count, $0.country, $0.members.first?.ref ?? "") }
    }
}

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
        /// The agency's name, for people: an imported publisher's id is made from its IATI identifier.
        public var agencyName: String
        public var kind: String
    }

    public struct Pair: Sendable, Hashable {
        public var first: String
        public var second: String
        public var score: Double
        public var reasons: [String]
    }

    /// A cluster as it is reported, before its overlaps.
    public struct Cluster: Sendable, Hashable {
        public var country: String
        /// By ref.
        public var members: [Member]
        /// How many overlaps follow.
        public var overlaps: Int
    }

    public struct Totals: Sendable, Equatable {
        public var clusters: Int
        public var overlaps: Int
        public var entries: Int

        public init(clusters: Int, overlaps: Int = 0, entries: Int = 0) {
            self.clusters = clusters
            self.overlaps = overlaps
            self.entries = entries
        }
    }

    /// Reports the clusters, largest first: `cluster` hears each one, then
    /// `overlap` hears its overlaps, strongest first, before the next cluster
    /// begins. `country` (alpha-3 or alpha-2, any case) narrows the scan.
    ///
    /// Every active entry is screened as a submission is
    /// (`PortfolioScreener.findings`: the same candidates, bound and scoring),
    /// against the entries after it, so that each pair is scored once; a page
    /// of entries per transaction, and `progress` hears how many of how many
    /// are done. The overlaps found wait in a temporary table of the scan's
    /// connection, and pbc holds only which entries they link: a portfolio
    /// whose overlaps run to millions is reported in the memory its entries
    /// take, not its overlaps.
    @discardableResult
    public func scan(
        country: String? = nil, progress: (_ done: Int, _ total: Int) -> Void = { _, _ in },
        cluster: (Cluster) async throws -> Void = { _ in }, overlap: (Pair) async throws -> Void = { _ in }
    ) async throws -> Totals {
        // One connection throughout: the temporary tables are its own.
        try await pool.withConnection { connection in
            try await connection.execute(unsafeSQL: """
                DROP TABLE IF EXISTS pg_temp.scan_pairs, pg_temp.scan_clusters;
                CREATE TEMPORARY TABLE scan_pairs (
                    country text NOT NULL, first text COLLATE "C" NOT NULL, second text COLLATE "C" NOT NULL,
                    score double precision NOT NULL, reasons text[] NOT NULL, PRIMARY KEY (country, first, second));
                CREATE TEMPORARY TABLE scan_clusters (
                    country text NOT NULL, ref text COLLATE "C" NOT NULL, cluster integer NOT NULL, PRIMARY KEY (country, ref))
                """)
            var links = try await screenEveryEntry(country: country, on: connection, progress: progress)
            let totals = try await report(links.clusters(), on: connection, cluster: cluster, overlap: overlap)
            try await connection.execute(unsafeSQL: "DROP TABLE pg_temp.scan_pairs, pg_temp.scan_clusters")
            return totals
        }
    }

    /// Screens each active entry against those after it and keeps each pair
    /// found in `scan_pairs`; returns which entries the pairs link.
    private func screenEveryEntry(
        country: String?, on connection: PostgresConnection, progress: (_ done: Int, _ total: Int) -> Void
    ) async throws -> Links {
        // An administrator's scan of every agency's portfolio.
        let (code, total) = try await connection.withTransaction(settings: Scope.all.settings) { connection -> (String?, Int) in
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
        var links = Links()
        var done = 0
        var after: Int64 = 0
        progress(0, total)
        while true {
            let page = try await connection.withTransaction(settings: Scope.all.settings) { connection -> (last: Int64, count: Int, added: [Links.Pair])? in
                let entries = try await connection.query("""
                    SELECT id, ref, country, agency, agencies, sectors, locations, lower(period) AS start, upper(period) - 1 AS finish,
                           external_ids, body
                    FROM portfolio WHERE active AND (\(code)::text IS NULL OR country = \(code)) AND id > \(after)
                    ORDER BY id LIMIT 200
                    """)
                guard entries.count > 0 else { return nil }
                var (countries, firsts, seconds, scores, reasons) = ([String](), [String](), [String](), [String](), [String]())
                for (index, row) in entries.enumerated() {
                    let entry = try PortfolioScreener.entry(of: row, country: try row.decode(String.self, "country"))
                    // Each pair is met once: from the entry of the lower id.
                    let findings = try await PortfolioScreener.findings(
                        for: entry, text: try row.decode(String.self, "body"), on: connection, configuration: configuration,
                        after: try row.decode(Int64.self, "id"))
                    for finding in findings {
                        let (first, second) = entry.ref < finding.other ? (entry.ref, finding.other) : (finding.other, entry.ref)
                        countries.append(entry.country)
                        firsts.append(first)
                        seconds.append(second)
                        scores.append(finding.score.postgresText)
                        reasons.append(finding.reasons.postgresText)
                    }
                    progress(done + index + 1, total)
                }
                // Two publishers may report one identifier: a pair of refs is
                // kept once, as first found (unnest keeps the order).
                let added = try await connection.query("""
                    INSERT INTO scan_pairs (country, first, second, score, reasons)
                    SELECT country, first, second, score::double precision, reasons::text[]
                    FROM unnest(\(countries), \(firsts), \(seconds), \(scores), \(reasons)) AS found(country, first, second, score, reasons)
                    ON CONFLICT DO NOTHING
                    RETURNING country, first, second
                    """).map { Links.Pair(country: try $0.decode(String.self, at: 0), first: try $0.decode(String.self, at: 1), second: try $0.decode(String.self, at: 2)) }
                return (try entries[entries.count - 1].decode(Int64.self, "id"), entries.count, added)
            }
            // Counted once the page is committed, not on a try that was rolled back.
            guard let page else { break }
            page.added.forEach { links.link($0) }
            done += page.count
            after = page.last
        }
        return links
    }

    /// Numbers the clusters in `scan_clusters`, then hands each on with its
    /// overlaps, read through a cursor so that only a batch is held at once.
    private func report(
        _ clusters: [Links.Cluster], on connection: PostgresConnection,
        cluster: (Cluster) async throws -> Void, overlap: (Pair) async throws -> Void
    ) async throws -> Totals {
        var totals = Totals(clusters: clusters.count)
        for start in stride(from: 0, to: clusters.count, by: 1_000) {
            let batch = clusters[start..<min(start + 1_000, clusters.count)]
            let rows = batch.enumerated().flatMap { offset, cluster in cluster.refs.map { (cluster.country, $0, start + offset) } }
            try await connection.query("""
                INSERT INTO scan_clusters (country, ref, cluster)
                SELECT * FROM unnest(\(rows.map(\.0)), \(rows.map(\.1)), \(rows.map { Int32($0.2) }))
                """)
        }
        // Once only: a second try would hand on again what the first already had.
        try await connection.withTransaction(settings: Scope.all.settings, maxAttempts: 1) { connection in
            try await connection.query("""
                DECLARE scan_report NO SCROLL CURSOR FOR
                SELECT c.cluster, p.first, p.second, p.score, p.reasons
                FROM scan_pairs p JOIN scan_clusters c ON c.country = p.country AND c.ref = p.first
                ORDER BY c.cluster, p.score DESC, p.first, p.second
                """)
            var batch: [(cluster: Int, pair: Pair)] = []
            var next = 0
            for (number, found) in clusters.enumerated() {
                // An entry withdrawn while the scan ran is still named, as it was found.
                let members = try await connection.query("""
                    SELECT DISTINCT ON (p.ref) p.ref, p.title, p.agency, a.name AS agency_name, p.kind
                    FROM portfolio p JOIN agencies a ON a.id = p.agency
                    WHERE p.country = \(found.country) AND p.ref = ANY(\(found.refs))
                    ORDER BY p.ref, p.active DESC, p.id DESC
                    """).map {
                        Member(
                            ref: try $0.decode(String.self, "ref"), title: try $0.decode(String.self, "title"),
                            agency: try $0.decode(String.self, "agency"), agencyName: try $0.decode(String.self, "agency_name"),
                            kind: try $0.decode(String.self, "kind"))
                    }
                try await cluster(Cluster(country: found.country, members: members.sorted { $0.ref < $1.ref }, overlaps: found.overlaps))
                totals.entries += members.count
                totals.overlaps += found.overlaps
                for _ in 0..<found.overlaps {
                    if next == batch.count {
                        batch = try await connection.query("FETCH 1000 FROM scan_report").map { row in
                            (
                                try row.decode(Int.self, "cluster"),
                                Pair(
                                    first: try row.decode(String.self, "first"), second: try row.decode(String.self, "second"),
                                    score: try row.decode(Double.self, "score"), reasons: try row.decode([String].self, "reasons"))
                            )
                        }
                        next = 0
                    }
                    guard next < batch.count, batch[next].cluster == number else {
                        throw StoreError(.conflict, "the scan lost track of cluster \(number + 1)'s overlaps (a fault in pbc)")
                    }
                    try await overlap(batch[next].pair)
                    next += 1
                }
            }
        }
        return totals
    }
}

/// Which entries the overlaps found link, per country (union-find over
/// refs), and how many overlaps each group of linked entries has.
private struct Links {
    struct Pair {
        var country: String
        var first: String
        var second: String
    }

    struct Cluster {
        var country: String
        /// Sorted.
        var refs: [String]
        var overlaps: Int
    }

    private var parent: [String: [String: String]] = [:]
    private var overlaps: [String: [String: Int]] = [:]

    mutating func link(_ pair: Pair) {
        let (x, y) = (root(pair.first, in: pair.country), root(pair.second, in: pair.country))
        let count = (overlaps[pair.country]?[x] ?? 0) + (x == y ? 0 : overlaps[pair.country]?[y] ?? 0) + 1
        // The smaller ref stands for the group.
        let (kept, joined) = (min(x, y), max(x, y))
        parent[pair.country, default: [:]][joined] = kept
        parent[pair.country, default: [:]][kept] = kept
        overlaps[pair.country, default: [:]][joined] = nil
        overlaps[pair.country, default: [:]][kept] = count
    }

    private mutating func root(_ ref: String, in country: String) -> String {
        var node = ref
        while let next = parent[country]?[node], next != node { node = next }
        // Path compression: every node on the way now points at the root.
        var step = ref
        while let next = parent[country]?[step], next != node {
            parent[country]?[step] = node
            step = next
        }
        return node
    }

    /// Largest first, then by country and first ref.
    mutating func clusters() -> [Cluster] {
        var result: [Cluster] = []
        for country in parent.keys {
            var members: [String: [String]] = [:]
            for ref in Array(parent[country]!.keys) { members[root(ref, in: country), default: []].append(ref) }
            for (root, refs) in members {
                result.append(Cluster(country: country, refs: refs.sorted(), overlaps: overlaps[country]![root]!))
            }
        }
        return result.sorted { ($0.refs.count, $1.country, $1.refs[0]) > ($1.refs.count, $0.country, $0.refs[0]) }
    }
}

import Coordination
import Foundation
import NIOPosix
import Postgres
import Store

/// Seeds synthetic portfolios of growing size and prints screening latency
/// (the candidate query and scoring, as a submission runs them) at each size.
///
///     swift run -c release screening-bench [--sizes 10000,100000,1000000] [--samples 500] [--threshold 0.5]
///
/// The threshold is Config/overlap.yaml's unless given; `--threshold 0`
/// scores every candidate (the worst case: nothing is filtered in SQL).
///
/// With DATABASE_URL it uses that server (and a database `pbc_bench` on it,
/// dropped and made anew); otherwise a private cluster in a temporary directory.
@main
struct ScreeningBenchmark {
    static func main() async {
        do {
            try await run()
        } catch {
            FileHandle.standardError.write(Data("screening-bench: error: \(error)\n".utf8))
            exit(1)
        }
    }

    static func run() async throws {
        var sizes = [10_000, 100_000, 1_000_000]
        var samples = 500
        var threshold = OverlapConfiguration().threshold
        var arguments = CommandLine.arguments.dropFirst().makeIterator()
        while let argument = arguments.next() {
            switch argument {
            case "--sizes": sizes = (arguments.next() ?? "").split(separator: ",").compactMap { Int($0) }.sorted()
            case "--samples": samples = Int(arguments.next() ?? "") ?? samples
            case "--threshold": threshold = Double(arguments.next() ?? "") ?? threshold
            default:
                FileHandle.standardError.write(Data("usage: screening-bench [--sizes 10000,100000,1000000] [--samples 500] [--threshold 0.5]\n".utf8))
                exit(2)
            }
        }
        let threads = NIOThreadPool(numberOfThreads: 2)
        threads.start()
        var cluster: (LocalCluster, URL)?
        let server: ConnectionTarget
        if let url = ProcessInfo.processInfo.environment["DATABASE_URL"] {
            server = ConnectionTarget(conninfo: url)
        } else {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbc-bench-\(getpid())")
            let local = try LocalCluster(configuration: .init(directory: directory, fsync: false))
            server = try await local.start().target
            cluster = (local, directory)
        }
        let admin = try await PostgresConnection.connect(to: server.database("postgres"), on: threads)
        try await admin.execute(unsafeSQL: "DROP DATABASE IF EXISTS pbc_bench")
        try await admin.execute(unsafeSQL: "CREATE DATABASE pbc_bench")
        await admin.close()
        let connection = try await PostgresConnection.connect(to: server.database("pbc_bench"), on: threads)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        _ = try await Migrator(directory: root.appendingPathComponent("sql")).migrate(on: connection)
        try await ReferenceData.load(from: root.appendingPathComponent("Config")).sync(on: connection)
        var configuration = OverlapConfiguration()
        configuration.threshold = threshold
        // Crisis and PBC countries first, so that the skew falls on them.
        let countryCodes = try await connection.query(
            "SELECT code FROM countries ORDER BY code IN ('BDI','CAF','GNB','LBR','SLE','COD','SSD','SOM','MLI','HTI','COL','AFG') DESC, code"
        ).map { try $0.decode(String.self, at: 0) }
        let sectors = try await connection.query("SELECT code FROM sectors ORDER BY code LIKE '15%' DESC, code").map { try $0.decode(String.self, at: 0) }
        let spread = Spread(countryCodes: countryCodes, sectors: sectors)

        print("screening latency over synthetic portfolios (\(samples) screenings each, threshold \(threshold))")
        print("entries      overlaps p50/p99/max   p50 ms    p99 ms    max ms")
        var seeded = 0
        var bySize: [(size: Int, samples: [Sample])] = []
        for size in sizes {
            let started = ContinuousClock.now
            try await seed(from: seeded, to: size, spread: spread, on: connection)
            seeded = size
            try await connection.execute(unsafeSQL: "VACUUM ANALYZE portfolio")
            FileHandle.standardError.write(Data("seeded \(size) entries in \(ContinuousClock.now - started)\n".utf8))
            var random = SplitMix(seed: UInt64(size))
            // Warm the caches, as a running server's are.
            for _ in 0..<50 {
                let (subject, text) = subject(&random, spread)
                _ = try await screen(subject, text: text, on: connection, configuration)
            }
            var measured: [Sample] = []
            for _ in 0..<samples {
                let (subject, text) = subject(&random, spread)
                let start = ContinuousClock.now
                let found = try await screen(subject, text: text, on: connection, configuration)
                let elapsed = ContinuousClock.now - start
                measured.append(Sample(
                    milliseconds: Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000,
                    overlaps: found, candidates: try await candidates(of: subject, on: connection, configuration)))
            }
            let latencies = measured.map(\.milliseconds).sorted()
            let overlaps = measured.map(\.overlaps).sorted()
            let found = "\(overlaps[overlaps.count / 2])/\(percentile(overlaps, 0.99))/\(overlaps.last!)"
            print(
                "\(size)".padding(toLength: 13, withPad: " ", startingAt: 0) + found.padding(toLength: 23, withPad: " ", startingAt: 0)
                    + String(format: "%-9.2f %-9.2f %.2f", percentile(latencies, 0.5), percentile(latencies, 0.99), latencies.last!))
            bySize.append((size, measured))
        }
        // The same screenings grouped by how many candidates each examined:
        // whether the cost follows the candidates or the portfolio's size.
        print("\nby candidates examined (screenings, p50 ms, p99 ms)")
        // Bands about three times wider each, so that a band holds subjects
        // of much the same cost at every size.
        let groups: [(String, ClosedRange<Int>)] = [
            ("0-10", 0...10), ("11-30", 11...30), ("31-100", 31...100), ("101-300", 101...300), ("301-1000", 301...1000),
            ("1001-3000", 1001...3000), ("3001-10000", 3001...10000), ("over 10000", 10001...Int.max),
        ]
        print("candidates   " + bySize.map { "\($0.size)".padding(toLength: 22, withPad: " ", startingAt: 0) }.joined())
        for (name, range) in groups {
            var line = name.padding(toLength: 13, withPad: " ", startingAt: 0)
            for (_, measured) in bySize {
                let latencies = measured.filter { range.contains($0.candidates) }.map(\.milliseconds).sorted()
                let cell = latencies.isEmpty ? "-" : String(format: "%d, %.2f, %.2f", latencies.count, percentile(latencies, 0.5), percentile(latencies, 0.99))
                line += cell.padding(toLength: 22, withPad: " ", startingAt: 0)
            }
            print(line)
        }
        await connection.close()
        if let (local, directory) = cluster {
            try await local.stop(immediately: true)
            try? FileManager.default.removeItem(at: directory)
        }
        try await threads.shutdownGracefully()
    }

    struct Sample {
        let milliseconds: Double
        let overlaps: Int
        let candidates: Int
    }

    static func percentile<T>(_ sorted: [T], _ p: Double) -> T { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }

    /// How many entries are candidates for a subject (SPEC section 4), untimed.
    static func candidates(of subject: PortfolioEntry, on connection: PostgresConnection, _ configuration: OverlapConfiguration) async throws -> Int {
        let keys = PortfolioScreener.keys(of: subject)
        let tolerance = Int32(configuration.toleranceDays)
        return try await connection.query("""
            SELECT count(DISTINCT entry)::int FROM portfolio_keys
            WHERE country = \(subject.country) AND key = ANY (\(keys))
              AND period && daterange(\(PostgresDate(iso: subject.period.start.iso)!) - \(tolerance), \(PostgresDate(iso: subject.period.end.iso)!) + \(tolerance), '[]')
            """).map { try $0.decode(Int.self, at: 0) }.first ?? 0
    }

    /// Screens one subject as a submission does: its key locks (taken and, outside a
    /// transaction, let go at once), the candidate query and scoring; returns the overlaps found.
    static func screen(_ subject: PortfolioEntry, text: String, on connection: PostgresConnection, _ configuration: OverlapConfiguration) async throws -> Int {
        try await PortfolioScreener.lockKeys(of: subject, on: connection)
        let findings = try await PortfolioScreener.findings(
            for: subject, text: text, on: connection,
            configuration: configuration)
        return findings.count
    }

    /// The spread of the seeded data: all 249 countries, a few carrying most
    /// entries (Zipf), each with 50 provinces; the sector codes of
    /// Config/sectors.yaml, also skewed; periods of 6 to 48 months from 2000 to 2035.
    struct Spread {
        let countryCodes: [String]
        let sectors: [String]
    }
    static let provinces = 50
    static let spanDays = 12_775

    /// A subject and its text (title and description), drawn from the same spread as the entries.
    static func subject(_ random: inout SplitMix, _ spread: Spread) -> (PortfolioEntry, String) {
        let country = spread.countryCodes[zipf(spread.countryCodes.count, &random)]
        let startDays = Int(random.next() % UInt64(spanDays))
        let length = 180 + Int(random.next() % 1260)
        let base = CalendarDate(iso: "2000-01-01")!.daysSinceEpoch
        func date(_ days: Int) -> CalendarDate { CalendarDate(Date(timeIntervalSince1970: Double(base + days) * 86_400)) }
        let entry = PortfolioEntry(
            ref: "bench-subject", agency: "undp", agencies: ["undp"], country: country,
            sectors: [spread.sectors[zipf(spread.sectors.count, &random)]], locations: ["province \(Int(random.next() % UInt64(provinces)))"],
            period: Period(start: date(startDays), end: date(startDays + length)))
        let words = wordsPerText.lowerBound + Int(random.next() % UInt64(wordsPerText.count))
        let text = "Program subject " + (0..<words).map { _ in vocabulary[zipf(vocabulary.count, &random)] }.joined(separator: " ")
        return (entry, text)
    }

    /// How many words a description has. With the vocabulary below that is
    /// about 330 to 700 characters, 500 in the middle: the descriptions of the
    /// Ebola fixture (../shared/data/iati) have a median of 507 (title and
    /// description, as screening compares them). Text similarity costs
    /// more the longer the texts, so short synthetic texts would flatter it.
    static let wordsPerText = 60..<100

    /// The words of the synthetic descriptions, commonest first (drawn with
    /// Zipf's law): function words, then the language of development and
    /// peacebuilding programs, after the narratives of the Ebola fixture.
    static let vocabulary = """
        the and to of in a for with on is this that will by are their communities support from as be local \
        community health women youth through national government project program peace dialogue recovery \
        security justice reconciliation conflict prevention response emergency capacity building training \
        services access education protection livelihoods water sanitation hygiene food nutrition children \
        families people partners district province region rural areas public social economic political \
        institutions civil society organizations leaders traditional authorities police courts human rights \
        gender equality participation inclusion mediation elections governance accountability transparency \
        reform strengthening coordination monitoring evaluation data information awareness campaigns radio \
        displaced returnees refugees host shelter camps land disputes resolution early warning violence \
        alert mechanisms ministry interior defence finance planning budget funds grants small business \
        employment skills vocational agriculture farmers markets value chains cash transfers infrastructure \
        roads schools clinics hospitals facilities equipment supplies kits materials distribution teams staff \
        workers volunteers committees councils networks platforms forums meetings workshops sessions \
        psychosocial trauma survivors victims former combatants reintegration demobilization disarmament \
        border cross cohesion trust tolerance religious interfaith media journalists press consultations \
        policy legal framework strategy action plan implementation phase pilot scale sustainable resilience \
        climate environment natural resources mining forestry fisheries management risk reduction disaster \
        preparedness outbreak epidemic disease surveillance treatment care referral case medical \
        international regional united nations agencies donors fund multi year joint programme technical \
        assistance advisory analysis assessment baseline survey study research learning knowledge \
        improve increase reduce ensure provide promote develop establish enhance expand address manage \
        which also these more than over all new key first most such other within across between during
        """.split(whereSeparator: \.isWhitespace).map(String.init)

    /// An index skewed toward the start, roughly Zipf's law.
    static func zipf(_ count: Int, _ random: inout SplitMix) -> Int {
        let u = Double(random.next() % 1_000_000) / 1_000_000
        return min(count - 1, Int(pow(Double(count), u)) - 1)
    }

    /// Inserts entries [from, to) with generate_series, in batches of 50,000:
    /// a minimal activity for each, and its portfolio row.
    static func seed(from: Int, to: Int, spread: Spread, on connection: PostgresConnection) async throws {
        let (countryCodes, sectors) = (spread.countryCodes, spread.sectors)
        try await connection.query("""
            INSERT INTO agencies (id, name, kind) SELECT 'agency-' || n, 'Agency ' || n, 'external' FROM generate_series(0, 199) AS n
            ON CONFLICT DO NOTHING
            """)
        var start = from
        while start < to {
            let end = min(to, start + 50_000)
            try await connection.query("""
                WITH made AS (
                    INSERT INTO activities (identifier, reporting_agency, title, content_hash, source)
                    SELECT 'BENCH-' || g, 'agency-' || (g % 200), 'Program ' || g, 'bench', 'screening-bench'
                    FROM generate_series(\(start)::int, \(end - 1)::int) AS g
                    RETURNING id, substr(identifier, 7)::int AS g
                ),
                -- Drawn in a select list, so once per entry: a subquery that
                -- does not refer to the entry is run once for the whole batch.
                drawn AS (
                    SELECT id, g, (\(countryCodes)::text[])[floor(pow(\(countryCodes.count)::float8, random()))::int] AS country,
                           (\(sectors)::text[])[floor(pow(\(sectors.count)::float8, random()))::int] AS sector,
                           DATE '2000-01-01' + ((g::bigint * 7919) % \(spanDays))::int AS d
                    FROM made
                )
                INSERT INTO portfolio (ref, country, kind, activity_id, agency, agencies, period, sectors, categories, locations, title, body, external_ids, active)
                SELECT 'BENCH-' || g, country, 'activity', id, 'agency-' || (g % 200), ARRAY['agency-' || (g % 200), 'agency-' || ((g::bigint * 7) % 200)],
                       daterange(d, d + (180 + (g::bigint * 37) % 1260)::int),
                       ARRAY[sector], ARRAY[left(sector, 3)], ARRAY['province ' || (g % \(provinces))],
                       'Program ' || g,
                       -- Referring to g, so drawn again for each entry.
                       'Program ' || g || ' ' || (SELECT string_agg((\(vocabulary)::text[])[floor(pow(\(vocabulary.count)::float8, random()))::int], ' ')
                                                  FROM generate_series(1, \(wordsPerText.lowerBound) + g % \(wordsPerText.count))),
                       '{}', true
                FROM drawn
                """)
            start = end
        }
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

import Foundation
import JSONRPC
import NIOCore
import NIOPosix
import Postgres
import Store
import Subprocess
import Synchronization
import Testing
import TestSupport

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// `kill -9` of a real `pbc serve` at random moments while clients submit,
/// claim and act, logging every answer they get; then every acknowledged
/// write must be there and the invariants must hold. `PBC_CRASH_KILLS` sets
/// how many kills (3 by default; `bench/crash` runs 20).
@Suite struct CrashTests {
    /// What a client was told succeeded: the task, its version and state then.
    struct Acknowledged: Sendable {
        let ref: String
        let version: Int
        let state: String
    }

    final class Log: Sendable {
        private let state = Mutex<(acknowledged: [Acknowledged], stop: Bool, unavailable: Int)>(([], false, 0))
        func add(_ entry: Acknowledged) { state.withLock { $0.acknowledged.append(entry) } }
        /// Answers of -32000: the database was away.
        func noteUnavailable(_ answer: JSONValue?) {
            if case .integer(-32000)? = answer?["error"]?["code"], answer?["error"]?["data"]?["retryAfterMs"] != nil {
                state.withLock { $0.unavailable += 1 }
            }
        }
        var unavailable: Int { state.withLock { $0.unavailable } }
        var acknowledged: [Acknowledged] { state.withLock { $0.acknowledged } }
        var stopped: Bool { state.withLock { $0.stop } }
        func stop() { state.withLock { $0.stop = true } }
    }

    static var kills: Int { Int(ProcessInfo.processInfo.environment["PBC_CRASH_KILLS"] ?? "") ?? 3 }

    /// A migrated database reachable by URL, with a liaison and a coordinator and their tokens.
    static func prepare(_ label: String) async throws -> (url: String, target: ConnectionTarget)? {
        guard try await TestDatabase.cluster() != nil else { return nil }
        let target = try await TestDatabase.create(label)
        guard let url = try await CommandLineTests.url(of: target) else { return nil }
        let database = try await TestDatabase.connect(target)
        try await ReferenceData.load(from: TestDatabase.repositoryRoot.appendingPathComponent("Config")).sync(on: database)
        for (principal, role, agency) in [("crash-liaison", "liaison", "undp"), ("crash-coordinator", "coordinator", "pbso")] {
            try await database.query("""
                WITH p AS (INSERT INTO principals (name, role, agency) VALUES (\(principal), \(role), \(agency)) RETURNING id)
                INSERT INTO api_tokens (principal, token_hash) SELECT id, sha256(convert_to(\("pbc_example_" + principal), 'UTF8')) FROM p
                """)
        }
        await database.close()
        return (url, target)
    }

    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }

    /// Runs `pbc serve` until `body` returns, then kills it with `signal`.
    static func serve(url: String, port: Int, extra: [String] = [], until body: @Sendable () async throws -> Void, signal: Subprocess.Signal) async throws {
        _ = try await Subprocess.run(
            .path(FilePath(PBCBinary.path)),
            arguments: Arguments(["serve", "--port", String(port), "--database-url", url] + extra),
            environment: .inherit.updating(["PBC_LOG_LEVEL": "warning"]),
            workingDirectory: FilePath(TestDatabase.repositoryRoot.path),
            input: .none, output: .sequence, error: .discarded
        ) { execution in
            var lines = execution.standardOutput.strings().makeAsyncIterator()
            _ = try await lines.next()  // "pbc serving JSON-RPC on ..."
            try await body()
            try execution.send(signal: signal)
            while try await lines.next() != nil {}
        }
    }

    /// Connects again and again until the server answers, then runs `work` until it fails or the log says stop.
    static func client(port: Int, token: String, log: Log, _ work: @escaping @Sendable (LineClient, inout Int) async throws -> Void) async {
        var counter = 0
        while !log.stopped {
            do {
                try await LineClient.withConnection(port: port) { client in
                    let hello = try await client.call("session.hello", id: 0, params: #"{"protocol":1,"token":"\#(token)"}"#)
                    guard hello?["result"] != nil else { throw CancellationError() }
                    while !log.stopped { try await work(client, &counter) }
                }
            } catch {
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// Submissions (retried with the same key after a failure, so a retry may
    /// be a replay) and claims with an action under the lease.
    static func load(
        port: Int, log: Log, liaison: String = "pbc_example_crash-liaison", coordinator: String = "pbc_example_crash-coordinator"
    ) -> [@Sendable () async -> Void] {
        let submitters: [@Sendable () async -> Void] = (0..<2).map { worker in
            {
                await client(port: port, token: liaison, log: log) { client, counter in
                    // The key moves on only after an answer: a lost answer is retried as the same submission.
                    let params = ServerHarness.project(key: "crash-\(worker)-\(counter)", title: "Crash programme \(worker) \(counter)")
                        .replacingOccurrences(of: #""sectors":["15220"]"#, with: #""sectors":["\#(["15220", "15110", "13020", "11220"][counter % 4])"]"#)
                    guard let answer = try await client.call("task.submit", id: 1, params: params) else { throw CancellationError() }
                    log.noteUnavailable(answer)
                    if let task = answer["result"]?["task"], case .string(let ref)? = task["ref"], case .integer(let version)? = task["version"],
                        case .string(let state)? = task["state"]
                    {
                        log.add(Acknowledged(ref: ref, version: Int(version), state: state))
                    }
                    counter += 1
                }
            }
        }
        let actors: [@Sendable () async -> Void] = (0..<2).map { _ in
            {
                await client(port: port, token: coordinator, log: log) { client, _ in
                    guard let claimed = try await client.call("queue.claim", id: 2, params: #"{"queue":"pbso-review-BDI","leaseSeconds":5}"#)
                    else { throw CancellationError() }
                    log.noteUnavailable(claimed)
                    guard let task = claimed["result"]?["task"], case .string(let ref)? = task["ref"], case .integer(let version)? = task["version"],
                        case .string(let lease)? = claimed["result"]?["lease"]?["id"]
                    else {
                        try await Task.sleep(for: .milliseconds(20))
                        return
                    }
                    log.add(Acknowledged(ref: ref, version: Int(version), state: "technical_review"))
                    let acted = try await client.call(
                        "task.act", id: 3, params: #"{"task":"\#(ref)","action":"request_revision","expectedVersion":\#(version),"lease":"\#(lease)","comment":"crash test"}"#)
                    if let after = acted?["result"]?["task"], case .integer(let version)? = after["version"], case .string(let state)? = after["state"] {
                        log.add(Acknowledged(ref: ref, version: Int(version), state: state))
                    }
                }
            }
        }
        return submitters + actors
    }

    /// Every acknowledged write present; no half-applied change; the invariants.
    static func verify(_ log: Log, on target: ConnectionTarget) async throws -> (checked: Int, lost: [String], violations: [String]) {
        let connection = try await TestDatabase.connect(target)
        var lost: [String] = []
        for entry in log.acknowledged {
            let rows = try await connection.query("SELECT version, state FROM tasks WHERE ref = \(entry.ref)")
            guard let row = rows.first else {
                let near = try await connection.query(
                    "SELECT string_agg(ref || ' ' || title, '; ') FROM tasks WHERE ref BETWEEN \(entry.ref) AND \(entry.ref) || 'z' OR title LIKE '%' || \(entry.ref) || '%'")
                let keys = try await connection.query("SELECT count(*) FROM idempotency_keys").first!.decode(Int.self, at: 0)
                let tasks = try await connection.query("SELECT count(*), max(ref) FROM tasks WHERE workflow = 'pbf-project'").first!
                lost.append("\(entry.ref) is missing (acknowledged as version \(entry.version) \(entry.state); keys \(keys), tasks \(try tasks.decode(Int.self, at: 0)), newest \(try tasks.decode(String?.self, at: 1) ?? "-"); \(try near.first!.decode(String?.self, at: 0) ?? ""))")
                continue
            }
            let version = try row.decode(Int.self, at: 0)
            if version < entry.version { lost.append("\(entry.ref) is at version \(version), below the acknowledged \(entry.version)") }
            if version == entry.version, try row.decode(String.self, at: 1) != entry.state {
                lost.append("\(entry.ref) at version \(version) is not \(entry.state)")
            }
        }
        var violations: [String] = []
        violations += try await connection.query("""
            SELECT t.ref || ': state ' || t.state || ', last event ' || coalesce(e.to_state, 'none')
            FROM tasks t
            LEFT JOIN LATERAL (SELECT to_state FROM events WHERE task_id = t.id AND to_state IS NOT NULL ORDER BY seq DESC LIMIT 1) e ON true
            WHERE e.to_state IS DISTINCT FROM t.state
            """).map { try $0.decode(String.self, at: 0) }
        violations += try await connection.query("""
            SELECT t.ref || ': no task.created event' FROM tasks t
            WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.task_id = t.id AND e.type = 'task.created')
            """).map { try $0.decode(String.self, at: 0) }
        // Each task's history is an unbroken chain: every step starts where the one before it ended.
        violations += try await connection.query("""
            SELECT ref || ': step ' || seq || ' starts at ' || coalesce(from_state, 'nothing') || ' after ' || coalesce(previous, 'nothing')
            FROM (SELECT t.ref, e.seq, e.from_state, e.type,
                         lag(e.to_state) OVER (PARTITION BY e.task_id ORDER BY e.seq) AS previous
                  FROM events e JOIN tasks t ON t.id = e.task_id
                  WHERE e.to_state IS NOT NULL) steps
            WHERE type <> 'task.created' AND from_state IS DISTINCT FROM previous
            """).map { try $0.decode(String.self, at: 0) }
        violations += try await connection.query("""
            SELECT o.id::text || ': resolved ' || count(*) || ' times' FROM task_overlaps o
            JOIN events e ON e.type = 'overlap.resolved' AND e.data->>'overlap' = o.id::text AND e.task_id = o.task_id
            GROUP BY o.id HAVING count(*) > 1
            """).map { try $0.decode(String.self, at: 0) }
        violations += try await connection.query("""
            SELECT k.key || ': ' || count(*) || ' tasks' FROM idempotency_keys k GROUP BY k.agency, k.key HAVING count(*) > 1
            """).map { try $0.decode(String.self, at: 0) }
        await connection.close()
        return (log.acknowledged.count, lost, violations)
    }

    @Test func acknowledgedWritesSurviveKillNineOfTheServer() async throws {
        guard let (url, target) = try await Self.prepare("crash") else { return }
        let port = try await Self.freePort()
        let log = Log()
        let kills = Self.kills
        let workers = Self.load(port: port, log: log)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in workers { group.addTask { await worker() } }
            for _ in 0..<kills {
                try await Self.serve(url: url, port: port, until: {
                    try await Task.sleep(for: .milliseconds(Int.random(in: 400...1500)))
                }, signal: .kill)
            }
            // A last run that ends cleanly, so that clients finish what they were doing.
            try await Self.serve(url: url, port: port, until: {
                try await Task.sleep(for: .milliseconds(500))
                log.stop()
            }, signal: .terminate)
            try await group.waitForAll()
        }
        let (checked, lost, violations) = try await Self.verify(log, on: target)
        print("crash test: \(kills) kills, \(checked) acknowledged writes checked, lost \(lost.count), invariant violations \(violations.count)")
        #expect(checked > kills)  // the load really ran between the kills
        #expect(lost == [])
        #expect(violations == [])
    }
}

/// PostgreSQL stopped with `-m immediate` and started again, several times,
/// while clients run against pbc: pbc stays up, answers -32000 with
/// `retryAfterMs` meanwhile, and serves again without being restarted.
/// `PBC_RESTARTS` sets how many (2 by default; `bench/crash` runs 5).
@Suite struct RestartTests {
    @Test func pbcRidesOutDatabaseRestartsAndLosesNothing() async throws {
        let restarts = Int(ProcessInfo.processInfo.environment["PBC_RESTARTS"] ?? "") ?? 2
        let directory = Scratch.directory.appendingPathComponent("pbc-restarts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        // Durable settings: the other tests' clusters run with synchronous_commit off, which
        // by design gives up the last commits when PostgreSQL crashes, as an immediate stop does.
        let cluster = try LocalCluster(configuration: .init(directory: directory, fsync: true))
        let running = try await cluster.start()
        try await Database.createIfMissing("pbc", on: running.target, threadPool: TestDatabase.threadPool)
        let target = running.target.database("pbc")
        let server = try await ServerHarness.start("restarts", database: target)
        let log = CrashTests.Log()
        let workers = CrashTests.load(
            port: server.port, log: log, liaison: server.tokens["undp-liaison"]!, coordinator: server.tokens["coordinator"]!)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in workers { group.addTask { await worker() } }
            for _ in 0..<restarts {
                try await Task.sleep(for: .milliseconds(Int.random(in: 700...1500)))
                try await cluster.stop(immediately: true)
                try await Task.sleep(for: .milliseconds(700))
                _ = try await cluster.start(port: running.port)
            }
            try await Task.sleep(for: .seconds(2))
            log.stop()
            try await group.waitForAll()
        }
        // The same pbc serves again.
        let after = try await server.withSession("undp-liaison") { client in
            try await client.call("task.submit", id: 1, params: ServerHarness.project(key: "after-the-restarts"))
        }
        #expect(after?["result"]?["task"] != nil, "\(String(describing: after))")
        let (checked, lost, violations) = try await CrashTests.verify(log, on: target)
        print("restart test: \(restarts) restarts, \(checked) acknowledged writes checked, \(log.unavailable) answers of -32000, lost \(lost.count), invariant violations \(violations.count)")
        #expect(log.unavailable > 0)  // the clients did meet the outages
        #expect(lost == [])
        #expect(violations == [])
        await server.stop()
        try? await cluster.stop(immediately: true)
    }
}

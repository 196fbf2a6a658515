import Foundation
import JSONRPC
import Postgres
import Subprocess
import Testing
import TestSupport

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// `pbc` run as a user runs it: a separate process, its output and exit status.
@Suite struct CommandLineTests {
    struct Outcome {
        var status: TerminationStatus
        var standardOutput: String
        var standardError: String
    }

    func pbc(_ arguments: [String], environment: [String: String?] = [:], in directory: URL = TestDatabase.repositoryRoot) async throws -> Outcome {
        var cleared: [Environment.Key: String?] = ["DATABASE_URL": nil, "PGHOST": nil, "PGHOSTADDR": nil, "PGSERVICE": nil]
        for (key, value) in environment { cleared[Environment.Key(stringLiteral: key)] = value }
        let result = try await Subprocess.run(
            .path(FilePath(PBCBinary.path)), arguments: Arguments(arguments), environment: .inherit.updating(cleared),
            workingDirectory: FilePath(directory.path),
            output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        return Outcome(status: result.terminationStatus, standardOutput: result.standardOutput, standardError: result.standardError)
    }

    /// One line naming the problem, a non-zero exit, no stack trace.
    func expectOneLineFailure(_ outcome: Outcome, mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(outcome.status == .exited(1), sourceLocation: sourceLocation)
        let lines = outcome.standardError.split(separator: "\n").filter { !$0.contains(" info ") }
        #expect(lines.count == 1, "stderr: \(outcome.standardError)", sourceLocation: sourceLocation)
        #expect(lines.first?.hasPrefix("pbc: error: ") == true, sourceLocation: sourceLocation)
        #expect(outcome.standardError.contains(text), "stderr: \(outcome.standardError)", sourceLocation: sourceLocation)
        #expect(!outcome.standardError.contains("Fatal error"), sourceLocation: sourceLocation)
    }

    /// Every option and argument of every command says what it is in its
    /// help: a flag with no words beside it leaves a user guessing.
    @Test func everyOptionOfEveryCommandSaysWhatItIs() async throws {
        var commands: [[String]] = [[]]
        var undescribed: [String] = []
        var visited = 0
        while let command = commands.popLast() {
            visited += 1
            let help = try await pbc(command + ["--help"])
            guard help.status == .exited(0) else {
                Issue.record("pbc \(command.joined(separator: " ")) --help: \(help.standardError)")
                continue
            }
            var section = ""
            let lines = help.standardOutput.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            for (index, line) in lines.enumerated() {
                if line.hasSuffix(":") && !line.hasPrefix(" ") {
                    section = line
                    continue
                }
                guard line.hasPrefix("  "), !line.hasPrefix("   "), !line.hasPrefix("  See ") else { continue }
                let item = line.dropFirst(2)
                if section == "SUBCOMMANDS:" {
                    if let name = item.split(separator: " ").first { commands.append(command + [String(name)]) }
                } else if section == "OPTIONS:" || section == "ARGUMENTS:" {
                    // Words in the description column (26, where ArgumentParser
                    // puts them), beside the flag or on the line under it.
                    let inline = line.count > 26 && line.prefix(26).last == " "
                    let below = index + 1 < lines.count && lines[index + 1].hasPrefix(String(repeating: " ", count: 26))
                    if !inline && !below { undescribed.append((["pbc"] + command).joined(separator: " ") + ": " + item) }
                }
            }
        }
        #expect(visited > 30, "only \(visited) commands found")
        #expect(undescribed.isEmpty, "\(undescribed.joined(separator: "\n"))")
    }

    @Test func aMalformedDatabaseURLIsOneLine() async throws {
        let outcome = try await pbc(["migrate"], environment: ["DATABASE_URL": "postgresql://pbc@[::1/pbc"])
        expectOneLineFailure(outcome, mentioning: "could not connect to the database")
    }

    @Test func anUnreachableHostIsOneLine() async throws {
        let outcome = try await pbc(["migrate", "--database-url", "postgresql://pbc@127.0.0.1:1/pbc"])
        expectOneLineFailure(outcome, mentioning: "127.0.0.1")
    }

    @Test func aWrongPasswordIsOneLine() async throws {
        guard let (_, running) = try await TestDatabase.cluster() else {
            // An external PBC_TEST_DATABASE_URL server decides its own authentication.
            return
        }
        let admin = try await TestDatabase.connect(try await TestDatabase.adminTarget())
        try await admin.execute(unsafeSQL: "DROP ROLE IF EXISTS pbc_password_probe; CREATE ROLE pbc_password_probe LOGIN PASSWORD 'right-one'")
        await admin.close()
        let outcome = try await pbc(
            ["migrate"], environment: ["DATABASE_URL": "postgresql://pbc_password_probe:wrong-one@127.0.0.1:\(running.port)/postgres"])
        expectOneLineFailure(outcome, mentioning: "password authentication failed")
        #expect(!outcome.standardError.contains("wrong-one"))
    }

    /// A port another program holds is named, with what to do, and pbc
    /// stops cleanly rather than printing the socket call that failed.
    @Test func aPortInUseIsOneLine() async throws {
        guard let url = try await freshDatabaseURL("cli_port_in_use") else { return }
        let server = try await ServerHarness.start("cli_port_holder")
        let outcome = try await pbc(["serve", "--port", "\(server.port)", "--database-url", url])
        expectOneLineFailure(outcome, mentioning: "cannot serve JSON-RPC on 127.0.0.1:\(server.port): the address is in use")
        #expect(outcome.standardError.contains("choose another with --port"))
        await server.stop()
    }

    @Test func aBadConfigurationValueIsOneLine() async throws {
        let outcome = try await pbc(["serve"], environment: ["PBC_SERVER_PORT": "seventy"])
        expectOneLineFailure(outcome, mentioning: "server.port (PBC_SERVER_PORT) must be a whole number")
    }

    /// Run outside the repository, pbc does not find `sql/` and `Config/`
    /// where it looks by default; it says where it looked and how to point
    /// at them, before touching any database.
    @Test func runElsewhereItSaysWhereItLookedForItsDirectories() async throws {
        let elsewhere = Scratch.directory.appendingPathComponent("pbc-elsewhere-\(UUID())")
        try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: elsewhere) }
        let unreachable = "postgresql://pbc@127.0.0.1:1/pbc"
        expectOneLineFailure(
            try await pbc(["migrate", "--database-url", unreachable], in: elsewhere),
            mentioning: "no migrations directory \(elsewhere.path)/sql: pbc reads sql/ in the working directory unless --sql-dir")
        let sql = TestDatabase.repositoryRoot.appendingPathComponent("sql").path
        expectOneLineFailure(
            try await pbc(["import", "csv", "activities.csv", "--database-url", unreachable, "--sql-dir", sql], in: elsewhere),
            mentioning: "no configuration directory \(elsewhere.path)/Config: pbc reads Config/ in the working directory unless --config-dir")
        expectOneLineFailure(
            try await pbc(["serve", "--database-url", unreachable], in: elsewhere),
            mentioning: "no configuration directory \(elsewhere.path)/Config")
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere.path).isEmpty)
    }

    /// A URL to a new, empty database on the throwaway cluster, which speaks TCP
    /// with passwords (nil with PBC_TEST_DATABASE_URL, whose URL the tests cannot rewrite).
    func freshDatabaseURL(_ label: String) async throws -> String? {
        guard try await TestDatabase.cluster() != nil else { return nil }
        return try await Self.url(of: try await TestDatabase.createEmpty(label))
    }

    /// The password the URLs below carry, set once for the run: two tests
    /// altering the same role at once fail with "tuple concurrently updated".
    static let password = Task {
        let admin = try await TestDatabase.connect(try await TestDatabase.adminTarget())
        try await admin.execute(unsafeSQL: "ALTER ROLE postgres PASSWORD 'cli-test'")
        await admin.close()
    }

    /// A URL to a database of the throwaway cluster, as a separate `pbc` process connects to it.
    static func url(of target: ConnectionTarget) async throws -> String? {
        guard let (_, running) = try await TestDatabase.cluster() else { return nil }
        try await password.value
        let database = try await TestDatabase.connect(target)
        let name = try await database.query("SELECT current_database()").first!.decode(String.self, at: 0)
        await database.close()
        return "postgresql://postgres:cli-test@127.0.0.1:\(running.port)/\(name)"
    }

    @Test func migrateAgainstAServerAppliesThenFindsNothingToDo() async throws {
        guard let url = try await freshDatabaseURL("cli_migrate") else { return }
        let first = try await pbc(["migrate", "--database-url", url])
        #expect(first.status == .exited(0), "\(first.standardError)")
        #expect(first.standardOutput.contains("applied 0001_extensions.sql"))
        #expect(first.standardOutput.contains("applied 0002_domain.sql"))
        let second = try await pbc(["migrate", "--database-url", url])
        #expect(second.standardOutput.contains("up to date"))
    }

    @Test func eachRequestIsLoggedOnOneLineAndTokensNeverAre() async throws {
        guard let url = try await freshDatabaseURL("cli_logs") else { return }
        let database = ["--database-url", url]
        _ = try await pbc(["admin", "principal", "add", "--name", "amina", "--role", "liaison", "--agency", "undp"] + database)
        let token = try await pbc(["admin", "token", "create", "--principal", "amina"] + database).standardOutput
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("pbc_"))
        let result = try await Subprocess.run(
            .path(FilePath(PBCBinary.path)), arguments: Arguments(["serve", "--port", "0"] + database),
            workingDirectory: FilePath(TestDatabase.repositoryRoot.path),
            input: .none, output: .sequence, error: .string(limit: 1 << 20)
        ) { execution in
            var lines = execution.standardOutput.strings().makeAsyncIterator()
            let line = try #require(try await lines.next())
            let port = try #require(Int(line.split(separator: ":").last ?? ""))
            try await LineClient.withConnection(port: port) { client in
                _ = try await client.call("session.hello", id: 1, params: #"{"protocol":1,"token":"\#(token)"}"#)
                _ = try await client.call("session.hello", id: 2, params: #"{"protocol":1,"token":"\#(token)x"}"#)
            }
            try await LineClient.withConnection(port: port) { client in
                _ = try await client.call("session.hello", id: 3, params: #"{"protocol":1,"token":"\#(token)-wrong"}"#)
            }
            try execution.send(signal: .terminate)
            while try await lines.next() != nil {}
        }
        let log = result.standardError
        #expect(log.contains("rpc.method=session.hello rpc.principal=amina"))
        #expect(log.contains("rpc.code=-32001"))
        #expect(log.contains("rpc.id=3"))
        #expect(!log.contains(String(token.dropFirst(4))), "a token reached the log")
    }

    @Test func importIATIPrintsASummaryAndIsIdempotent() async throws {
        let fixture = TestDatabase.repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/data/iati/ebola-response-liberia-sierra-leone.xml").path
        guard FileManager.default.fileExists(atPath: fixture), let url = try await freshDatabaseURL("cli_import") else { return }
        let first = try await pbc(["import", "iati", fixture, "--database-url", url])
        #expect(first.status == .exited(0), "\(first.standardError)")
        #expect(first.standardOutput.hasPrefix("imported 100, updated 0, unchanged 0, skipped 0"))
        let second = try await pbc(["import", "iati", fixture, "--database-url", url])
        #expect(second.standardOutput.hasPrefix("imported 0, updated 0, unchanged 100, skipped 0"))
        let scan = try await pbc(["overlaps", "scan", "--country", "LR", "--database-url", url])
        #expect(scan.status == .exited(0), "\(scan.standardError)")
        #expect(scan.standardOutput.hasPrefix("cluster 1: LBR, "))
        #expect(scan.standardOutput.contains("sector 1.00: same sector"))
        #expect(scan.standardOutput.contains("  [GlobalGiving] "), "\(scan.standardOutput)")
        // It ends with the whole: clusters, overlaps and entries, as listed above.
        let lines = scan.standardOutput.split(separator: "\n")
        let clusters = lines.filter { $0.hasPrefix("cluster ") }.count
        let overlaps = lines.filter { $0.hasPrefix("  ") && $0.contains(" ~ ") }.count
        let entries = lines.filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") && !$0.contains(" ~ ") }.count
        #expect(clusters > 1 && overlaps > clusters)
        #expect(lines.last == "\(clusters) clusters: \(overlaps) overlaps among \(entries) entries")
        // A higher score reports only the strongest of the same overlaps, so fewer,
        // and each score it prints reaches it.
        let strong = try await pbc(["overlaps", "scan", "--country", "LR", "--min-score", "0.65", "--database-url", url])
        #expect(strong.status == .exited(0), "\(strong.standardError)")
        let strongPairs = strong.standardOutput.split(separator: "\n").filter { $0.hasPrefix("  ") && $0.contains(" ~ ") }
        let scores = strongPairs.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        #expect(scores.count == strongPairs.count && !scores.isEmpty)
        #expect(scores.allSatisfy { $0 >= 0.65 } && strongPairs.count < overlaps, "\(strongPairs.count) of \(overlaps)")
        #expect(Set(strongPairs.map { $0.split(separator: " ").prefix(3).joined(separator: " ") })
            .isSubset(of: Set(lines.filter { $0.hasPrefix("  ") && $0.contains(" ~ ") }.map { $0.split(separator: " ").prefix(3).joined(separator: " ") })))
        let weak = try await pbc(["overlaps", "scan", "--min-score", "0.3", "--database-url", url])
        #expect(weak.status == .exited(1))
        #expect(weak.standardError == "pbc: error: --min-score 0.3 is below the threshold of overlap.yaml (0.5), under which nothing is an overlap\n")
        #expect(weak.standardOutput.isEmpty)
        let outOfRange = try await pbc(["overlaps", "scan", "--min-score", "2", "--database-url", url])
        #expect(outOfRange.status == .exited(64))
        #expect(outOfRange.standardError.contains("--min-score must be between 0 and 1"), "\(outOfRange.standardError)")
        // For scripts, the same clusters as one JSON document, written as they are found.
        let scanJSON = try await pbc(["overlaps", "scan", "--country", "LR", "--json", "--database-url", url])
        #expect(scanJSON.status == .exited(0), "\(scanJSON.standardError)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(scanJSON.standardOutput.utf8)) as? [String: Any])
        let found = try #require(document["clusters"] as? [[String: Any]])
        #expect(found.count == clusters)
        #expect(found.map { ($0["overlaps"] as? [[String: Any]])?.count ?? 0 }.reduce(0, +) == overlaps)
        #expect(found.map { ($0["members"] as? [[String: Any]])?.count ?? 0 }.reduce(0, +) == entries)
        #expect(found.allSatisfy { $0["country"] as? String == "LBR" })
        let none = try await pbc(["overlaps", "scan", "--country", "CO", "--json", "--database-url", url])
        #expect(none.standardOutput.replacingOccurrences(of: " ", with: "").replacingOccurrences(of: "\n", with: "") == #"{"clusters":[]}"#)
        let noneText = try await pbc(["overlaps", "scan", "--country", "CO", "--database-url", url])
        #expect(noneText.standardOutput == "no overlaps found\n")
        // An import scores the tasks' overlaps with what it updates by Config/overlap.yaml: a broken one stops it, named.
        let config = Scratch.directory.appendingPathComponent("pbc-config-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: TestDatabase.repositoryRoot.appendingPathComponent("Config"), to: config)
        defer { try? FileManager.default.removeItem(at: config) }
        try "threshold: 7\n".write(to: config.appendingPathComponent("overlap.yaml"), atomically: true, encoding: .utf8)
        let broken = try await pbc(["import", "iati", fixture, "--database-url", url, "--config-dir", config.path])
        #expect(broken.status == .exited(1))
        #expect(broken.standardError.hasPrefix("pbc: error: \(config.path)/overlap.yaml: not an overlap configuration"), "\(broken.standardError)")
        #expect(broken.standardOutput.isEmpty)
        // It is read before any database is touched: no cluster is made for it.
        let dataDir = Scratch.directory.appendingPathComponent("pbc-data-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let beforeCluster = try await pbc(["overlaps", "scan", "--data-dir", dataDir.path, "--config-dir", config.path])
        #expect(beforeCluster.status == .exited(1))
        #expect(beforeCluster.standardError.hasPrefix("pbc: error: \(config.path)/overlap.yaml: not an overlap configuration"))
        #expect(!FileManager.default.fileExists(atPath: dataDir.path))
        let missing = try await pbc(["import", "iati", "/nonexistent.xml", "--database-url", url])
        #expect(missing.status == .exited(2))
        #expect(missing.standardError == "pbc: error: /nonexistent.xml: cannot read the file\n")
        // A file that stops the import part-way: what came before stays imported, and the user is told what it was.
        let stopped = try await pbc(["import", "iati", fixture, "/nonexistent.xml", "--database-url", url])
        #expect(stopped.status == .exited(2))
        #expect(
            stopped.standardOutput == """
                before it stopped: imported 0, updated 0, unchanged 100, skipped 0
                  screened over the dates it reports 16: no end date
                  kept but in no screening 12: no country of Config/countries.yaml (regions only, or a code it lacks)

                """)
        #expect(stopped.standardError == "pbc: error: /nonexistent.xml: cannot read the file\n")
    }

    @Test func workflowCheckListsEveryProblemWithFileAndLine() async throws {
        let shipped = try await pbc(["workflow", "check"])
        #expect(shipped.status == .exited(0))
        #expect(shipped.standardOutput.split(separator: "\n").filter { $0.hasPrefix("ok  ") }.count == 4)
        let broken = Scratch.directory.appendingPathComponent("broken-\(UUID().uuidString).yaml")
        try """
            name: broken
            version: 1
            states:
              draft:
                initial: true
              done:
                terminal: true
            actions:
              finish:
                from: draft
                to: finished
                roles: [janitor]
            """.write(to: broken, atomically: true, encoding: .utf8)
        let outcome = try await pbc(["workflow", "check", broken.path])
        #expect(outcome.status == .exited(1))
        #expect(outcome.standardOutput.contains("\(broken.path):9: action finish names unknown state finished"))
        #expect(outcome.standardOutput.contains("\(broken.path):12: unknown role janitor"))
        #expect(outcome.standardError == "pbc: error: 2 problems found\n")
    }

    @Test func serveRefusesABrokenWorkflowNamingFileAndLine() async throws {
        let config = Scratch.directory.appendingPathComponent("pbc-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: config.appendingPathComponent("workflows"), withIntermediateDirectories: true)
        try "name: half\nversion: 1\nstates:\n  draft:\n    initial: true\nactions: {}\n".write(
            to: config.appendingPathComponent("workflows/half.yaml"), atomically: true, encoding: .utf8)
        let outcome = try await pbc(["serve", "--port", "0", "--config-dir", config.path, "--database-url", "postgresql://pbc@127.0.0.1:1/pbc"])
        #expect(outcome.status == .exited(1))
        #expect(outcome.standardError.contains("half.yaml:4: state draft is not terminal but has no exit"))
        // Refused before any database was tried.
        #expect(!outcome.standardError.contains("could not connect"))
    }

    /// A calendar that names a report type progress reports cannot have would fail every funding: it stops start-up instead.
    @Test func serveRefusesAReportingCalendarOfUnknownReports() async throws {
        let config = Scratch.directory.appendingPathComponent("pbc-config-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: TestDatabase.repositoryRoot.appendingPathComponent("Config"), to: config)
        try "reports:\n  - type: quarterly\n    due: \"03-31\"\n".write(
            to: config.appendingPathComponent("reporting.yaml"), atomically: true, encoding: .utf8)
        let outcome = try await pbc(["serve", "--port", "0", "--config-dir", config.path, "--database-url", "postgresql://pbc@127.0.0.1:1/pbc"])
        #expect(outcome.status == .exited(1))
        #expect(
            outcome.standardError.contains("reporting.yaml:2: report type quarterly is not one a progress report can have: one of semi-annual, annual, final"),
            "\(outcome.standardError)")
        #expect(!outcome.standardError.contains("could not connect"))
    }

    @Test func workflowGraphPrintsDOT() async throws {
        let graph = try await pbc(["workflow", "graph", "pbf-project"])
        #expect(graph.status == .exited(0))
        #expect(graph.standardOutput.hasPrefix("digraph \"pbf-project v5\" {"))
        #expect(graph.standardOutput.contains("\"implementing\" -> \"extension_requested\""))
        let unknown = try await pbc(["workflow", "graph", "pbf-projekt"])
        #expect(unknown.status == .exited(3))
        #expect(unknown.standardError.contains("known: assistance-request, deconfliction-case, pbf-project, progress-report"))
    }

    @Test func adminCommandsManageAgenciesPrincipalsAndTokens() async throws {
        guard let url = try await freshDatabaseURL("cli_admin") else { return }
        let database = ["--database-url", url]
        let added = try await pbc(["admin", "agency", "add", "--id", "au-psc", "--name", "AU Peace and Security Council", "--kind", "regional_organization"] + database)
        #expect(added.status == .exited(0), "\(added.standardError)")
        let again = try await pbc(["admin", "agency", "add", "--id", "au-psc", "--name", "Again", "--kind", "regional_organization"] + database)
        #expect(again.status == .exited(4))
        let list = try await pbc(["admin", "agency", "list"] + database)
        #expect(list.standardOutput.contains("au-psc"))
        #expect(list.standardOutput.contains("XM-DAC-41114"))  // reference data was loaded
        let liaison = try await pbc(["admin", "principal", "add", "--name", "amina", "--role", "liaison", "--agency", "undp"] + database)
        #expect(liaison.status == .exited(0))
        let agencyless = try await pbc(["admin", "principal", "add", "--name", "bo", "--role", "liaison"] + database)
        #expect(agencyless.status == .exited(2))
        #expect(agencyless.standardError == "pbc: error: agency: a liaison must belong to an agency\n")
        let badRole = try await pbc(["admin", "principal", "add", "--name", "cy", "--role", "janitor"] + database)
        #expect(badRole.status == .exited(64))
        let created = try await pbc(["admin", "token", "create", "--principal", "amina"] + database)
        let token = created.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("pbc_"))
        #expect(created.standardError.contains("only time it is shown"))
        #expect(try await pbc(["admin", "token", "revoke", token] + database).status == .exited(0))
        let twice = try await pbc(["admin", "token", "revoke", token] + database)
        #expect(twice.status == .exited(3))
        #expect(!twice.standardError.contains(token))  // a token is never echoed
        let nobody = try await pbc(["admin", "token", "create", "--principal", "nobody"] + database)
        #expect(nobody.status == .exited(3))
    }

    /// `pbc serve` with nothing set: starts its own cluster, answers ping,
    /// stops everything on Ctrl-C, reuses the cluster next time, takes over
    /// a cluster left by a pbc that was killed, and recovers from a stale pid file.
    /// `pbc serve --demo` seeds one principal of each role and three tasks, and
    /// prints a fresh token for each principal before the serving line; a
    /// second start adds no task and prints new tokens.
    @Test func serveDemoSeedsPrincipalsAndTasksAndPrintsTokens() async throws {
        guard let url = try await freshDatabaseURL("cli_demo") else { return }
        func serveOnce() async throws -> [String: String] {
            var tokens: [String: String] = [:]
            var hint = ""
            let result = try await Subprocess.run(
                .path(FilePath(PBCBinary.path)), arguments: ["serve", "--demo", "--port", "0", "--database-url", url],
                workingDirectory: FilePath(TestDatabase.repositoryRoot.path), input: .none, output: .sequence, error: .string(limit: 1 << 20)
            ) { execution in
                var lines = execution.standardOutput.strings().makeAsyncIterator()
                while let line = try await lines.next() {
                    let columns = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                    if columns.count == 4, columns[3].hasPrefix("pbc_") { tokens[columns[1]] = columns[3] }
                    if line.hasPrefix("try: ") { hint = line }
                    guard line.hasPrefix("pbc serving JSON-RPC on 127.0.0.1:") else { continue }
                    let port = try #require(Int(line.split(separator: ":").last ?? ""))
                    // The command to try names this server, which is not on the default port.
                    #expect(hint.hasPrefix("try: PBC_SERVER=127.0.0.1:\(port) PBC_TOKEN=pbc_") && hint.hasSuffix(" pbc tasks"), "\(hint)")
                    try await LineClient.withConnection(port: port) { client in
                        let hello = try await client.call("session.hello", params: #"{"protocol":1,"token":"\#(tokens["coordinator"] ?? "")"}"#)
                        #expect(hello?["result"]?["principal"]?["role"] == .string("coordinator"))
                        let list = try await client.call("task.list", id: 2)
                        guard case .array(let items)? = list?["result"]?["items"] else {
                            Issue.record("no task list: \(String(describing: list))")
                            return
                        }
                        #expect(items.count == 7)
                        #expect(items.filter { $0["state"] == .string("deconfliction") }.count == 1)
                        // WFP's program is funded: its semi-annual, annual and final reports are scheduled.
                        #expect(items.filter { $0["state"] == .string("funded") }.count == 1)
                        #expect(items.filter { $0["state"] == .string("scheduled") }.count == 3)
                        #expect(items.filter { $0["state"] == .string("offers_open") }.count == 1)
                    }
                    try execution.send(signal: .interrupt)
                    while try await lines.next() != nil {}
                    break
                }
            }
            #expect(result.terminationStatus == .exited(0), "\(result.standardError)")
            return tokens
        }
        let first = try await serveOnce()
        #expect(Set(first.keys) == ["liaison", "coordinator", "approver", "observer", "admin"])
        let second = try await serveOnce()
        #expect(second["coordinator"] != nil && second["coordinator"] != first["coordinator"])
    }

    @Test func servesWithAPrivateClusterItStartsAndStops() async throws {
        let directory = Scratch.directory.appendingPathComponent("pbc-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let arguments = ["serve", "--port", "0", "--data-dir", directory.path]
        let pidFile = directory.appendingPathComponent("data/postmaster.pid")

        func serveOnce(stopWith signal: Subprocess.Signal) async throws -> (TerminationStatus, String) {
            let result = try await Subprocess.run(
                .path(FilePath(PBCBinary.path)), arguments: Arguments(arguments),
                environment: .inherit.updating(["DATABASE_URL": nil, "PGHOST": nil, "PGHOSTADDR": nil, "PGSERVICE": nil]),
                workingDirectory: FilePath(TestDatabase.repositoryRoot.path),
                input: .none, output: .sequence, error: .string(limit: 1 << 20)
            ) { execution in
                var lines = execution.standardOutput.strings().makeAsyncIterator()
                let line = try #require(try await lines.next())
                #expect(line.hasPrefix("pbc serving JSON-RPC on 127.0.0.1:"))
                let port = try #require(Int(line.split(separator: ":").last ?? ""))
                try await LineClient.withConnection(port: port) { client in
                    let pong = try await client.call("ping")
                    #expect(pong?["result"]?["pong"] == .bool(true))
                }
                try execution.send(signal: signal)
                while try await lines.next() != nil {}
            }
            return (result.terminationStatus, result.standardError)
        }

        // First start: initializes, serves, and Ctrl-C stops PostgreSQL too.
        let (firstStatus, firstLog) = try await serveOnce(stopWith: .interrupt)
        #expect(firstStatus == .exited(0), "\(firstLog)")
        #expect(firstLog.contains("started a private PostgreSQL cluster"))
        #expect(firstLog.contains("applied migration"))
        #expect(!FileManager.default.fileExists(atPath: pidFile.path), "PostgreSQL is still running after Ctrl-C")

        // Second start: the same cluster, nothing left to migrate.
        let (secondStatus, secondLog) = try await serveOnce(stopWith: .terminate)
        #expect(secondStatus == .exited(0))
        #expect(!secondLog.contains("applied migration"))
        #expect(secondLog.contains("applied=0"))
        #expect(!FileManager.default.fileExists(atPath: pidFile.path))

        // Killed with SIGKILL, pbc cannot stop PostgreSQL; the next pbc takes the cluster over and stops it.
        let (killedStatus, _) = try await serveOnce(stopWith: .kill)
        #expect(killedStatus == .signaled(SIGKILL))
        #expect(FileManager.default.fileExists(atPath: pidFile.path))
        let (takeoverStatus, takeoverLog) = try await serveOnce(stopWith: .interrupt)
        #expect(takeoverStatus == .exited(0))
        #expect(takeoverLog.contains("using the PostgreSQL cluster already running"))
        #expect(!FileManager.default.fileExists(atPath: pidFile.path))

        // A pid file left by a server that crashed does not stop the next start.
        try "99999999\n\(directory.path)/data\n0\n5432\n/nonexistent\n".write(to: pidFile, atomically: true, encoding: .utf8)
        let (staleStatus, staleLog) = try await serveOnce(stopWith: .interrupt)
        #expect(staleStatus == .exited(0), "\(staleLog)")
        #expect(staleLog.contains("started a private PostgreSQL cluster"))
    }
}

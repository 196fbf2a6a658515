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

    func pbc(_ arguments: [String], environment: [String: String?] = [:]) async throws -> Outcome {
        var cleared: [Environment.Key: String?] = ["DATABASE_URL": nil, "PGHOST": nil, "PGHOSTADDR": nil, "PGSERVICE": nil]
        for (key, value) in environment { cleared[Environment.Key(stringLiteral: key)] = value }
        let result = try await Subprocess.run(
            .path(FilePath(PBCBinary.path)), arguments: Arguments(arguments), environment: .inherit.updating(cleared),
            workingDirectory: FilePath(TestDatabase.repositoryRoot.path),
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

    @Test func aBadConfigurationValueIsOneLine() async throws {
        let outcome = try await pbc(["serve"], environment: ["PBC_SERVER_PORT": "seventy"])
        expectOneLineFailure(outcome, mentioning: "server.port (PBC_SERVER_PORT) must be a whole number")
    }

    @Test func migrateAgainstAServerAppliesThenFindsNothingToDo() async throws {
        guard let (_, running) = try await TestDatabase.cluster() else { return }
        _ = running
        let target = try await TestDatabase.createEmpty("cli_migrate")
        // The throwaway cluster speaks TCP with passwords; give the superuser one for this test's URL.
        let admin = try await TestDatabase.connect(try await TestDatabase.adminTarget())
        try await admin.execute(unsafeSQL: "ALTER ROLE postgres PASSWORD 'cli-test'")
        let name = try await admin.query("SELECT current_database()").first!.decode(String.self, at: 0)
        await admin.close()
        _ = name
        let database = try await TestDatabase.connect(target)
        let databaseName = try await database.query("SELECT current_database()").first!.decode(String.self, at: 0)
        await database.close()
        let url = "postgresql://postgres:cli-test@127.0.0.1:\(running.port)/\(databaseName)"
        let first = try await pbc(["migrate", "--database-url", url])
        #expect(first.status == .exited(0), "\(first.standardError)")
        #expect(first.standardOutput.contains("applied 0001_extensions.sql"))
        let second = try await pbc(["migrate", "--database-url", url])
        #expect(second.standardOutput.contains("up to date"))
    }

    /// `pbc serve` with nothing set: starts its own cluster, answers ping,
    /// stops everything on Ctrl-C, reuses the cluster next time, takes over
    /// a cluster left by a pbc that was killed, and recovers from a stale pid file.
    @Test func servesWithAPrivateClusterItStartsAndStops() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbc-cli-\(UUID().uuidString)")
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
        #expect(secondLog.contains("already=1"))
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

import CLibPQ
import Foundation
import Logging
import NIOPosix
import Postgres
import Store
import Synchronization

/// Databases for tests, with no set-up: `PBC_TEST_DATABASE_URL` names a server
/// to use (its role must be allowed to create databases and roles), whose
/// databases made by the run are dropped when it exits; otherwise one
/// throwaway cluster is started for the whole test run, in a temporary
/// directory, with fsync off, and removed when the run exits.
///
/// Each caller gets its own database, cloned from a template that has every
/// migration of `sql/` applied.
public enum TestDatabase {
    /// A new, migrated database of its own.
    public static func create(_ label: String = "suite") async throws -> ConnectionTarget {
        try await Provider.shared.createDatabase(label: label)
    }

    /// A new, migrated database whose character classes and case rules are
    /// `locale`'s, made from template0 and migrated from scratch: the shared
    /// template's locale is C, under which no letter outside ASCII is a letter.
    public static func create(_ label: String, locale: String) async throws -> ConnectionTarget {
        let target = try await Provider.shared.createDatabase(label: label, migrated: false, locale: locale)
        let connection = try await connect(target)
        do {
            _ = try await Migrator(directory: migrationsDirectory).migrate(on: connection)
            await connection.close()
        } catch {
            await connection.close()
            throw error
        }
        return target
    }

    /// A new database with no migrations applied.
    public static func createEmpty(_ label: String = "empty") async throws -> ConnectionTarget {
        try await Provider.shared.createDatabase(label: label, migrated: false)
    }

    /// The server's superuser (or the `PBC_TEST_DATABASE_URL` role) on its `postgres` database.
    public static func adminTarget() async throws -> ConnectionTarget {
        try await Provider.shared.server().database("postgres")
    }

    /// The throwaway cluster, when the tests started one (nil with `PBC_TEST_DATABASE_URL`).
    public static func cluster() async throws -> (LocalCluster, LocalCluster.Running)? {
        _ = try await Provider.shared.server()
        return await Provider.shared.startedCluster
    }

    /// A thread pool for connections that tests open by hand.
    public static let threadPool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 16)
        pool.start()
        return pool
    }()

    /// The repository's `sql/` directory.
    public static var migrationsDirectory: URL {
        repositoryRoot.appendingPathComponent("sql")
    }

    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    public static func connect(_ target: ConnectionTarget) async throws -> PostgresConnection {
        try await PostgresConnection.connect(to: target, on: threadPool)
    }
}

/// Cleans up the throwaway cluster when the test process exits.
private let clusterToRemove = Mutex<(LocalCluster, URL)?>(nil)

/// The databases a run made on a server of the developer's own, dropped when
/// the test process exits: the server's connection string and the names.
private let databasesToDrop = Mutex<(conninfo: String, names: [String])?>(nil)

/// At exit nothing can be awaited, so libpq is called directly. WITH (FORCE)
/// ends the sessions a test left open.
private func dropDatabasesAtExit() {
    databasesToDrop.withLock { entry in
        guard let (conninfo, names) = entry, !names.isEmpty else { return }
        entry = nil
        let keywords: [UnsafeMutablePointer<CChar>?] = [strdup("dbname"), strdup("dbname")]
        let values: [UnsafeMutablePointer<CChar>?] = [strdup(conninfo), strdup("postgres")]
        defer {
            keywords.forEach { free($0) }
            values.forEach { free($0) }
        }
        // expand_dbname reads the first dbname as the connection string; the second names the database.
        let handle = (keywords.map { UnsafePointer($0) } + [nil]).withUnsafeBufferPointer { keywordBuffer in
            (values.map { UnsafePointer($0) } + [nil]).withUnsafeBufferPointer { valueBuffer in
                PQconnectdbParams(keywordBuffer.baseAddress, valueBuffer.baseAddress, 1)
            }
        }
        defer { PQfinish(handle) }
        guard PQstatus(handle) == CONNECTION_OK else { return }
        for name in names.reversed() {
            guard let quoted = PQescapeIdentifier(handle, name, name.utf8.count) else { continue }
            PQclear(PQexec(handle, "DROP DATABASE IF EXISTS \(String(cString: quoted)) WITH (FORCE)"))
            PQfreemem(quoted)
        }
    }
}

private actor Provider {
    static let shared = Provider()

    // Each step runs once, however many suites ask at the same moment: an
    // actor method that awaits lets other callers in, so the work is a Task.
    private var serverTask: Task<ConnectionTarget, Error>?
    private var templateTask: Task<String, Error>?
    private var lastCreation: Task<Void, Error>?
    private(set) var startedCluster: (LocalCluster, LocalCluster.Running)?
    private var counter = 0
    private let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)

    func server() async throws -> ConnectionTarget {
        if serverTask == nil {
            serverTask = Task { try await startServer() }
        }
        return try await serverTask!.value
    }

    private func startServer() async throws -> ConnectionTarget {
        if let url = ProcessInfo.processInfo.environment["PBC_TEST_DATABASE_URL"], !url.isEmpty {
            databasesToDrop.withLock { $0 = (url, []) }
            atexit { dropDatabasesAtExit() }
            return ConnectionTarget(conninfo: url)
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pbc-test-\(getpid())-\(runID)")
        // At its busiest a run holds about 180 connections (the end-to-end
        // suites run dozens of servers at once, each with its pools); 200 was
        // too tight to add tests to.
        let cluster = try LocalCluster(configuration: .init(directory: directory, fsync: false, listenOnLoopback: true, maxConnections: 400))
        clusterToRemove.withLock { $0 = (cluster, directory) }
        atexit {
            // No awaiting at exit: SIGQUIT is PostgreSQL's immediate shutdown.
            clusterToRemove.withLock { entry in
                guard let (cluster, directory) = entry else { return }
                if let pid = cluster.postmasterPID {
                    kill(pid, SIGQUIT)
                    for _ in 0..<100 where kill(pid, 0) == 0 { usleep(50_000) }
                }
                try? FileManager.default.removeItem(at: directory)
                entry = nil
            }
        }
        let running = try await cluster.start()
        startedCluster = (cluster, running)
        return running.target
    }

    /// Databases are created one at a time: PostgreSQL refuses to copy a
    /// template that another CREATE DATABASE is reading.
    func createDatabase(label: String, migrated: Bool = true, locale: String? = nil) async throws -> ConnectionTarget {
        let server = try await server()
        counter += 1
        let safeLabel = String(label.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }.prefix(30))
        let name = "pbct_\(runID)_\(counter)_\(safeLabel)"
        databasesToDrop.withLock { $0?.names.append(name) }
        let template = migrated ? try await migratedTemplate(on: server) : nil
        let previous = lastCreation
        let creation = Task {
            _ = await previous?.result
            if let locale {
                precondition(locale.allSatisfy { $0.isLetter || $0.isNumber || "._-".contains($0) }, "a locale name: \(locale)")
                let connection = try await PostgresConnection.connect(to: server.database("postgres"), on: TestDatabase.threadPool)
                do {
                    try await connection.execute(
                        unsafeSQL: "CREATE DATABASE \(name) TEMPLATE template0 ENCODING 'UTF8' LOCALE '\(locale)'")
                    await connection.close()
                } catch {
                    await connection.close()
                    throw error
                }
            } else {
                try await Database.createIfMissing(name, template: template, on: server, threadPool: TestDatabase.threadPool)
            }
        }
        lastCreation = creation
        try await creation.value
        return server.database(name)
    }

    private func migratedTemplate(on server: ConnectionTarget) async throws -> String {
        if templateTask == nil {
            let name = "pbct_\(runID)_template"
            databasesToDrop.withLock { $0?.names.insert(name, at: 0) }
            templateTask = Task {
                try await Database.createIfMissing(name, on: server, threadPool: TestDatabase.threadPool)
                let connection = try await PostgresConnection.connect(to: server.database(name), on: TestDatabase.threadPool)
                do {
                    _ = try await Migrator(directory: TestDatabase.migrationsDirectory).migrate(on: connection)
                    await connection.close()
                } catch {
                    await connection.close()
                    throw error
                }
                return name
            }
        }
        return try await templateTask!.value
    }
}

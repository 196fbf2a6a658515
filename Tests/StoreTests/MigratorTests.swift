import Foundation
import Postgres
import Store
import Testing
import TestSupport

@Suite struct MigratorTests {
    /// A migrations directory of the test's own.
    func directory(_ files: [String: String]) throws -> URL {
        let url = Scratch.directory.appendingPathComponent("pbc-migrations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        for (name, sql) in files {
            try sql.write(to: url.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        return url
    }

    let files = [
        "0001_agencies.sql": "CREATE TABLE agencies (id text PRIMARY KEY);",
        "0002_tasks.sql": "CREATE TABLE tasks (id bigint PRIMARY KEY, agency text REFERENCES agencies);",
        "0003_seed.sql": "INSERT INTO agencies VALUES ('pbso'); SELECT pg_sleep(0.3);",
        "README.md": "not a migration",
    ]

    @Test func appliesInOrderOnceAndRecordsChecksums() async throws {
        let target = try await TestDatabase.createEmpty("migrate")
        let migrator = Migrator(directory: try directory(files))
        let connection = try await TestDatabase.connect(target)
        let first = try await migrator.migrate(on: connection)
        #expect(first.applied == ["0001_agencies.sql", "0002_tasks.sql", "0003_seed.sql"])
        #expect(first.alreadyApplied == 0)
        let second = try await migrator.migrate(on: connection)
        #expect(second.applied.isEmpty)
        #expect(second.alreadyApplied == 3)
        let recorded = try await connection.query("SELECT file_name, checksum FROM pbc_schema_migrations ORDER BY version")
        #expect(try recorded.map { try $0.decode(String.self, at: 0) } == ["0001_agencies.sql", "0002_tasks.sql", "0003_seed.sql"])
        #expect(try recorded.allSatisfy { try $0.decode(String.self, at: 1).count == 64 })
        await connection.close()
    }

    @Test func twoRunnersAtOnceApplyEachFileOnce() async throws {
        let target = try await TestDatabase.createEmpty("concurrent")
        let migrator = Migrator(directory: try directory(files))
        let reports = try await withThrowingTaskGroup(of: Migrator.Report.self) { group in
            for _ in 0..<2 {
                group.addTask {
                    let connection = try await TestDatabase.connect(target)
                    let report = try await migrator.migrate(on: connection)
                    await connection.close()
                    return report
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        // One applied everything, the other waited for the lock and found nothing to do.
        #expect(reports.map(\.applied.count).sorted() == [0, 3])
        let connection = try await TestDatabase.connect(target)
        #expect(try await connection.query("SELECT count(*) FROM agencies").first!.decode(Int.self, at: 0) == 1)
        await connection.close()
    }

    @Test func aChangedAppliedFileStopsStartUpNamingTheFile() async throws {
        let target = try await TestDatabase.createEmpty("changed")
        let folder = try directory(files)
        let connection = try await TestDatabase.connect(target)
        _ = try await Migrator(directory: folder).migrate(on: connection)
        try "CREATE TABLE tasks (id uuid PRIMARY KEY);".write(
            to: folder.appendingPathComponent("0002_tasks.sql"), atomically: true, encoding: .utf8)
        try "CREATE TABLE later (id int);".write(
            to: folder.appendingPathComponent("0004_later.sql"), atomically: true, encoding: .utf8)
        let error = await #expect(throws: PostgresError.self) { _ = try await Migrator(directory: folder).migrate(on: connection) }
        #expect(error?.code == .migration)
        #expect(error?.description.contains("sql/0002_tasks.sql has changed since it was applied") == true)
        // Nothing after the changed file was applied either.
        let later = try await connection.query("SELECT to_regclass('later') IS NULL").first!.decode(Bool.self, at: 0)
        #expect(later)
        await connection.close()
    }

    @Test func aMissingAppliedFileStopsStartUp() async throws {
        let target = try await TestDatabase.createEmpty("missing")
        let folder = try directory(files)
        let connection = try await TestDatabase.connect(target)
        _ = try await Migrator(directory: folder).migrate(on: connection)
        try FileManager.default.removeItem(at: folder.appendingPathComponent("0003_seed.sql"))
        let error = await #expect(throws: PostgresError.self) { _ = try await Migrator(directory: folder).migrate(on: connection) }
        #expect(error?.description.contains("0003_seed.sql was applied to this database but is missing") == true)
        await connection.close()
    }

    @Test func aFailingFileLeavesNothingBehind() async throws {
        let target = try await TestDatabase.createEmpty("failing")
        let folder = try directory([
            "0001_ok.sql": "CREATE TABLE ok (id int);",
            "0002_broken.sql": "CREATE TABLE half (id int); INSERT INTO nowhere VALUES (1);",
        ])
        let connection = try await TestDatabase.connect(target)
        let error = await #expect(throws: PostgresError.self) { _ = try await Migrator(directory: folder).migrate(on: connection) }
        #expect(error?.description.contains("sql/0002_broken.sql failed") == true)
        let state = try await connection.query(
            "SELECT to_regclass('ok') IS NOT NULL, to_regclass('half') IS NULL, (SELECT count(*) FROM pbc_schema_migrations)")
        let row = try #require(state.first)
        #expect(try row.decode(Bool.self, at: 0))
        #expect(try row.decode(Bool.self, at: 1))
        #expect(try row.decode(Int.self, at: 2) == 1)
        // The lock was released: a fixed file applies.
        try "CREATE TABLE half (id int);".write(to: folder.appendingPathComponent("0002_broken.sql"), atomically: true, encoding: .utf8)
        #expect(try await Migrator(directory: folder).migrate(on: connection).applied == ["0002_broken.sql"])
        await connection.close()
    }

    @Test func badFileNamesAreRefused() throws {
        for name in ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "0001_.sql"] {
            let error = #expect(throws: PostgresError.self) {
                _ = try Migrator(directory: try directory([name: "SELECT 1;"])).loadMigrations()
            }
            #expect(error?.description.contains(name) == true)
        }
        let clash = #expect(throws: PostgresError.self) {
            _ = try Migrator(directory: try directory(["0001_a.sql": "", "0001_b.sql": ""])).loadMigrations()
        }
        #expect(clash?.description.contains("same number") == true)
    }

    @Test func theRepositoryMigrationsApply() async throws {
        let target = try await TestDatabase.createEmpty("repository")
        let connection = try await TestDatabase.connect(target)
        let report = try await Migrator(directory: TestDatabase.migrationsDirectory).migrate(on: connection)
        #expect(report.applied.first == "0001_extensions.sql")
        let extensions = try await connection.query("SELECT extname FROM pg_extension WHERE extname IN ('pg_trgm', 'btree_gist') ORDER BY 1")
        #expect(try extensions.map { try $0.decode(String.self, at: 0) } == ["btree_gist", "pg_trgm"])
        await connection.close()
    }

    /// pbc serves as pbc_app (sql/0007). A database owner that may neither make
    /// that role nor join it is told what to ask a superuser for; once granted,
    /// the same migration goes through.
    @Test func anOwnerThatCannotJoinTheServiceRoleIsToldWhatToAskFor() async throws {
        let name = "pbct_owner_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await TestDatabase.connect(try await TestDatabase.adminTarget())
        try await admin.execute(unsafeSQL: "CREATE ROLE \(name) LOGIN NOCREATEROLE")
        try await admin.execute(unsafeSQL: "CREATE DATABASE \(name) OWNER \(name)")
        let target = try await TestDatabase.adminTarget().database(name).setting("user", to: name)
        let connection = try await TestDatabase.connect(target)
        let migrator = Migrator(directory: TestDatabase.migrationsDirectory)
        let refused = await #expect(throws: PostgresError.self) { _ = try await migrator.migrate(on: connection) }
        #expect(refused?.message.contains("pbc runs as the role pbc_app, which \(name) may neither create nor join") == true)
        #expect(refused?.hint?.contains("GRANT pbc_app TO \(name)") == true)
        // What the hint says, done by a superuser.
        // Another test's migration may be making it at this moment.
        try await admin.execute(unsafeSQL: """
            DO $$ BEGIN CREATE ROLE pbc_app NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$
            """)
        try await admin.execute(unsafeSQL: "GRANT pbc_app TO \(name)")
        let report = try await migrator.migrate(on: connection)
        #expect(report.applied.first == "0007_row_level_security.sql")
        await connection.close()
        try await admin.execute(unsafeSQL: "DROP DATABASE \(name)")
        try await admin.execute(unsafeSQL: "DROP ROLE \(name)")
        await admin.close()
    }
}

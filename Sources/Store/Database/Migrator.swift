import Crypto
import Foundation
import Logging
import Postgres

/// One file of `sql/`: `NNNN_name.sql`.
public struct Migration: Sendable, Equatable {
    public let version: Int
    public let fileName: String
    public let sql: String
    /// SHA-256 of the file's bytes, hex.
    public let checksum: String
}

/// Applies `sql/NNNN_name.sql` files in order, each in its own transaction,
/// under an advisory lock, recording each with its checksum. An applied file
/// that changed, or that disappeared, stops everything (Flyway's rule): the
/// database would no longer match the files that describe it.
public struct Migrator: Sendable {
    public let directory: URL
    let logger: Logger

    /// The key of the session advisory lock that serializes migration runners.
    static let advisoryLockKey: Int64 = 0x7062_635F_6D69_67  // "pbc_mig"

    public init(directory: URL, logger: Logger = Logger(label: "pbc.migrate")) {
        self.directory = directory
        self.logger = logger
    }

    public struct Report: Sendable, Equatable {
        /// File names applied by this run, in order.
        public var applied: [String]
        /// How many files had been applied before.
        public var alreadyApplied: Int
    }

    /// Reads and checks the migration files, without touching a database.
    public func loadMigrations() throws -> [Migration] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw PostgresError(.migration, message: "cannot read the migrations directory \(directory.path)")
        }
        var migrations: [Migration] = []
        for name in names.sorted() where name.hasSuffix(".sql") {
            let stem = name.dropLast(4)
            let digits = stem.prefix(while: \.isNumber)
            guard digits.count == 4, stem.dropFirst(4).first == "_", stem.count > 5,
                stem.dropFirst(5).allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "_" }),
                let version = Int(digits)
            else {
                throw PostgresError(
                    .migration, message: "sql/\(name): migration files are named NNNN_name.sql (four digits, lowercase name)")
            }
            if let clash = migrations.first(where: { $0.version == version }) {
                throw PostgresError(.migration, message: "sql/\(name) and sql/\(clash.fileName) have the same number \(digits)")
            }
            let data = try Data(contentsOf: directory.appendingPathComponent(name))
            guard let sql = String(data: data, encoding: .utf8) else {
                throw PostgresError(.migration, message: "sql/\(name) is not UTF-8 text")
            }
            let checksum = SHA256.hash(data: data).hex
            migrations.append(Migration(version: version, fileName: name, sql: sql, checksum: checksum))
        }
        return migrations
    }

    /// Brings the database up to date. Runners started at once take turns:
    /// the first applies, the others wait for the lock and find nothing to do.
    public func migrate(on connection: PostgresConnection) async throws -> Report {
        let migrations = try loadMigrations()
        try await connection.query("SELECT pg_advisory_lock(\(Self.advisoryLockKey))")
        do {
            let report = try await migrateHoldingLock(migrations, on: connection)
            try await connection.query("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))")
            return report
        } catch {
            // Closing ends the session and with it the lock, even if unlocking fails.
            _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))")
            throw error
        }
    }

    private func migrateHoldingLock(_ migrations: [Migration], on connection: PostgresConnection) async throws -> Report {
        // Only when missing: a role that may not create tables (pbc serving as
        // a member of pbc_app, sql/0007) can still find nothing to do.
        if try await connection.query("SELECT to_regclass('pbc_schema_migrations') IS NULL").first!.decode(Bool.self, at: 0) {
            try await connection.execute(
                unsafeSQL: """
                    CREATE TABLE pbc_schema_migrations (
                        version integer PRIMARY KEY,
                        file_name text NOT NULL,
                        checksum text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )
                    """)
        }
        var applied: [Int: (fileName: String, checksum: String)] = [:]
        for row in try await connection.query("SELECT version, file_name, checksum FROM pbc_schema_migrations") {
            applied[try row.decode(Int.self, at: 0)] = (try row.decode(String.self, at: 1), try row.decode(String.self, at: 2))
        }
        // Verify everything before changing anything.
        for migration in migrations {
            if let record = applied[migration.version], record.checksum != migration.checksum {
                throw PostgresError(
                    .migration,
                    message: "sql/\(migration.fileName) has changed since it was applied (\(record.fileName), checksum \(record.checksum.prefix(12))…); restore it and put the change in a new migration")
            }
        }
        let known = Set(migrations.map(\.version))
        if let missing = applied.keys.sorted().first(where: { !known.contains($0) }) {
            throw PostgresError(
                .migration,
                message: "sql/\(applied[missing]!.fileName) was applied to this database but is missing from \(directory.path)")
        }
        var report = Report(applied: [], alreadyApplied: 0)
        for migration in migrations {
            if applied[migration.version] != nil {
                report.alreadyApplied += 1
                continue
            }
            do {
                try await connection.withTransaction(maxAttempts: 1) { connection in
                    try await connection.execute(unsafeSQL: migration.sql)
                    try await connection.query(
                        "INSERT INTO pbc_schema_migrations (version, file_name, checksum) VALUES (\(migration.version), \(migration.fileName), \(migration.checksum))"
                    )
                }
            } catch let error as PostgresError where error.code == .server {
                let owner = error.sqlState == "42501" ? "; migrations run as the role that owns pbc's tables (pbc migrate --database-url ...)" : ""
                throw PostgresError(
                    .migration, message: "sql/\(migration.fileName) failed: \(error.message)\(owner)", sqlState: error.sqlState,
                    detail: error.detail, hint: error.hint)
            }
            logger.info("applied migration", metadata: ["file": "\(migration.fileName)"])
            report.applied.append(migration.fileName)
        }
        return report
    }
}

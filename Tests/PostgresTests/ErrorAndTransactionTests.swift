import Foundation
import Postgres
import Synchronization
import Testing
import TestSupport

@Suite struct ErrorAndTransactionTests {
    let target: ConnectionTarget
    let pool: PostgresPool

    init() async throws {
        target = try await TestDatabase.create("errors")
        pool = PostgresPool(configuration: .init(target: target, maxConnections: 4))
    }

    @Test func uniqueViolationIsTypedAndNamesTheConstraint() async throws {
        try await pool.withConnection { connection in
            try await connection.execute(unsafeSQL: """
                CREATE TABLE donors (id text CONSTRAINT donors_pkey PRIMARY KEY, secret text);
                """)
        }
        try await pool.query("INSERT INTO donors VALUES (\("undp"), \("s3cr3t-value"))")
        let error = await #expect(throws: PostgresError.self) {
            try await pool.query("INSERT INTO donors VALUES (\("undp"), \("s3cr3t-value"))")
        }
        #expect(error?.code == .server)
        #expect(error?.sqlState == PostgresError.SQLState.uniqueViolation)
        #expect(error?.constraint == "donors_pkey")
        #expect(error?.table == "donors")
        // The plain description is for users and logs: no SQL, no values.
        let description = error?.description ?? ""
        #expect(description.contains("donors_pkey"))
        #expect(!description.contains("INSERT"))
        #expect(!description.contains("s3cr3t"))
        #expect(!description.contains("undp"))
        #expect(error?.debugDescription.contains("undp") == true)  // the detail, for developers
    }

    /// Settings given to a transaction hold in it, quoted whatever they hold,
    /// and end with it (SET LOCAL): the next user of the connection never sees them.
    @Test func transactionSettingsHoldInTheTransactionOnly() async throws {
        let pool = PostgresPool(configuration: .init(target: target, maxConnections: 1))
        let tricky = "o'brien; SELECT 1 -- \\ \"x\""
        let inside = try await pool.withTransaction(settings: [("pbc.test", tricky), ("pbc.other", "")]) { connection in
            try await connection.query("SELECT current_setting('pbc.test'), current_setting('pbc.other')").first!
        }
        #expect(try inside.decode(String.self, at: 0) == tricky)
        #expect(try inside.decode(String.self, at: 1) == "")
        let after = try await pool.query("SELECT coalesce(current_setting('pbc.test', true), '')").first!
        #expect(try after.decode(String.self, at: 0) == "")
        await pool.shutdown()
    }

    @Test func aThrownErrorRollsTheTransactionBack() async throws {
        try await pool.query("CREATE TABLE notes (body text NOT NULL)")
        struct Refused: Error {}
        await #expect(throws: Refused.self) {
            try await pool.withTransaction { connection in
                try await connection.query("INSERT INTO notes VALUES (\("half-done"))")
                throw Refused()
            }
        }
        let count = try await pool.query("SELECT count(*) FROM notes").first!.decode(Int.self, at: 0)
        #expect(count == 0)
        // The connection that rolled back is fine for the next caller.
        try await pool.withTransaction { try await $0.query("INSERT INTO notes VALUES (\("kept"))") }
        #expect(try await pool.query("SELECT count(*) FROM notes").first!.decode(Int.self, at: 0) == 1)
    }

    @Test func serializationFailureIsRetriedAndSucceeds() async throws {
        try await pool.query("CREATE TABLE duty (doctor text, on_call bool)")
        try await pool.query("INSERT INTO duty VALUES ('a', true), ('b', true)")
        let attempts = Atomic<Int>(0)
        let other = try await TestDatabase.connect(target)
        // Write skew: both read the whole table, each writes; the second to commit must fail with 40001.
        try await pool.withTransaction(isolation: .serializable) { connection in
            let attempt = attempts.add(1, ordering: .relaxed).newValue
            _ = try await connection.query("SELECT count(*) FROM duty WHERE on_call")
            if attempt == 1 {
                try await other.withTransaction(isolation: .serializable, maxAttempts: 1) { other in
                    _ = try await other.query("SELECT count(*) FROM duty WHERE on_call")
                    try await other.query("UPDATE duty SET on_call = false WHERE doctor = 'b'")
                }
            }
            try await connection.query("UPDATE duty SET on_call = false WHERE doctor = 'a'")
        }
        await other.close()
        #expect(attempts.load(ordering: .relaxed) == 2)
        let onCall = try await pool.query("SELECT count(*) FROM duty WHERE on_call").first!.decode(Int.self, at: 0)
        #expect(onCall == 0)
    }

    @Test func aNonRetryableErrorIsNotRetried() async throws {
        let attempts = Atomic<Int>(0)
        await #expect(throws: PostgresError.self) {
            try await pool.withTransaction { connection in
                attempts.add(1, ordering: .relaxed)
                try await connection.query("SELECT 1/0")
            }
        }
        #expect(attempts.load(ordering: .relaxed) == 1)
    }

    @Test func cancellingTheTaskCancelsTheRunningQuery() async throws {
        let started = ContinuousClock.now
        let task = Task { try await pool.query("SELECT pg_sleep(30)") }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let result = await task.result
        #expect(ContinuousClock.now - started < .seconds(10))
        guard case .failure(let error as PostgresError) = result else {
            Issue.record("expected the query to fail when cancelled, got \(result)")
            return
        }
        #expect(error.code == .cancelled)
        // The pool is still usable afterwards.
        #expect(try await pool.query("SELECT 42").first!.decode(Int.self, at: 0) == 42)
    }

    @Test func connectionFailuresAreOneLineAndTyped() async throws {
        let refused = await #expect(throws: PostgresError.self) {
            _ = try await TestDatabase.connect(ConnectionTarget(conninfo: "postgresql://pbc@127.0.0.1:1/pbc"))
        }
        #expect(refused?.code == .connectionFailed)
        #expect(refused?.isUnavailable == true)
        #expect(refused?.description.contains("\n") == false)
        let malformed = await #expect(throws: PostgresError.self) {
            _ = try await TestDatabase.connect(ConnectionTarget(conninfo: "postgresql://[::1"))
        }
        #expect(malformed?.code == .connectionFailed)
        let garbage = await #expect(throws: PostgresError.self) {
            _ = try await TestDatabase.connect(ConnectionTarget(conninfo: "this is not a connection string"))
        }
        #expect(garbage?.description.contains("\n") == false)
    }

    @Test func overridesWinOverTheConnectionString() async throws {
        let connection = try await TestDatabase.connect(target.setting("application_name", to: "pbc-override-test"))
        let name = try await connection.query("SELECT current_setting('application_name')").first!.decode(String.self, at: 0)
        await connection.close()
        #expect(name == "pbc-override-test")
    }
}

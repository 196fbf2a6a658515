import Foundation
import Postgres
import Testing
import TestSupport

@Suite struct PoolTests {
    @Test func exhaustionWaitsThenFailsWithAClearError() async throws {
        let target = try await TestDatabase.create("pool")
        let pool = PostgresPool(configuration: .init(target: target, maxConnections: 2, acquireTimeout: .milliseconds(500)))
        let (holdRelease, holdContinuation) = AsyncStream.makeStream(of: Void.self)
        let (heldStream, heldContinuation) = AsyncStream.makeStream(of: Void.self)
        // Two tasks hold both connections until told to let go.
        let holders = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        try await pool.withConnection { _ in
                            heldContinuation.yield()
                            for await _ in holdRelease { break }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        var held = 0
        for await _ in heldStream {
            held += 1
            if held == 2 { break }
        }
        #expect(pool.usage.open == 2)

        // A third caller waits, then gives up with a clear error.
        let started = ContinuousClock.now
        let error = await #expect(throws: PostgresError.self) { try await pool.query("SELECT 1") }
        #expect(error?.code == .poolTimeout)
        #expect(error?.description.contains("all 2 are in use") == true)
        #expect(ContinuousClock.now - started >= .milliseconds(450))

        // A caller that waits while a holder lets go gets the connection.
        let waiter = Task { try await pool.query("SELECT 7").first!.decode(Int.self, at: 0) }
        let queued = ContinuousClock.now + .seconds(10)
        while pool.usage.waiting == 0, ContinuousClock.now < queued { try await Task.sleep(for: .milliseconds(10)) }
        #expect(pool.usage.waiting == 1)
        holdContinuation.yield()
        #expect(try await waiter.value == 7)
        holdContinuation.finish()
        try await holders.value
        #expect(pool.usage.open <= 2)
        await pool.shutdown()
        #expect(pool.usage.open == 0)
        let closed = await #expect(throws: PostgresError.self) { try await pool.query("SELECT 1") }
        #expect(closed?.code == .poolClosed)
    }

    /// Every connection is set up alike: UTC, ISO dates, and no JIT, whose
    /// compiling took 100 to 400 ms on statements that run in a few.
    @Test func everyConnectionRunsInUTCWithoutJIT() async throws {
        let pool = PostgresPool(configuration: .init(target: try await TestDatabase.create("pool_setup"), maxConnections: 1))
        let row = try #require(try await pool.query("SELECT current_setting('TimeZone'), current_setting('DateStyle'), current_setting('jit')").first)
        #expect(try row.decode(String.self, at: 0) == "UTC")
        #expect(try row.decode(String.self, at: 1) == "ISO, YMD")
        #expect(try row.decode(String.self, at: 2) == "off")
        await pool.shutdown()
    }

    @Test func aKilledBackendIsReplacedForTheNextCaller() async throws {
        let target = try await TestDatabase.create("killed")
        let pool = PostgresPool(configuration: .init(target: target, maxConnections: 1))
        let firstPID = try await pool.query("SELECT pg_backend_pid()").first!.decode(Int32.self, at: 0)
        let admin = try await TestDatabase.connect(target)
        let terminated = try await admin.query("SELECT pg_terminate_backend(\(firstPID))").first!.decode(Bool.self, at: 0)
        #expect(terminated)
        try await Task.sleep(for: .milliseconds(200))
        let secondPID = try await pool.query("SELECT pg_backend_pid()").first!.decode(Int32.self, at: 0)
        #expect(secondPID != firstPID)
        #expect(pool.usage.open == 1)
        await admin.close()
        await pool.shutdown()
    }

    @Test func manyTasksShareABoundedPool() async throws {
        let target = try await TestDatabase.create("shared")
        let pool = PostgresPool(configuration: .init(target: target, maxConnections: 3))
        let sum = try await withThrowingTaskGroup(of: Int.self) { group in
            for value in 1...60 {
                group.addTask { try await pool.query("SELECT \(value) + 0").first!.decode(Int.self, at: 0) }
            }
            return try await group.reduce(0, +)
        }
        #expect(sum == (1...60).reduce(0, +))
        #expect(pool.usage.open <= 3)
        await pool.shutdown()
    }
}

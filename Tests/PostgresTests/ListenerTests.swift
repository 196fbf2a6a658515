import Foundation
import Postgres
import Testing
import TestSupport

@Suite struct ListenerTests {
    @Test func notificationsArriveAndStillArriveAfterTheBackendIsKilled() async throws {
        let target = try await TestDatabase.create("listen")
        let pool = PostgresPool(configuration: .init(target: target, maxConnections: 2))
        let listener = PostgresListener(
            target: target, channels: ["pbc_events"], threadPool: pool.threadPool, maxBackoff: .milliseconds(200))
        var events = listener.events().makeAsyncIterator()

        #expect(await events.next() == .listening)
        try await pool.query("SELECT pg_notify('pbc_events', \("seq 1"))")
        try await pool.query("SELECT pg_notify('other_channel', \("not for us"))")
        guard case .notification(let first) = await events.next() else {
            Issue.record("expected a notification")
            return
        }
        #expect(first.channel == "pbc_events")
        #expect(first.payload == "seq 1")

        let killed = try await pool.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pbc-listener' AND datname = current_database()"
        )
        #expect(killed.count == 1)
        #expect(await events.next() == .listening)
        try await pool.query("SELECT pg_notify('pbc_events', \("seq 2"))")
        guard case .notification(let second) = await events.next() else {
            Issue.record("expected a notification after reconnecting")
            return
        }
        #expect(second.payload == "seq 2")
        await pool.shutdown()
    }
}

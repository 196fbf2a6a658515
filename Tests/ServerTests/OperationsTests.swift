import Foundation
import JSONRPC
import Postgres
import Store
import Testing
import TestSupport

@Suite struct OperationsTests {
    /// An HTTP GET with a raw socket, as Prometheus or a load balancer would send it; the status and the body lines.
    func get(_ path: String, port: Int) async throws -> (status: String, lines: [String]) {
        try await LineClient.withConnection(port: port) { client in
            try await client.send(raw: "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            var lines: [String] = []
            while let line = try await client.receiveLine() { lines.append(line) }
            return (lines.first ?? "", lines)
        }
    }

    @Test func metricsLivenessAndReadinessAreServedOnTheirOwnPort() async throws {
        let server = try await ServerHarness.start("metrics") { $0.metricsPort = 0 }
        let port = try #require(server.metricsPort)
        try await server.withSession("coordinator") { client in
            for id in 1...3 { _ = try await client.call("ping", id: id) }
            _ = try await client.call("task.get", id: 4, params: #"{"task":"PBC-1999-000001"}"#)
            _ = try await client.call("made.up", id: 5)
            let metrics = try await get("/metrics", port: port)
            #expect(metrics.status == "HTTP/1.1 200 OK")
            #expect(metrics.lines.contains(#"pbc_requests_total{method="ping",code="ok"} 3"#))
            #expect(metrics.lines.contains(#"pbc_requests_total{method="task.get",code="-32004"} 1"#))
            #expect(metrics.lines.contains(#"pbc_requests_total{method="other",code="-32601"} 1"#))
            #expect(metrics.lines.contains("pbc_connections_open 1.0"))
            #expect(metrics.lines.contains { $0.hasPrefix("pbc_request_duration_seconds_bucket{method=\"ping\"") })
            #expect(metrics.lines.contains { $0.hasPrefix(#"pbc_db_pool_connections{state="open"}"#) })
        }
        #expect(try await get("/livez", port: port).status == "HTTP/1.1 200 OK")
        let ready = try await get("/readyz", port: port)
        #expect(ready.status == "HTTP/1.1 200 OK")
        #expect(ready.lines.last == "ready")
        #expect(try await get("/nope", port: port).status == "HTTP/1.1 404 Not Found")
        await server.stop()
    }

    @Test func aDatabaseOutageIsMinus32000AndServiceResumesAfterIt() async throws {
        // A cluster of this test's own, to stop and start again.
        let directory = Scratch.directory.appendingPathComponent("pbc-outage-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let cluster = try LocalCluster(configuration: .init(directory: directory, fsync: false))
        let running = try await cluster.start()
        try await Database.createIfMissing("pbc", on: running.target, threadPool: TestDatabase.threadPool)
        let server = try await ServerHarness.start("outage", database: running.target.database("pbc")) { $0.metricsPort = 0 }
        let metricsPort = try #require(server.metricsPort)
        try await server.withSession("coordinator") { client in
            #expect(try await client.call("task.list", id: 1)?["result"] != nil)
            try await cluster.stop(immediately: true)
            let down = try await client.call("task.list", id: 2)
            #expect(down?["error"]?["code"] == .integer(-32000))
            #expect(down?["error"]?["data"]?["retryAfterMs"] == .integer(1000))
            // The server itself is up: ping answers, readiness says the database is not.
            let ping = try await client.call("ping", id: 3)
            #expect(ping?["result"] != nil)
            #expect(try await get("/readyz", port: metricsPort).status == "HTTP/1.1 503 Service Unavailable")
            _ = try await cluster.start(port: running.port)
            var answer: JSONValue?
            for attempt in 0..<20 {
                answer = try await client.call("task.list", id: 10 + attempt)
                if answer?["result"] != nil { break }
                try await Task.sleep(for: .milliseconds(250))
            }
            #expect(answer?["result"] != nil, "service did not resume: \(String(describing: answer))")
        }
        await server.stop()
        try? await cluster.stop(immediately: true)
    }
}

import Foundation
import JSONRPC
import Logging
import NIOCore
import Server
import Testing
import TestSupport

/// The server as clients meet it: started on port 0 against a real database, spoken to over TCP.
@Suite struct EndToEndTests {
    /// Runs the application until `body` returns, then shuts it down.
    func withServer(_ body: (Int) async throws -> Void) async throws {
        var configuration = AppConfiguration()
        configuration.port = 0
        configuration.sqlDirectory = TestDatabase.migrationsDirectory.path
        configuration.maxLineBytes = 1024
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let application = Application(
            configuration: configuration, database: try await TestDatabase.create("e2e"), logger: Logger(label: "test"))
        let server = Task {
            try await application.run(shutdownSignals: []) { address in portContinuation.yield(address.port!) }
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        do {
            try await body(port)
        } catch {
            server.cancel()
            throw error
        }
        server.cancel()
        try? await server.value
    }

    @Test func pingIsAnswered() async throws {
        try await withServer { port in
            try await LineClient.withConnection(port: port) { client in
                let response = try #require(try await client.call("ping", id: 7))
                #expect(response["id"] == .integer(7))
                #expect(response["result"]?["pong"] == .bool(true))
            }
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await withServer { port in
            try await LineClient.withConnection(port: port) { client in
                var lines = ""
                for id in 1...50 { lines += "{\"jsonrpc\":\"2.0\",\"id\":\(id),\"method\":\"ping\"}\r\n" }
                try await client.send(raw: lines)
                for id in 1...50 {
                    #expect(try await client.receive()?["id"] == .integer(Int64(id)))
                }
            }
        }
    }

    @Test func badInputGetsTheRightErrorsAndTheConnectionSurvives() async throws {
        try await withServer { port in
            try await LineClient.withConnection(port: port) { client in
                try await client.send(raw: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\n")
                #expect(try await client.receive()?["error"]?["code"] == .integer(-32700))
                try await client.send(raw: [0xFF, 0xFE, 0x0A])
                #expect(try await client.receive()?["error"]?["code"] == .integer(-32700))
                try await client.send(raw: "\n   \n")  // blank lines are skipped
                try await client.send(raw: "{\"jsonrpc\":\"1.0\",\"id\":2,\"method\":\"ping\"}\n")
                let invalid = try await client.receive()
                #expect(invalid?["error"]?["code"] == .integer(-32600))
                #expect(invalid?["id"] == .integer(2))
                #expect(try await client.call("no.such.method", id: 3)?["error"]?["code"] == .integer(-32601))
                try await client.send(raw: "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\n")  // a notification: no answer
                #expect(try await client.call("ping", id: 4)?["id"] == .integer(4))
            }
        }
    }

    @Test func aLineOverTheLimitGetsAnErrorThenTheConnectionCloses() async throws {
        try await withServer { port in
            try await LineClient.withConnection(port: port) { client in
                try await client.send(raw: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"" + String(repeating: "a", count: 4000))
                let error = try await client.receive()
                #expect(error?["error"]?["code"] == .integer(-32600))
                #expect(try await client.receiveLine() == nil)
            }
            // Other clients are unaffected.
            try await LineClient.withConnection(port: port) { client in
                let response = try await client.call("ping")
                #expect(response?["result"] != nil)
            }
        }
    }
}


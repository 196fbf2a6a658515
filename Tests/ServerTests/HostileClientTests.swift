import Foundation
import JSONRPC
import NIOCore
import NIOPosix
import Testing
import TestSupport

/// Clients that try to wear the server down, each met by a limit of the
/// protocol while a well-behaved client alongside keeps being served.
@Suite struct HostileClientTests {
    /// A well-behaved session running `count` requests while something else goes on.
    static func goodClient(_ server: ServerHarness, count: Int) async throws -> Int {
        try await server.withSession("coordinator") { client in
            var answered = 0
            for id in 1...count {
                if try await client.call("task.list", id: id, params: #"{"limit":5}"#)?["result"] != nil { answered += 1 }
                try await Task.sleep(for: .milliseconds(50))
            }
            return answered
        }
    }

    @Test func twoThousandIdleConnectionsAreClosedAtTheHelloDeadline() async throws {
        // Two thousand connections, and the server's ends of them, need file descriptors.
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        if limit.rlim_cur < 6000, limit.rlim_max >= 6000 {
            limit.rlim_cur = 6000
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        guard limit.rlim_cur >= 4500 else { return }

        let server = try await ServerHarness.start("idle_2000") {
            $0.helloDeadlineSeconds = 3
            $0.maxConnections = 3000
        }
        let group = MultiThreadedEventLoopGroup.singleton
        var idle: [Channel] = []
        for _ in 0..<2000 {
            idle.append(try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port).get())
        }
        let answered = try await Self.goodClient(server, count: 20)
        #expect(answered == 20)
        // Past the deadline, the server has closed every one of them.
        try await Task.sleep(for: .seconds(3))
        var open = 0
        for channel in idle {
            let closed = try await within(10, "the server to close an idle connection") {
                try await channel.closeFuture.get()
                return true
            }
            if !closed { open += 1 }
        }
        #expect(open == 0)
        await server.stop()
    }

    @Test func aClientSendingAByteAtATimeIsClosedAtTheHelloDeadline() async throws {
        let server = try await ServerHarness.start("slow_bytes") { $0.helloDeadlineSeconds = 2 }
        async let good = Self.goodClient(server, count: 30)
        let outcome = try await LineClient.withConnection(port: server.port) { client in
            let hello = Array(#"{"jsonrpc":"2.0","id":1,"method":"session.hello","params":{"protocol":1,"token":"pbc_example_coordinator"}}"#.utf8)
            for byte in hello {
                do {
                    try await client.send(raw: [byte])
                } catch {
                    break  // closed under us: that is the point
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            return try await client.receive()
        }
        #expect(outcome?["error"]?["code"] == .integer(-32001))
        #expect(try await good == 30)
        await server.stop()
    }

    @Test func aTenMebibyteLineIsRefusedAtTheLimitWhileOthersAreServed() async throws {
        let server = try await ServerHarness.start("huge_line")  // the default limit, 1 MiB
        async let good = Self.goodClient(server, count: 20)
        let answer = try await LineClient.withConnection(port: server.port) { client in
            let chunk = String(repeating: "a", count: 1 << 16)
            try await client.send(raw: #"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":""#)
            for _ in 0..<160 {  // 10 MiB, without a newline
                do { try await client.send(raw: chunk) } catch { break }  // closed under us
            }
            return try await client.receive()
        }
        #expect(answer?["error"]?["code"] == .integer(-32600))
        #expect(try await good == 20)
        await server.stop()
    }

    @Test func aFloodOfCallsBeforeHelloIsRefusedOneByOneWhileOthersAreServed() async throws {
        let server = try await ServerHarness.start("flood") { $0.helloDeadlineSeconds = 30 }
        async let good = Self.goodClient(server, count: 30)
        let refused = try await LineClient.withConnection(port: server.port) { client in
            var lines = ""
            for id in 1...5000 { lines += #"{"jsonrpc":"2.0","id":\#(id),"method":"task.list"}"# + "\n" }
            try await client.send(raw: lines)
            var refused = 0
            for _ in 1...5000 {
                if try await client.receive()?["error"]?["code"] == .integer(-32001) { refused += 1 }
            }
            return refused
        }
        #expect(refused == 5000)
        #expect(try await good == 30)
        await server.stop()
    }
}

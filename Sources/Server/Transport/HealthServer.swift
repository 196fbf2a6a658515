import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Postgres
import ServiceLifecycle

/// A small HTTP listener, apart from the protocol's port: `/metrics` for
/// Prometheus, `/livez` (the process answers) and `/readyz` (the database does).
struct HealthServer: Service {
    let host: String
    let port: Int
    let metrics: ServerMetrics
    let connections: ConnectionRegistry
    let pool: PostgresPool
    let logger: Logger
    let onListening: @Sendable (SocketAddress) async -> Void

    func run() async throws {
        let listener = try await Listening.bind(host: host, port: port, what: "metrics and health", option: "--metrics-port") {
            try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                    }
                }
        }
        if let address = listener.channel.localAddress {
            logger.info("metrics and health listening", metadata: ["address": "\(address)"])
            await onListening(address)
        }
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await listener.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            listener.channel.close(promise: nil)
        }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        try? await connection.executeThenClose { inbound, outbound in
            var path = ""
            for try await part in inbound {
                switch part {
                case .head(let head): path = String(head.uri.prefix { $0 != "?" })
                case .body: break
                case .end:
                    let (status, body) = await respond(to: path)
                    var headers = HTTPHeaders()
                    headers.add(name: "content-type", value: path == "/metrics" ? "text/plain; version=0.0.4" : "text/plain")
                    headers.add(name: "content-length", value: String(body.utf8.count))
                    headers.add(name: "connection", value: "close")
                    try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)))
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body))))
                    try await outbound.write(.end(nil))
                    return
                }
            }
        }
    }

    private func respond(to path: String) async -> (HTTPResponseStatus, String) {
        switch path {
        case "/metrics":
            metrics.record(connections: connections.count, pool: pool.usage)
            return (.ok, metrics.registry.emitToString())
        case "/livez":
            return (.ok, "ok\n")
        case "/readyz":
            do {
                // A short wait: readiness is about answering soon, not eventually.
                let ready = try await withThrowingTaskGroup(of: Bool.self) { group in
                    group.addTask { try await pool.query("SELECT 1").count == 1 }
                    group.addTask {
                        try await Task.sleep(for: .seconds(2))
                        return false
                    }
                    defer { group.cancelAll() }
                    return try await group.next() ?? false
                }
                return ready ? (.ok, "ready\n") : (.serviceUnavailable, "the database does not answer\n")
            } catch {
                return (.serviceUnavailable, "the database cannot be reached\n")
            }
        default:
            return (.notFound, "not found: try /metrics, /livez or /readyz\n")
        }
    }
}

import JSONRPC
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The JSON-RPC listener: newline-delimited JSON over TCP.
///
/// On graceful shutdown it stops accepting, lets each connection finish the
/// request it is handling, then closes it.
public struct RPCServer: Service {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var maxLineBytes: Int
        public var maxBatchSize: Int
        /// A connection that has not opened a session by then is closed.
        public var helloDeadline: Duration
        /// A connection silent this long is closed (`ping` keeps it alive).
        public var idleTimeout: Duration
        /// Open connections at most; the next one is told so and closed.
        public var maxConnections: Int
        /// A reply that cannot be written this long (the client stopped reading) closes the connection.
        public var writeTimeout: Duration
        /// Speak TLS with this context; plain TCP when nil.
        public var tls: NIOSSLContext?
    }

    let configuration: Configuration
    let methods: Methods
    let connections: ConnectionRegistry
    let logger: Logger
    let onListening: @Sendable (SocketAddress) async -> Void

    init(
        configuration: Configuration, methods: Methods, connections: ConnectionRegistry, logger: Logger,
        onListening: @escaping @Sendable (SocketAddress) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.methods = methods
        self.connections = connections
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let maxLineBytes = configuration.maxLineBytes
        let tls = configuration.tls
        let (host, port) = (self.configuration.host, self.configuration.port)
        let listener = try await Listening.bind(host: host, port: port, what: "JSON-RPC", option: "--port") {
            try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                // A client may send its requests and close its side at once
                // (`printf ... | nc`); it is still owed every answer.
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLineBytes: maxLineBytes)))
                        return try NIOAsyncChannel<Frame, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        }
        guard let address = listener.channel.localAddress else {
            throw ConfigurationError("the listener has no address")
        }
        logger.info("listening", metadata: ["address": "\(address)"])
        await onListening(address)

        let connections = connections
        let configuration = configuration
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await listener.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask {
                            await Connection(
                                channel: connection, methods: methods, configuration: configuration, registry: connections,
                                logger: logger
                            ).run()
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            listener.channel.close(promise: nil)
            connections.shutDownAll()
        }
    }
}

/// The open connections, so that shutdown can reach each one.
final class ConnectionRegistry: Sendable {
    var count: Int { state.withLock { $0.closers.count } }

    private let state = Mutex<(next: Int, closers: [Int: @Sendable () -> Void], shuttingDown: Bool)>((0, [:], false))

    /// Registers a closer; runs it at once when shutdown has begun.
    func add(_ closer: @escaping @Sendable () -> Void) -> Int {
        let (id, late) = state.withLock { state -> (Int, Bool) in
            state.next += 1
            if !state.shuttingDown { state.closers[state.next] = closer }
            return (state.next, state.shuttingDown)
        }
        if late { closer() }
        return id
    }

    func remove(_ id: Int) {
        _ = state.withLock { $0.closers.removeValue(forKey: id) }
    }

    func shutDownAll() {
        let closers = state.withLock { state in
            state.shuttingDown = true
            return Array(state.closers.values)
        }
        closers.forEach { $0() }
    }
}

import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// A JSON-RPC client over one connection: requests go out one at a time and
/// each waits for its answer. For the `pbc` command and tests.
public final class RPCClient {
    private var inbound: NIOAsyncChannelInboundStream<Frame>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var nextID: Int64 = 0
    /// Notifications that arrived while a call waited for its answer.
    private var pending: [Incoming] = []

    /// What the server sends besides answers: a notification, or an error
    /// with no request id (the last line before it closes the connection).
    public enum Incoming: Sendable {
        case notification(method: String, params: JSONValue)
        case error(RPCError)
    }

    private init(inbound: NIOAsyncChannelInboundStream<Frame>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    /// A connection failure, in words a user can act on.
    public struct ConnectionError: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Connects to `host:port` (over TLS when `tls` is given), runs `body`, closes.
    public static func withConnection<Result>(
        host: String, port: Int, tls: TLSConfiguration? = nil, maxLineBytes: Int = 64 << 20, _ body: (RPCClient) async throws -> Result
    ) async throws -> Result {
        let channel: NIOAsyncChannel<Frame, ByteBuffer>
        let context: NIOSSLContext?
        do {
            context = try tls.map(NIOSSLContext.init(configuration:))
        } catch {
            throw ConnectionError(description: "cannot set up TLS (\(error))")
        }
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(10))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let context {
                            // An address is no hostname to check a certificate against; a name is.
                            let hostname = host.contains(where: { $0.isLetter }) && !host.contains(":") ? host : nil
                            try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: hostname))
                        }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLineBytes: maxLineBytes)))
                        return try NIOAsyncChannel<Frame, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ConnectionError(description: "cannot reach pbc at \(host):\(port) (\(error))")
        }
        return try await channel.executeThenClose { inbound, outbound in
            try await body(RPCClient(inbound: inbound, outbound: outbound))
        }
    }

    /// Calls `method` and returns its result, or throws the `RPCError` the server answered.
    public func call(_ method: String, _ params: [String: JSONValue] = [:]) async throws -> JSONValue {
        nextID += 1
        let request = JSONValue.object([
            "jsonrpc": .string("2.0"), "id": .integer(nextID), "method": .string(method), "params": .object(params),
        ])
        var line = ByteBuffer(bytes: try JSONEncoder().encode(request))
        line.writeInteger(UInt8(ascii: "\n"))
        try await outbound.write(line)
        while true {
            guard let response = try await nextMessage() else { throw ConnectionError(description: "pbc closed the connection") }
            if let method = response["method"], case .string(let name) = method {
                pending.append(.notification(method: name, params: response["params"] ?? .null))
                continue
            }
            if let error = response["error"] { throw Self.rpcError(error) }
            return response["result"] ?? .null
        }
    }

    /// The next notification (or id-less error), waiting for it if need be; nil when the connection closes.
    public func next() async throws -> Incoming? {
        if !pending.isEmpty { return pending.removeFirst() }
        while let message = try await nextMessage() {
            if let method = message["method"], case .string(let name) = method {
                return .notification(method: name, params: message["params"] ?? .null)
            }
            if let error = message["error"], message["id"] == nil || message["id"] == .null { return .error(Self.rpcError(error)) }
        }
        return nil
    }

    private func nextMessage() async throws -> JSONValue? {
        guard let frame = try await inbound.next() else { return nil }
        guard case .line(let line) = frame else { throw ConnectionError(description: "pbc sent a line longer than this client accepts") }
        return try JSONValue.parse(line)
    }

    private static func rpcError(_ error: JSONValue) -> RPCError {
        var code = RPCError.Code.internalError
        if case .integer(let raw)? = error["code"] { code = RPCError.Code(rawValue: Int(raw)) }
        var message = "error"
        if case .string(let text)? = error["message"] { message = text }
        return RPCError(code: code, message: message, data: error["data"])
    }
}

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

    private init(inbound: NIOAsyncChannelInboundStream<Frame>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    /// A connection failure, in words a user can act on.
    public struct ConnectionError: Error, CustomStringConvertible {
        public let description: String
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
        guard let frame = try await inbound.next(), case .line(let answer) = frame else {
            throw ConnectionError(description: "pbc closed the connection")
        }
        let response = try JSONDecoder().decode(JSONValue.self, from: Data(answer.readableBytesView))
        if let error = response["error"] {
            var code = RPCError.Code.internalError
            if case .integer(let raw)? = error["code"] { code = RPCError.Code(rawValue: Int(raw)) }
            var message = "error"
            if case .string(let text)? = error["message"] { message = text }
            throw RPCError(code: code, message: message, data: error["data"])
        }
        return response["result"] ?? .null
    }
}

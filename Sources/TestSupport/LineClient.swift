import Foundation
import JSONRPC
import NIOCore
import NIOPosix
import NIOSSL

/// A test client that speaks newline-delimited JSON over TCP, as any client would.
/// Unchecked: a test uses it from one task at a time, but may hand it to a
/// child task that enforces a timeout.
public final class LineClient: @unchecked Sendable {
    private var inbound: NIOAsyncChannelInboundStream<Frame>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>

    private init(inbound: NIOAsyncChannelInboundStream<Frame>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    /// Connects, runs `body`, and closes the connection.
    public static func withConnection<Result>(
        host: String = "127.0.0.1", port: Int, tls: TLSConfiguration? = nil, _ body: (LineClient) async throws -> Result
    ) async throws -> Result {
        let context = try tls.map(NIOSSLContext.init(configuration:))
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLineBytes: 64 << 20)))
                    return try NIOAsyncChannel<Frame, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await body(LineClient(inbound: inbound, outbound: outbound))
        }
    }

    /// Sends text as it is; add the newline yourself.
    public func send(raw text: String) async throws {
        try await outbound.write(ByteBuffer(string: text))
    }

    public func send(raw bytes: [UInt8]) async throws {
        try await outbound.write(ByteBuffer(bytes: bytes))
    }

    /// The next line from the server, or nil when it closed the connection.
    public func receiveLine() async throws -> String? {
        guard let frame = try await inbound.next() else { return nil }
        switch frame {
        case .line(let buffer): return String(buffer: buffer)
        case .tooLong: return nil
        }
    }

    /// The next line, parsed.
    public func receive() async throws -> JSONValue? {
        guard let line = try await receiveLine() else { return nil }
        return try JSONValue.parse(line)
    }

    /// Sends one request and returns the response to it.
    public func call(_ method: String, id: Int = 1, params: String? = nil) async throws -> JSONValue? {
        var request = "{\"jsonrpc\":\"2.0\",\"id\":\(id),\"method\":\"\(method)\""
        if let params { request += ",\"params\":\(params)" }
        try await send(raw: request + "}\n")
        return try await receive()
    }
}

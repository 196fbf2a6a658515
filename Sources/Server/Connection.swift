import JSONRPC
import Logging
import NIOCore
import Synchronization

/// One client connection: reads lines in order, answers each in order.
struct Connection {
    let channel: NIOAsyncChannel<Frame, ByteBuffer>
    let dispatcher: Dispatcher
    let maxLineBytes: Int
    let registry: ConnectionRegistry
    let logger: Logger

    /// Whether a request is being handled, so that shutdown closes an idle
    /// connection at once and a busy one right after its answer.
    private enum Phase { case idle, busy, closing }

    func run() async {
        let phase = Mutex(Phase.idle)
        let underlying = channel.channel
        let registration = registry.add {
            let closeNow = phase.withLock { phase -> Bool in
                defer { phase = .closing }
                return phase == .idle
            }
            if closeNow { underlying.close(promise: nil) }
        }
        defer { registry.remove(registration) }
        do {
            try await channel.executeThenClose { inbound, outbound in
                for try await frame in inbound {
                    guard phase.withLock({ phase in
                        if phase == .closing { return false }
                        phase = .busy
                        return true
                    }) else { break }
                    switch frame {
                    case .line(let line):
                        if var response = await dispatcher.respond(to: line) {
                            response.writeInteger(UInt8(ascii: "\n"))
                            try await outbound.write(response)
                        }
                    case .tooLong:
                        let error = RPCError(
                            code: .invalidRequest, message: "line longer than \(maxLineBytes) bytes; closing the connection")
                        if var response = Dispatcher.encode(Response(id: nil, error: error)) {
                            response.writeInteger(UInt8(ascii: "\n"))
                            try await outbound.write(response)
                        }
                        return
                    }
                    let keepGoing = phase.withLock { phase -> Bool in
                        if phase == .closing { return false }
                        phase = .idle
                        return true
                    }
                    if !keepGoing { break }
                }
            }
        } catch {
            // A client that disconnects mid-line is not a server error.
            logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }
}

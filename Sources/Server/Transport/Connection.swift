import JSONRPC
import Logging
import NIOCore
import Synchronization

/// One client connection: reads lines in order and answers each in order;
/// enforces the hello deadline, the idle timeout and the write timeout.
struct Connection {
    let channel: NIOAsyncChannel<Frame, ByteBuffer>
    let methods: Methods
    let configuration: RPCServer.Configuration
    let registry: ConnectionRegistry
    let logger: Logger

    /// Whether a request is being handled, so that shutdown closes an idle
    /// connection at once and a busy one right after its answer.
    private enum Phase { case idle, busy, closing }

    func run() async {
        let underlying = channel.channel
        if registry.count >= configuration.maxConnections {
            await refuse(
                RPCError(code: .unavailable, message: "too many connections (\(configuration.maxConnections)); try again later",
                         data: .object(["retryAfterMs": .integer(1000)])))
            return
        }
        let phase = Mutex(Phase.idle)
        let session = Session()
        let registration = registry.add {
            let closeNow = phase.withLock { phase -> Bool in
                defer { phase = .closing }
                return phase == .idle
            }
            if closeNow { underlying.close(promise: nil) }
        }
        defer { registry.remove(registration) }
        let dispatcher = Dispatcher(maxBatchSize: configuration.maxBatchSize) { request in
            await methods.handle(request, session: session)
        }
        let writes = WriteWatch()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await watch(session, writes: writes) }
            await serve(dispatcher, session: session, phase: phase, writes: writes)
            session.streams.closeAll()
            group.cancelAll()
        }
    }

    private func serve(_ dispatcher: Dispatcher, session: Session, phase: borrowing Mutex<Phase>, writes: WriteWatch) async {
        do {
            try await channel.executeThenClose { inbound, outbound in
                for try await frame in inbound {
                    guard phase.withLock({ phase in
                        if phase == .closing { return false }
                        phase = .busy
                        return true
                    }) else { break }
                    session.touch()
                    switch frame {
                    case .line(let line):
                        if let response = await dispatcher.respond(to: line) {
                            try await write(response, to: outbound, writes: writes)
                        }
                        if session.shouldClose { return }
                        startStreams(session, outbound: outbound, writes: writes)
                    case .tooLong:
                        let error = RPCError(
                            code: .invalidRequest, message: "line longer than \(configuration.maxLineBytes) bytes; closing the connection")
                        if let response = Dispatcher.encode(Response(id: nil, error: error)) {
                            try await write(response, to: outbound, writes: writes)
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
            // A client that disconnects, or stops reading, is not a server error.
            logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    /// Writes one line. A write that waits longer than the write timeout (the
    /// client stopped reading) is found by `watch`, which closes the connection.
    private func write(_ response: ByteBuffer, to outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, writes: WriteWatch) async throws {
        var line = response
        line.writeInteger(UInt8(ascii: "\n"))
        let write = writes.begin()
        defer { writes.end(write) }
        try await outbound.write(line)
    }

    /// Starts the streams `event.subscribe` registered, now that its reply is out.
    /// A stream that has to end for being too slow, or on an error, takes the
    /// connection with it, after a last error line that says why.
    private func startStreams(_ session: Session, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, writes: WriteWatch) {
        let runner = methods.streamRunner
        let underlying = channel.channel
        session.streams.startPending { stream in
            let ending = await runner.run(stream) { line in
                try await write(line, to: outbound, writes: writes)
                session.touch()
            }
            switch ending {
            case .cancelled:
                return
            case .tooSlow(let behind, let lastSeq):
                logger.info("event subscriber too slow; closing", metadata: ["behind": "\(behind)", "principal": "\(stream.principal.name)"])
                await refuse(
                    RPCError(
                        code: .subscriberTooSlow,
                        message: "subscription \(stream.id) fell \(behind) events behind (limit \(runner.maxLag)); closing. "
                            + "Resubscribe with since \(lastSeq) to resume",
                        data: .object(["subscription": .string(stream.id), "lastSeq": .integer(Int64(lastSeq))])))
            case .failed(let error):
                // A connection closed under the stream (by the client, or by `watch`) needs no last word.
                guard underlying.isActive else { return }
                let rpc = Methods.rpcError(for: error, method: "event", logger: logger)
                await refuse(RPCError(code: rpc.code, message: "subscription \(stream.id) ended: \(rpc.message)", data: rpc.data))
            }
        }
    }

    /// Closes a connection that never opened a session, that has gone quiet,
    /// or whose client has stopped reading.
    private func watch(_ session: Session, writes: WriteWatch) async {
        let step = min(configuration.helloDeadline, configuration.idleTimeout, configuration.writeTimeout) / 4
        while !Task.isCancelled {
            do { try await Task.sleep(for: step) } catch { return }
            if writes.stalledFor >= configuration.writeTimeout {
                logger.info("client stopped reading; closing", metadata: ["principal": "\(session.principal?.name ?? "-")"])
                if session.streams.isEmpty {
                    try? await channel.channel.close()
                } else {
                    await refuse(
                        RPCError(
                            code: .subscriberTooSlow, message: "events could not be written for \(configuration.writeTimeout); closing",
                            data: .object([:])))
                }
                return
            }
            if session.principal == nil, ContinuousClock.now - session.opened >= configuration.helloDeadline {
                await refuse(RPCError(code: .unauthenticated, message: "no session.hello within \(configuration.helloDeadline); closing"))
                return
            }
            if session.idleFor >= configuration.idleTimeout, session.streams.isEmpty {
                await refuse(RPCError(code: .unavailable, message: "idle for \(configuration.idleTimeout); closing"))
                return
            }
        }
    }

    /// A last error line, then the connection closes. A client that is not
    /// reading gets two seconds for the line to go out.
    private func refuse(_ error: RPCError) async {
        let underlying = channel.channel
        if var line = Dispatcher.encode(Response(id: nil, error: error)) {
            line.writeInteger(UInt8(ascii: "\n"))
            let written = line
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await underlying.writeAndFlush(written) }
                group.addTask { try? await Task.sleep(for: .seconds(2)) }
                await group.next()
                group.cancelAll()
            }
        }
        try? await underlying.close()
    }
}

/// The writes in progress on one connection and when each began, so that
/// `watch` can tell a client that stopped reading, without a timer per write.
final class WriteWatch: Sendable {
    private let state = Mutex<(next: Int, started: [Int: ContinuousClock.Instant])>((0, [:]))

    func begin() -> Int {
        state.withLock { state in
            state.next += 1
            state.started[state.next] = .now
            return state.next
        }
    }

    func end(_ write: Int) { _ = state.withLock { $0.started.removeValue(forKey: write) } }

    /// How long the oldest write in progress has waited; zero when none is.
    var stalledFor: Duration {
        guard let oldest = state.withLock({ $0.started.values.min() }) else { return .zero }
        return ContinuousClock.now - oldest
    }
}

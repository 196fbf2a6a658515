import CLibPQ
import Foundation
import Logging
import NIOPosix

/// A notification sent with NOTIFY or `pg_notify`.
public struct PostgresNotification: Sendable, Equatable {
    public let channel: String
    public let payload: String
    public let backendPID: Int32
}

/// LISTENs on a dedicated connection and delivers what arrives as an `AsyncSequence`.
///
/// When the connection is lost, the listener reconnects (backing off up to
/// `maxBackoff`) and LISTENs again; each time LISTEN is in force, first or
/// again, the stream yields `.listening`, because notifications sent while no
/// LISTEN was in force are gone and a consumer should catch up from its tables.
public struct PostgresListener: Sendable {
    public enum Event: Sendable, Equatable {
        case listening
        case notification(PostgresNotification)
    }

    public let target: ConnectionTarget
    public let channels: [String]
    let threadPool: NIOThreadPool
    let logger: Logger
    let maxBackoff: Duration

    public init(
        target: ConnectionTarget, channels: [String], threadPool: NIOThreadPool,
        logger: Logger = Logger(label: "pbc.postgres.listener"), maxBackoff: Duration = .seconds(5)
    ) {
        self.target = target.setting("application_name", to: "pbc-listener")
        self.channels = channels
        self.threadPool = threadPool
        self.logger = logger
        self.maxBackoff = maxBackoff
    }

    /// The events, until the consuming task is cancelled or stops iterating.
    public func events() -> AsyncStream<Event> {
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .unbounded)
        let driver = Task { [self] in
            await run(continuation)
            continuation.finish()
        }
        continuation.onTermination = { _ in driver.cancel() }
        return stream
    }

    private func run(_ continuation: AsyncStream<Event>.Continuation) async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            var connection: PostgresConnection?
            do {
                let opened = try await PostgresConnection.connect(to: target, on: threadPool, logger: logger)
                connection = opened
                for channel in channels {
                    try await opened.execute(unsafeSQL: "LISTEN \(try await opened.quoteIdentifier(channel))")
                }
                continuation.yield(.listening)
                backoff = .milliseconds(100)
                while !Task.isCancelled {
                    for notification in try await wait(on: opened) {
                        continuation.yield(.notification(notification))
                    }
                }
            } catch {
                if Task.isCancelled || (error as? PostgresError)?.code == .cancelled { break }
                logger.warning("listener lost its connection; reconnecting", metadata: ["error": "\(error)"])
            }
            if let connection { await connection.close() }
            if Task.isCancelled { break }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, maxBackoff)
        }
    }

    /// Waits up to half a second for the socket, then drains what arrived.
    /// Short waits give the thread back to the pool and let cancellation in.
    private func wait(on connection: PostgresConnection) async throws -> [PostgresNotification] {
        try await connection.withRawHandle { handle in
            var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, 500)
            if ready < 0, errno != EINTR {
                throw PostgresError(.connectionClosed, message: "waiting for notifications failed: errno \(errno)")
            }
            if ready > 0, PQconsumeInput(handle) == 0 {
                throw PostgresError(
                    .connectionClosed, message: "listener connection lost: \(oneLine(String(cString: PQerrorMessage(handle))))")
            }
            guard PQstatus(handle) == CONNECTION_OK else {
                throw PostgresError(.connectionClosed, message: "listener connection lost")
            }
            var received: [PostgresNotification] = []
            while let notify = PQnotifies(handle) {
                received.append(
                    PostgresNotification(
                        channel: String(cString: notify.pointee.relname),
                        payload: String(cString: notify.pointee.extra),
                        backendPID: notify.pointee.be_pid))
                PQfreemem(notify)
            }
            return received
        }
    }
}

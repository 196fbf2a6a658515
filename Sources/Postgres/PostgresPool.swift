import Logging
import NIOPosix
import Synchronization

/// A bounded pool of connections to one database.
///
/// A connection is lent to one task at a time (`withConnection`,
/// `withTransaction`) and comes back only idle and healthy; otherwise it is
/// closed and its place goes to a new one. A caller that finds every
/// connection lent waits, in order, up to `acquireTimeout`.
public final class PostgresPool: Sendable {
    public struct Configuration: Sendable {
        public var target: ConnectionTarget
        public var maxConnections: Int
        public var acquireTimeout: Duration

        public init(target: ConnectionTarget, maxConnections: Int = 10, acquireTimeout: Duration = .seconds(10)) {
            precondition(maxConnections > 0, "a pool needs at least one connection")
            self.target = target
            self.maxConnections = maxConnections
            self.acquireTimeout = acquireTimeout
        }
    }

    public struct Usage: Sendable, Equatable {
        public var open: Int
        public var idle: Int
        public var waiting: Int
    }

    public let configuration: Configuration
    /// The threads every libpq call of this pool (and of listeners made from it) runs on.
    public let threadPool: NIOThreadPool
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var idle: [PostgresConnection] = []
        /// Connections that exist or are being opened, lent or idle.
        var open = 0
        var waiters: [(id: UInt64, continuation: CheckedContinuation<Grant, Error>)] = []
        var nextWaiterID: UInt64 = 0
        var isShutDown = false
        var drained: CheckedContinuation<Void, Never>?
    }

    /// What a waiter is handed: a connection, or the right to open one.
    private enum Grant: Sendable {
        case connection(PostgresConnection)
        case slot
    }

    public init(configuration: Configuration, logger: Logger = Logger(label: "pbc.postgres")) {
        self.configuration = configuration
        self.logger = logger
        // One thread per connection, plus room for listeners and cancel requests,
        // so that a cancel is never stuck behind the query it cancels.
        self.threadPool = NIOThreadPool(numberOfThreads: configuration.maxConnections + 4)
        threadPool.start()
    }

    public var usage: Usage {
        state.withLock { Usage(open: $0.open, idle: $0.idle.count, waiting: $0.waiters.count) }
    }

    /// Lends a connection to `body` and takes it back afterwards.
    public func withConnection<Result: Sendable>(_ body: (PostgresConnection) async throws -> Result) async throws -> Result {
        let connection = try await acquire()
        do {
            let result = try await body(connection)
            await release(connection)
            return result
        } catch {
            await release(connection)
            throw error
        }
    }

    /// `PostgresConnection.withTransaction` on a lent connection.
    @discardableResult
    public func withTransaction<Result: Sendable>(
        isolation: PostgresConnection.IsolationLevel = .readCommitted, settings: [(name: String, value: String)] = [],
        maxAttempts: Int = 5, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await withConnection { connection in
            try await connection.withTransaction(isolation: isolation, settings: settings, maxAttempts: maxAttempts, body)
        }
    }

    /// One statement on a lent connection.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        try await withConnection { try await $0.query(query) }
    }

    /// Closes idle connections, fails waiters, waits for lent connections to
    /// come back (and closes them), then stops the thread pool.
    public func shutdown() async {
        let (idle, waiters) = state.withLock { state in
            state.isShutDown = true
            defer {
                state.open -= state.idle.count
                state.idle = []
                state.waiters = []
            }
            return (state.idle, state.waiters)
        }
        for waiter in waiters {
            waiter.continuation.resume(throwing: PostgresError(.poolClosed, message: "the connection pool is shut down"))
        }
        for connection in idle { await connection.close() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.open == 0 { return true }
                state.drained = continuation
                return false
            }
            if done { continuation.resume() }
        }
        try? await threadPool.shutdownGracefully()
    }

    // MARK: Lending

    private enum Next {
        case reuse(PostgresConnection)
        case open
        case wait
        case closed
    }

    private func acquire() async throws -> PostgresConnection {
        let next = state.withLock { state -> Next in
            if state.isShutDown { return .closed }
            if let connection = state.idle.popLast() { return .reuse(connection) }
            if state.open < configuration.maxConnections {
                state.open += 1
                return .open
            }
            return .wait
        }
        switch next {
        case .closed:
            throw PostgresError(.poolClosed, message: "the connection pool is shut down")
        case .reuse(let connection):
            if await connection.isReusable() { return connection }
            logger.info("replacing a broken idle connection", metadata: ["db.conn": "\(connection.backendPID)"])
            await connection.close()
            return try await openInSlot()
        case .open:
            return try await openInSlot()
        case .wait:
            switch try await waitForGrant() {
            case .connection(let connection): return connection
            case .slot: return try await openInSlot()
            }
        }
    }

    /// Opens a connection in a place already counted in `open`; gives the place back on failure.
    private func openInSlot() async throws -> PostgresConnection {
        do {
            return try await PostgresConnection.connect(
                to: configuration.target.setting("application_name", to: "pbc"), on: threadPool, logger: logger)
        } catch {
            freeSlot()
            throw error
        }
    }

    private func waitForGrant() async throws -> Grant {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        let timeout = configuration.acquireTimeout
        let maxConnections = configuration.maxConnections
        let timer = Task { [weak self] in
            try await Task.sleep(for: timeout)
            self?.failWaiter(
                id,
                PostgresError(
                    .poolTimeout,
                    message: "timed out after \(timeout) waiting for a database connection: all \(maxConnections) are in use"))
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Grant, Error>) in
                let closed = state.withLock { state -> Bool in
                    if state.isShutDown { return true }
                    state.waiters.append((id, continuation))
                    return false
                }
                if closed {
                    continuation.resume(throwing: PostgresError(.poolClosed, message: "the connection pool is shut down"))
                }
            }
        } onCancel: {
            failWaiter(id, PostgresError(.cancelled, message: "cancelled while waiting for a database connection"))
        }
    }

    private func failWaiter(_ id: UInt64, _ error: PostgresError) {
        let continuation = state.withLock { state -> CheckedContinuation<Grant, Error>? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index).continuation
        }
        continuation?.resume(throwing: error)
    }

    private func release(_ connection: PostgresConnection) async {
        guard await connection.isReusable() else {
            logger.debug("closing a connection that came back unusable", metadata: ["db.conn": "\(connection.backendPID)"])
            await connection.close()
            freeSlot()
            return
        }
        enum Outcome {
            case handedOver(CheckedContinuation<Grant, Error>)
            case kept
            case close
        }
        let outcome = state.withLock { state -> Outcome in
            if state.isShutDown { return .close }
            if !state.waiters.isEmpty { return .handedOver(state.waiters.removeFirst().continuation) }
            state.idle.append(connection)
            return .kept
        }
        switch outcome {
        case .handedOver(let waiter):
            waiter.resume(returning: .connection(connection))
        case .kept:
            break
        case .close:
            await connection.close()
            freeSlot()
        }
    }

    /// A place was freed: the first waiter may open a connection in it.
    private func freeSlot() {
        enum Outcome {
            case grant(CheckedContinuation<Grant, Error>)
            case drained(CheckedContinuation<Void, Never>?)
        }
        let outcome = state.withLock { state -> Outcome in
            if !state.isShutDown, !state.waiters.isEmpty {
                return .grant(state.waiters.removeFirst().continuation)
            }
            state.open -= 1
            if state.open == 0, state.isShutDown {
                defer { state.drained = nil }
                return .drained(state.drained)
            }
            return .drained(nil)
        }
        switch outcome {
        case .grant(let waiter): waiter.resume(returning: .slot)
        case .drained(let continuation): continuation?.resume()
        }
    }
}

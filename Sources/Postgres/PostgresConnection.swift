import CLibPQ
import Foundation
import Logging
import NIOPosix
import Synchronization

/// One libpq connection.
///
/// libpq connections are not thread-safe: a connection is used by one Swift
/// task at a time (the pool lends it that way), and every libpq call on it runs
/// on the `NIOThreadPool` it was opened with, never on the cooperative pool or
/// an event loop.
public final class PostgresConnection: @unchecked Sendable {
    // @unchecked: `handle` is a C pointer that only the task holding this
    // connection touches, one call at a time, on the thread pool; the cancel
    // state, touched from other threads, is behind a Mutex.
    private let handle: OpaquePointer
    private let threadPool: NIOThreadPool
    private let cancelState: Mutex<CancelState>
    private let closed = Atomic<Bool>(false)
    /// The server process serving this connection (`pg_backend_pid()`).
    public let backendPID: Int32
    let logger: Logger

    private struct CancelState {
        var cancel: OpaqueHandle?  // PGcancel, freed on close
        var running = false
        var requested = false
    }

    private init(handle: OpaquePointer, threadPool: NIOThreadPool, logger: Logger) {
        self.handle = handle
        self.threadPool = threadPool
        self.backendPID = PQbackendPID(handle)
        self.cancelState = Mutex(CancelState(cancel: PQgetCancel(handle).map(OpaqueHandle.init)))
        var logger = logger
        logger[metadataKey: "db.conn"] = "\(PQbackendPID(handle))"
        self.logger = logger
    }

    deinit {
        if !closed.load(ordering: .acquiring) {
            // Last resort for a connection nobody closed: do not leak the socket.
            cancelState.withLock { state in
                if let cancel = state.cancel { PQfreeCancel(cancel.pointer) }
            }
            PQfinish(handle)
        }
    }

    /// Opens a connection. Fails with `.connectionFailed` and libpq's reason on one line.
    public static func connect(
        to target: ConnectionTarget, on threadPool: NIOThreadPool, logger: Logger = Logger(label: "pbc.postgres")
    ) async throws -> PostgresConnection {
        let handle = try await runBlocking(on: threadPool) { () throws -> OpaqueHandle in
            let pairs = target.keywordValues
            let keywords = pairs.map { strdup($0.0) }
            let values = pairs.map { strdup($0.1) }
            defer {
                keywords.forEach { free($0) }
                values.forEach { free($0) }
            }
            let handle: OpaquePointer? = (keywords.map { UnsafePointer($0) } + [nil]).withUnsafeBufferPointer { keywordBuffer in
                (values.map { UnsafePointer($0) } + [nil]).withUnsafeBufferPointer { valueBuffer in
                    PQconnectdbParams(keywordBuffer.baseAddress, valueBuffer.baseAddress, 1)
                }
            }
            guard let handle else {
                throw PostgresError(.connectionFailed, message: "could not connect to the database: out of memory")
            }
            guard PQstatus(handle) == CONNECTION_OK else {
                let reason = oneLine(String(cString: PQerrorMessage(handle)))
                PQfinish(handle)
                throw PostgresError(.connectionFailed, message: "could not connect to the database: \(reason)")
            }
            PQsetNoticeReceiver(handle, { _, _ in }, nil)  // NOTICEs are not errors; libpq would print them to stderr
            guard PQsetClientEncoding(handle, "UTF8") == 0 else {
                let reason = oneLine(String(cString: PQerrorMessage(handle)))
                PQfinish(handle)
                throw PostgresError(.connectionFailed, message: "could not set the client encoding: \(reason)")
            }
            // Timestamps come back in the ISO form our decoder reads; UTC makes
            // server-side date arithmetic the same on every instance.
            // String literals are quoted for standard_conforming_strings (`literal`).
            // No JIT: compiling a statement whose estimated cost passes
            // jit_above_cost took 100 to 400 ms each time, far longer than any
            // of pbc's statements runs (docs/performance.md, "JIT").
            var setup = "SET DateStyle TO 'ISO, YMD'; SET TimeZone TO 'UTC'; SET standard_conforming_strings TO on; SET jit TO off"
            if let role = target.role {
                guard let quoted = PQescapeIdentifier(handle, role, role.utf8.count) else {
                    let reason = oneLine(String(cString: PQerrorMessage(handle)))
                    PQfinish(handle)
                    throw PostgresError(.connectionFailed, message: "could not quote the role \(role): \(reason)")
                }
                setup += "; SET ROLE \(String(cString: quoted))"
                PQfreemem(quoted)
            }
            let result = PQexec(handle, setup)
            let ok = result.map { PQresultStatus($0) == PGRES_COMMAND_OK } ?? false
            PQclear(result)
            guard ok else {
                let reason = oneLine(String(cString: PQerrorMessage(handle)))
                PQfinish(handle)
                throw PostgresError(.connectionFailed, message: "could not prepare the session: \(reason)")
            }
            return OpaqueHandle(pointer: handle)
        }
        return PostgresConnection(handle: handle.pointer, threadPool: threadPool, logger: logger)
    }

    /// Runs one statement with its bound parameters and returns its rows.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        try await runCancellable { handle in
            try Self.checkNoNUL(query)
            var types = query.binds.map { $0.type.oid }
            let values = query.binds.map { bind in bind.text.map { strdup($0) } ?? nil }
            defer { values.forEach { free($0) } }
            let result = values.map { UnsafePointer($0) }.withUnsafeBufferPointer { valueBuffer in
                PQexecParams(
                    handle, query.sql, Int32(query.binds.count), &types, valueBuffer.baseAddress, nil, nil, 0)
            }
            return try self.rows(from: result)
        }
    }

    /// Runs SQL text as it is, possibly several statements, with no parameters:
    /// for migrations and fixed statements only.
    public func execute(unsafeSQL sql: String) async throws {
        _ = try await runCancellable { handle in
            try self.rows(from: PQexec(handle, sql))
        }
    }

    /// Runs `body` in a transaction: COMMIT when it returns, ROLLBACK when it
    /// throws. A serialization failure or deadlock, in the body or at COMMIT,
    /// runs the whole body again, at most `maxAttempts` times in all.
    /// `settings` are set for the transaction only (`set_config(name, value, true)`,
    /// as `SET LOCAL`), sent with the BEGIN in one round trip.
    @discardableResult
    public func withTransaction<Result: Sendable>(
        isolation: IsolationLevel = .readCommitted, settings: [(name: String, value: String)] = [], maxAttempts: Int = 5,
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let begin = "BEGIN ISOLATION LEVEL \(isolation.sql)"
            + (settings.isEmpty ? "" : "; SELECT " + settings.map { "set_config(\(Self.literal($0.name)), \(Self.literal($0.value)), true)" }.joined(separator: ", "))
        var attempt = 1
        while true {
            do {
                try await execute(unsafeSQL: begin)
                let result = try await body(self)
                try await execute(unsafeSQL: "COMMIT")
                return result
            } catch {
                await rollbackQuietly()
                if let error = error as? PostgresError, error.isRetryableTransactionFailure, attempt < maxAttempts {
                    logger.debug("retrying transaction", metadata: ["db.sqlstate": "\(error.sqlState ?? "")", "attempt": "\(attempt)"])
                    attempt += 1
                    // A short, random pause lets the competing transaction finish first.
                    try await Task.sleep(for: .milliseconds(Int.random(in: 1...(10 * attempt))))
                    continue
                }
                throw error
            }
        }
    }

    public enum IsolationLevel: Sendable {
        case readCommitted, repeatableRead, serializable
        var sql: String {
            switch self {
            case .readCommitted: "READ COMMITTED"
            case .repeatableRead: "REPEATABLE READ"
            case .serializable: "SERIALIZABLE"
            }
        }
    }

    private func rollbackQuietly() async {
        guard !closed.load(ordering: .acquiring) else { return }
        _ = try? await onPool { handle in
            guard PQtransactionStatus(handle) != PQTRANS_IDLE else { return }
            PQclear(PQexec(handle, "ROLLBACK"))
        }
    }

    /// A string literal for SQL text, as the server reads it with
    /// standard_conforming_strings on (every connection sets it). A NUL, which
    /// no text value may hold, is dropped.
    static func literal(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "\0", with: "").replacingOccurrences(of: "'", with: "''") + "'"
    }

    /// Quotes an identifier (a channel or database name) the way the server reads it.
    public func quoteIdentifier(_ identifier: String) async throws -> String {
        try await onPool { handle in
            guard let quoted = PQescapeIdentifier(handle, identifier, identifier.utf8.count) else {
                throw PostgresError(.server, message: oneLine(String(cString: PQerrorMessage(handle))))
            }
            defer { PQfreemem(quoted) }
            return String(cString: quoted)
        }
    }

    /// Whether the connection can be lent again: open, not in a transaction,
    /// and with nothing unexpected from the server waiting on the socket
    /// (a terminated backend announces itself that way).
    public func isReusable() async -> Bool {
        guard !closed.load(ordering: .acquiring) else { return false }
        // Nothing here waits: the status reads are of libpq's own state, the
        // poll has a zero timeout, and input is read only when poll says it is
        // there. So it runs where it is called, sparing two thread hops each
        // time a connection is lent and returned. The connection is in no one
        // else's hands meanwhile.
        let handle = handle
        return {
            guard PQstatus(handle) == CONNECTION_OK, PQtransactionStatus(handle) == PQTRANS_IDLE else { return false }
            // A terminated backend sends its FATAL message, then closes: one read
            // may see only the message, so read while there is more to read.
            var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
            var reads = 0
            while reads < 8, poll(&descriptor, 1, 0) > 0 {
                if PQconsumeInput(handle) == 0 { return false }
                while let notify = PQnotifies(handle) { PQfreemem(notify) }
                reads += 1
            }
            return PQstatus(handle) == CONNECTION_OK
        }()
    }

    public var isClosed: Bool { closed.load(ordering: .acquiring) }

    /// Closes the connection; later calls fail with `.connectionClosed`.
    public func close() async {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return
        }
        let cancel = cancelState.withLock { state -> OpaqueHandle? in
            defer { state.cancel = nil }
            return state.cancel
        }
        let handle = OpaqueHandle(pointer: handle)
        _ = try? await runBlocking(on: threadPool) {
            if let cancel { PQfreeCancel(cancel.pointer) }
            PQfinish(handle.pointer)
        }
    }

    // MARK: Running libpq calls

    /// Runs a short libpq call on the thread pool, whether or not the task is cancelled.
    private func onPool<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        let handle = OpaqueHandle(pointer: handle)
        return try await runBlocking(on: threadPool) { try body(handle.pointer) }
    }

    /// Runs libpq calls of the module's own (the listener's wait) on the thread pool.
    func withRawHandle<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        try await runCancellable(body)
    }

    /// Runs `body` on the thread pool; cancelling the Swift task sends the
    /// server a cancel request for the statement under way.
    private func runCancellable<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws -> T {
        guard !closed.load(ordering: .acquiring) else {
            throw PostgresError(.connectionClosed, message: "the connection is closed")
        }
        cancelState.withLock { $0.requested = false }
        let handle = OpaqueHandle(pointer: handle)
        do {
            return try await withTaskCancellationHandler {
                try await runBlocking(on: threadPool) {
                    let proceed = self.cancelState.withLock { state -> Bool in
                        if state.requested { return false }
                        state.running = true
                        return true
                    }
                    guard proceed else { throw CancellationError() }
                    defer { self.cancelState.withLock { $0.running = false } }
                    return try body(handle.pointer)
                }
            } onCancel: {
                self.requestCancel()
            }
        } catch is CancellationError {
            throw PostgresError(.cancelled, message: "the query was cancelled", sqlState: PostgresError.SQLState.queryCanceled)
        } catch let error as PostgresError where error.sqlState == PostgresError.SQLState.queryCanceled && Task.isCancelled {
            throw PostgresError(.cancelled, message: "the query was cancelled", sqlState: error.sqlState)
        }
    }

    private func requestCancel() {
        let running = cancelState.withLock { state -> Bool in
            state.requested = true
            return state.running
        }
        guard running else { return }
        // PQcancel opens a connection of its own, so it too belongs on the pool.
        threadPool.submit { _ in
            self.cancelState.withLock { state in
                guard state.running, let cancel = state.cancel else { return }
                var buffer = [CChar](repeating: 0, count: 256)
                _ = PQcancel(cancel.pointer, &buffer, Int32(buffer.count))
            }
        }
    }

    private static func checkNoNUL(_ query: PostgresQuery) throws {
        for (position, bind) in query.binds.enumerated() where bind.text?.utf8.contains(0) == true {
            throw PostgresError(
                .server, message: "parameter $\(position + 1) contains a NUL character, which PostgreSQL text cannot hold",
                sqlState: "22021")
        }
    }

    /// Copies a result out of libpq and clears it, or turns it into an error.
    private func rows(from result: OpaquePointer?) throws -> PostgresRows {
        guard let result else { throw connectionError() }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        switch status {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY, PGRES_SINGLE_TUPLE:
            let rowCount = Int(PQntuples(result))
            let fieldCount = Int(PQnfields(result))
            let columns = (0..<fieldCount).map { field in
                PostgresRows.Column(
                    name: String(cString: PQfname(result, Int32(field))),
                    type: PostgresType(oid: PQftype(result, Int32(field))))
            }
            var values: [String?] = []
            values.reserveCapacity(rowCount * fieldCount)
            for row in 0..<Int32(rowCount) {
                for field in 0..<Int32(fieldCount) {
                    if PQgetisnull(result, row, field) == 1 {
                        values.append(nil)
                    } else {
                        let length = Int(PQgetlength(result, row, field))
                        let bytes = UnsafeRawPointer(PQgetvalue(result, row, field)!).assumingMemoryBound(to: UInt8.self)
                        values.append(String(decoding: UnsafeBufferPointer(start: bytes, count: length), as: UTF8.self))
                    }
                }
            }
            let affected = Int(String(cString: PQcmdTuples(result))) ?? rowCount
            return PostgresRows(columns: columns, values: values, affectedRows: affected)
        case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR, PGRES_BAD_RESPONSE:
            func field(_ code: Int32) -> String? {
                PQresultErrorField(result, code).map { String(cString: $0) }
            }
            guard let sqlState = field(PBC_DIAG_SQLSTATE) else {
                // An error with no SQLSTATE comes from libpq itself: the connection broke.
                throw connectionError()
            }
            throw PostgresError(
                .server, message: field(PBC_DIAG_MESSAGE_PRIMARY) ?? "unknown error", sqlState: sqlState,
                detail: field(PBC_DIAG_MESSAGE_DETAIL), hint: field(PBC_DIAG_MESSAGE_HINT),
                constraint: field(PBC_DIAG_CONSTRAINT_NAME), table: field(PBC_DIAG_TABLE_NAME),
                column: field(PBC_DIAG_COLUMN_NAME))
        default:
            throw PostgresError(.server, message: "unsupported result (\(String(cString: PQresStatus(status))))")
        }
    }

    private func connectionError() -> PostgresError {
        let reason = oneLine(String(cString: PQerrorMessage(handle)))
        return PostgresError(.connectionClosed, message: "lost the database connection: \(reason.isEmpty ? "no reason given" : reason)")
    }
}

/// A C pointer carried into a thread-pool closure.
struct OpaqueHandle: @unchecked Sendable {
    // @unchecked: the pointer is only dereferenced by libpq on the pool
    // thread that runs the closure; its owner guarantees exclusive use.
    let pointer: OpaquePointer
}

/// Runs blocking work on the thread pool, turning a pool that is shut down into a typed error.
func runBlocking<T: Sendable>(on threadPool: NIOThreadPool, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    do {
        return try await threadPool.runIfActive(body)
    } catch is NIOThreadPoolError.ThreadPoolInactive {
        throw PostgresError(.poolClosed, message: "the database thread pool is shut down")
    }
}

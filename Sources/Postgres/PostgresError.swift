/// An error from PostgreSQL or from talking to it.
///
/// `description` is safe to show to a user or write to a log: it names the
/// kind of failure, the SQLSTATE, the constraint and PostgreSQL's primary
/// message, never the SQL text or a connection secret. `debugDescription`
/// adds the detail and hint for developers.
public struct PostgresError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong, extensible without breaking callers that switch on it.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case connectionFailed = "connection failed"
            case connectionClosed = "connection closed"
            case server = "server error"
            case decoding = "decoding failed"
            case poolTimeout = "timed out waiting for a connection"
            case poolClosed = "connection pool is shut down"
            case cancelled = "query cancelled"
            case migration = "migration failed"
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// libpq could not open a connection (bad connection string, host unreachable, authentication).
        public static let connectionFailed = Code(.connectionFailed)
        /// An open connection was lost or is unusable.
        public static let connectionClosed = Code(.connectionClosed)
        /// The server answered with an error; see `sqlState`.
        public static let server = Code(.server)
        /// A value could not be decoded into the requested Swift type.
        public static let decoding = Code(.decoding)
        /// No pooled connection became free in time.
        public static let poolTimeout = Code(.poolTimeout)
        /// The pool was shut down.
        public static let poolClosed = Code(.poolClosed)
        /// The Swift task was cancelled and the query with it.
        public static let cancelled = Code(.cancelled)
        /// A schema migration could not be applied or verified.
        public static let migration = Code(.migration)

        public var description: String { base.rawValue }
    }

    public var code: Code
    /// The five-character SQLSTATE, for `.server` errors (and cancellations: 57014).
    public var sqlState: String?
    /// PostgreSQL's or libpq's primary message, or ours.
    public var message: String
    public var detail: String?
    public var hint: String?
    public var constraint: String?
    public var table: String?
    public var column: String?

    public init(
        _ code: Code, message: String, sqlState: String? = nil, detail: String? = nil,
        hint: String? = nil, constraint: String? = nil, table: String? = nil, column: String? = nil
    ) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
        self.constraint = constraint
        self.table = table
        self.column = column
    }

    public var description: String {
        var text = message
        if let sqlState { text += " (SQLSTATE \(sqlState))" }
        if let constraint { text += " [constraint \(constraint)]" }
        return text
    }

    public var debugDescription: String {
        var parts = ["PostgresError(\(code))", description]
        if let detail { parts.append("detail: \(detail)") }
        if let hint { parts.append("hint: \(hint)") }
        if let table { parts.append("table: \(table)") }
        if let column { parts.append("column: \(column)") }
        return parts.joined(separator: "; ")
    }
}

extension PostgresError {
    /// SQLSTATE classes and codes that callers act on.
    public enum SQLState {
        public static let uniqueViolation = "23505"
        public static let foreignKeyViolation = "23503"
        public static let checkViolation = "23514"
        public static let notNullViolation = "23502"
        public static let exclusionViolation = "23P01"
        public static let serializationFailure = "40001"
        public static let deadlockDetected = "40P01"
        public static let queryCanceled = "57014"
        public static let adminShutdown = "57P01"
    }

    /// Whether running the whole transaction again may succeed.
    public var isRetryableTransactionFailure: Bool {
        sqlState == SQLState.serializationFailure || sqlState == SQLState.deadlockDetected
    }

    /// Whether the database could not be reached or the connection broke:
    /// the caller should report "unavailable" and may retry later.
    public var isUnavailable: Bool {
        code == .connectionFailed || code == .connectionClosed || code == .poolTimeout
            || sqlState?.hasPrefix("08") == true || sqlState == SQLState.adminShutdown
            || sqlState == "57P02" || sqlState == "57P03"
    }
}

/// libpq messages end with a newline and may span lines; a user needs one line.
func oneLine(_ message: String) -> String {
    message.split(whereSeparator: \.isNewline)
        .map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty }
        .joined(separator: " ")
}

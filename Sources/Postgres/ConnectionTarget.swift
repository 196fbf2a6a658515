/// Where to connect: the caller's libpq connection string, untouched, plus
/// keyword settings applied after it (a database name for a test, an
/// application name), never spliced into the string.
public struct ConnectionTarget: Sendable {
    /// A libpq URI or key/value string (`DATABASE_URL`); empty means libpq's
    /// defaults and the `PG*` environment variables. Multi-host strings with
    /// `target_session_attrs` work as libpq documents them.
    public var conninfo: String
    /// Keyword/value pairs that override what `conninfo` says.
    public var overrides: [(keyword: String, value: String)]
    /// Used unless `conninfo` sets its own `connect_timeout`.
    public var defaultConnectTimeoutSeconds: Int
    /// The role every statement runs as: `SET ROLE` right after connecting
    /// (the login role must be a member). Nil keeps the login role.
    public var role: String?

    public init(conninfo: String, overrides: [(keyword: String, value: String)] = [], defaultConnectTimeoutSeconds: Int = 10) {
        self.conninfo = conninfo
        self.overrides = overrides
        self.defaultConnectTimeoutSeconds = defaultConnectTimeoutSeconds
    }

    /// The same target, with every statement run as `role`.
    public func runningAs(_ role: String?) -> ConnectionTarget {
        var copy = self
        copy.role = role
        return copy
    }

    /// The same server, another database.
    public func database(_ name: String) -> ConnectionTarget {
        setting("dbname", to: name)
    }

    public func setting(_ keyword: String, to value: String) -> ConnectionTarget {
        var copy = self
        copy.overrides.removeAll { $0.keyword == keyword }
        copy.overrides.append((keyword, value))
        return copy
    }

    /// The keyword/value arrays for `PQconnectdbParams` with `expand_dbname`:
    /// libpq keeps the last value of a repeated keyword, so our default timeout
    /// comes first (the string may override it) and the overrides come last.
    var keywordValues: [(String, String)] {
        [("connect_timeout", String(defaultConnectTimeoutSeconds)), ("dbname", conninfo)]
            + overrides.map { ($0.keyword, $0.value) }
    }
}

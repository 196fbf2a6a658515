import Foundation
import JSONRPC
import Logging
import NIOCore
import NIOSSL
import Postgres
import Server
import Store
import TestSupport

/// A running server on a database of its own, with principals of every role and their tokens.
struct ServerHarness {
    let port: Int
    /// The HTTP port of /metrics, /livez and /readyz, when asked for.
    let metricsPort: Int?
    let target: ConnectionTarget
    let tokens: [String: String]
    private let server: Task<Void, Error>

    static let principals: [(name: String, role: String, agency: String?)] = [
        ("undp-liaison", "liaison", "undp"), ("unicef-liaison", "liaison", "unicef"), ("wfp-liaison", "liaison", "wfp"),
        ("coordinator", "coordinator", "pbso"), ("approver", "approver", "pbso"), ("observer", "observer", nil), ("admin", "admin", nil),
    ]

    /// Starts a server; `configure` adjusts its configuration (limits, for the tests of limits).
    static func start(
        _ label: String, database: ConnectionTarget? = nil, configure: (inout AppConfiguration) -> Void = { _ in }
    ) async throws -> ServerHarness {
        let target: ConnectionTarget
        if let database { target = database } else { target = try await TestDatabase.create(label) }
        let config = TestDatabase.repositoryRoot.appendingPathComponent("Config")
        let pool = PostgresPool(configuration: .init(target: target, maxConnections: 2))
        if database != nil {
            // Databases from TestDatabase come migrated; one of the caller's may not.
            _ = try await pool.withConnection { try await Migrator(directory: TestDatabase.migrationsDirectory).migrate(on: $0) }
        }
        try await pool.withConnection { try await ReferenceData.load(from: config).sync(on: $0) }
        let admin = AdminStore(pool: pool)
        var tokens: [String: String] = [:]
        for principal in principals {
            let added = try await admin.addPrincipal(name: principal.name, role: Coordination.Role(rawValue: principal.role)!, agency: principal.agency)
            // Known tokens, so that docs/protocol.md can show them; stored as SHA-256 like any other.
            let token = "pbc_example_\(principal.name)"
            try await pool.query("INSERT INTO api_tokens (principal, token_hash) VALUES (\(added.id), sha256(convert_to(\(token), 'UTF8')))")
            tokens[principal.name] = token
        }
        await pool.shutdown()

        let server = try await launch(target: target, tokens: tokens, configure: configure)
        // The server has created the queues its workflows name; give the coordinator and approver theirs.
        let members = PostgresPool(configuration: .init(target: target, maxConnections: 1))
        for (queue, principal) in Self.memberships {
            try await members.query("""
                INSERT INTO queue_members (queue, principal) SELECT \(queue), id FROM principals WHERE name = \(principal)
                ON CONFLICT DO NOTHING
                """)
        }
        await members.shutdown()
        return server
    }

    static let memberships = [
        ("pbso-review", "coordinator"), ("pbso-deconfliction", "coordinator"), ("pbso-escalations", "coordinator"),
        ("pbso-funding", "coordinator"), ("asg-approval", "approver"),
    ]

    /// Another instance of pbc on this one's database, as a second machine would
    /// run; `loggingInAs` gives it another login role.
    func another(loggingInAs role: String? = nil, configure: (inout AppConfiguration) -> Void = { _ in }) async throws -> ServerHarness {
        try await Self.launch(target: role.map { target.setting("user", to: $0) } ?? target, tokens: tokens, configure: configure)
    }

    private static func launch(
        target: ConnectionTarget, tokens: [String: String], configure: (inout AppConfiguration) -> Void
    ) async throws -> ServerHarness {
        let config = TestDatabase.repositoryRoot.appendingPathComponent("Config")
        var configuration = AppConfiguration()
        configuration.port = 0
        configuration.sqlDirectory = TestDatabase.migrationsDirectory.path
        configuration.configDirectory = config.path
        configure(&configuration)
        let application = Application(configuration: configuration, database: target, logger: Logger(label: "test"))
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let (metricsPorts, metricsContinuation) = AsyncStream.makeStream(of: Int.self)
        let server = Task {
            try await application.run(
                shutdownSignals: [], onListening: { address in continuation.yield(address.port!) },
                onMetricsListening: { address in metricsContinuation.yield(address.port!) })
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        var metricsPort: Int?
        if configuration.metricsPort != nil {
            var metricsIterator = metricsPorts.makeAsyncIterator()
            metricsPort = await metricsIterator.next()
        }
        return ServerHarness(port: port, metricsPort: metricsPort, target: target, tokens: tokens, server: server)
    }

    func stop() async {
        server.cancel()
        _ = try? await server.value
    }

    /// A connection with an open session as `principal`.
    func withSession<Result>(_ principal: String, tls: TLSConfiguration? = nil, _ body: (LineClient) async throws -> Result) async throws -> Result {
        try await LineClient.withConnection(host: tls == nil ? "127.0.0.1" : "localhost", port: port, tls: tls) { client in
            let hello = try await client.call("session.hello", id: 0, params: #"{"protocol":1,"token":"\#(tokens[principal]!)","client":"tests/1"}"#)
            guard hello?["result"] != nil else { throw HelloFailed(response: hello) }
            return try await body(client)
        }
    }

    struct HelloFailed: Error { let response: JSONValue? }

    /// A project submission's params, in JSON.
    static func project(key: String, title: String = "Youth in local peace committees", extra: String = "") -> String {
        """
        {"idempotencyKey":"\(key)","workflow":"pbf-project","title":"\(title)","leadAgency":"undp",\
        "participants":[{"agency":"unicef","role":"implementing"}],"country":"BDI","locations":["Gitega"],\
        "sectors":["15220"],"period":{"start":"2027-01-01","end":"2028-06-30"},\
        "budget":{"amount":"1500000.00","currency":"USD"},"fields":{"genderMarker":2,"facility":"IRF"}\(extra)}
        """
    }
}

import Coordination

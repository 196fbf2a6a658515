import Coordination
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Postgres
import ServiceLifecycle
import Store
import UnixSignals

/// pbc as a whole: find or start the database, migrate, serve until told to stop.
public struct Application: Sendable {
    public let configuration: AppConfiguration
    let environment: [String: String]
    let database: ConnectionTarget?
    let logger: Logger

    /// `database`, when given, is used as it is (tests and embedders that
    /// already hold a target); otherwise `databaseChoice` decides.
    public init(
        configuration: AppConfiguration, environment: [String: String] = ProcessInfo.processInfo.environment,
        database: ConnectionTarget? = nil, logger: Logger
    ) {
        self.configuration = configuration
        self.environment = environment
        self.database = database
        self.logger = logger
    }

    /// Serves until one of `signals` arrives (or the task is cancelled), then
    /// shuts down in order: stop accepting, finish requests, close
    /// connections, close the pool, stop a cluster pbc started.
    /// With `onDemo`, demo principals and tasks are seeded first (`Demo`) and
    /// their fresh tokens handed to it.
    public func run(
        shutdownSignals: [UnixSignal] = [.sigterm, .sigint],
        onDemo: (@Sendable ([Demo.Login]) -> Void)? = nil,
        onListening: @escaping @Sendable (SocketAddress) async -> Void = { _ in },
        onMetricsListening: @escaping @Sendable (SocketAddress) async -> Void = { _ in }
    ) async throws {
        // Configuration errors stop start-up before anything else is touched.
        let workflowFiles = try WorkflowRegistry.read(files: WorkflowRegistry.files(in: configURL().appendingPathComponent("workflows")))
        let rates = try loadRates()
        let overlap = try loadOverlapConfiguration()
        let routing = try loadRouting()
        let calendar = try loadReportingCalendar(against: workflowFiles)
        let tls = try makeTLSContext()
        try await withPreparedDatabase(owner: true, poolSize: configuration.poolSize) { pool in
            let workflows = try await pool.withConnection { try await WorkflowRegistry.sync(workflowFiles, on: $0) }
            logger.info(
                "workflows loaded",
                metadata: ["workflows": "\(workflows.latest.values.map { "\($0.name) v\($0.version)" }.sorted().joined(separator: ", "))"])
            let tasks = TaskStore(
                pool: pool, workflows: workflows, rates: rates, screener: TaskStore.portfolioScreener(overlap), routing: routing,
                calendar: calendar)
            try await tasks.syncQueues()
            if let onDemo { onDemo(try await Demo.seed(tasks: tasks, admin: AdminStore(pool: pool))) }
            let metrics = ServerMetrics()
            let connections = ConnectionRegistry()
            let hub = EventHub(pool: pool, tasks: tasks, logger: logger)
            let methods = Methods(
                pool: pool, tasks: tasks, workflows: workflows,
                rateLimit: (Double(configuration.rateLimitPerSecond), configuration.rateLimitBurst), metrics: metrics,
                queueSettings: .init(
                    lease: .seconds(configuration.leaseSeconds), replayRetention: .seconds(configuration.replayRetentionDays * 86_400)),
                hub: hub, maxSubscriberLag: configuration.maxSubscriberLag, logger: logger)
            let server = RPCServer(
                configuration: .init(
                    host: configuration.host, port: configuration.port, maxLineBytes: configuration.maxLineBytes,
                    maxBatchSize: configuration.maxBatchSize, helloDeadline: .seconds(configuration.helloDeadlineSeconds),
                    idleTimeout: .seconds(configuration.idleTimeoutSeconds), maxConnections: configuration.maxConnections,
                    writeTimeout: .seconds(configuration.writeTimeoutSeconds), tls: tls),
                methods: methods, connections: connections, logger: logger, onListening: onListening)
            var services: [any Service] = [
                hub, Sweeper(tasks: tasks, interval: .seconds(configuration.sweepIntervalSeconds), logger: logger), server,
            ]
            if let metricsPort = configuration.metricsPort {
                services.append(
                    HealthServer(
                        host: configuration.host, port: metricsPort, metrics: metrics, connections: connections, pool: pool, logger: logger,
                        onListening: onMetricsListening))
            }
            let group = ServiceGroup(
                configuration: .init(services: services, gracefulShutdownSignals: shutdownSignals, logger: logger))
            try await group.run()
        }
    }

    /// Applies pending migrations and returns what was done.
    public func migrateOnly() async throws -> Migrator.Report {
        let migrator = try migrator()
        return try await withDatabase(owner: false) { target in
            try await withPool(target, size: 1) { try await migrate($0, with: migrator) }
        }
    }

    /// Runs `body` with a pool on a database that is migrated and holds the
    /// reference data of `Config/`: what admin commands and the server need.
    /// The migrations run as the role pbc logs in as (they create tables and
    /// the service role); `body`'s pool runs as `Database.serviceRole`, bound
    /// by row-level security.
    public func withPreparedDatabase<Result: Sendable>(
        owner: Bool = false, poolSize: Int = 2, _ body: (PostgresPool) async throws -> Result
    ) async throws -> Result {
        let migrator = try migrator()
        let reference = try ReferenceData.load(from: configURL())
        return try await withDatabase(owner: owner) { target in
            _ = try await withPool(target, size: 1) { try await migrate($0, with: migrator) }
            return try await withPool(target.runningAs(Database.serviceRole), size: poolSize) { pool in
                try await pool.withConnection { try await reference.sync(on: $0) }
                return try await body(pool)
            }
        }
    }

    /// A pool for `body`, shut down however `body` ends.
    private func withPool<Result: Sendable>(
        _ target: ConnectionTarget, size: Int, _ body: (PostgresPool) async throws -> Result
    ) async throws -> Result {
        let pool = PostgresPool(configuration: .init(target: target, maxConnections: size), logger: logger)
        do {
            let result = try await body(pool)
            await pool.shutdown()
            return result
        } catch {
            await pool.shutdown()
            throw error
        }
    }

    /// The listener's TLS context when a certificate and key are configured.
    func makeTLSContext() throws -> NIOSSLContext? {
        guard let certificate = configuration.tlsCertificate, let key = configuration.tlsKey else { return nil }
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
            let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
            return try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(privateKey)))
        } catch {
            throw ConfigurationError("cannot use the TLS certificate \(certificate) and key \(key): \(error)")
        }
    }

    /// The configuration directory.
    func configURL() throws -> URL {
        try directory(configuration.configDirectory, holding: "configuration", default: "Config/", flag: "--config-dir", key: ConfigurationLoader.Key.configDirectory)
    }

    /// A directory pbc reads. The defaults, `Config` and `sql`, are relative
    /// to the working directory: run from elsewhere, pbc says so and how to
    /// point at them, rather than naming the first file it cannot read.
    private func directory(_ path: String, holding what: String, default name: String, flag: String, key: String) throws -> URL {
        let url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ConfigurationError("no \(what) directory \(url.path): pbc reads \(name) in the working directory unless \(flag) (or \(key)) names another")
        }
        return url
    }

    func loadRates() throws -> ExchangeRates {
        let url = try configURL().appendingPathComponent("rates.yaml")
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ConfigError(file: url.path, line: nil, message: "cannot read the exchange rates")
        }
        return try ExchangeRates.load(yaml: String(decoding: data, as: UTF8.self), file: url.path)
    }

    public func loadOverlapConfiguration() throws -> OverlapConfiguration {
        let url = try configURL().appendingPathComponent("overlap.yaml")
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ConfigError(file: url.path, line: nil, message: "cannot read the overlap configuration")
        }
        return try OverlapConfiguration.load(yaml: String(decoding: data, as: UTF8.self), file: url.path)
    }

    /// Loads the workflows and routing of `Config/` and makes sure every queue they name exists,
    /// for admin commands that run before any server has.
    public func syncQueues(_ pool: PostgresPool) async throws {
        try await TaskStore.syncQueues(workflows: try await loadWorkflows(pool), routing: try loadRouting(), on: pool)
    }

    /// The workflows of `Config/`, loaded into the database (a version is
    /// added when a file changed), for commands that run without a server.
    public func loadWorkflows(_ pool: PostgresPool) async throws -> WorkflowRegistry {
        let files = try WorkflowRegistry.read(files: WorkflowRegistry.files(in: configURL().appendingPathComponent("workflows")))
        return try await pool.withConnection { try await WorkflowRegistry.sync(files, on: $0) }
    }

    /// `Config/routing.yaml`; without the file, tasks wait in the queues their states name.
    public func loadRouting() throws -> Routing {
        let url = try configURL().appendingPathComponent("routing.yaml")
        guard let data = FileManager.default.contents(atPath: url.path) else { return Routing() }
        return try Routing.load(yaml: String(decoding: data, as: UTF8.self), file: url.path)
    }

    /// `Config/reporting.yaml`, its report types checked against the newest
    /// progress-report workflow of `workflows`; without the file, funding
    /// schedules no reports.
    func loadReportingCalendar(against workflows: [WorkflowRegistry.File]) throws -> ReportingCalendar {
        let url = try configURL().appendingPathComponent("reporting.yaml")
        guard let data = FileManager.default.contents(atPath: url.path) else { return ReportingCalendar() }
        let calendar = try ReportingCalendar.load(yaml: String(decoding: data, as: UTF8.self), file: url.path)
        let reports = workflows.map(\.definition).filter { $0.name == TaskStore.reportWorkflow }.max { $0.version < $1.version }
        try calendar.check(types: reports?.fields?["reportType"], file: url.path)
        return calendar
    }

    /// The migrations of the sql directory, found before any database is touched.
    func migrator() throws -> Migrator {
        Migrator(
            directory: try directory(configuration.sqlDirectory, holding: "migrations", default: "sql/", flag: "--sql-dir", key: ConfigurationLoader.Key.sqlDirectory),
            logger: logger)
    }

    @discardableResult
    func migrate(_ pool: PostgresPool, with migrator: Migrator) async throws -> Migrator.Report {
        let report = try await pool.withConnection { try await migrator.migrate(on: $0) }
        logger.info("database schema is up to date", metadata: ["applied": "\(report.applied.count)", "already": "\(report.alreadyApplied)"])
        return report
    }

    /// Where the database is, by precedence: the configured URL (or
    /// `DATABASE_URL`), the `PG*` variables, or a private cluster.
    public enum DatabaseChoice: Equatable, Sendable {
        case url(String)
        case environment
        case localCluster(directory: String)
    }

    public var databaseChoice: DatabaseChoice {
        if let url = configuration.databaseURL { return .url(url) }
        if ["PGHOST", "PGHOSTADDR", "PGSERVICE"].contains(where: { environment[$0]?.isEmpty == false }) { return .environment }
        return .localCluster(directory: configuration.dataDirectory)
    }

    /// Runs `body` with the database's target; a private cluster is started
    /// first and stopped after when this process is its owner.
    private func withDatabase<Result: Sendable>(owner: Bool, _ body: (ConnectionTarget) async throws -> Result) async throws -> Result {
        if let database { return try await body(database) }
        switch databaseChoice {
        case .url(let url):
            return try await body(ConnectionTarget(conninfo: url))
        case .environment:
            return try await body(ConnectionTarget(conninfo: ""))
        case .localCluster(let directory):
            let cluster = try LocalCluster(configuration: .init(directory: URL(fileURLWithPath: directory).standardizedFileURL))
            let running = try await cluster.start()
            // A server owns the cluster unless another live pbc does; a one-off command owns only what it started.
            let owns = owner ? claimOwnership(of: cluster, adopted: running.adopted) : !running.adopted
            logger.info(
                running.adopted ? "using the PostgreSQL cluster already running" : "started a private PostgreSQL cluster",
                metadata: ["directory": "\(cluster.configuration.directory.path)", "socket": "\(running.socketDirectory)", "port": "\(running.port)"])
            do {
                let threads = NIOThreadPool(numberOfThreads: 1)
                threads.start()
                defer { threads.shutdownGracefully { _ in } }
                try await Database.createIfMissing("pbc", on: running.target, threadPool: threads)
                let result = try await body(running.target.database("pbc"))
                if owns { try await stop(cluster) }
                return result
            } catch {
                if owns { try? await stop(cluster) }
                throw error
            }
        }
    }

    private func stop(_ cluster: LocalCluster) async throws {
        try await cluster.stop()
        try? FileManager.default.removeItem(at: ownerFile(cluster))
        logger.info("stopped the private PostgreSQL cluster")
    }

    private func ownerFile(_ cluster: LocalCluster) -> URL {
        cluster.configuration.directory.appendingPathComponent("pbc.pid")
    }

    /// A serving pbc owns the cluster (and stops it at exit) unless another
    /// live pbc already does; a cluster left by a pbc that died is taken over.
    private func claimOwnership(of cluster: LocalCluster, adopted: Bool) -> Bool {
        let file = ownerFile(cluster)
        if adopted, let text = try? String(contentsOf: file, encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid != getpid(), kill(pid, 0) == 0
        {
            return false
        }
        try? "\(getpid())\n".write(to: file, atomically: true, encoding: .utf8)
        return true
    }
}

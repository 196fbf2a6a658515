import ArgumentParser
import Foundation
import Logging
import Postgres
import Server
import Store

@main
struct PBC: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pbc",
        abstract: "The coordination service of a Peacebuilding Commission: intake, overlap screening, workflows, audit.",
        subcommands: [
            Serve.self, Migrate.self, WorkflowCommand.self, AdminCommand.self, ImportCommand.self, OverlapsCommand.self,
            Submit.self, Edit.self, Show.self, Tasks.self, Act.self, Comment.self, QueueCommand.self, Assign.self, Release.self, Watch.self,
            Resolve.self, Report.self,
        ]
    )
}

/// Options every server-side command shares.
struct ServerOptions: ParsableArguments {
    @Option(name: .customLong("config"), help: "YAML configuration file (default: Config/pbc.yaml, if present).")
    var configFile: String?

    @Option(name: .customLong("database-url"), help: "libpq connection string or URI (default: DATABASE_URL, then the PG* variables, then a private cluster).")
    var databaseURL: String?

    @Option(name: .customLong("data-dir"), help: "Directory of the private PostgreSQL cluster (default: .pbc/postgres).")
    var dataDirectory: String?

    @Option(name: .customLong("sql-dir"), help: "Directory of the migrations (default: sql).")
    var sqlDirectory: String?

    @Option(name: .customLong("config-dir"), help: "Directory of reference data, rates and workflows (default: Config).")
    var configDirectory: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default: info, or PBC_LOG_LEVEL).")
    var logLevel: Logger.Level?
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Runs a command's body and turns any error into one line on standard error
/// and exit status 1: a user sees what went wrong, never a stack trace.
func reportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExitCode {
        throw error
    } catch let error as CleanExit {
        throw error
    } catch {
        FileHandle.standardError.write(Data("pbc: error: \(error)\n".utf8))
        throw ExitCode(exitCode(for: error))
    }
}

/// Runs `body` with a pool on the configured database, migrated and holding
/// the reference data: what every server-side command but `serve` needs.
/// Errors end as one line and an exit status.
func withPreparedPool<Result: Sendable>(
    _ options: ServerOptions, _ body: @escaping @Sendable (PostgresPool, Application) async throws -> Result
) async throws -> Result {
    try await withPreparedPool(options, reading: { _ in () }) { pool, application, _ in try await body(pool, application) }
}

/// As above, with what the command needs of `Config/` besides read first:
/// a broken file is refused before any database is started, created or
/// migrated.
func withPreparedPool<Read: Sendable, Result: Sendable>(
    _ options: ServerOptions, reading read: @escaping @Sendable (Application) throws -> Read,
    _ body: @escaping @Sendable (PostgresPool, Application, Read) async throws -> Result
) async throws -> Result {
    let logger = bootstrapLogging(options.logLevel ?? .warning)
    var result: Result?
    try await reportingErrors {
        let configuration = try await ConfigurationLoader.load(flags: options.flags, file: options.configFile)
        let application = Application(configuration: configuration, logger: logger)
        let files = try read(application)
        result = try await application.withPreparedDatabase { pool in try await body(pool, application, files) }
    }
    return result!
}

/// Logs go to standard error, so that standard output carries only results.
func bootstrapLogging(_ level: Logger.Level?) -> Logger {
    let resolved = level ?? ProcessInfo.processInfo.environment["PBC_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = resolved
        return handler
    }
    return Logger(label: "pbc")
}

/// Distinct exit codes, so that scripts can tell failures apart: 2 input
/// refused, 3 not found, 4 conflict, 5 forbidden or unauthenticated, 6 an
/// action the workflow refuses, 1 anything else. A command line that cannot
/// be used is ArgumentParser's 64.
func exitCode(for error: Error) -> Int32 {
    switch error {
    case is NotFound: return 3
    case is IATIFileError, is ImportStopped: return 2
    case let error as StoreError:
        switch error.code {
        case .notFound: return 3
        case .conflict: return 4
        case .forbidden: return 5
        case .refused: return 6
        case .validation: return 2
        default: return 1
        }
    default: return 1
    }
}

import ArgumentParser
import Configuration
import Foundation
import Server
import Store
import Synchronization

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve JSON-RPC over TCP: connect to (or start) PostgreSQL, migrate, listen.")

    @OptionGroup var options: ServerOptions

    @Option(help: "Address to listen on (default: 127.0.0.1).")
    var host: String?

    @Option(help: "Port to listen on; 0 picks a free one (default: 7411).")
    var port: Int?

    @Option(name: .customLong("metrics-port"), help: "HTTP port of /metrics, /livez and /readyz (default: none).")
    var metricsPort: Int?

    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain; with --tls-key, the listener speaks TLS.")
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key of the certificate.")
    var tlsKey: String?

    @Flag(help: "Seed demo principals (one of each role) and tasks, and print a fresh token for each.")
    var demo = false

    func run() async throws {
        let logger = bootstrapLogging(options.logLevel)
        try await reportingErrors {
            var flags = options.flags
            if let host { flags[ConfigurationLoader.Key.host] = .init(.string(host), isSecret: false) }
            if let port { flags[ConfigurationLoader.Key.port] = .init(.int(port), isSecret: false) }
            if let metricsPort { flags[ConfigurationLoader.Key.metricsPort] = .init(.int(metricsPort), isSecret: false) }
            if let tlsCertificate { flags[ConfigurationLoader.Key.tlsCertificate] = .init(.string(tlsCertificate), isSecret: false) }
            if let tlsKey { flags[ConfigurationLoader.Key.tlsKey] = .init(.string(tlsKey), isSecret: false) }
            let configuration = try await ConfigurationLoader.load(flags: flags, file: options.configFile)
            // The demo's hint names the address, known only once the port is bound (it may be 0).
            let hintToken = Mutex<String?>(nil)
            var printDemo: (@Sendable ([Demo.Login]) -> Void)?
            if demo {
                printDemo = { logins in
                    hintToken.withLock { $0 = logins.first(where: { $0.role == .liaison })?.token }
                    FileHandle.standardOutput.write(Data(Serve.demoTable(logins).utf8))
                }
            }
            try await Application(configuration: configuration, logger: logger).run(onDemo: printDemo) { address in
                let served = "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
                if let token = hintToken.withLock({ $0 }) {
                    let server = served == "127.0.0.1:7411" ? "" : "PBC_SERVER=\(served) "
                    FileHandle.standardOutput.write(Data("try: \(server)PBC_TOKEN=\(token) pbc tasks\n".utf8))
                }
                // The last line on standard output: scripts read the address from it.
                // Written straight away (not buffered): scripts wait for it.
                FileHandle.standardOutput.write(Data("pbc serving JSON-RPC on \(served)\n".utf8))
            }
        }
    }

    /// The demo logins as a table; before the serving line, which follows
    /// with a command to try one of them.
    static func demoTable(_ logins: [Demo.Login]) -> String {
        let rows = [["NAME", "ROLE", "AGENCY", "TOKEN"]] + logins.map { [$0.name, $0.role.rawValue, $0.agency ?? "-", $0.token] }
        let widths = (0..<3).map { column in rows.map { $0[column].count }.max()! }
        var text = "demo principals (tokens made at this start; earlier ones stay valid until revoked):\n"
        for row in rows {
            text += (0..<3).map { row[$0].padding(toLength: widths[$0] + 2, withPad: " ", startingAt: 0) }.joined() + row[3] + "\n"
        }
        return text
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply the migrations in sql/ that the database lacks.")

    @OptionGroup var options: ServerOptions

    func run() async throws {
        let logger = bootstrapLogging(options.logLevel)
        try await reportingErrors {
            let configuration = try await ConfigurationLoader.load(flags: options.flags, file: options.configFile)
            let report = try await Application(configuration: configuration, logger: logger).migrateOnly()
            if report.applied.isEmpty {
                print("up to date: \(report.alreadyApplied) migrations already applied")
            } else {
                for file in report.applied { print("applied \(file)") }
            }
        }
    }
}

extension ServerOptions {
    /// The flags given, under the configuration keys they set.
    var flags: [String: ConfigValue] {
        var flags: [String: ConfigValue] = [:]
        if let databaseURL { flags[ConfigurationLoader.Key.databaseURL] = .init(.string(databaseURL), isSecret: true) }
        if let dataDirectory { flags[ConfigurationLoader.Key.dataDirectory] = .init(.string(dataDirectory), isSecret: false) }
        if let sqlDirectory { flags[ConfigurationLoader.Key.sqlDirectory] = .init(.string(sqlDirectory), isSecret: false) }
        if let configDirectory { flags[ConfigurationLoader.Key.configDirectory] = .init(.string(configDirectory), isSecret: false) }
        return flags
    }
}

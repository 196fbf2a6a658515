import Configuration
import Foundation

/// Everything `pbc serve` needs to know, read once at start.
public struct AppConfiguration: Sendable, Equatable {
    /// Where the JSON-RPC listener binds; port 0 picks a free port.
    public var host = "127.0.0.1"
    public var port = 7411
    /// Longest accepted line, in bytes; a longer one gets an error and the connection closes.
    public var maxLineBytes = 1 << 20
    /// Most requests in one batch.
    public var maxBatchSize = 100
    /// Seconds a new connection has to call `session.hello`.
    public var helloDeadlineSeconds = 10
    /// Seconds of silence after which a connection is closed.
    public var idleTimeoutSeconds = 600
    /// Open connections at most, per instance.
    public var maxConnections = 1000
    /// Seconds a reply may wait for a client that has stopped reading.
    public var writeTimeoutSeconds = 30
    /// The HTTP port of /metrics, /livez and /readyz; none when nil.
    public var metricsPort: Int?
    /// PEM files of the certificate chain and private key; with both, the listener speaks TLS.
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// Requests a second per principal, and the burst allowed above it.
    public var rateLimitPerSecond = 100
    public var rateLimitBurst = 200
    /// A libpq connection string or URI. When nil, `DATABASE_URL`, then the
    /// `PG*` variables; with none of those, a private cluster in `dataDirectory`.
    public var databaseURL: String?
    /// Where the private cluster lives when pbc starts its own.
    public var dataDirectory = ".pbc/postgres"
    public var poolSize = 10
    /// A claim's lease unless the claimer asks for another (`queue.claim` `leaseSeconds`).
    public var leaseSeconds = 900
    /// How often each instance tries to sweep for expired leases, SLA breaches and reminders.
    public var sweepIntervalSeconds = 5
    /// How far back `event.subscribe` replays from `since`; older gives -32041.
    public var replayRetentionDays = 30
    /// A live subscriber this many events behind is told so and disconnected.
    public var maxSubscriberLag = 10_000
    /// The migrations, `NNNN_name.sql`.
    public var sqlDirectory = "sql"
    /// Reference data, `rates.yaml` and `workflows/`.
    public var configDirectory = "Config"

    public init() {}
}

/// Reads configuration from, highest first: command-line flags, `PBC_*`
/// environment variables (`server.port` is `PBC_SERVER_PORT`), the YAML file
/// (`Config/pbc.yaml` unless another is named), and the defaults above.
public enum ConfigurationLoader {
    /// The keys pbc reads; a flag's value is given under the same key.
    public enum Key {
        public static let host = "server.host"
        public static let port = "server.port"
        public static let maxLineBytes = "server.maxLineBytes"
        public static let maxBatchSize = "server.maxBatchSize"
        public static let helloDeadlineSeconds = "server.helloDeadlineSeconds"
        public static let idleTimeoutSeconds = "server.idleTimeoutSeconds"
        public static let maxConnections = "server.maxConnections"
        public static let writeTimeoutSeconds = "server.writeTimeoutSeconds"
        public static let rateLimitPerSecond = "server.rateLimitPerSecond"
        public static let rateLimitBurst = "server.rateLimitBurst"
        public static let tlsCertificate = "server.tlsCertificate"
        public static let metricsPort = "server.metricsPort"
        public static let tlsKey = "server.tlsKey"
        public static let databaseURL = "database.url"
        public static let dataDirectory = "database.dataDirectory"
        public static let poolSize = "database.poolSize"
        public static let leaseSeconds = "queues.leaseSeconds"
        public static let sweepIntervalSeconds = "queues.sweepIntervalSeconds"
        public static let replayRetentionDays = "events.replayRetentionDays"
        public static let maxSubscriberLag = "events.maxSubscriberLag"
        public static let sqlDirectory = "paths.sql"
        public static let configDirectory = "paths.config"
    }

    public static let defaultFile = "Config/pbc.yaml"

    public static func load(
        flags: [String: ConfigValue] = [:], file: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> AppConfiguration {
        let filePath = file ?? defaultFile
        let fileProvider: FileProvider<YAMLSnapshot>
        do {
            fileProvider = try await FileProvider<YAMLSnapshot>(filePath: .init(filePath), allowMissing: file == nil)
        } catch {
            throw ConfigurationError("cannot read the configuration file \(filePath): \(error)")
        }
        let reader = ConfigReader(providers: [
            InMemoryProvider(
                name: "flags",
                values: Dictionary(uniqueKeysWithValues: flags.map { (AbsoluteConfigKey(ConfigKey($0.key)), $0.value) })),
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: "pbc"),
            fileProvider,
        ])
        var configuration = AppConfiguration()
        configuration.host = try string(reader, Key.host) ?? configuration.host
        configuration.port = try int(reader, Key.port, in: 0...65535) ?? configuration.port
        configuration.maxLineBytes = try int(reader, Key.maxLineBytes, in: 64...(256 << 20)) ?? configuration.maxLineBytes
        configuration.maxBatchSize = try int(reader, Key.maxBatchSize, in: 1...10_000) ?? configuration.maxBatchSize
        configuration.helloDeadlineSeconds = try int(reader, Key.helloDeadlineSeconds, in: 1...3600) ?? configuration.helloDeadlineSeconds
        configuration.idleTimeoutSeconds = try int(reader, Key.idleTimeoutSeconds, in: 1...86_400) ?? configuration.idleTimeoutSeconds
        configuration.maxConnections = try int(reader, Key.maxConnections, in: 1...1_000_000) ?? configuration.maxConnections
        configuration.writeTimeoutSeconds = try int(reader, Key.writeTimeoutSeconds, in: 1...3600) ?? configuration.writeTimeoutSeconds
        configuration.rateLimitPerSecond = try int(reader, Key.rateLimitPerSecond, in: 1...1_000_000) ?? configuration.rateLimitPerSecond
        configuration.rateLimitBurst = try int(reader, Key.rateLimitBurst, in: 1...1_000_000) ?? configuration.rateLimitBurst
        configuration.metricsPort = try int(reader, Key.metricsPort, in: 0...65535)
        configuration.tlsCertificate = try string(reader, Key.tlsCertificate)
        configuration.tlsKey = try string(reader, Key.tlsKey)
        if (configuration.tlsCertificate == nil) != (configuration.tlsKey == nil) {
            throw ConfigurationError("TLS needs both a certificate (--tls-cert) and a private key (--tls-key)")
        }
        configuration.databaseURL = try string(reader, Key.databaseURL) ?? environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.dataDirectory = try string(reader, Key.dataDirectory) ?? configuration.dataDirectory
        configuration.poolSize = try int(reader, Key.poolSize, in: 1...500) ?? configuration.poolSize
        configuration.leaseSeconds = try int(reader, Key.leaseSeconds, in: 10...86_400) ?? configuration.leaseSeconds
        configuration.sweepIntervalSeconds = try int(reader, Key.sweepIntervalSeconds, in: 1...3600) ?? configuration.sweepIntervalSeconds
        configuration.replayRetentionDays = try int(reader, Key.replayRetentionDays, in: 1...3650) ?? configuration.replayRetentionDays
        configuration.maxSubscriberLag = try int(reader, Key.maxSubscriberLag, in: 10...10_000_000) ?? configuration.maxSubscriberLag
        configuration.sqlDirectory = try string(reader, Key.sqlDirectory) ?? configuration.sqlDirectory
        configuration.configDirectory = try string(reader, Key.configDirectory) ?? configuration.configDirectory
        return configuration
    }

    private static func string(_ reader: ConfigReader, _ key: String) throws -> String? {
        guard let value = reader.string(forKey: ConfigKey(key)) else {
            if reader.int(forKey: ConfigKey(key)) != nil || reader.bool(forKey: ConfigKey(key)) != nil {
                throw ConfigurationError("\(key) must be text")
            }
            return nil
        }
        guard !value.isEmpty else { throw ConfigurationError("\(key) must not be empty") }
        return value
    }

    private static func int(_ reader: ConfigReader, _ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let value = reader.int(forKey: ConfigKey(key)) else {
            if let text = reader.string(forKey: ConfigKey(key)) {
                throw ConfigurationError("\(key) (PBC_\(environmentName(key))) must be a whole number, not \"\(text)\"")
            }
            return nil
        }
        guard range.contains(value) else {
            throw ConfigurationError("\(key) must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
        }
        return value
    }

    /// `server.maxLineBytes` → `SERVER_MAX_LINE_BYTES`, as swift-configuration spells it.
    static func environmentName(_ key: String) -> String {
        var name = ""
        for character in key {
            if character == "." {
                name += "_"
            } else if character.isUppercase {
                name += "_" + character.uppercased()
            } else {
                name += character.uppercased()
            }
        }
        return name
    }
}

public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

import Foundation
import Postgres
import Subprocess

#if canImport(System)
import System
#else
import SystemPackage
#endif

#if canImport(Glibc)
import Glibc
#endif

/// A private PostgreSQL cluster that pbc starts for itself when no database
/// is configured: initialized the first time, reused after, on a Unix socket
/// in its own directory. Run as root, it runs PostgreSQL as the `postgres`
/// system user, because PostgreSQL refuses to run as root.
public struct LocalCluster: Sendable {
    public struct Configuration: Sendable {
        /// Holds `data/`, `socket/` and `postgres.log`.
        public var directory: URL
        /// Off for throwaway test clusters: much faster, not crash-safe.
        public var fsync: Bool
        /// Also listen on 127.0.0.1 (password authentication); the socket is always trusted.
        public var listenOnLoopback: Bool
        /// PostgreSQL's `max_connections`: room for pbc's pool and a few
        /// sessions of its own; a test run, with dozens of servers and pools
        /// at once, needs more.
        public var maxConnections: Int

        public init(directory: URL, fsync: Bool = true, listenOnLoopback: Bool = false, maxConnections: Int = 200) {
            self.directory = directory
            self.fsync = fsync
            self.listenOnLoopback = listenOnLoopback
            self.maxConnections = maxConnections
        }
    }

    /// A started cluster.
    public struct Running: Sendable {
        public let port: Int
        public let socketDirectory: String
        /// Whether the server was already running (left behind by a pbc that was killed).
        public let adopted: Bool
        /// The superuser on the socket; name a database with `database(_:)`.
        public var target: ConnectionTarget {
            ConnectionTarget(
                conninfo: "",
                overrides: [("host", socketDirectory), ("port", String(port)), ("user", LocalCluster.superuser), ("dbname", "postgres")])
        }
    }

    static let superuser = "postgres"

    /// Which characters are letters, and their cases: C.UTF-8's where the
    /// system has it, so that accented, Arabic or Cyrillic letters make
    /// trigrams for text similarity (under C, pg_trgm drops them as it drops
    /// punctuation) and `lower()` folds them. Sorting stays C's, by code point.
    static var characterClasses: String {
        guard let locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", nil) else { return "C" }
        freelocale(locale)
        return "C.UTF-8"
    }

    public let configuration: Configuration
    let binaries: Binaries
    let runAsPostgresUser: Bool

    public var dataDirectory: URL { configuration.directory.appendingPathComponent("data") }
    public var logFile: URL { configuration.directory.appendingPathComponent("postgres.log") }

    public init(configuration: Configuration) throws {
        self.configuration = configuration
        self.binaries = try Binaries.find()
        self.runAsPostgresUser = geteuid() == 0
    }

    /// Initializes the cluster if needed and starts it, or adopts one already
    /// running. A port may be asked for (to restart where clients expect it);
    /// otherwise a free one is picked.
    public func start(port requestedPort: Int? = nil) async throws -> Running {
        let fileManager = FileManager.default
        try fileManager.createDirectory(at: configuration.directory, withIntermediateDirectories: true)
        if runAsPostgresUser {
            guard getpwnam("postgres") != nil else {
                throw LocalClusterError("running as root, pbc runs PostgreSQL as the 'postgres' user, and there is none; create it or run pbc as another user")
            }
            try await run("/bin/chown", ["-R", "postgres:", configuration.directory.path], asPostgres: false)
            try await run("/usr/bin/test", ["-w", configuration.directory.path], asPostgres: true,
                    failure: "the postgres user cannot write to \(configuration.directory.path) (a parent directory may be closed to it); choose another data directory")
        }
        if !fileManager.fileExists(atPath: dataDirectory.appendingPathComponent("PG_VERSION").path) {
            try await run(
                binaries.initdb,
                ["-D", dataDirectory.path, "--username=\(Self.superuser)", "--auth-local=trust", "--auth-host=scram-sha-256",
                 "--encoding=UTF8", "--locale=C", "--lc-ctype=\(Self.characterClasses)", "--no-instructions"],
                asPostgres: runAsPostgresUser, failure: "initdb failed")
            try appendInclude()
        }
        if let running = try await adoptRunning() { return running }

        let socketDirectory = try await makeSocketDirectory()
        let port = try requestedPort ?? Self.freePort()
        try await writeRuntimeSettings(port: port, socketDirectory: socketDirectory)
        try await run(
            binaries.pgCtl, ["-D", dataDirectory.path, "-l", logFile.path, "-w", "-t", "60", "start"],
            asPostgres: runAsPostgresUser, failure: "PostgreSQL did not start (its log: \(logFile.path))")
        return Running(port: port, socketDirectory: socketDirectory, adopted: false)
    }

    /// Stops the server ("fast": ends sessions, checkpoints, exits).
    public func stop(immediately: Bool = false) async throws {
        try await run(
            binaries.pgCtl, ["-D", dataDirectory.path, "-m", immediately ? "immediate" : "fast", "-w", "-t", "60", "stop"],
            asPostgres: runAsPostgresUser, failure: "PostgreSQL did not stop")
    }

    // MARK: Steps

    /// A server left running by a pbc that died is reused; a `postmaster.pid`
    /// left by a server that died is removed so the new one can start.
    private func adoptRunning() async throws -> Running? {
        let pidFile = dataDirectory.appendingPathComponent("postmaster.pid")
        guard let contents = try? String(contentsOf: pidFile, encoding: .utf8) else { return nil }
        let lines = contents.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let pid = lines.first.flatMap({ pid_t($0) }), kill(pid, 0) == 0 || errno == EPERM,
            lines.count > 4, let port = Int(lines[3]),
            (try? await run(binaries.pgCtl, ["-D", dataDirectory.path, "status"], asPostgres: runAsPostgresUser)) != nil
        {
            return Running(port: port, socketDirectory: lines[4], adopted: true)
        }
        try? FileManager.default.removeItem(at: pidFile)
        return nil
    }

    /// The postmaster's process id while the server runs.
    public var postmasterPID: pid_t? {
        guard let contents = try? String(contentsOf: dataDirectory.appendingPathComponent("postmaster.pid"), encoding: .utf8),
            let pid = contents.split(separator: "\n").first.flatMap({ pid_t($0) }), kill(pid, 0) == 0
        else { return nil }
        return pid
    }

    private func appendInclude() throws {
        let conf = dataDirectory.appendingPathComponent("postgresql.conf")
        let handle = try FileHandle(forWritingTo: conf)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("\n# Written by pbc at each start.\ninclude_if_exists = 'pbc.conf'\n".utf8))
    }

    /// Settings that change from start to start live in `pbc.conf`, so that no
    /// path ever passes through pg_ctl's shell.
    private func writeRuntimeSettings(port: Int, socketDirectory: String) async throws {
        func quoted(_ value: String) -> String { "'" + value.replacingOccurrences(of: "'", with: "''") + "'" }
        var lines = [
            "port = \(port)",
            "unix_socket_directories = \(quoted(socketDirectory))",
            "unix_socket_permissions = 0700",
            "listen_addresses = \(quoted(configuration.listenOnLoopback ? "127.0.0.1" : ""))",
            "max_connections = \(configuration.maxConnections)",
        ]
        if !configuration.fsync {
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        }
        let file = dataDirectory.appendingPathComponent("pbc.conf")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        if runAsPostgresUser { try await run("/bin/chown", ["postgres:", file.path], asPostgres: false) }
    }

    /// The socket path must fit in 107 bytes; a deep directory gets a short one under /tmp.
    private func makeSocketDirectory() async throws -> String {
        var directory = configuration.directory.appendingPathComponent("socket").path
        if directory.utf8.count > 80 {
            let digest = configuration.directory.path.utf8.reduce(UInt64(14_695_981_039_346_656_037)) {
                ($0 ^ UInt64($1)) &* 1_099_511_628_211
            }
            directory = "/tmp/pbc-socket-\(String(digest, radix: 36))"
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if runAsPostgresUser { try await run("/bin/chown", ["postgres:", directory], asPostgres: false) }
        return directory
    }

    /// A TCP port nothing listens on now.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LocalClusterError("cannot open a socket to find a free port") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw LocalClusterError("cannot find a free port") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Runs a program, as the postgres user when asked; throws with its last output lines on failure.
    @discardableResult
    func run(_ executable: String, _ arguments: [String], asPostgres: Bool, failure: String? = nil) async throws -> String {
        let (path, fullArguments) =
            asPostgres ? (Binaries.runuser, ["-u", "postgres", "--", executable] + arguments) : (executable, arguments)
        let result = try await Subprocess.run(
            .path(FilePath(path)), arguments: Arguments(fullArguments), workingDirectory: FilePath("/"),
            output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        let text = result.standardOutput + result.standardError
        guard case .exited(0) = result.terminationStatus else {
            let tail = text.split(separator: "\n").suffix(3).joined(separator: " ")
            throw LocalClusterError("\(failure ?? "\(executable) failed"): \(tail)")
        }
        return text
    }

    /// Where initdb and pg_ctl are: PATH first, then the usual install locations.
    public struct Binaries: Sendable {
        public let initdb: String
        public let pgCtl: String
        static let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
            .first { FileManager.default.isExecutableFile(atPath: $0) } ?? "runuser"

        /// PATH, then Debian's versioned directories (newest first), then the usual prefixes.
        public static var searchDirectories: [String] {
            var directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
            let debian = "/usr/lib/postgresql"
            let versions = ((try? FileManager.default.contentsOfDirectory(atPath: debian)) ?? [])
                .compactMap(Int.init).sorted(by: >)
            directories += versions.map { "\(debian)/\($0)/bin" }
            directories += ["/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/opt/postgresql/bin"]
            return directories
        }

        public static func find(in directories: [String] = searchDirectories) throws -> Binaries {
            let fileManager = FileManager.default
            for directory in directories {
                let initdb = "\(directory)/initdb"
                let pgCtl = "\(directory)/pg_ctl"
                if fileManager.isExecutableFile(atPath: initdb), fileManager.isExecutableFile(atPath: pgCtl) {
                    return Binaries(initdb: initdb, pgCtl: pgCtl)
                }
            }
            throw LocalClusterError(
                "PostgreSQL's server programs (initdb, pg_ctl) are not installed: install PostgreSQL (Debian or Ubuntu: apt-get install postgresql; macOS: brew install postgresql@16) or set DATABASE_URL to a server you have")
        }
    }
}

public struct LocalClusterError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

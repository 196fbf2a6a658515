import ArgumentParser
import Foundation
import JSONRPC
import NIOSSL
import Yams

/// Where the server is and who we are: flags, then `PBC_SERVER` / `PBC_TOKEN`,
/// then `~/.config/pbc/config.yaml` (`server:` and `token:`), then 127.0.0.1:7411.
/// There is no token flag: a token on a command line is visible to every user of the machine.
struct ClientOptions: ParsableArguments {
    @Option(help: "The pbc server, HOST:PORT (default: PBC_SERVER, the config file, or 127.0.0.1:7411).")
    var server: String?

    @Flag(help: "Print JSON for scripts instead of tables for people.")
    var json = false

    @Flag(help: "Speak TLS, trusting the system's certificate authorities.")
    var tls = false

    @Option(name: .customLong("tls-ca"), help: "Speak TLS, trusting this PEM certificate (a private CA or the server's own).")
    var tlsCA: String?

    struct FileConfig: Decodable {
        var server: String?
        var token: String?
        var tlsCA: String?
    }

    /// TLS settings: flags, then `PBC_TLS_CA`, then the config file's `tlsCA:`.
    func tlsConfiguration() throws -> TLSConfiguration? {
        let authority = try tlsCA ?? ProcessInfo.processInfo.environment["PBC_TLS_CA"] ?? fileConfig().tlsCA
        guard tls || authority != nil else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let authority {
            guard FileManager.default.isReadableFile(atPath: authority) else {
                throw ClientError(exitCode: 2, message: "cannot read the CA certificate \(authority)")
            }
            configuration.trustRoots = .file(authority)
        }
        return configuration
    }

    static var configFile: URL {
        let environment = ProcessInfo.processInfo.environment
        let base = environment["XDG_CONFIG_HOME"].map(URL.init(fileURLWithPath:))
            ?? URL(fileURLWithPath: environment["HOME"] ?? "/").appendingPathComponent(".config")
        return base.appendingPathComponent("pbc/config.yaml")
    }

    func fileConfig() throws -> FileConfig {
        guard let data = FileManager.default.contents(atPath: Self.configFile.path) else { return FileConfig() }
        do {
            return try YAMLDecoder().decode(FileConfig.self, from: String(decoding: data, as: UTF8.self))
        } catch {
            throw ClientError(exitCode: 2, message: "\(Self.configFile.path) is not a config file with server: and token: (\(error))")
        }
    }

    func endpoint() throws -> (host: String, port: Int) {
        let fromFile = try fileConfig().server
        let text = server ?? ProcessInfo.processInfo.environment["PBC_SERVER"] ?? fromFile ?? "127.0.0.1:7411"
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            throw ClientError(exitCode: 2, message: "the server must be HOST:PORT, not \(text)")
        }
        return (String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }

    func token() throws -> String {
        if let token = ProcessInfo.processInfo.environment["PBC_TOKEN"], !token.isEmpty { return token }
        if let token = try fileConfig().token, !token.isEmpty { return token }
        throw ClientError(exitCode: 5, message: "no token: set PBC_TOKEN, or token: in \(Self.configFile.path)")
    }

    /// Connects, opens a session, runs `body`; every failure becomes one line and its exit code.
    /// With `quietConnectionErrors`, a lost connection and the errors worth a
    /// retry (unavailable, subscriber too slow) are thrown to the caller instead.
    func withSession(quietConnectionErrors: Bool = false, _ body: (RPCClient) async throws -> Void) async throws {
        do {
            let (host, port) = try endpoint()
            let token = try token()
            try await RPCClient.withConnection(host: host, port: port, tls: try tlsConfiguration()) { client in
                _ = try await client.call(
                    "session.hello", ["protocol": .integer(1), "token": .string(token), "client": .string("pbc-cli/1")])
                try await body(client)
            }
        } catch let error as ClientError {
            throw Self.fail(error)
        } catch let error as RPCError where !(quietConnectionErrors && [.subscriberTooSlow, .unavailable].contains(error.code)) {
            FileHandle.standardError.write(Data("pbc: error: \(Self.describe(error))\n".utf8))
            throw ExitCode(Self.exitCode(for: error.code))
        } catch let error as RPCClient.ConnectionError where !quietConnectionErrors {
            FileHandle.standardError.write(Data("pbc: error: \(error.description)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// A failure of the command's own: one line, and its exit code to throw.
    static func fail(_ error: ClientError) -> ExitCode {
        FileHandle.standardError.write(Data("pbc: error: \(error.message)\n".utf8))
        return ExitCode(error.exitCode)
    }

    /// The server's message, with the field errors or allowed actions it sent.
    static func describe(_ error: RPCError) -> String {
        var text = error.message
        if case .array(let allowed)? = error.data?["allowedActions"], error.code == .actionNotAllowed {
            let names = allowed.compactMap { if case .string(let name) = $0 { name } else { nil } }
            if !text.contains("allowed:") { text += names.isEmpty ? "; you may take no action now" : "; allowed: \(names.joined(separator: ", "))" }
        }
        return text
    }

    /// 2 usage or bad input, 3 not found, 4 conflict, 5 forbidden or
    /// unauthenticated, 6 an action the workflow refuses in the task's state,
    /// 1 anything else. A refusal is not a conflict: re-reading the task and
    /// trying again, which a stale version calls for, would be refused again.
    static func exitCode(for code: RPCError.Code) -> Int32 {
        switch code {
        case .notFound: 3
        case .conflict: 4
        case .forbidden, .unauthenticated: 5
        case .actionNotAllowed: 6
        case .invalidParams, .invalidRequest, .validationFailed: 2
        default: 1
        }
    }

    /// One JSON value on one line, for streams.
    static func jsonLine(_ value: JSONValue) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// A result for scripts.
    static func printJSON(_ value: JSONValue) throws {
        print(try prettyJSON(value))
    }

    /// JSON for scripts and people alike: indented, keys sorted.
    static func prettyJSON(_ value: JSONValue) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

struct ClientError: Error {
    let exitCode: Int32
    let message: String
}

extension JSONValue {
    /// The text of a string, a number or a bool; "" for null.
    var text: String {
        switch self {
        case .string(let value): value
        case .integer(let value): String(value)
        case .double(let value): String(value)
        case .bool(let value): String(value)
        case .null: ""
        case .array(let items): items.map(\.text).joined(separator: ", ")
        case .object: "{…}"
        }
    }

    /// The elements of an array; nil for anything else.
    var items: [JSONValue]? {
        if case .array(let items) = self { items } else { nil }
    }
}

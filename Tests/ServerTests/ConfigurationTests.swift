import Configuration
import Foundation
import Server
import Testing
import TestSupport

@Suite struct ConfigurationTests {
    func yaml(_ text: String) throws -> String {
        let path = Scratch.directory.appendingPathComponent("pbc-\(UUID().uuidString).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func theShippedFileHoldsTheDefaults() async throws {
        let configuration = try await ConfigurationLoader.load(file: nil, environment: [:])
        #expect(configuration == AppConfiguration())
        #expect(configuration.host == "127.0.0.1")
        #expect(configuration.port == 7411)
        #expect(configuration.maxLineBytes == 1 << 20)
        #expect(configuration.databaseURL == nil)
    }

    @Test func flagsBeatEnvironmentBeatsFileBeatsDefaults() async throws {
        let file = try yaml("""
            server:
              host: 0.0.0.0
              port: 9000
              maxLineBytes: 4096
            database:
              poolSize: 3
              url: postgresql://from-file/pbc
            """)
        let environment = ["PBC_SERVER_PORT": "9100", "PBC_DATABASE_POOL_SIZE": "7", "DATABASE_URL": "postgresql://from-env/pbc"]
        let fromFileAndEnvironment = try await ConfigurationLoader.load(file: file, environment: environment)
        #expect(fromFileAndEnvironment.host == "0.0.0.0")  // file
        #expect(fromFileAndEnvironment.port == 9100)  // environment over file
        #expect(fromFileAndEnvironment.maxLineBytes == 4096)
        #expect(fromFileAndEnvironment.poolSize == 7)
        #expect(fromFileAndEnvironment.databaseURL == "postgresql://from-file/pbc")  // database.url over DATABASE_URL

        let withFlags = try await ConfigurationLoader.load(
            flags: [ConfigurationLoader.Key.port: .init(.int(0), isSecret: false)], file: file, environment: environment)
        #expect(withFlags.port == 0)

        let onlyDatabaseURL = try await ConfigurationLoader.load(file: nil, environment: ["DATABASE_URL": "postgresql://from-env/pbc"])
        #expect(onlyDatabaseURL.databaseURL == "postgresql://from-env/pbc")
    }

    @Test func badValuesNameTheKey() async throws {
        let notNumber = await #expect(throws: ConfigurationError.self) {
            _ = try await ConfigurationLoader.load(file: nil, environment: ["PBC_SERVER_PORT": "seventy"])
        }
        #expect(notNumber?.description == "server.port (PBC_SERVER_PORT) must be a whole number, not \"seventy\"")
        let outOfRange = await #expect(throws: ConfigurationError.self) {
            _ = try await ConfigurationLoader.load(file: nil, environment: ["PBC_SERVER_PORT": "70000"])
        }
        #expect(outOfRange?.description == "server.port must be between 0 and 65535, not 70000")
        let pool = await #expect(throws: ConfigurationError.self) {
            _ = try await ConfigurationLoader.load(file: try yaml("database:\n  poolSize: 0\n"), environment: [:])
        }
        #expect(pool?.description.contains("database.poolSize") == true)
        let missing = await #expect(throws: ConfigurationError.self) {
            _ = try await ConfigurationLoader.load(file: "/nonexistent/pbc.yaml", environment: [:])
        }
        #expect(missing?.description.contains("/nonexistent/pbc.yaml") == true)
    }

    @Test func databaseChoiceFollowsTheEnvironment() {
        var configuration = AppConfiguration()
        let logger = Logger(label: "test")
        #expect(Application(configuration: configuration, environment: [:], logger: logger).databaseChoice == .localCluster(directory: ".pbc/postgres"))
        #expect(Application(configuration: configuration, environment: ["PGHOST": "db"], logger: logger).databaseChoice == .environment)
        configuration.databaseURL = "postgresql://db/pbc"
        #expect(Application(configuration: configuration, environment: ["PGHOST": "db"], logger: logger).databaseChoice == .url("postgresql://db/pbc"))
    }
}

import Logging

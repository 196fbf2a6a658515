import Foundation
import Subprocess
import Testing
import TestSupport

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// A client in another language, with nothing from pbc, gets through a whole exchange.
@Suite struct PythonClientTests {
    @Test func aStandardLibraryPythonClientOpensASessionSubmitsActsAndReadsHistory() async throws {
        let script = TestDatabase.repositoryRoot.appendingPathComponent("Tests/Clients/python_client.py").path
        let server = try await ServerHarness.start("python")
        let result = try await Subprocess.run(
            .name("python3"),
            arguments: [script, "127.0.0.1", String(server.port), server.tokens["undp-liaison"]!, server.tokens["coordinator"]!],
            output: .string(limit: 1 << 16), error: .string(limit: 1 << 16))
        await server.stop()
        #expect(result.terminationStatus == .exited(0), "\(result.standardError)")
        let lines = result.standardOutput.split(separator: "\n")
        #expect(lines.last == "ok", "\(result.standardOutput)")
        #expect(lines.contains("stale version refused -32009"))
        #expect(lines.contains { $0.hasPrefix("history draft > submitted > screening > technical_review > approval_routing > asg_approval") })
    }
}

import Foundation
import Subprocess
import Testing
import TestSupport

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Every input the fuzzer was seeded with or once crashed on, replayed
/// through the same code the fuzz target runs (`pbc-fuzz`, built without
/// libFuzzer, replays files).
@Suite struct FuzzRegressionTests {
    @Test func everyKeptInputReplaysWithoutACrash() async throws {
        let fuzz = URL(fileURLWithPath: PBCBinary.path).deletingLastPathComponent().appendingPathComponent("pbc-fuzz").path
        let root = TestDatabase.repositoryRoot.appendingPathComponent("Tests/Fuzz")
        let result = try await Subprocess.run(
            .path(FilePath(fuzz)), arguments: [root.appendingPathComponent("corpus").path, root.appendingPathComponent("crashes").path],
            output: .string(limit: 1 << 16), error: .string(limit: 1 << 16))
        #expect(result.terminationStatus == .exited(0), "\(result.standardError)")
        let corpus = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("corpus").path).count
        let crashes = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("crashes").path).count
        #expect(result.standardOutput == "replayed \(corpus + crashes) inputs\n")
    }
}

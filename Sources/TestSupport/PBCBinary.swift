import Foundation

/// The `pbc` executable built beside the test bundle, for tests that run it as a user would.
public enum PBCBinary {
    public static var path: String {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return directory.appendingPathComponent("pbc").path
    }
}

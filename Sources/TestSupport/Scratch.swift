import Foundation

/// Where tests write their files: one directory of the test process's own,
/// removed when the process exits, so that no test run leaves files behind
/// in the system's temporary directory, whichever test failed or forgot to
/// clean up.
public enum Scratch {
    public static let directory: URL = {
        let directory = scratchDirectory()
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: scratchDirectory()) }
        return directory
    }()
}

private func scratchDirectory() -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("pbc-scratch-\(getpid())")
}

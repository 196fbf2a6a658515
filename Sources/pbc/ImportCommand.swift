import ArgumentParser
import Foundation
import Server
import Store

struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Load activities from outside into the portfolio.", subcommands: [IATI.self, CSVFile.self])

    /// Runs an import and prints the summary every import ends with; when a file stops it part-way,
    /// first what was done before (it stays imported), then the error.
    static func reporting(_ body: () async throws -> ImportSummary) async throws {
        do {
            report(try await body())
        } catch let stopped as ImportStopped {
            if stopped.before.total > 0 { report(stopped.before, prefix: "before it stopped: ") }
            throw stopped.error
        }
    }

    static func report(_ summary: ImportSummary, prefix: String = "") {
        print("\(prefix)imported \(summary.imported), updated \(summary.updated), unchanged \(summary.unchanged), skipped \(summary.skippedCount)")
        for (reason, count) in summary.skipped.sorted(by: { ($1.value, $0.key) < ($0.value, $1.key) }) {
            print("  skipped \(count): \(reason)")
        }
        for (reason, count) in summary.reportedPeriods.sorted(by: { ($1.value, $0.key) < ($0.value, $1.key) }) {
            print("  screened over the dates it reports \(count): \(reason)")
        }
        for (reason, count) in summary.unscreened.sorted(by: { ($1.value, $0.key) < ($0.value, $1.key) }) {
            print("  kept but in no screening \(count): \(reason)")
        }
    }

    struct CSVFile: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "csv", abstract: "Import activities from a CSV file with the columns of docs/import.md; the same publisher and identifier update in place.")

        @OptionGroup var options: ServerOptions
        @Argument(help: "The CSV file.") var file: String

        func run() async throws {
            let file = file
            try await withPreparedPool(options, reading: { try $0.loadOverlapConfiguration() }) { pool, application, overlap in
                let workflows = try await application.loadWorkflows(pool)
                try await ImportCommand.reporting {
                    let bar = ProgressBar()
                    defer { bar.finish() }
                    return try await ActivityImporter(pool: pool, workflows: workflows, overlap: overlap).importCSV(file: file) { rows in
                        bar.show(URL(fileURLWithPath: file).lastPathComponent, fraction: nil, count: rows, unit: "rows")
                    }
                }
            }
        }
    }

    struct IATI: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "iati", abstract: "Import IATI activity XML (2.01 to 2.03); the same publisher and identifier update in place.")

        @OptionGroup var options: ServerOptions
        @Argument(help: "IATI activity files.") var files: [String]

        func validate() throws {
            if files.isEmpty { throw ValidationError("name at least one IATI file") }
        }

        func run() async throws {
            let files = files
            try await withPreparedPool(options, reading: { try $0.loadOverlapConfiguration() }) { pool, application, overlap in
                let workflows = try await application.loadWorkflows(pool)
                try await ImportCommand.reporting {
                    let bar = ProgressBar()
                    defer { bar.finish() }
                    return try await ActivityImporter(pool: pool, workflows: workflows, overlap: overlap).importIATI(files: files) { file, fraction, count in
                        bar.show(URL(fileURLWithPath: file).lastPathComponent, fraction: fraction, count: count, unit: "activities")
                    }
                }
            }
        }
    }
}

/// A one-line progress bar on standard error, drawn only on a terminal and at most ten times a second.
final class ProgressBar: @unchecked Sendable {
    // @unchecked: drawn from one loop (an import's or a scan's), one call at a time.
    private let enabled = isatty(STDERR_FILENO) == 1
    private var last = ContinuousClock.now - .seconds(1)
    private var drawn = false

    /// `fraction` is nil when the total is unknown (a CSV file): then only the count shows.
    func show(_ name: String, fraction: Double?, count: Int, unit: String) {
        guard enabled, ContinuousClock.now - last >= .milliseconds(100) else { return }
        last = .now
        var line = "\r\(name)"
        if let fraction {
            let width = 30
            let filled = Int((fraction * Double(width)).rounded())
            line += " [" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] \(Int(fraction * 100))%"
        }
        FileHandle.standardError.write(Data("\(line)  \(count) \(unit) ".utf8))
        drawn = true
    }

    /// Ends the bar's line, once, so that what is printed next starts on its own.
    func finish() {
        if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
        drawn = false
    }
}

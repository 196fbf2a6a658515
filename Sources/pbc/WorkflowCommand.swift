import ArgumentParser
import Coordination
import Foundation
import Store

struct WorkflowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workflow", abstract: "Check workflow definitions and draw them.",
        subcommands: [Check.self, Graph.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate workflow files (default: Config/workflows/*.yaml); list every problem with file and line.")

        @Argument(help: "Workflow files to check.")
        var files: [String] = []

        @Option(name: .customLong("config-dir"), help: "Configuration directory.")
        var configDirectory = "Config"

        func run() async throws {
            try await reportingErrors {
                let paths = try files.isEmpty ? WorkflowRegistry.files(in: URL(fileURLWithPath: configDirectory).appendingPathComponent("workflows")) : files
                do {
                    for file in try WorkflowRegistry.read(files: paths) {
                        let definition = file.definition
                        print("ok  \(file.path): \(definition.name) version \(definition.version), \(definition.states.count) states, \(definition.actions.count) actions")
                    }
                } catch let problems as WorkflowProblems {
                    for problem in problems.problems { print(problem) }
                    throw ValidationFailed(count: problems.problems.count)
                }
            }
        }
    }

    struct Graph: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a workflow as Graphviz DOT (pipe it to `dot -Tsvg`).")

        @Argument(help: "The workflow's name, such as pbf-project.")
        var name: String

        @Option(name: .customLong("config-dir"), help: "Configuration directory.")
        var configDirectory = "Config"

        func run() async throws {
            try await reportingErrors {
                let files = try WorkflowRegistry.read(files: WorkflowRegistry.files(in: URL(fileURLWithPath: configDirectory).appendingPathComponent("workflows")))
                guard let file = files.filter({ $0.definition.name == name }).max(by: { $0.definition.version < $1.definition.version }) else {
                    throw NotFound("no workflow named \(name); known: \(files.map(\.definition.name).sorted().joined(separator: ", "))")
                }
                print(file.definition.dot, terminator: "")
            }
        }
    }
}

struct ValidationFailed: Error, CustomStringConvertible {
    let count: Int
    var description: String { "\(count) problem\(count == 1 ? "" : "s") found" }
}

/// Something named does not exist: exit status 3.
struct NotFound: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

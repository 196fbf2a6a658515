import Coordination
import Crypto
import Foundation
import Postgres

/// Every workflow version the database has seen, parsed and ready. New files
/// are stored at start by (name, version, content hash); a file that changed
/// without a new version number is refused. Tasks keep the version they
/// started with, so old and new versions run side by side.
public struct WorkflowRegistry: Sendable {
    private let definitions: [String: [Int: WorkflowDefinition]]

    /// The newest version of each workflow, which new tasks start under.
    public var latest: [String: WorkflowDefinition] {
        definitions.compactMapValues { versions in versions.max { $0.key < $1.key }?.value }
    }

    public func definition(_ name: String, version: Int) -> WorkflowDefinition? {
        definitions[name]?[version]
    }

    public var all: [WorkflowDefinition] {
        definitions.values.flatMap(\.values).sorted { ($0.name, $0.version) < ($1.name, $1.version) }
    }

    /// The terminal states of every version of a workflow: a task of it in
    /// none of them is still under way, whichever version it runs.
    public func terminalStates(of name: String) -> [String] {
        Array(Set(definitions[name, default: [:]].values.flatMap { $0.states.filter { $0.kind == .terminal }.map(\.name) })).sorted()
    }

    /// One workflow file, read and checked.
    public struct File: Sendable {
        public let path: String
        public let source: String
        public let definition: WorkflowDefinition
        public var hash: String { Self.hash(source) }

        static func hash(_ source: String) -> String {
            SHA256.hash(data: Data(source.utf8)).hex
        }
    }

    /// Reads and validates files; every problem in every file is reported together.
    public static func read(files paths: [String]) throws -> [File] {
        var files: [File] = []
        var problems: [ConfigError] = []
        for path in paths.sorted() {
            guard let source = try? String(contentsOfFile: path, encoding: .utf8) else {
                problems.append(ConfigError(file: path, line: nil, message: "cannot read the file"))
                continue
            }
            switch WorkflowParser.parse(yaml: source, file: path) {
            case .success(let definition):
                if let clash = files.first(where: { $0.definition.name == definition.name && $0.definition.version == definition.version }) {
                    problems.append(ConfigError(file: path, line: nil, message: "\(definition.name) version \(definition.version) is also defined in \(clash.path)"))
                }
                files.append(File(path: path, source: source, definition: definition))
            case .failure(let found):
                problems += found.problems
            }
        }
        if !problems.isEmpty { throw WorkflowProblems(problems: problems) }
        return files
    }

    /// The `.yaml` files of a directory.
    public static func files(in directory: URL) throws -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else {
            throw ConfigError(file: directory.path, line: nil, message: "cannot read the workflows directory")
        }
        return names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.map { directory.appendingPathComponent($0).path }
    }

    /// Stores new definitions, refuses changed ones, and returns every version known.
    public static func sync(_ files: [File], on connection: PostgresConnection) async throws -> WorkflowRegistry {
        try await connection.withTransaction { connection in
            // One loader at a time, so two instances starting together agree.
            try await connection.query("SELECT pg_advisory_xact_lock(\(Int64(0x7062_635F_7766_6C)))")
            for file in files {
                let existing = try await connection.query(
                    "SELECT content_hash FROM workflow_definitions WHERE name = \(file.definition.name) AND version = \(file.definition.version)")
                if let stored = try existing.first?.decode(String.self, at: 0) {
                    guard stored == file.hash else {
                        throw ConfigError(
                            file: file.path, line: nil,
                            message: "\(file.definition.name) version \(file.definition.version) changed since it was loaded; give the changed definition a new version number (version: \(file.definition.version + 1)) so that tasks under version \(file.definition.version) keep it")
                    }
                    continue
                }
                try await connection.query("""
                    INSERT INTO workflow_definitions (name, version, content_hash, source)
                    VALUES (\(file.definition.name), \(file.definition.version), \(file.hash), \(file.source))
                    """)
            }
            var definitions: [String: [Int: WorkflowDefinition]] = [:]
            for row in try await connection.query("SELECT name, version, source FROM workflow_definitions") {
                let name = try row.decode(String.self, at: 0)
                let version = try row.decode(Int.self, at: 1)
                let source = try row.decode(String.self, at: 2)
                // Stored versions were valid when stored; a parser that has since grown stricter must not strand their tasks.
                guard case .success(let definition) = WorkflowParser.parse(yaml: source, file: "\(name) v\(version) (stored)") else {
                    throw ConfigError(file: "\(name) version \(version)", line: nil, message: "the stored definition no longer parses")
                }
                definitions[name, default: [:]][version] = definition
            }
            return WorkflowRegistry(definitions: definitions)
        }
    }
}

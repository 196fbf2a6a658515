import Foundation
import JSONRPC
import Testing
import TestSupport

/// Replays every example of docs/protocol.md against a live server, in
/// order, so that the document cannot drift from the code.
@Suite struct ProtocolDocumentTests {
    struct Example {
        var session: String?
        /// A request and what comes back: its answer, and any notifications that follow it.
        var exchanges: [(request: String, expected: [String])]
        var line: Int
    }

    /// The ```jsonrpc blocks: a `# session: NAME` header, then `→` lines and the `←` lines that follow each
    /// (which may span lines): its answer, then notifications such as `event`.
    static func examples() throws -> [Example] {
        let text = try String(contentsOf: TestDatabase.repositoryRoot.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
        var examples: [Example] = []
        var current: Example?
        var message: (arrow: Character, text: String)?
        func finishMessage() {
            guard let finished = message else { return }
            if finished.arrow == "→" {
                current?.exchanges.append((finished.text, []))
            } else if let last = current?.exchanges.indices.last {
                current?.exchanges[last].expected.append(finished.text)
            }
            message = nil
        }
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line == "```jsonrpc" {
                current = Example(session: nil, exchanges: [], line: number + 1)
            } else if line == "```", current != nil {
                finishMessage()
                examples.append(current!)
                current = nil
            } else if current != nil {
                if line.hasPrefix("# session: ") {
                    let name = String(line.dropFirst("# session: ".count))
                    current?.session = name == "none" ? nil : name
                } else if line.hasPrefix("→ ") || line.hasPrefix("← ") {
                    finishMessage()
                    message = (line.first!, String(line.dropFirst(2)))
                } else {
                    message?.text += "\n" + line
                }
            }
        }
        return examples
    }

    /// Refs carry the year the task was created in; the document was written in 2026.
    static func thisYear(_ text: String) -> String {
        let year = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: Date()).year!
        return text.replacingOccurrences(of: "PBC-2026-", with: "PBC-\(year)-")
    }

    /// `"…"` in the expected answer matches any value; `"$name"` matches any
    /// string and captures it, for `$name` in later requests.
    static func matches(_ expected: JSONValue, _ actual: JSONValue, _ captured: inout [String: String]) -> Bool {
        switch (expected, actual) {
        case (.string("…"), _): return true
        case (.string(let name), .string(let value)) where name.hasPrefix("$") && name.count > 1 && !name.contains(" "):
            if let known = captured[name] { return known == value }
            captured[name] = value
            return true
        case (.string(let text), .string(let value)) where text.contains("$"):
            return substitute(text, captured) == value
        case (.object(let expected), .object(let actual)):
            return Set(expected.keys) == Set(actual.keys) && expected.allSatisfy { key, value in matches(value, actual[key]!, &captured) }
        case (.array(let expected), .array(let actual)):
            return expected.count == actual.count && zip(expected, actual).allSatisfy { matches($0, $1, &captured) }
        case (.integer(let expected), .double(let actual)):
            return Double(expected) == actual
        default:
            return expected == actual
        }
    }

    static func substitute(_ text: String, _ captured: [String: String]) -> String {
        captured.keys.sorted { $0.count > $1.count }.reduce(text) { $0.replacingOccurrences(of: $1, with: captured[$1]!) }
    }

    final class CapturedValues { var values: [String: String] = [:] }

    @Test func everyExampleInTheProtocolDocumentHolds() async throws {
        let examples = try Self.examples()
        #expect(examples.count >= 15)
        let server = try await ServerHarness.start("protocol_doc")
        let captured = CapturedValues()
        for example in examples {
            func replay(_ client: LineClient) async throws {
                for (request, answers) in example.exchanges {
                    try await client.send(raw: Self.substitute(Self.thisYear(request), captured.values) + "\n")
                    for expected in answers {
                    let actual = try #require(try await client.receive(), "docs/protocol.md:\(example.line): no answer to \(request)")
                    if ProcessInfo.processInfo.environment["PBC_PROTOCOL_DOC_PRINT"] != nil {
                        // Writing a new example: see what the server answers, then put it in the document.
                        let encoder = JSONEncoder()
                        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                        print("docs/protocol.md:\(example.line) → \(request)\n← \(String(decoding: try encoder.encode(actual), as: UTF8.self))")
                    }
                    let want = try JSONDecoder().decode(JSONValue.self, from: Data(Self.thisYear(expected).utf8))
                    #expect(Self.matches(want, actual, &captured.values), "docs/protocol.md:\(example.line): \(request)\nexpected \(want)\ngot \(actual)")
                    }
                }
            }
            if let session = example.session {
                try await server.withSession(session, replay)
            } else {
                try await LineClient.withConnection(port: server.port, replay)
            }
        }
        await server.stop()
    }
}

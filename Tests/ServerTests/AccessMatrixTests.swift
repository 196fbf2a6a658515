import Foundation
import JSONRPC
import Testing
import TestSupport

/// Every role against the methods that read or change tasks, on a task led
/// by UNDP with UNICEF taking part: only what SPEC section 7 allows
/// succeeds, and each refusal has the code that says why.
@Suite struct AccessMatrixTests {
    static let roles = ["undp-liaison", "unicef-liaison", "wfp-liaison", "coordinator", "approver", "observer", "admin"]

    /// A method, its parameters for a task, and the expected outcome per role: 0 for success, else the error code.
    struct Row: Sendable {
        let name: String
        let method: String
        /// Whether each role gets a task of its own (the call changes it).
        let writes: Bool
        let params: @Sendable (_ ref: String, _ version: Int) -> String
        let expected: [String: Int]
    }

    static func expect(_ undp: Int, _ unicef: Int, _ wfp: Int, _ coordinator: Int, _ approver: Int, _ observer: Int, _ admin: Int) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: zip(roles, [undp, unicef, wfp, coordinator, approver, observer, admin]))
    }

    static let rows: [Row] = [
        Row(name: "read a task", method: "task.get", writes: false, params: { ref, _ in #"{"task":"\#(ref)"}"# },
            expected: expect(0, 0, -32004, 0, 0, 0, 0)),
        Row(name: "read its history", method: "task.history", writes: false, params: { ref, _ in #"{"task":"\#(ref)"}"# },
            expected: expect(0, 0, -32004, 0, 0, 0, 0)),
        Row(name: "list its overlaps", method: "overlap.list", writes: false, params: { ref, _ in #"{"task":"\#(ref)"}"# },
            expected: expect(0, 0, -32004, 0, 0, 0, 0)),
        Row(name: "edit it", method: "task.update", writes: true,
            params: { ref, version in #"{"task":"\#(ref)","expectedVersion":\#(version),"title":"Edited title"}"# },
            expected: expect(0, -32003, -32004, 0, -32003, -32003, 0)),
        Row(name: "comment on it", method: "task.comment", writes: true, params: { ref, _ in #"{"task":"\#(ref)","comment":"a note"}"# },
            expected: expect(0, 0, -32004, 0, 0, -32003, 0)),
        Row(name: "review it", method: "task.act", writes: true,
            params: { ref, version in #"{"task":"\#(ref)","action":"request_revision","expectedVersion":\#(version),"comment":"more detail"}"# },
            expected: expect(-32010, -32010, -32004, 0, -32010, -32010, -32010)),
        Row(name: "withdraw it", method: "task.act", writes: true,
            params: { ref, version in #"{"task":"\#(ref)","action":"withdraw","expectedVersion":\#(version)}"# },
            expected: expect(0, -32010, -32004, -32010, -32010, -32010, -32010)),
        Row(name: "assign it", method: "task.assign", writes: true, params: { ref, _ in #"{"task":"\#(ref)","to":"coordinator"}"# },
            expected: expect(-32003, -32003, -32003, 0, -32003, -32003, 0)),
        Row(name: "create one led by UNDP", method: "task.create", writes: false,
            params: { _, _ in #"{"workflow":"pbf-project","title":"Another programme","leadAgency":"undp"}"# },
            expected: expect(0, -32003, -32003, 0, -32003, -32003, 0)),
        Row(name: "claim from its queue", method: "queue.claim", writes: true, params: { _, _ in #"{"queue":"pbso-review-BDI"}"# },
            expected: expect(-32003, -32003, -32003, 0, -32003, -32003, 0)),
        Row(name: "resolve an overlap", method: "overlap.resolve", writes: false,
            params: { _, _ in #"{"overlap":"7d4e1f0a-0000-4000-8000-000000000001","resolution":"distinct"}"# },
            expected: expect(-32003, -32003, -32003, -32004, -32003, -32003, -32004)),
        Row(name: "follow another agency's events", method: "event.subscribe", writes: false,
            params: { _, _ in #"{"agencies":["wfp"],"types":["sla.reminder"]}"# },
            expected: expect(-32003, -32003, 0, 0, 0, 0, 0)),
    ]

    /// A submitted task led by UNDP with UNICEF implementing; its ref and version.
    static func submit(_ server: ServerHarness, key: String, country: String = "BDI") async throws -> (ref: String, version: Int) {
        try await server.withSession("undp-liaison") { client in
            let params = ServerHarness.project(key: key).replacingOccurrences(of: #""country":"BDI""#, with: #""country":"\#(country)""#)
            let answer = try await client.call("task.submit", id: 1, params: params)
            guard case .string(let ref)? = answer?["result"]?["task"]?["ref"], case .integer(let version)? = answer?["result"]?["task"]?["version"]
            else { throw ServerHarness.HelloFailed(response: answer) }
            return (ref, Int(version))
        }
    }

    /// Each role's outcome, as 0 or the error code, for every row.
    static func outcomes(_ server: ServerHarness) async throws -> [String] {
        let shared = try await submit(server, key: "matrix-shared")
        var mismatches: [String] = []
        // Tasks of their own in countries of their own, so that none overlaps another and all wait in review.
        let countries = ["SLE", "LBR", "GIN", "CAF", "COL", "SOM", "SSD", "MLI", "BFA", "NER", "TCD", "CMR", "NGA", "COD", "RWA", "UGA",
                         "KEN", "ETH", "SDN", "YEM", "SYR", "IRQ", "LBN", "AFG", "PAK", "MMR", "PHL", "LKA", "NPL", "HTI", "GTM", "HND",
                         "SLV", "VEN", "ECU", "PER", "BOL", "MOZ", "ZWE", "GNB", "GMB", "SEN", "TGO", "BEN", "GHA", "CIV", "LSO", "MWI"]
        var next = 0
        for (index, row) in rows.enumerated() {
            for role in roles {
                var task = shared
                if row.writes {
                    // Claims need the task in pbso-review-BDI; the others a country no other task has.
                    task = try await submit(server, key: "matrix-\(index)-\(role)", country: row.method == "queue.claim" ? "BDI" : countries[next])
                    if row.method != "queue.claim" { next += 1 }
                }
                let answer = try await server.withSession(role) { client in
                    try await client.call(row.method, id: 1, params: row.params(task.ref, task.version))
                }
                var outcome = -1
                if answer?["result"] != nil { outcome = 0 } else if case .integer(let code)? = answer?["error"]?["code"] { outcome = Int(code) }
                if outcome != row.expected[role] {
                    mismatches.append("\(role) may \(row.expected[role] == 0 ? "" : "not ")\(row.name) (\(row.method)): got \(outcome == 0 ? "success" : String(outcome))")
                }
            }
        }
        return mismatches
    }

    @Test func eachRoleMayDoWhatTheSpecAllowsAndNothingElse() async throws {
        let server = try await ServerHarness.start("access_matrix")
        let mismatches = try await Self.outcomes(server)
        #expect(mismatches == [])
        await server.stop()
    }

    @Test func textThatLooksLikeSQLOrScriptIsStoredAndReturnedLiterally() async throws {
        let server = try await ServerHarness.start("literal_text")
        let hostile = [
            "Robert'); DROP TABLE tasks;--", "<script>alert('pbc')</script>", "' OR '1'='1", "$1 $$ \\x00 %s %n {{7*7}}",
            "\"quoted\" \\ back\\slash", "😀 ünïcødé \u{202E}reversed",
        ]
        for (index, text) in hostile.enumerated() {
            let json = JSONValue.string(text).text
            let params = ServerHarness.project(key: "hostile-\(index)")
                .replacingOccurrences(of: #""title":"Youth in local peace committees""#, with: #""title":\#(json)"#)
                .replacingOccurrences(of: #""locations":["Gitega"]"#, with: #""locations":[\#(json)],"description":\#(json)"#)
            let ref = try await server.withSession("undp-liaison") { client in
                let answer = try await client.call("task.submit", id: 1, params: params)
                return answer?["result"]?["task"]?["ref"]?.string
            }
            let task = try #require(ref, "submitting \(text)")
            try await server.withSession("coordinator") { client in
                _ = try await client.call("task.comment", id: 1, params: #"{"task":"\#(task)","comment":\#(json)}"#)
                let got = try await client.call("task.get", id: 2, params: #"{"task":"\#(task)"}"#)?["result"]?["task"]
                #expect(got?["title"]?.string == text)
                #expect(got?["description"]?.string == text)
                #expect(got?["locations"] == .array([.string(text)]))
                let history = try await client.call("task.history", id: 3, params: #"{"task":"\#(task)"}"#)
                guard case .array(let events)? = history?["result"]?["items"] else { throw ServerHarness.HelloFailed(response: history) }
                #expect(events.contains { $0["comment"]?.string == text })
            }
        }
        // The tasks table is still there, and holds exactly what was submitted.
        let count = try await server.withSession("coordinator") { client in
            try await client.call("task.list", id: 1, params: #"{"limit":50}"#)
        }
        guard case .array(let items)? = count?["result"]?["items"] else { throw ServerHarness.HelloFailed(response: count) }
        #expect(items.count == hostile.count)
        await server.stop()
    }
}

import Foundation
import JSONRPC
import Testing
import TestSupport

/// Bad input of every kind: each gets the right code, the connection survives
/// where the spec says it should, and the server keeps serving others.
@Suite struct MalformedInputTests {
    /// (what, the raw line sent on an open session, the expected code, whether the connection survives)
    static let corpus: [(String, String, Int64, Bool)] = [
        ("truncated JSON", #"{"jsonrpc":"2.0","id":1,"method":"ping""#, -32700, true),
        ("not JSON", "hello there", -32700, true),
        ("a bare number", "42", -32600, true),
        ("a bare string", #""ping""#, -32600, true),
        ("null", "null", -32600, true),
        ("no jsonrpc member", #"{"id":1,"method":"ping"}"#, -32600, true),
        ("jsonrpc 1.0", #"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, -32600, true),
        ("method not a string", #"{"jsonrpc":"2.0","id":1,"method":42}"#, -32600, true),
        ("no method", #"{"jsonrpc":"2.0","id":1}"#, -32600, true),
        ("id an object", #"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#, -32600, true),
        ("id a fraction", #"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, -32600, true),
        ("params a string", #"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#, -32600, true),
        ("unknown member", #"{"jsonrpc":"2.0","id":1,"method":"ping","extra":1}"#, -32600, true),
        ("empty batch", "[]", -32600, true),
        ("oversized batch", "[" + Array(repeating: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, count: 101).joined(separator: ",") + "]", -32600, true),
        ("unknown method", #"{"jsonrpc":"2.0","id":1,"method":"task.explode"}"#, -32601, true),
        ("positional params", #"{"jsonrpc":"2.0","id":1,"method":"task.get","params":["PBC-2026-000001"]}"#, -32602, true),
        ("missing parameter", #"{"jsonrpc":"2.0","id":1,"method":"task.get","params":{}}"#, -32602, true),
        ("unknown parameter", #"{"jsonrpc":"2.0","id":1,"method":"task.get","params":{"task":"x","taks":"y"}}"#, -32602, true),
        ("wrong type", #"{"jsonrpc":"2.0","id":1,"method":"task.get","params":{"task":17}}"#, -32602, true),
        ("null where a string goes", #"{"jsonrpc":"2.0","id":1,"method":"task.get","params":{"task":null}}"#, -32602, true),
        ("a number beyond double range", #"{"jsonrpc":"2.0","id":1,"method":"task.act","params":{"task":"x","action":"a","expectedVersion":1e400}}"#, -32700, true),
        ("integer overflow", #"{"jsonrpc":"2.0","id":1,"method":"task.act","params":{"task":"x","action":"a","expectedVersion":99999999999999999999999}}"#, -32602, true),
        ("bad date", #"{"jsonrpc":"2.0","id":1,"method":"task.create","params":{"workflow":"pbf-project","title":"x","leadAgency":"undp","period":{"start":"2027-02-30","end":"2028-01-01"}}}"#, -32602, true),
        ("bad enum", #"{"jsonrpc":"2.0","id":1,"method":"task.create","params":{"workflow":"pbf-project","title":"x","leadAgency":"undp","priority":"asap"}}"#, -32602, true),
        ("bad participant role", #"{"jsonrpc":"2.0","id":1,"method":"task.create","params":{"workflow":"pbf-project","title":"x","leadAgency":"undp","participants":[{"agency":"unicef","role":"boss"}]}}"#, -32602, true),
        ("limit out of range", #"{"jsonrpc":"2.0","id":1,"method":"task.list","params":{"limit":0}}"#, -32602, true),
        ("submit without idempotencyKey", #"{"jsonrpc":"2.0","id":1,"method":"task.submit","params":{"workflow":"pbf-project","title":"x","leadAgency":"undp"}}"#, -32602, true),
        ("invalid field values", #"{"jsonrpc":"2.0","id":1,"method":"task.create","params":{"workflow":"pbf-project","title":"","leadAgency":"undp","sectors":["abc"]}}"#, -32022, true),
        ("unknown workflow", #"{"jsonrpc":"2.0","id":1,"method":"task.create","params":{"workflow":"nope","title":"x","leadAgency":"undp"}}"#, -32022, true),
        ("unknown task", #"{"jsonrpc":"2.0","id":1,"method":"task.get","params":{"task":"PBC-2026-999999"}}"#, -32004, true),
        ("unknown workflow version", #"{"jsonrpc":"2.0","id":1,"method":"workflow.get","params":{"name":"pbf-project","version":99}}"#, -32004, true),
        ("deep nesting", String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000), -32700, true),
        ("overlap id not a UUID", #"{"jsonrpc":"2.0","id":1,"method":"overlap.resolve","params":{"overlap":"nope","resolution":"distinct"}}"#, -32602, true),
        ("unknown resolution", #"{"jsonrpc":"2.0","id":1,"method":"overlap.resolve","params":{"overlap":"7d4e1f0a-0000-4000-8000-000000000001","resolution":"absorb"}}"#, -32602, true),
        ("coordinate without a lead", #"{"jsonrpc":"2.0","id":1,"method":"overlap.resolve","params":{"overlap":"7d4e1f0a-0000-4000-8000-000000000001","resolution":"coordinate"}}"#, -32602, true),
        ("a liaison resolving", #"{"jsonrpc":"2.0","id":1,"method":"overlap.resolve","params":{"overlap":"7d4e1f0a-0000-4000-8000-000000000001","resolution":"distinct"}}"#, -32003, true),
        ("an overlap cursor that is not a UUID", #"{"jsonrpc":"2.0","id":1,"method":"overlap.list","params":{"cursor":"12"}}"#, -32602, true),
        ("an overlap cursor naming no overlap", #"{"jsonrpc":"2.0","id":1,"method":"overlap.list","params":{"cursor":"7d4e1f0a-0000-4000-8000-000000000001"}}"#, -32022, true),
        ("overlaps of an unknown task", #"{"jsonrpc":"2.0","id":1,"method":"overlap.list","params":{"task":"PBC-2026-999999"}}"#, -32004, true),
        ("a task list filter of the wrong type", #"{"jsonrpc":"2.0","id":1,"method":"task.list","params":{"country":7}}"#, -32602, true),
        ("a task list filter naming no sector", #"{"jsonrpc":"2.0","id":1,"method":"task.list","params":{"sector":"99999"}}"#, -32022, true),
        ("a report in an unknown country", #"{"jsonrpc":"2.0","id":1,"method":"report.whoWhatWhere","params":{"country":"ZZZ"}}"#, -32022, true),
        ("a report of a misspelt status", #"{"jsonrpc":"2.0","id":1,"method":"report.whoWhatWhere","params":{"status":"tecnical_review"}}"#, -32022, true),
        ("unknown overlap status", #"{"jsonrpc":"2.0","id":1,"method":"overlap.list","params":{"status":"dismissed"}}"#, -32602, true),
        ("a check without a period", #"{"jsonrpc":"2.0","id":1,"method":"overlap.check","params":{"title":"x","leadAgency":"undp","country":"BDI"}}"#, -32602, true),
        ("a check in an unknown country", #"{"jsonrpc":"2.0","id":1,"method":"overlap.check","params":{"title":"x","leadAgency":"undp","country":"ZZZ","period":{"start":"2027-01-01","end":"2027-12-31"}}}"#, -32022, true),
        ("a report ending before it starts", #"{"jsonrpc":"2.0","id":1,"method":"report.whoWhatWhere","params":{"from":"2028-01-01","to":"2027-01-01"}}"#, -32602, true),
        ("a report with a bad date", #"{"jsonrpc":"2.0","id":1,"method":"report.whoWhatWhere","params":{"from":"2028-13-01"}}"#, -32602, true),
        ("a claim without a queue", #"{"jsonrpc":"2.0","id":1,"method":"queue.claim","params":{}}"#, -32602, true),
        ("a claim on an unknown queue", #"{"jsonrpc":"2.0","id":1,"method":"queue.claim","params":{"queue":"no-such-queue"}}"#, -32004, true),
        ("a claim by a non-member", #"{"jsonrpc":"2.0","id":1,"method":"queue.claim","params":{"queue":"pbso-review"}}"#, -32003, true),
        ("a lease of no seconds", #"{"jsonrpc":"2.0","id":1,"method":"queue.claim","params":{"queue":"pbso-review","leaseSeconds":0}}"#, -32602, true),
        ("a lease of a year", #"{"jsonrpc":"2.0","id":1,"method":"queue.claim","params":{"queue":"pbso-review","leaseSeconds":31536000}}"#, -32602, true),
        ("queue tasks with limit 0", #"{"jsonrpc":"2.0","id":1,"method":"queue.tasks","params":{"queue":"pbso-review","limit":0}}"#, -32602, true),
        ("queue tasks with a forged cursor", #"{"jsonrpc":"2.0","id":1,"method":"queue.tasks","params":{"queue":"pbso-review","cursor":"MXwnOyBEUk9QfHh8eA=="}}"#, -32022, true),
        ("assign with neither task nor from", #"{"jsonrpc":"2.0","id":1,"method":"task.assign","params":{"to":"coordinator"}}"#, -32602, true),
        ("a liaison assigning", #"{"jsonrpc":"2.0","id":1,"method":"task.assign","params":{"task":"PBC-2026-000001","to":"coordinator"}}"#, -32003, true),
        ("a lease that is not a UUID", #"{"jsonrpc":"2.0","id":1,"method":"task.renew","params":{"task":"x","lease":"mine"}}"#, -32602, true),
        ("renewing an unknown task", #"{"jsonrpc":"2.0","id":1,"method":"task.renew","params":{"task":"PBC-1999-000001"}}"#, -32004, true),
        ("a lease length that is text", #"{"jsonrpc":"2.0","id":1,"method":"queue.claim","params":{"queue":"pbso-review","leaseSeconds":"600"}}"#, -32602, true),
        ("subscribing since a text seq", #"{"jsonrpc":"2.0","id":1,"method":"event.subscribe","params":{"since":"12"}}"#, -32602, true),
        ("releasing an unknown task", #"{"jsonrpc":"2.0","id":1,"method":"task.release","params":{"task":"PBC-1999-000001"}}"#, -32004, true),
        ("acting under a bad lease", #"{"jsonrpc":"2.0","id":1,"method":"task.act","params":{"task":"x","action":"a","expectedVersion":1,"lease":42}}"#, -32602, true),
        ("subscribing since a negative seq", #"{"jsonrpc":"2.0","id":1,"method":"event.subscribe","params":{"since":-1}}"#, -32602, true),
        ("subscribing since the future", #"{"jsonrpc":"2.0","id":1,"method":"event.subscribe","params":{"since":999999999}}"#, -32022, true),
        ("subscribing to a bad type", #"{"jsonrpc":"2.0","id":1,"method":"event.subscribe","params":{"types":["DROP TABLE"]}}"#, -32022, true),
        ("subscribing to a misspelt type", #"{"jsonrpc":"2.0","id":1,"method":"event.subscribe","params":{"types":["task.transitionned"]}}"#, -32022, true),
        ("subscribing to an unknown queue", #"{"jsonrpc":"2.0","id":1,"method":"event.subscribe","params":{"queues":["pbso-reveiw"]}}"#, -32022, true),
        ("subscribing to another agency", #"{"jsonrpc":"2.0","id":1,"method":"event.subscribe","params":{"agencies":["wfp"]}}"#, -32003, true),
        ("subscribing to an unknown country", #"{"jsonrpc":"2.0","id":1,"method":"event.subscribe","params":{"countries":["XYZ"]}}"#, -32022, true),
        ("subscribing to an unknown task", #"{"jsonrpc":"2.0","id":1,"method":"event.subscribe","params":{"tasks":["PBC-1999-000001"]}}"#, -32004, true),
        ("subscribing with queues not a list", #"{"jsonrpc":"2.0","id":1,"method":"event.subscribe","params":{"queues":"pbso-review"}}"#, -32602, true),
        ("unsubscribing what was never subscribed", #"{"jsonrpc":"2.0","id":1,"method":"event.unsubscribe","params":{"subscription":"s9"}}"#, -32004, true),
        ("a submission naming 1,001 places", #"{"jsonrpc":"2.0","id":1,"method":"task.submit","params":{"idempotencyKey":"many","workflow":"pbf-project","title":"x","leadAgency":"undp","locations":["#
            + (0...1_000).map { "\"District \($0)\"" }.joined(separator: ",") + "]}}", -32022, true),
        ("a submission naming locations as text", #"{"jsonrpc":"2.0","id":1,"method":"task.submit","params":{"idempotencyKey":"text","workflow":"pbf-project","title":"x","leadAgency":"undp","locations":"Gitega"}}"#, -32602, true),
        ("a workflow field an object", #"{"jsonrpc":"2.0","id":1,"method":"task.create","params":{"workflow":"pbf-project","title":"x","leadAgency":"undp","fields":{"facility":{"kind":"IRF"}}}}"#, -32602, true),
        ("a facility that is neither", #"{"jsonrpc":"2.0","id":1,"method":"task.create","params":{"workflow":"pbf-project","title":"x","leadAgency":"undp","fields":{"facility":"irf"}}}"#, -32022, true),
        ("a field the workflow lacks", #"{"jsonrpc":"2.0","id":1,"method":"task.create","params":{"workflow":"pbf-project","title":"x","leadAgency":"undp","fields":{"colour":"red"}}}"#, -32022, true),
        ("a field only an action sets", #"{"jsonrpc":"2.0","id":1,"method":"task.create","params":{"workflow":"pbf-project","title":"x","leadAgency":"undp","fields":{"firstTransferDate":"2027-01-15"}}}"#, -32022, true),
        ("a report naming no project", #"{"jsonrpc":"2.0","id":1,"method":"task.create","params":{"workflow":"progress-report","title":"x","leadAgency":"undp","fields":{"dueDate":"2027-06-15"}}}"#, -32022, true),
        ("a report on an unknown project", #"{"jsonrpc":"2.0","id":1,"method":"task.create","params":{"workflow":"progress-report","title":"x","leadAgency":"undp","fields":{"project":"PBC-1999-000001"}}}"#, -32022, true),
        ("a comment of 10,001 characters", #"{"jsonrpc":"2.0","id":1,"method":"task.comment","params":{"task":"PBC-1999-000001","comment":""#
            + String(repeating: "x", count: 10_001) + #""}}"#, -32022, true),
        ("an empty external reference", #"{"jsonrpc":"2.0","id":1,"method":"task.create","params":{"workflow":"pbf-project","title":"x","leadAgency":"undp","externalRefs":{"iati":""}}}"#, -32022, true),
        ("an activity without its identifier", #"{"jsonrpc":"2.0","id":1,"method":"activity.get","params":{}}"#, -32602, true),
        ("an activity identifier that is a number", #"{"jsonrpc":"2.0","id":1,"method":"activity.get","params":{"identifier":42}}"#, -32602, true),
        ("an activity nothing was imported under", #"{"jsonrpc":"2.0","id":1,"method":"activity.get","params":{"identifier":"XM-NONE-1"}}"#, -32004, true),
        ("an overlap check with a lower-case country pbc lacks", #"{"jsonrpc":"2.0","id":1,"method":"overlap.check","params":{"title":"x","country":"zz","period":{"start":"2027-01-01","end":"2027-12-31"}}}"#, -32022, true),
        ("second hello", #"{"jsonrpc":"2.0","id":1,"method":"session.hello","params":{"protocol":1,"token":"x"}}"#, -32600, true),
    ]

    @Test func everyKindOfBadInputGetsTheRightCode() async throws {
        let server = try await ServerHarness.start("malformed") { $0.maxLineBytes = 1 << 20 }
        #expect(Self.corpus.count >= 30)
        try await server.withSession("undp-liaison") { client in
            for (index, (what, line, code, _)) in Self.corpus.enumerated() {
                // Another client is served between any two bad lines.
                if index % 10 == 0 {
                    try await server.withSession("coordinator") { other in
                        let ping = try await other.call("ping")
                        #expect(ping?["result"] != nil)
                    }
                }
                try await client.send(raw: line + "\n")
                let response = try await client.receive()
                #expect(response?["error"]?["code"] == .integer(code), "\(what): \(String(describing: response))")
                // The connection still serves.
                let ping = try await client.call("ping", id: 1000 + index)
                #expect(ping?["result"]?["pong"] == .bool(true), "\(what): connection lost")
            }
            // Invalid UTF-8 and a stale version, which need bytes or state.
            try await client.send(raw: [0x7B, 0xC3, 0x28, 0x7D, 0x0A])
            #expect(try await client.receive()?["error"]?["code"] == .integer(-32700))
            let submitted = try await client.call("task.submit", id: 1, params: ServerHarness.project(key: "stale"))
            guard case .string(let ref)? = submitted?["result"]?["task"]?["ref"] else {
                Issue.record("submit failed: \(String(describing: submitted))")
                return
            }
            let stale = try await client.call("task.act", id: 2, params: #"{"task":"\#(ref)","action":"withdraw","expectedVersion":1}"#)
            #expect(stale?["error"]?["code"] == .integer(-32009))
            // A comment too long for the audit trail: refused naming it, and the task stays as it was.
            guard case .integer(let version)? = submitted?["result"]?["task"]?["version"] else {
                Issue.record("no version: \(String(describing: submitted))")
                return
            }
            let long = String(repeating: "x", count: 10_001)
            let wordy = try await client.call(
                "task.act", id: 3, params: #"{"task":"\#(ref)","action":"withdraw","expectedVersion":\#(version),"comment":"\#(long)"}"#)
            #expect(wordy?["error"]?["code"] == .integer(-32022), "\(String(describing: wordy?["error"]))")
            #expect(wordy?["error"]?["data"]?["errors"] == .array([.object(["field": .string("comment"), "reason": .string("must be at most 10000 characters")])]))
            let after = try await client.call("task.get", id: 4, params: #"{"task":"\#(ref)"}"#)
            #expect(after?["result"]?["task"]?["version"] == .integer(version))
            #expect(after?["result"]?["task"]?["state"] != .string("withdrawn"))
        }
        // An overlap that does not exist, asked of the one who may resolve.
        try await server.withSession("coordinator") { client in
            let missing = try await client.call(
                "overlap.resolve", params: #"{"overlap":"7d4e1f0a-0000-4000-8000-000000000001","resolution":"distinct"}"#)
            #expect(missing?["error"]?["code"] == .integer(-32004))
            let wordy = try await client.call(
                "overlap.resolve",
                params: #"{"overlap":"7d4e1f0a-0000-4000-8000-000000000001","resolution":"distinct","comment":""# + String(repeating: "x", count: 10_001) + #""}"#)
            #expect(wordy?["error"]?["data"]?["errors"] == .array([.object(["field": .string("comment"), "reason": .string("must be at most 10000 characters")])]))
            // A deconfliction case must name an overlap that exists, by its id.
            for overlap in ["7d4e1f0a-0000-4000-8000-000000000001", "nope"] {
                let nameless = try await client.call(
                    "task.create",
                    params: #"{"workflow":"deconfliction-case","title":"Who leads","leadAgency":"pbso","fields":{"overlap":"\#(overlap)"}}"#)
                #expect(nameless?["error"]?["code"] == .integer(-32022), "\(overlap): \(String(describing: nameless))")
                guard case .array(let errors)? = nameless?["error"]?["data"]?["errors"] else {
                    Issue.record("\(overlap): no field errors")
                    continue
                }
                #expect(errors.map { $0["field"] } == [.string("fields.overlap")])
            }
        }
        // A revoked token.
        let admin = try await TestDatabase.connect(server.target)
        try await admin.execute(unsafeSQL: "UPDATE api_tokens SET revoked_at = now() WHERE principal = (SELECT id FROM principals WHERE name = 'wfp-liaison')")
        await admin.close()
        await #expect(throws: ServerHarness.HelloFailed.self) { try await server.withSession("wfp-liaison") { _ in } }
        // Calls before hello, by the hundred: each refused, the connection kept.
        try await LineClient.withConnection(port: server.port) { client in
            var flood = ""
            for id in 1...300 { flood += "{\"jsonrpc\":\"2.0\",\"id\":\(id),\"method\":\"task.list\"}\n" }
            try await client.send(raw: flood)
            for _ in 1...300 { #expect(try await client.receive()?["error"]?["code"] == .integer(-32001)) }
            let ping = try await client.call("ping")
            #expect(ping?["result"] != nil)
        }
        await server.stop()
    }

    /// A bad value is named with what to send instead, not in Foundation's
    /// words (which named a Swift type, or called valid JSON invalid).
    @Test func aBadValueSaysWhatToSend() async throws {
        let server = try await ServerHarness.start("malformed_words")
        let cases: [(method: String, params: String, message: String)] = [
            ("overlap.resolve", #"{"overlap":"nope","resolution":"distinct"}"#,
             "parameter overlap must be an id (a UUID such as 7d4e1f0a-0000-4000-8000-000000000001)"),
            ("task.create", #"{"workflow":"pbf-project","title":"x","leadAgency":"undp","priority":"asap"}"#,
             "parameter priority: asap is not one of low, normal, high, urgent"),
            ("task.create", #"{"workflow":"pbf-project","title":"x","leadAgency":"undp","participants":[{"agency":"unicef","role":"boss"}]}"#,
             "parameter participants[0].role: boss is not one of funding, implementing, accountable"),
            ("task.act", #"{"task":"x","action":"a","expectedVersion":99999999999999999999999}"#,
             "parameter expectedVersion is too large for an integer"),
        ]
        try await server.withSession("coordinator") { client in
            for (method, params, message) in cases {
                let response = try await client.call(method, params: params)
                #expect(response?["error"]?["code"] == .integer(-32602), "\(method) \(params)")
                #expect(response?["error"]?["message"] == .string(message), "\(method) \(params)")
            }
        }
        await server.stop()
    }

    @Test func limitsCloseWhatTheyShouldAndNothingElse() async throws {
        let server = try await ServerHarness.start("limits") { configuration in
            configuration.helloDeadlineSeconds = 1
            configuration.idleTimeoutSeconds = 3
            configuration.writeTimeoutSeconds = 1
            configuration.rateLimitPerSecond = 5
            configuration.rateLimitBurst = 5
        }
        // Silent past the hello deadline: told, then closed.
        try await LineClient.withConnection(port: server.port) { client in
            let last = try await client.receive()
            #expect(last?["error"]?["code"] == .integer(-32001))
            #expect(try await client.receiveLine() == nil)
        }
        // A session that goes quiet past the idle timeout is closed; pings keep it alive until then
        // (700 ms apart against 3 s, slack for a loaded machine).
        try await server.withSession("coordinator") { client in
            for _ in 0..<4 {
                try await Task.sleep(for: .milliseconds(700))
                let ping = try await client.call("ping")
                #expect(ping?["result"] != nil)
            }
            let last = try await client.receive()
            #expect(last?["error"]?["message"] == .string("idle for 3.0 seconds; closing"))
            #expect(try await client.receiveLine() == nil)
        }
        // The rate limit answers -32029 with retryAfterMs, and lets requests through again later.
        try await server.withSession("undp-liaison") { client in
            // Sent at once, so that the bucket cannot refill between them however slow the machine.
            try await client.send(raw: (1...20).map { #"{"jsonrpc":"2.0","id":\#($0),"method":"task.list"}"# + "\n" }.joined())
            var waits: [Int64] = []
            for _ in 1...20 {
                let response = try await client.receive()
                if response?["error"]?["code"] == .integer(-32029), case .integer(let wait)? = response?["error"]?["data"]?["retryAfterMs"] {
                    waits.append(wait)
                }
            }
            #expect(!waits.isEmpty, "20 at once against a burst of 5: some must be limited")
            // Each says how long until a token is back: at most one token's time (200 ms at 5 a second).
            #expect(waits.allSatisfy { (1...200).contains($0) })
            // Requests admitted after a rejection may take the token it announced, so wait one token's time.
            try await Task.sleep(for: .milliseconds(250))
            let after = try await client.call("task.list", id: 99)
            #expect(after?["result"] != nil)
        }
        await server.stop()
    }

    /// The connection cap: the fifth connection is told and closed while
    /// four are open. A server of its own, with the default hello deadline:
    /// under the one second of the test above, a loaded machine could close
    /// the first four before the fifth arrived.
    @Test func theConnectionCapRefusesTheFifthWhileFourAreOpen() async throws {
        let server = try await ServerHarness.start("connection_cap") { $0.maxConnections = 4 }
        try await LineClient.withConnection(port: server.port) { a in
            try await LineClient.withConnection(port: server.port) { b in
                try await LineClient.withConnection(port: server.port) { c in
                    try await LineClient.withConnection(port: server.port) { d in
                        for client in [a, b, c, d] {
                            let ping = try await client.call("ping")
                            #expect(ping?["result"] != nil)
                        }
                        try await LineClient.withConnection(port: server.port) { e in
                            let refused = try await e.receive()
                            #expect(refused?["error"]?["code"] == .integer(-32000))
                            #expect(try await e.receiveLine() == nil)
                        }
                    }
                }
            }
        }
        await server.stop()
    }

    @Test func aClientThatNeverReadsIsDisconnectedWhileOthersCarryOn() async throws {
        let server = try await ServerHarness.start("never_reads") {
            $0.writeTimeoutSeconds = 1
            $0.metricsPort = 0
        }
        // A raw socket that asks for large answers and never reads one.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(server.port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var receiveBuffer: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receiveBuffer, socklen_t(MemoryLayout<Int32>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        var requests = #"{"jsonrpc":"2.0","id":0,"method":"session.hello","params":{"protocol":1,"token":"\#(server.tokens["observer"]!)"}}"# + "\n"
        // About 10 MB of answers: more than any socket buffer holds.
        for id in 1...400 { requests += "{\"jsonrpc\":\"2.0\",\"id\":\(id),\"method\":\"country.list\",\"params\":{\"limit\":1000}}\n" }
        let bytes = Array(requests.utf8)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var sent = 0
        let sendDeadline = ContinuousClock.now + .seconds(5)
        while sent < bytes.count, ContinuousClock.now < sendDeadline {
            let written = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written > 0 { sent += written } else { try await Task.sleep(for: .milliseconds(10)) }
        }
        // Meanwhile a well-behaved client is served.
        try await server.withSession("coordinator") { client in
            let countries = try await client.call("country.list", id: 1)
            #expect(countries?["result"] != nil)
        }
        // The server gives up on the reader: its count of open connections falls to zero, though we never read or close.
        var open = ""
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let metrics = try await LineClient.withConnection(port: server.metricsPort!) { client in
                try await client.send(raw: "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                var lines: [String] = []
                while let line = try await client.receiveLine() { lines.append(line) }
                return lines
            }
            open = metrics.first { $0.hasPrefix("pbc_connections_open ") } ?? ""
            if open == "pbc_connections_open 0.0" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(open == "pbc_connections_open 0.0", "the server kept a connection whose client never reads")
        await server.stop()
    }
}

import Foundation
import JSONRPC
import Testing
import TestSupport

/// The server as clients meet it: started on port 0 against a real database, spoken to over TCP.
@Suite struct EndToEndTests {
    @Test func pingNeedsNoSessionAndPipelinedRequestsAreAnsweredInOrder() async throws {
        let server = try await ServerHarness.start("e2e_ping")
        try await LineClient.withConnection(port: server.port) { client in
            let response = try #require(try await client.call("ping", id: 7))
            #expect(response["id"] == .integer(7))
            #expect(response["result"]?["pong"] == .bool(true))
            var lines = ""
            for id in 1...50 { lines += "{\"jsonrpc\":\"2.0\",\"id\":\(id),\"method\":\"ping\"}\r\n" }
            try await client.send(raw: lines)
            for id in 1...50 {
                #expect(try await client.receive()?["id"] == .integer(Int64(id)))
            }
        }
        await server.stop()
    }

    @Test func helloNegotiatesTheProtocolAndAuthenticates() async throws {
        let server = try await ServerHarness.start("e2e_hello")
        let token = server.tokens["undp-liaison"]!
        try await LineClient.withConnection(port: server.port) { client in
            // Before hello only ping and session.hello are served.
            #expect(try await client.call("task.list", id: 1)?["error"]?["code"] == .integer(-32001))
            let hello = try await client.call("session.hello", id: 2, params: #"{"protocol":[1,3],"token":"\#(token)","client":"tests/1"}"#)
            #expect(hello?["result"]?["protocol"] == .integer(1))
            #expect(hello?["result"]?["principal"]?["agency"] == .string("undp"))
            #expect(try await client.call("task.list", id: 3)?["result"]?["items"] == .array([]))
            #expect(try await client.call("session.hello", id: 4, params: #"{"protocol":1,"token":"\#(token)"}"#)?["error"]?["code"] == .integer(-32600))
        }
        // No version in common: an error listing what the server speaks, then the connection closes.
        try await LineClient.withConnection(port: server.port) { client in
            let refused = try await client.call("session.hello", id: 1, params: #"{"protocol":[2,5],"token":"\#(token)"}"#)
            #expect(refused?["error"]?["code"] == .integer(-32602))
            #expect(refused?["error"]?["data"]?["supported"] == .array([.integer(1)]))
            #expect(try await client.receiveLine() == nil)
        }
        // A wrong token: -32001, then the connection closes.
        try await LineClient.withConnection(port: server.port) { client in
            let refused = try await client.call("session.hello", id: 1, params: #"{"protocol":1,"token":"pbc_not-a-token"}"#)
            #expect(refused?["error"]?["code"] == .integer(-32001))
            #expect(try await client.receiveLine() == nil)
        }
        await server.stop()
    }

    @Test func aProjectGoesThroughTheWire() async throws {
        let server = try await ServerHarness.start("e2e_project")
        try await server.withSession("undp-liaison") { client in
            let submitted = try #require(try await client.call("task.submit", id: 1, params: ServerHarness.project(key: "k-1"))?["result"])
            #expect(submitted["replayed"] == .bool(false))
            let task = try #require(submitted["task"])
            #expect(task["state"] == .string("technical_review"))
            #expect(task["budget"]?["amount"] == .string("1500000.00"))
            guard case .string(let ref)? = task["ref"], case .integer(let version)? = task["version"] else {
                Issue.record("no ref or version in \(task)")
                return
            }
            let replay = try await client.call("task.submit", id: 2, params: ServerHarness.project(key: "k-1"))
            #expect(replay?["result"]?["replayed"] == .bool(true))
            #expect(replay?["result"]?["task"]?["ref"] == .string(ref))
            let reused = try await client.call("task.submit", id: 3, params: ServerHarness.project(key: "k-1", title: "Other"))
            #expect(reused?["error"]?["code"] == .integer(-32009))
            // Refused by the workflow's guards: no task is kept, so the error names
            // no state and no actions, and the key is still free.
            let unfinished = ServerHarness.project(key: "k-2").replacingOccurrences(of: #""fields":{"genderMarker":2,"facility":"IRF"}"#, with: #""fields":{}"#)
            let refused = try await client.call("task.submit", id: 40, params: unfinished)
            #expect(refused?["error"]?["code"] == .integer(-32010))
            #expect(refused?["error"]?["data"] == nil, "\(String(describing: refused))")
            if case .string(let message)? = refused?["error"]?["message"] {
                #expect(message.hasPrefix("submit refused by ") && message.contains("genderMarker"), "\(message)")
            } else {
                Issue.record("no message in \(String(describing: refused))")
            }
            let completed = try await client.call("task.submit", id: 41, params: ServerHarness.project(key: "k-2", title: "Completed"))
            #expect(completed?["result"]?["replayed"] == .bool(false))
            #expect(completed?["result"]?["task"]?["ref"] != .string(ref))
            let got = try await client.call("task.get", id: 4, params: #"{"task":"\#(ref)"}"#)
            #expect(got?["result"]?["task"]?["allowedActions"] == .array([.string("withdraw")]))
            // Not allowed in this state: the state and the allowed actions come back.
            let approve = try await client.call("task.act", id: 5, params: #"{"task":"\#(ref)","action":"approve","expectedVersion":\#(version)}"#)
            #expect(approve?["error"]?["code"] == .integer(-32010))
            #expect(approve?["error"]?["data"]?["state"] == .string("technical_review"))
            #expect(approve?["error"]?["data"]?["allowedActions"] == .array([.string("withdraw")]))
            let comment = try await client.call("task.comment", id: 6, params: #"{"task":"\#(ref)","comment":"Budget annex attached"}"#)
            #expect(comment?["result"]?["event"]?["type"] == .string("task.commented"))
            let history = try await client.call("task.history", id: 7, params: #"{"task":"\#(ref)"}"#)
            guard case .array(let events)? = history?["result"]?["items"] else {
                Issue.record("no history")
                return
            }
            #expect(events.compactMap { if case .string(let to)? = $0["to"] { to } else { nil } } == ["draft", "submitted", "screening", "technical_review"])
        }
        try await server.withSession("coordinator") { client in
            let list = try await client.call("task.list", id: 1, params: #"{"state":"technical_review","country":"BI"}"#)
            guard case .array(let items)? = list?["result"]?["items"], case .string(let ref)? = items.first?["ref"],
                case .integer(let version)? = items.first?["version"]
            else {
                Issue.record("task.list found nothing: \(String(describing: list))")
                return
            }
            let stale = try await client.call("task.act", id: 2, params: #"{"task":"\#(ref)","action":"recommend","expectedVersion":\#(version - 1)}"#)
            #expect(stale?["error"]?["code"] == .integer(-32009))
            #expect(stale?["error"]?["data"]?["currentVersion"] == .integer(version))
            let recommended = try await client.call("task.act", id: 3, params: #"{"task":"\#(ref)","action":"recommend","expectedVersion":\#(version)}"#)
            #expect(recommended?["result"]?["task"]?["state"] == .string("asg_approval"))
        }
        // Another agency's liaison cannot see it at all.
        try await server.withSession("wfp-liaison") { client in
            let list = try await client.call("task.list", id: 1)
            #expect(list?["result"]?["items"] == .array([]))
        }
        await server.stop()
    }

    @Test func validationListsEveryBadField() async throws {
        let server = try await ServerHarness.start("e2e_validation")
        try await server.withSession("undp-liaison") { client in
            let params = #"{"workflow":"pbf-project","title":" ","leadAgency":"undp","country":"ZZZ","sectors":["15220","1"],"budget":{"amount":"-1","currency":"usd"}}"#
            let response = try await client.call("task.create", id: 1, params: params)
            #expect(response?["error"]?["code"] == .integer(-32022))
            guard case .array(let errors)? = response?["error"]?["data"]?["errors"] else {
                Issue.record("no errors list")
                return
            }
            let fields = Set(errors.compactMap { if case .string(let field)? = $0["field"] { field } else { nil } })
            #expect(fields.isSuperset(of: ["title", "sectors[1]", "budget.amount", "budget.currency"]))
            let forbidden = try await client.call("task.create", id: 2, params: #"{"workflow":"pbf-project","title":"x","leadAgency":"unicef"}"#)
            #expect(forbidden?["error"]?["code"] == .integer(-32003))
            let missing = try await client.call("task.get", id: 3, params: #"{"task":"PBC-1999-000001"}"#)
            #expect(missing?["error"]?["code"] == .integer(-32004))
        }
        await server.stop()
    }

    @Test func referenceDataAndWorkflowsAreListed() async throws {
        let server = try await ServerHarness.start("e2e_reference")
        try await server.withSession("observer") { client in
            let countries = try await client.call("country.list", id: 1, params: #"{"limit":1000}"#)
            guard case .array(let items)? = countries?["result"]?["items"] else {
                Issue.record("no countries")
                return
            }
            #expect(items.count == 249)
            #expect(items.first { $0["code"] == .string("BDI") }?["pbc"]?["chair"] == .string("Switzerland"))
            let page = try await client.call("sector.list", id: 2, params: #"{"limit":2}"#)
            #expect(page?["result"]?["nextCursor"] == .string("11120"))
            let next = try await client.call("sector.list", id: 3, params: #"{"limit":1,"cursor":"11120"}"#)
            guard case .array(let sectors)? = next?["result"]?["items"] else {
                Issue.record("no sectors")
                return
            }
            #expect(sectors.first?["code"] == .string("11130"))
            let agencies = try await client.call("agency.list", id: 4)
            #expect(agencies?["result"]?["items"] != nil)
            let workflow = try await client.call("workflow.get", id: 5, params: #"{"name":"pbf-project"}"#)
            #expect(workflow?["result"]?["initialState"] == .string("draft"))
            // What a client needs to know of who sees a request, and who joins it.
            let request = try await client.call("workflow.get", id: 51, params: #"{"name":"assistance-request"}"#)?["result"]
            guard case .array(let states)? = request?["states"], case .array(let actions)? = request?["actions"] else {
                Issue.record("no states or actions")
                return
            }
            #expect(states.filter { $0["openToAllAgencies"] == .bool(true) }.map { $0["name"] } == [.string("offers_open")])
            #expect(actions.first { $0["name"] == .string("designate_lead") }?["joins"] == .string("designatedAgency"))
            let list = try await client.call("workflow.list", id: 6)
            guard case .array(let workflows)? = list?["result"]?["items"] else {
                Issue.record("no workflows")
                return
            }
            #expect(workflows.count == 4)
            // Observers read; they do not write.
            let create = try await client.call("task.create", id: 7, params: #"{"workflow":"pbf-project","title":"x","leadAgency":"undp"}"#)
            #expect(create?["error"]?["code"] == .integer(-32003))
        }
        await server.stop()
    }

    @Test func aLineOverTheLimitGetsAnErrorThenTheConnectionCloses() async throws {
        let server = try await ServerHarness.start("e2e_limit") { $0.maxLineBytes = 1024 }
        try await LineClient.withConnection(port: server.port) { client in
            try await client.send(raw: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"" + String(repeating: "a", count: 4000))
            let error = try await client.receive()
            #expect(error?["error"]?["code"] == .integer(-32600))
            #expect(try await client.receiveLine() == nil)
        }
        // Other clients are unaffected.
        try await LineClient.withConnection(port: server.port) { client in
            let response = try await client.call("ping")
            #expect(response?["result"] != nil)
        }
        await server.stop()
    }
}

import Foundation
import JSONRPC
import Postgres
import Testing
import TestSupport

/// Gives up on `body` after `seconds`, so that a missing event fails the test instead of hanging it.
func within<Result: Sendable>(_ seconds: Int, _ what: String, _ body: @escaping @Sendable () async throws -> Result) async throws -> Result {
    try await withThrowingTaskGroup(of: Result.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw TimedOut(what: what, seconds: seconds)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

struct TimedOut: Error, CustomStringConvertible {
    let what: String
    let seconds: Int
    var description: String { "no \(what) within \(seconds) s" }
}

extension JSONValue {
    var int: Int? { if case .integer(let value) = self { Int(value) } else { nil } }
    var string: String? { if case .string(let value) = self { value } else { nil } }
}

@Suite struct QueueAndStreamTests {
    /// Coordinators of `pbso-review`, each with a token; returns name → token.
    static func addCoordinators(_ count: Int, to server: ServerHarness) async throws -> [String: String] {
        let pool = PostgresPool(configuration: .init(target: server.target, maxConnections: 1))
        var tokens: [String: String] = [:]
        for index in 0..<count {
            let name = "claimer-\(index)"
            let token = "pbc_example_\(name)"
            try await pool.query("""
                WITH p AS (INSERT INTO principals (name, role, agency) VALUES (\(name), 'coordinator', 'pbso') RETURNING id),
                     t AS (INSERT INTO api_tokens (principal, token_hash) SELECT id, sha256(convert_to(\(token), 'UTF8')) FROM p)
                INSERT INTO queue_members (queue, principal) SELECT 'pbso-review', id FROM p
                """)
            tokens[name] = token
        }
        await pool.shutdown()
        return tokens
    }

    static func hello(_ client: LineClient, token: String) async throws {
        let hello = try await client.call("session.hello", id: 0, params: #"{"protocol":1,"token":"\#(token)","client":"tests/1"}"#)
        guard hello?["result"] != nil else { throw ServerHarness.HelloFailed(response: hello) }
    }

    @Test func threeInstancesAndTwentyClaimersClaimEachOfAThousandTasksExactlyOnce() async throws {
        let first = try await ServerHarness.start("claims_3x20")
        let second = try await first.another()
        let third = try await first.another()
        let instances = [first, second, third]
        // A thousand tasks waiting in pbso-review, seeded in one statement (submissions are tested elsewhere).
        let pool = PostgresPool(configuration: .init(target: first.target, maxConnections: 1))
        try await pool.query("""
            INSERT INTO tasks (workflow, workflow_version, state, title, lead_agency, country, queue, queued_at, priority)
            SELECT 'pbf-project', (SELECT max(version) FROM workflow_definitions WHERE name = 'pbf-project'), 'technical_review', 'Seeded programme ' || i, 'undp', 'SLE', 'pbso-review',
                   now() - make_interval(secs => i), (ARRAY['low', 'normal', 'high', 'urgent'])[1 + i % 4]
            FROM generate_series(1, 1000) AS i
            """)
        let tokens = try await Self.addCoordinators(20, to: first)

        let claims = try await withThrowingTaskGroup(of: [String].self) { group in
            for (index, token) in tokens.values.enumerated() {
                let port = instances[index % 3].port
                group.addTask {
                    try await LineClient.withConnection(port: port) { client in
                        try await Self.hello(client, token: token)
                        var refs: [String] = []
                        var id = 1
                        while true {
                            id += 1
                            let answer = try #require(try await client.call("queue.claim", id: id, params: #"{"queue":"pbso-review"}"#))
                            let result = try #require(answer["result"], "claim failed: \(answer)")
                            guard let ref = result["task"]?["ref"]?.string else { return refs }
                            refs.append(ref)
                        }
                    }
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(claims.count == 1000)
        #expect(Set(claims).count == 1000)
        let check = try await pool.query("""
            SELECT (SELECT count(*) FROM tasks WHERE queue = 'pbso-review' AND assignee IS NULL),
                   (SELECT count(*) FROM events WHERE type = 'task.claimed'),
                   (SELECT count(DISTINCT task_id) FROM events WHERE type = 'task.claimed')
            """).first!
        #expect(try check.decode(Int.self, at: 0) == 0)
        #expect(try check.decode(Int.self, at: 1) == 1000)
        #expect(try check.decode(Int.self, at: 2) == 1000)
        await pool.shutdown()
        for instance in instances { await instance.stop() }
    }

    /// The events of `client`'s stream until `count` have come.
    static func events(_ client: LineClient, count: Int) async throws -> [JSONValue] {
        var events: [JSONValue] = []
        while events.count < count {
            guard let message = try await client.receive() else { throw TimedOut(what: "more events before the connection closed", seconds: 0) }
            guard message["method"]?.string == "event", let event = message["params"]?["event"] else {
                Issue.record("expected an event, got \(message)")
                continue
            }
            events.append(event)
        }
        return events
    }

    @Test func aLiaisonsStreamTellsOfALaterOverlappingSubmissionByAnotherAgency() async throws {
        let server = try await ServerHarness.start("streams_other_side")
        let undps = try await server.withSession("undp-liaison") { client in
            try #require(try await client.call("task.submit", id: 1, params: ServerHarness.project(key: "first"))?["result"]?["task"]?["ref"]?.string)
        }
        try await server.withSession("undp-liaison") { watcher in
            let subscribed = try await watcher.call("event.subscribe", id: 2, params: #"{"types":["overlap.detected"]}"#)
            #expect(subscribed?["result"]?["subscription"]?.string == "s1")
            // WFP, which takes no part in UNDP's program, submits much the same.
            let wfps = try await server.withSession("wfp-liaison") { client in
                let params = ServerHarness.project(key: "later", title: "Youth and women in local peace committees, Gitega")
                    .replacingOccurrences(of: #""leadAgency":"undp","participants":[{"agency":"unicef","role":"implementing"}]"#, with: #""leadAgency":"wfp""#)
                let submitted = try await client.call("task.submit", id: 1, params: params)
                #expect(submitted?["result"]?["task"]?["state"]?.string == "deconfliction", "\(String(describing: submitted))")
                return try #require(submitted?["result"]?["task"]?["ref"]?.string)
            }
            let event = try #require(try await Self.events(watcher, count: 1).first)
            #expect(event["task"]?.string == undps)
            #expect(event["data"]?["other"]?.string == wfps)
            // Of WFP's task UNDP sees the overlap's side of it, and no more.
            guard case .array(let items)? = try await watcher.call("overlap.list", id: 3, params: "{}")?["result"]?["items"] else {
                Issue.record("overlap.list gave no items")
                return
            }
            #expect(items.count == 1)
            #expect(items.first?["task"]?.string == undps)
            #expect(items.first?["other"]?["leadAgency"]?.string == "wfp")
            #expect(try await watcher.call("task.get", id: 4, params: #"{"task":"\#(wfps)"}"#)?["error"]?["code"]?.int == -32004)
        }
        await server.stop()
    }

    @Test func aSubscriberOnOneInstanceGetsEveryEventOfAnotherAndResumesExactlyAfterACut() async throws {
        let producer = try await ServerHarness.start("streams_2x")
        let watcher = try await producer.another()
        let pool = PostgresPool(configuration: .init(target: producer.target, maxConnections: 1))
        func seqs(after seq: Int) async throws -> [Int] {
            try await pool.query("SELECT seq FROM events WHERE seq > \(seq) ORDER BY seq").map { try $0.decode(Int.self, at: 0) }
        }
        func produce(_ count: Int, from key: Int) async throws {
            try await producer.withSession("undp-liaison") { client in
                for index in key..<key + count {
                    let submitted = try await client.call(
                        "task.submit", id: index, params: ServerHarness.project(key: "stream-\(index)", title: "Stream programme \(index)"))
                    #expect(submitted?["result"] != nil, "\(String(describing: submitted))")
                }
            }
        }

        // Live: subscribe on the watcher, produce on the other instance.
        let (received, lastSeen) = try await watcher.withSession("coordinator") { client in
            let subscribed = try #require(try await client.call("event.subscribe", id: 1, params: "{}"))
            let after = try #require(subscribed["result"]?["after"]?.int)
            #expect(subscribed["result"]?["subscription"]?.string == "s1")
            try await produce(5, from: 1)
            let expected = try await seqs(after: after)
            #expect(expected.count >= 15)  // created, three transitions, and overlaps, for each of five
            let events = try await within(30, "live events") { try await Self.events(client, count: expected.count) }
            #expect(events.compactMap { $0["seq"]?.int } == expected)
            return (events, expected.last!)
        }
        #expect(Set(received.compactMap { $0["task"]?.string }).count == 5)
        #expect(received.first?["type"]?.string == "task.created")

        // The connection is gone; more happens; resubscribing from the last seq seen gives exactly what was missed.
        try await produce(3, from: 100)
        let missed = try await seqs(after: lastSeen)
        try await watcher.withSession("coordinator") { client in
            let resumed = try #require(try await client.call("event.subscribe", id: 1, params: #"{"since":\#(lastSeen)}"#))
            #expect(resumed["result"]?["after"]?.int == lastSeen)
            let replayed = try await within(30, "replayed events") { try await Self.events(client, count: missed.count) }
            #expect(replayed.compactMap { $0["seq"]?.int } == missed)
            // Then live again, with no seam: the next event is the next seq.
            try await produce(1, from: 200)
            let fresh = try await seqs(after: missed.last!)
            let next = try await within(30, "the next live events") { try await Self.events(client, count: fresh.count) }
            #expect(next.compactMap { $0["seq"]?.int } == fresh)
            #expect(fresh.first == missed.last! + 1)
            // Unsubscribed, nothing more comes; the connection stays usable.
            let ended = try await client.call("event.unsubscribe", id: 2, params: #"{"subscription":"s1"}"#)
            #expect(ended?["result"]?["ended"] == .bool(true))
            let again = try await client.call("event.unsubscribe", id: 3, params: #"{"subscription":"s1"}"#)
            #expect(again?["error"]?["code"]?.int == -32004)
        }
        await pool.shutdown()
        await watcher.stop()
        await producer.stop()
    }

    @Test func filtersAndAgencyScopeApplyToStreams() async throws {
        let server = try await ServerHarness.start("stream_scope")
        try await server.withSession("wfp-liaison") { wfp in
            // A liaison cannot follow another agency, and sees only their agency's tasks.
            let other = try await wfp.call("event.subscribe", id: 1, params: #"{"agencies":["undp"]}"#)
            #expect(other?["error"]?["code"]?.int == -32003)
            let subscribed = try await wfp.call("event.subscribe", id: 2, params: #"{"since":0}"#)
            #expect(subscribed?["result"]?["subscription"] != nil)
            try await server.withSession("undp-liaison") { undp in
                _ = try await undp.call("task.submit", id: 1, params: ServerHarness.project(key: "scoped"))
                // Filtered to one type, a coordinator's stream carries only that type.
                try await server.withSession("coordinator") { coordinator in
                    let typed = try await coordinator.call("event.subscribe", id: 1, params: #"{"since":0,"types":["task.created"]}"#)
                    #expect(typed?["result"] != nil)
                    let created = try await within(30, "the created event") { try await Self.events(coordinator, count: 1) }
                    #expect(created.first?["type"]?.string == "task.created")
                    #expect(created.first?["country"]?.string == "BDI")
                    _ = try await undp.call("task.submit", id: 2, params: ServerHarness.project(key: "scoped-2", title: "Second programme"))
                    let second = try await within(30, "the second created event") { try await Self.events(coordinator, count: 1) }
                    #expect(second.first?["type"]?.string == "task.created")
                }
            }
            // WFP's own task reaches WFP; UNDP's never did, though the stream started from seq 0.
            let own = ServerHarness.project(key: "wfp-own", title: "School meals for peace")
                .replacingOccurrences(of: #""leadAgency":"undp""#, with: #""leadAgency":"wfp""#)
            let ref = try await server.withSession("wfp-liaison") { writer in
                try #require(try await writer.call("task.submit", id: 1, params: own)?["result"]?["task"]?["ref"]?.string)
            }
            let mine = try await within(30, "WFP's events") { try await Self.events(wfp, count: 3) }
            #expect(mine.map { $0["type"]?.string } == ["task.created", "task.transitioned", "task.transitioned"])
            #expect(mine.allSatisfy { $0["task"]?.string == ref })
        }
        await server.stop()
    }

    @Test func aMissedNotificationDelaysAStreamButLosesNothingAndOldHistoryIsGone() async throws {
        let server = try await ServerHarness.start("stream_recovery")
        let ref = try await server.withSession("undp-liaison") { client in
            try #require(try await client.call("task.submit", id: 1, params: ServerHarness.project(key: "quiet"))?["result"]?["task"]?["ref"]?.string)
        }
        let pool = PostgresPool(configuration: .init(target: server.target, maxConnections: 1))
        try await server.withSession("coordinator") { client in
            _ = try #require(try await client.call("event.subscribe", id: 1, params: #"{"types":["task.commented"]}"#)?["result"])
            // Written straight into the table, with no NOTIFY: only the poll can find it.
            try await pool.query("""
                INSERT INTO events (task_id, actor_name, type, comment)
                SELECT id, 'operator', 'task.commented', 'written without a notification' FROM tasks WHERE ref = \(ref)
                """)
            let found = try await within(10, "the event no one announced") { try await Self.events(client, count: 1) }
            #expect(found.first?["comment"]?.string == "written without a notification")
        }
        // An event from before the replay window cannot be replayed from.
        let old = try await pool.query("""
            INSERT INTO events (task_id, actor_name, type, comment, at)
            SELECT id, 'operator', 'task.commented', 'long ago', now() - interval '40 days' FROM tasks WHERE ref = \(ref)
            RETURNING seq
            """).first!.decode(Int.self, at: 0)
        try await server.withSession("coordinator") { client in
            let gone = try await client.call("event.subscribe", id: 1, params: #"{"since":\#(old - 1)}"#)
            #expect(gone?["error"]?["code"]?.int == -32041)
            #expect(gone?["error"]?["message"]?.string?.contains("older than the replay window (30 days)") == true)
            let fine = try await client.call("event.subscribe", id: 2, params: #"{"since":\#(old)}"#)
            #expect(fine?["result"]?["after"]?.int == old)
        }
        await pool.shutdown()
        await server.stop()
    }

    @Test func aLeaseThatExpiresOverTheWireReturnsTheTaskAndTheOldLeaseIsRefused() async throws {
        let server = try await ServerHarness.start("lease_wire") { $0.sweepIntervalSeconds = 1 }
        let tokens = try await Self.addCoordinators(1, to: server)
        try await server.withSession("undp-liaison") { client in
            _ = try await client.call("task.submit", id: 1, params: ServerHarness.project(key: "lease-1").replacingOccurrences(of: "BDI", with: "SLE"))
        }
        try await server.withSession("coordinator") { mine in
            let claimed = try #require(try await mine.call("queue.claim", id: 1, params: #"{"queue":"pbso-review","leaseSeconds":1}"#))
            let task = try #require(claimed["result"]?["task"])
            let lease = try #require(claimed["result"]?["lease"]?["id"]?.string)
            #expect(task["assignee"]?["name"]?.string == "coordinator")
            // The lease runs out and a sweep (every second) returns the task to
            // its queue. Waited for by its event, not for a fixed time: a
            // loaded machine may sweep late.
            let ref = task["ref"]!.string!
            var swept = false
            let deadline = ContinuousClock.now + .seconds(30)
            while !swept, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(250))
                let history = try await mine.call("task.history", id: 4, params: #"{"task":"\#(ref)"}"#)
                guard case .array(let events)? = history?["result"]?["items"] else { continue }
                swept = events.contains { $0["type"]?.string == "task.lease_expired" }
            }
            #expect(swept)
            try await LineClient.withConnection(port: server.port) { colleague in
                try await Self.hello(colleague, token: tokens["claimer-0"]!)
                let theirs = try #require(try await colleague.call("queue.claim", id: 1, params: #"{"queue":"pbso-review"}"#))
                #expect(theirs["result"]?["task"]?["ref"]?.string == ref)
                let version = try #require(theirs["result"]?["task"]?["version"]?.int)
                let refused = try await mine.call(
                    "task.act", id: 2, params: #"{"task":"\#(ref)","action":"recommend","expectedVersion":\#(version),"lease":"\#(lease)"}"#)
                #expect(refused?["error"]?["code"]?.int == -32009)
                #expect(refused?["error"]?["message"]?.string?.contains("no longer yours") == true)
                let newLease = try #require(theirs["result"]?["lease"]?["id"]?.string)
                let done = try await colleague.call(
                    "task.act", id: 2, params: #"{"task":"\#(ref)","action":"recommend","expectedVersion":\#(version),"lease":"\#(newLease)"}"#)
                #expect(done?["result"]?["task"]?["state"]?.string == "asg_approval")
            }
            let history = try await mine.call("task.history", id: 3, params: #"{"task":"\#(ref)"}"#)
            guard case .array(let events)? = history?["result"]?["items"] else { throw TimedOut(what: "history", seconds: 0) }
            let types = events.compactMap { $0["type"]?.string }
            #expect(types.filter { $0 == "task.claimed" }.count == 2)
            #expect(types.filter { $0 == "task.lease_expired" }.count == 1)
        }
        await server.stop()
    }

    @Test func aSubscriberThatStopsReadingIsCutOffWhileAnotherKeepsUp() async throws {
        let server = try await ServerHarness.start("slow_subscriber") {
            $0.rateLimitPerSecond = 100_000
            $0.rateLimitBurst = 100_000
            $0.writeTimeoutSeconds = 1
            $0.maxSubscriberLag = 1000
        }
        // About 18 MB of events: more than the socket buffers between server and client hold.
        let count = 2000
        let comment = String(repeating: "a long comment to fill the socket buffers ", count: 220)  // 9,240 characters
        let ref = try await server.withSession("undp-liaison") { client in
            try #require(try await client.call("task.submit", id: 1, params: ServerHarness.project(key: "busy"))?["result"]?["task"]?["ref"]?.string)
        }
        try await server.withSession("coordinator") { slow in
            _ = try await slow.call("event.subscribe", id: 1, params: #"{"types":["task.commented"]}"#)
            try await server.withSession("coordinator") { healthy in
                _ = try await healthy.call("event.subscribe", id: 1, params: #"{"types":["task.commented"]}"#)
                async let all = within(120, "every comment on the healthy stream") { try await Self.events(healthy, count: count) }
                try await server.withSession("undp-liaison") { writer in
                    for index in 0..<count {
                        let answer = try await writer.call("task.comment", id: index + 2, params: #"{"task":"\#(ref)","comment":"\#(comment)"}"#)
                        #expect(answer?["result"] != nil)
                    }
                }
                #expect(try await all.count == count)
            }
            // The slow one was cut off: reading now, it ends before all the events, perhaps with the reason.
            var events = 0
            var last: JSONValue?
            while let message = try await within(30, "the end of the slow stream", { try await slow.receive() }) {
                if message["method"]?.string == "event" { events += 1 } else { last = message }
            }
            #expect(events < count)
            if let last { #expect(last["error"]?["code"]?.int == -32042) }
        }
        await server.stop()
    }
}

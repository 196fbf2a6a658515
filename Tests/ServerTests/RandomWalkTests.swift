import Coordination
import Foundation
import JSONRPC
import Postgres
import Store
import Synchronization
import Testing
import TestSupport

/// Random sequences of what people do, over the wire: liaisons submit and
/// edit, coordinators and approvers take whatever action a task allows,
/// overlaps are resolved in every way and carried into deconfliction cases,
/// and now and then a program apart from the others is taken the whole way
/// to funding, which schedules its reports.
/// Then what must hold whatever the order: no answer is an internal error,
/// every task is in the state its last step left it in, no overlap with a
/// program that ended is open, and the two rows of a pair agree. Such a walk
/// found a merged task still edited and screened, and pairs decided on one
/// side and open on the other (with the fix undone, this test fails on the
/// second). `PBC_WALK_STEPS` (default 300) and `PBC_WALK_SEED` (29) change
/// the walk.
@Suite struct RandomWalkTests {
    struct Walk {
        var generator: SplitMix
        var answers: [String: Int] = [:]
        var internalErrors: [String] = []
        /// The refs of the submissions the server acknowledged.
        var acknowledged: [String] = []

        mutating func pick<T>(_ choices: [T]) -> T { choices[Int(generator.next() % UInt64(choices.count))] }
        mutating func chance(_ percent: UInt64) -> Bool { generator.next() % 100 < percent }

        mutating func period() -> JSONValue {
            let year = 2027 + Int(generator.next() % 2)
            let start = String(format: "%d-%02d-01", year, 1 + Int(generator.next() % 12))
            let end = String(format: "%d-%02d-28", year + Int(generator.next() % 3), 1 + Int(generator.next() % 12))
            return .object(["start": .string(min(start, end)), "end": .string(max(start, end))])
        }

        mutating func places() -> JSONValue { .array(["Gitega", "Ngozi", "Kailahun"].filter { _ in chance(40) }.map(JSONValue.string)) }
        mutating func sectors() -> JSONValue { .array([pick(["15220", "15110", "15130"])].map(JSONValue.string)) }

        /// Calls and counts the answer; an internal error is kept with what caused it.
        mutating func call(_ client: LineClient, _ method: String, _ params: [String: JSONValue]) async throws -> JSONValue {
            let answer = try #require(try await client.call(method, params: JSONValue.object(params).text))
            let code = answer["error"]?["code"]
            answers["\(method) \(code.map { $0.text } ?? "ok")", default: 0] += 1
            if code == .integer(-32603) { internalErrors.append("\(method) \(JSONValue.object(params).text)") }
            return answer
        }
    }

    @Test func whateverPeopleDoPairsStayWholeAndNothingFails() async throws {
        let server = try await ServerHarness.start("random_walk")
        let steps = Int(ProcessInfo.processInfo.environment["PBC_WALK_STEPS"] ?? "") ?? 300
        let seed = UInt64(ProcessInfo.processInfo.environment["PBC_WALK_SEED"] ?? "") ?? 29
        let walk = try await Self.walk(server, seed: seed, steps: steps)
        // The walk did reach what it is about.
        #expect((walk.answers["overlap.resolve ok"] ?? 0) > 5, "\(walk.answers)")
        #expect((walk.answers["task.act ok"] ?? 0) > 10, "\(walk.answers)")
        let funded = try await Self.reading(server) {
            try await $0.query("SELECT count(*) FROM tasks WHERE workflow = 'pbf-project' AND fields ? 'firstTransferDate'")
        }.first!.decode(Int.self, at: 0)
        #expect(funded > 0, "no program was funded, so no report was scheduled")
        try await Self.expectWhole(server, after: [walk])
        await server.stop()
    }

    /// Three people's walks at once, each over its own sessions, with the
    /// portfolio imported beside them and an observer streaming every event:
    /// whatever the interleaving, the same must hold, and the stream must
    /// hold every event. Such walks found an overlap left open with a program
    /// withdrawn meanwhile, overlaps decided past their open case, deadlocks
    /// with imports, an edit failing after waiting for a claim, and cases
    /// left open on overlaps with cancelled activities. The order differs
    /// from run to run; the invariants may not.
    @Test func whateverPeopleDoAtOnceNothingIsLostOrLeftHalfDone() async throws {
        let server = try await ServerHarness.start("random_walk_at_once")
        let steps = Int(ProcessInfo.processInfo.environment["PBC_WALK_STEPS"] ?? "") ?? 300
        let seed = UInt64(ProcessInfo.processInfo.environment["PBC_WALK_SEED"] ?? "") ?? 29
        // An observer streams every event from the start, reading as they come.
        let (walks, committedByTheEnd, streamed) = try await server.withSession("observer") { watcher in
            #expect(try await watcher.call("event.subscribe", id: 1, params: #"{"since":0}"#)?["result"] != nil)
            let seen = Mutex<[Int]>([])
            async let reading: Void = {
                // Until the answer to the unsubscription below.
                while let message = try await watcher.receive(), message["id"] != .integer(2) {
                    if let seq = message["params"]?["event"]?["seq"]?.int { seen.withLock { $0.append(seq) } }
                }
            }()
            // Beside them, the portfolio is imported again and again, as `pbc import` does.
            let stop = Switch()
            async let imports = Self.importAlongside(server, until: stop, seed: seed)
            let walks = try await withThrowingTaskGroup(of: Walk.self) { group in
                for walker in 1...3 { group.addTask { try await Self.walk(server, seed: seed &+ UInt64(walker) &* 1_000, steps: steps / 3) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            stop.turnOn()
            #expect(try await imports > 0)
            let committed = try await Self.seqs(server).count
            for _ in 0..<3_000 where seen.withLock({ $0.count }) < committed { try await Task.sleep(for: .milliseconds(20)) }
            try await watcher.send(raw: #"{"jsonrpc":"2.0","id":2,"method":"event.unsubscribe","params":{"subscription":"s1"}}"# + "\n")
            try await reading
            return (walks, committed, seen.withLock { $0 })
        }
        try await Self.expectWhole(server, after: walks)
        // Every event committed by the walks' end was streamed, in order, once.
        // The sweeper goes on (a claim's lease runs out), so what it writes
        // after the observer stopped reading may be missing, but only at the end.
        let committed = try await Self.seqs(server)
        #expect(
            streamed.count >= committedByTheEnd && streamed == Array(committed.prefix(streamed.count)),
            "the stream held \(streamed.count) of the \(committedByTheEnd) events committed by the walks' end, or not in order")
        await server.stop()
    }

    /// What every `pbc import csv` does, in a loop until `stop`: the
    /// reference files loaded, then ten activities in the walks' places,
    /// sectors and years, about a third of them cancelled (closing the
    /// overlaps tasks have with them). Returns the rounds imported. Such a
    /// loop beside walks found two deadlocks that failed submissions.
    static func importAlongside(_ server: ServerHarness, until stop: Switch, seed: UInt64) async throws -> Int {
        let config = TestDatabase.repositoryRoot.appendingPathComponent("Config")
        let reference = try ReferenceData.load(from: config)
        let workflowFiles = try WorkflowRegistry.read(files: WorkflowRegistry.files(in: config.appendingPathComponent("workflows")))
        let owner = PostgresPool(configuration: .init(target: server.target, maxConnections: 1))
        let service = PostgresPool(configuration: .init(target: server.target.runningAs(Database.serviceRole), maxConnections: 2))
        let file = Scratch.directory.appendingPathComponent("pbc-walk-\(UUID().uuidString).csv")
        var generator = SplitMix(seed: seed)
        func pick<T>(_ choices: [T]) -> T { choices[Int(generator.next() % UInt64(choices.count))] }
        var rounds = 0
        do {
            while !stop.isOn {
                try await owner.withConnection { try await reference.sync(on: $0) }
                var rows = ["identifier,publisher,title,description,countries,sectors,locations,start,end,status"]
                for _ in 0..<10 {
                    let year = pick([2027, 2028])
                    rows.append("""
                        ACT-\(generator.next() % 30),eu,Youth peace committees \(pick(["Gitega", "Ngozi", "Kailahun"])),Local peace committees and dialogue.,\
                        \(pick(["BI", "SL"])),\(pick(["15220", "15110", "15130"])),\(pick(["Gitega", "Ngozi", "Kailahun"])),\(year)-01-01,\(year + 1)-06-30,\
                        \(pick(["2", "2", "5"]))
                        """)
                }
                try (rows.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
                let workflows = try await owner.withConnection { try await WorkflowRegistry.sync(workflowFiles, on: $0) }
                _ = try await ActivityImporter(pool: service, workflows: workflows, overlap: OverlapConfiguration()).importCSV(file: file.path)
                rounds += 1
            }
        } catch {
            await owner.shutdown()
            await service.shutdown()
            throw error
        }
        try? FileManager.default.removeItem(at: file)
        await owner.shutdown()
        await service.shutdown()
        return rounds
    }

    /// Runs `body` on a connection of its own to the server's database.
    static func reading<Result: Sendable>(_ server: ServerHarness, _ body: (PostgresConnection) async throws -> Result) async throws -> Result {
        let pool = PostgresPool(configuration: .init(target: server.target, maxConnections: 1))
        do {
            let result = try await pool.withConnection(body)
            await pool.shutdown()
            return result
        } catch {
            await pool.shutdown()
            throw error
        }
    }

    static func seqs(_ server: ServerHarness) async throws -> [Int] {
        try await reading(server) { try await $0.query("SELECT seq FROM events ORDER BY seq") }.map { try $0.decode(Int.self, at: 0) }
    }

    /// One person's walk of `steps` steps, over sessions of its own.
    static func walk(_ server: ServerHarness, seed: UInt64, steps: Int) async throws -> Walk {
        var walk = Walk(generator: SplitMix(seed: seed))
        let agencies = ["undp", "unicef", "wfp"]
        try await server.withSession("coordinator") { coordinator in
            try await server.withSession("approver") { approver in
                try await server.withSession("undp-liaison") { undp in
                    try await server.withSession("unicef-liaison") { unicef in
                        try await server.withSession("wfp-liaison") { wfp in
                            let liaisons = ["undp": undp, "unicef": unicef, "wfp": wfp]
                            for step in 0..<steps {
                                switch walk.generator.next() % 9 {
                                case 0, 1:  // a liaison submits a program, or now and then asks for expertise
                                    let agency = walk.pick(agencies)
                                    let partner = walk.pick(agencies.filter { $0 != agency })
                                    if walk.chance(15) {
                                        let created = try await walk.call(liaisons[agency]!, "task.create", [
                                            "workflow": .string("assistance-request"), "title": .string("Mediators for " + walk.pick(["Gitega", "Kailahun"])),
                                            "leadAgency": .string(agency), "country": .string(walk.pick(["BDI", "SLE"])),
                                        ])
                                        if let ref = created["result"]?["task"]?["ref"] {
                                            _ = try await walk.call(liaisons[agency]!, "task.act", ["task": ref, "action": .string("submit"), "expectedVersion": .integer(1)])
                                        }
                                        continue
                                    }
                                    if walk.chance(10) {
                                        // A program apart from the others (its own country and place), taken the whole way to
                                        // funding: the others rarely get past deconfliction, and walks should schedule reports too.
                                        let apart = try await walk.call(liaisons[agency]!, "task.submit", [
                                            "idempotencyKey": .string("walk-\(seed)-\(step)"), "workflow": .string("pbf-project"),
                                            "title": .string("Justice services in Bangui"), "description": .string("Mobile courts."),
                                            "country": .string("CAF"), "locations": .array([.string("Bangui \(seed)-\(step)")]), "sectors": .array([.string("15130")]),
                                            "period": walk.period(), "budget": .object(["amount": .string("100000"), "currency": .string("USD")]),
                                            "fields": .object(["genderMarker": .integer(2), "facility": .string("IRF")]),
                                        ])
                                        guard case .string(let ref)? = apart["result"]?["task"]?["ref"] else { continue }
                                        walk.acknowledged.append(ref)
                                        let transfer = walk.pick(["2027-01-15", "2027-07-01", "2028-02-29"])
                                        for (actor, action, fields) in [
                                            (coordinator, "recommend", [:]), (approver, "approve", [:]),
                                            (coordinator, "record_first_transfer", ["firstTransferDate": JSONValue.string(transfer)]),
                                        ] {
                                            guard let version = try await walk.call(actor, "task.get", ["task": .string(ref)])["result"]?["task"]?["version"] else { break }
                                            _ = try await walk.call(actor, "task.act", [
                                                "task": .string(ref), "action": .string(action), "expectedVersion": version, "fields": .object(fields),
                                            ])
                                        }
                                        continue
                                    }
                                    let submitted = try await walk.call(liaisons[agency]!, "task.submit", [
                                        "idempotencyKey": .string("walk-\(seed)-\(step)"), "workflow": .string("pbf-project"),
                                        "title": .string(walk.pick(["Youth peace committees", "Women mediators", "Land dialogue"]) + " " + walk.pick(["Gitega", "Ngozi", "Kailahun"])),
                                        "description": .string("Local peace committees and dialogue."), "leadAgency": .string(agency),
                                        "participants": walk.chance(50) ? .array([.object(["agency": .string(partner), "role": .string("implementing")])]) : .array([]),
                                        "country": .string(walk.pick(["BDI", "BDI", "SLE"])), "locations": walk.places(), "sectors": walk.sectors(),
                                        "period": walk.period(), "budget": .object(["amount": .string("100000"), "currency": .string("USD")]),
                                        "fields": .object(["genderMarker": .integer(1), "facility": .string(walk.pick(["IRF", "PRF"]))]),
                                    ])
                                    if case .string(let ref)? = submitted["result"]?["task"]?["ref"] { walk.acknowledged.append(ref) }
                                case 2, 3, 4:  // someone takes an action the task allows them
                                    guard case .array(let tasks)? = try await walk.call(coordinator, "task.list", ["limit": .integer(500)])["result"]?["items"],
                                        !tasks.isEmpty
                                    else { continue }
                                    // Now and then one of the programs furthest along, or few would ever be funded and report.
                                    let along = tasks.filter { task in
                                        ["asg_approval", "jsc_approval", "approved", "funded", "implementing"].contains { task["state"] == .string($0) }
                                    }
                                    let ref = (!along.isEmpty && walk.chance(40) ? walk.pick(along) : walk.pick(tasks))["ref"] ?? .null
                                    // Whoever may act on it now, so that tasks go the whole way round.
                                    var chosen: (LineClient, JSONValue, [JSONValue])?
                                    for actor in [coordinator, approver, undp, unicef, wfp].shuffled(using: &walk.generator) {
                                        if let task = try await walk.call(actor, "task.get", ["task": ref])["result"]?["task"],
                                            case .array(var allowed)? = task["allowedActions"]
                                        {
                                            // Now and then an action a guard refuses, as people try what they are told is not yet possible.
                                            if case .array(let blocked)? = task["blockedActions"], walk.chance(20) {
                                                allowed += blocked.compactMap { $0["action"] }
                                            }
                                            guard !allowed.isEmpty else { continue }
                                            chosen = (actor, task, allowed)
                                            break
                                        }
                                    }
                                    guard let (actor, task, allowed) = chosen else { continue }
                                    // Withdrawing is always allowed to liaisons; taken as often, no task would get far.
                                    let action = walk.pick(allowed.count > 1 ? allowed.filter { $0 != .string("withdraw") } : allowed)
                                    var fields: [String: JSONValue] = [:]
                                    if [.string("propose_resolution"), .string("decide")].contains(action) {
                                        fields["resolution"] = .string(walk.pick(["distinct", "coordinate", "merge", "sequence", "withdraw"]))
                                    }
                                    if action == .string("designate_lead") { fields["designatedAgency"] = .string(walk.pick(agencies)) }
                                    if action == .string("submit_report") { fields["document"] = .string("https://mptf.undp.org/reports/walk") }
                                    // Funding and extensions, so that walks schedule, move and end progress reports.
                                    if action == .string("record_first_transfer") {
                                        fields["firstTransferDate"] = .string(walk.pick(["2027-01-15", "2027-07-01", "2028-02-29"]))
                                    }
                                    if action == .string("request_extension") {
                                        fields["requestedEndDate"] = .string(walk.pick(["2029-06-30", "2030-12-31"]))
                                    }
                                    _ = try await walk.call(actor, "task.act", [
                                        "task": ref, "action": action, "expectedVersion": task["version"] ?? .null, "comment": .string("walk"),
                                        "fields": .object(fields),
                                    ])
                                case 5:  // a coordinator resolves an open overlap, one way or another
                                    guard case .array(let open)? = try await walk.call(coordinator, "overlap.list", ["limit": .integer(200)])["result"]?["items"],
                                        !open.isEmpty
                                    else { continue }
                                    let overlap = walk.pick(open)
                                    let pair = [overlap["task"] ?? .null, overlap["other"]?["ref"] ?? .null]
                                    let resolution = walk.pick(["distinct", "coordinate", "merge", "sequence", "withdraw"])
                                    var params: [String: JSONValue] = ["overlap": overlap["id"] ?? .null, "resolution": .string(resolution)]
                                    switch resolution {
                                    case "coordinate": params["leadAgency"] = .string(walk.pick(agencies))
                                    case "merge": params["survivor"] = walk.pick(pair)
                                    case "sequence":
                                        // Mostly after the other program, as sequencing means; else any period, which is refused when it still overlaps.
                                        if walk.chance(70), case .string(let end)? = overlap["other"]?["period"]?["end"], let last = CalendarDate(iso: end) {
                                            params["task"] = overlap["task"] ?? .null
                                            params["period"] = .object(["start": .string(CalendarDate(last.endOfDayUTC).iso), "end": .string("2031-12-31")])
                                        } else {
                                            params["task"] = walk.pick(pair)
                                            params["period"] = walk.period()
                                        }
                                    case "withdraw": params["task"] = walk.pick(pair)
                                    default: break
                                    }
                                    _ = try await walk.call(coordinator, "overlap.resolve", params)
                                case 6:  // the lead agency edits dates, places or the text (screened when next resubmitted)
                                    guard case .array(let tasks)? = try await walk.call(coordinator, "task.list", ["limit": .integer(500)])["result"]?["items"],
                                        !tasks.isEmpty
                                    else { continue }
                                    let task = walk.pick(tasks)
                                    guard case .string(let agency)? = task["leadAgency"], let lead = liaisons[agency],
                                        let version = try await walk.call(lead, "task.get", ["task": task["ref"] ?? .null])["result"]?["task"]?["version"]
                                    else { continue }
                                    var params: [String: JSONValue] = ["task": task["ref"] ?? .null, "expectedVersion": version]
                                    switch walk.generator.next() % 3 {
                                    case 0: params["period"] = walk.period()
                                    case 1: params["locations"] = walk.places()
                                    default:
                                        params["title"] = .string(walk.pick(["Youth peace committees", "Land registry reform", "Cadastral surveys"]))
                                        params["description"] = .string(
                                            walk.pick(["Local peace committees and dialogue.", "Title deeds and surveys for returnee households."]))
                                    }
                                    _ = try await walk.call(lead, "task.update", params)
                                case 7:  // a coordinator claims the most urgent task of a queue, and may give it back
                                    guard case .array(let queues)? = try await walk.call(coordinator, "queue.list", [:])["result"]?["items"],
                                        !queues.isEmpty
                                    else { continue }
                                    let claimed = try await walk.call(coordinator, "queue.claim", ["queue": walk.pick(queues)["name"] ?? .null, "leaseSeconds": .integer(30)])
                                    if let ref = claimed["result"]?["task"]?["ref"], ref != .null, walk.chance(50) {
                                        _ = try await walk.call(coordinator, "task.release", ["task": ref, "lease": claimed["result"]?["lease"]?["id"] ?? .null])
                                    }
                                default:  // a case is opened for an open overlap, now and then naming the programs' place and years
                                    guard case .array(let open)? = try await walk.call(coordinator, "overlap.list", ["limit": .integer(200)])["result"]?["items"],
                                        !open.isEmpty
                                    else { continue }
                                    var draft: [String: JSONValue] = [
                                        "workflow": .string("deconfliction-case"), "title": .string("How they go on"), "leadAgency": .string("pbso"),
                                        "fields": .object(["overlap": walk.pick(open)["id"] ?? .null]),
                                    ]
                                    if walk.chance(50) {
                                        draft["country"] = .string(walk.pick(["BDI", "SLE"]))
                                        draft["locations"] = walk.places()
                                        draft["sectors"] = walk.sectors()
                                        draft["period"] = walk.period()
                                    }
                                    _ = try await walk.call(coordinator, "task.create", draft)
                                }
                            }
                        }
                    }
                }
            }
        }
        return walk
    }

    /// What must hold after walks, whatever they did: no answer was an
    /// internal error, every acknowledged submission is there, every task is
    /// in the state its last step left it in, no overlap with a program that
    /// ended or a cancelled activity is open, the two rows of a pair agree,
    /// no case is still open on an overlap decided without it, and no overlap
    /// names a task that is no program.
    static func expectWhole(_ server: ServerHarness, after walks: [Walk]) async throws {
        for walk in walks { #expect(walk.internalErrors.isEmpty, "\(walk.internalErrors)") }
        func count(_ sql: String) async throws -> Int {
            try await reading(server) { try await $0.query(PostgresQuery(unsafeSQL: sql)) }.first!.decode(Int.self, at: 0)
        }
        func texts(_ sql: String) async throws -> [String] {
            try await reading(server) { try await $0.query(PostgresQuery(unsafeSQL: sql)) }.map { try $0.decode(String.self, at: 0) }
        }
        let acknowledged = walks.flatMap(\.acknowledged)
        #expect(try await count("SELECT count(*) FROM tasks WHERE ref IN ('\(acknowledged.joined(separator: "', '"))')") == acknowledged.count,
            "an acknowledged submission is missing")
        #expect(try await count("""
            SELECT count(*) FROM tasks t
            WHERE t.state <> (SELECT e.to_state FROM events e WHERE e.task_id = t.id AND e.to_state IS NOT NULL ORDER BY e.seq DESC LIMIT 1)
            """) == 0, "a task is not in the state its last step left it in")
        // Each such pair with the steps of both programs, so that a rare interleaving explains itself.
        let endedButOpen = try await texts("""
            SELECT o.id || ' ' || h.ref || ' (' || h.state || ') ~ ' || o.other_ref || ' (' || coalesce(e.state, 'an activity') || ') detected '
                   || o.detected_at::time || E'\n' || (
                       SELECT string_agg(v.seq || ' ' || v.at::time || ' ' || t.ref || ' ' || v.type
                                         || coalesce(' ' || v.from_state || '>' || v.to_state, '') || ' ' || v.data::text, E'\n' ORDER BY v.seq)
                       FROM events v JOIN tasks t ON t.id = v.task_id WHERE t.id IN (h.id, e.id))
            FROM task_overlaps o JOIN tasks h ON h.id = o.task_id LEFT JOIN tasks e ON e.ref = o.other_ref
            WHERE o.status = 'open' AND (h.state IN ('rejected', 'withdrawn', 'merged') OR e.state IN ('rejected', 'withdrawn', 'merged'))
            """)
        #expect(endedButOpen == [], "an overlap with a program that ended is open")
        #expect(try await count("""
            SELECT count(*) FROM task_overlaps a JOIN tasks ta ON ta.id = a.task_id JOIN tasks tb ON tb.ref = a.other_ref
            JOIN task_overlaps b ON b.task_id = tb.id AND b.other_ref = ta.ref
            WHERE a.status <> b.status OR a.resolution IS DISTINCT FROM b.resolution OR a.score <> b.score OR a.reasons <> b.reasons
            """) == 0, "a pair is decided, or scored, on one side and not on the other")
        #expect(try await count("""
            SELECT count(*) FROM tasks c JOIN task_overlaps o ON o.id::text = lower(c.fields->>'overlap')
            WHERE c.workflow = 'deconfliction-case' AND c.state NOT IN ('distinct', 'coordinate', 'merge', 'sequence', 'withdraw', 'dismissed')
              AND o.status <> 'open'
            """) == 0, "a case is still open on an overlap decided without it")
        // A request is open to every agency while it calls for offers, and only then; the agency designated takes part.
        #expect(try await count("""
            SELECT count(*) FROM tasks
            WHERE open_to_all_agencies IS DISTINCT FROM (workflow = 'assistance-request' AND state = 'offers_open')
            """) == 0, "a task is open to all agencies outside a call for offers, or a call is closed")
        #expect(try await count("""
            SELECT count(*) FROM tasks t
            WHERE t.workflow = 'assistance-request' AND t.fields ? 'designatedAgency' AND t.lead_agency <> t.fields->>'designatedAgency'
              AND NOT EXISTS (SELECT 1 FROM task_participants p WHERE p.task_id = t.id AND p.agency = t.fields->>'designatedAgency')
            """) == 0, "a designated agency does not take part in its request")
        // Of the shipped workflows only pbf-project's tasks are programs; a case that names a place and years is none.
        #expect(try await count("""
            SELECT count(*) FROM task_overlaps o JOIN tasks h ON h.id = o.task_id LEFT JOIN tasks e ON e.ref = o.other_ref
            WHERE h.workflow <> 'pbf-project' OR e.workflow <> 'pbf-project'
            """) == 0, "an overlap names a task that is no program")
        #expect(try await count("""
            SELECT count(*) FROM task_overlaps o
            WHERE o.status = 'open' AND EXISTS (SELECT 1 FROM activities a WHERE a.identifier = o.other_ref)
              AND NOT EXISTS (SELECT 1 FROM portfolio p WHERE p.ref = o.other_ref AND p.active)
            """) == 0, "an overlap with a cancelled activity is open")
        // The candidate rule of docs/overlap.md, with Config/overlap.yaml's tolerance of 90 days.
        #expect(try await count("""
            SELECT count(*) FROM task_overlaps o JOIN portfolio ph ON ph.task_id = o.task_id
            WHERE o.status = 'open'
              AND NOT EXISTS (
                  SELECT 1 FROM portfolio pe
                  WHERE pe.ref = o.other_ref AND pe.active AND pe.country = ph.country
                    AND pe.period && daterange(lower(ph.period) - 90, upper(ph.period) - 1 + 90, '[]')
                    AND (ph.categories && pe.categories OR ph.locations && pe.locations))
            """) == 0, "an overlap of two programs that an edit or an import moved apart is open")
        #expect(try await count("SELECT count(*) FROM task_overlaps WHERE status = 'closed'") > 0, "\(walks.map(\.answers))")
        // Funding schedules a program's reports, its final one among them, and nothing ends that one
        // (closing moves it, ending a program waives only the reports not yet due).
        let funded = try await count("SELECT count(*) FROM tasks WHERE workflow = 'pbf-project' AND fields ? 'firstTransferDate'")
        #expect(try await count("""
            SELECT count(*) FROM tasks t
            WHERE t.workflow = 'pbf-project' AND t.workflow_version >= 5 AND t.fields ? 'firstTransferDate'
              AND NOT EXISTS (SELECT 1 FROM tasks r WHERE r.workflow = 'progress-report' AND r.fields->>'project' = t.ref
                                                     AND r.fields->>'reportType' = 'final')
            """) == 0, "a funded program has no final report (\(funded) funded)")
    }
}

import ArgumentParser
import Foundation
import JSONRPC

/// `key=value`, the value a number, true/false, or text.
func fieldValue(_ text: String) -> JSONValue {
    if let integer = Int64(text) { return .integer(integer) }
    if let number = Double(text) { return .double(number) }
    if text == "true" || text == "false" { return .bool(text == "true") }
    return .string(text)
}

func parseFields(_ pairs: [String]) throws -> [String: JSONValue] {
    var fields: [String: JSONValue] = [:]
    for pair in pairs {
        guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
            throw ValidationError("--field takes NAME=VALUE, not \(pair)")
        }
        fields[String(pair[..<equals])] = fieldValue(String(pair[pair.index(after: equals)...]))
    }
    return fields
}

/// What a listing prints when the server has more than the page it sent:
/// the option that asks for the next page.
func morePages(_ result: JSONValue) -> String? {
    guard let next = result["nextCursor"], next != .null else { return nil }
    return "(more: the same command with --after \(next.text))"
}

/// A score as people compare them, with two decimals, as `pbc overlaps scan` prints them ("0.64", not "0.637").
func scoreText(_ score: JSONValue?) -> String {
    switch score {
    case .double(let value)?: String(format: "%.2f", value)
    case .integer(let value)?: String(format: "%.2f", Double(value))
    default: score?.text ?? ""
    }
}

/// Who agreed to a proposal and who is awaited: "unicef agreed; waiting for undp".
func agreementText(_ agreement: JSONValue) -> String {
    let agreed = agreement["agreed"]?.items?.map(\.text) ?? []
    let awaiting = agreement["awaiting"]?.items?.map(\.text) ?? []
    return [agreed.isEmpty ? "" : "\(agreed.joined(separator: " and ")) agreed", awaiting.isEmpty ? "" : "waiting for \(awaiting.joined(separator: " and "))"]
        .filter { !$0.isEmpty }.joined(separator: "; ")
}

/// An imported activity for people to read: as its publisher reported it,
/// and the period screening meets it over where that is not the one stated.
func describeActivity(_ activity: JSONValue) -> String {
    var lines = ["\(activity["identifier"]?.text ?? "")  \(activity["title"]?.text ?? "")"]
    func add(_ label: String, _ value: String) {
        if !value.isEmpty { lines.append(label.padding(toLength: 11, withPad: " ", startingAt: 0) + value) }
    }
    add("imported", "activity from \(activity["source"]?.text ?? ""), updated \(activity["updatedAt"]?.text ?? "")")
    add("publisher", "\(activity["publisher"]?["name"]?.text ?? "") (\(activity["publisher"]?["id"]?.text ?? ""))")
    let statuses = ["1": "pipeline", "2": "implementation", "3": "finalisation", "4": "closed", "5": "cancelled", "6": "suspended"]
    if let status = activity["status"]?.text, !status.isEmpty { add("status", "\(status) (\(statuses[status] ?? "unknown"))") }
    func shares(_ key: String) -> String {
        (activity[key]?.items ?? []).map { $0["code"]!.text + ($0["percentage"].map { $0 == .null ? "" : " \($0.text)%" } ?? "") }
            .joined(separator: ", ")
    }
    add("countries", shares("countries"))
    add("regions", shares("regions"))
    add("locations", activity["locations"]?.text ?? "")
    add("sectors", activity["sectors"]?.text ?? "")
    let period = activity["period"] ?? .null
    let start = period["start"].flatMap { $0 == .null ? nil : $0.text }
    let end = period["end"].flatMap { $0 == .null ? nil : $0.text }
    add("period", start == nil && end == nil ? "none stated" : "\(start ?? "no start") to \(end ?? "no end")")
    for (index, row) in (activity["screened"]?.items ?? []).enumerated() {
        let span = "\(row["start"]?.text ?? "") to \(row["end"]?.text ?? "")"
        let stated = start != nil && end != nil ? "" : " (the dates it reports; docs/import.md)"
        add(index == 0 ? "screened" : "", "\(row["country"]?.text ?? "") \(span)" + (row["active"] == .bool(false) ? ", cancelled: no candidate" : stated))
    }
    add("budget", (activity["budgets"]?.items ?? []).map { "\($0["amount"]?.text ?? "") \($0["currency"]?.text ?? "")" }.joined(separator: "; "))
    add("with", (activity["participants"]?.items ?? []).map { "\($0["name"].flatMap { $0 == .null ? nil : $0.text } ?? $0["ref"]?.text ?? "") (\($0["role"]?.text ?? ""))" }
        .joined(separator: ", "))
    if let marker = activity["genderMarker"], marker != .null { add("gender", marker.text) }
    if let description = activity["description"]?.text, !description.isEmpty { lines.append("\n" + description) }
    return lines.joined(separator: "\n") + "\n"
}

/// A task for people to read.
func describeTask(_ task: JSONValue) -> String {
    var lines = ["\(task["ref"]?.text ?? "")  \(task["title"]?.text ?? "")"]
    func add(_ label: String, _ value: String) {
        if !value.isEmpty { lines.append(label.padding(toLength: 11, withPad: " ", startingAt: 0) + value) }
    }
    add("state", "\(task["state"]?.text ?? "") (version \(task["version"]?.text ?? ""))")
    add("workflow", "\(task["workflow"]?.text ?? "") v\(task["workflowVersion"]?.text ?? "")")
    add("queue", task["queue"]?.text ?? "")
    add("due", task["dueAt"]?.text ?? "")
    if let holder = task["assignee"], holder != .null {
        let until = holder["leaseExpiresAt"]?.text ?? ""
        add("held by", (holder["name"]?.text ?? "") + (until.isEmpty ? "" : " until \(until)"))
    }
    add("lead", task["leadAgency"]?.text ?? "")
    if case .array(let participants)? = task["participants"] {
        add("with", participants.map { "\($0["agency"]?.text ?? "") (\($0["role"]?.text ?? ""))" }.joined(separator: ", "))
    }
    add("country", task["country"]?.text ?? "")
    add("locations", task["locations"]?.text ?? "")
    add("sectors", task["sectors"]?.text ?? "")
    if let period = task["period"], period != .null { add("period", "\(period["start"]?.text ?? "") to \(period["end"]?.text ?? "")") }
    if let budget = task["budget"], budget != .null { add("budget", "\(budget["amount"]?.text ?? "") \(budget["currency"]?.text ?? "")") }
    if case .object(let fields)? = task["fields"], !fields.isEmpty {
        add("fields", fields.keys.sorted().map { "\($0)=\(fields[$0]!.text)" }.joined(separator: " "))
    }
    // One line each: the other entry, the score, and the id to resolve an open one by, or how it was resolved;
    // and, for an open one the other task's screening found, so: it holds back that task, not this one.
    if case .array(let overlaps)? = task["overlaps"] {
        for (index, overlap) in overlaps.enumerated() {
            let foundBy = overlap["foundBy"]?.text ?? ""
            let state = overlap["status"]?.text == "open"
                ? "open, overlap \(overlap["id"]?.text ?? "")" + (foundBy.isEmpty || foundBy == task["ref"]?.text ? "" : ", found by \(foundBy)")
                : "\(overlap["status"]?.text ?? ""): \(resolutionText(overlap))"
            add(index == 0 ? "overlaps" : "", "\(overlap["other"]?.text ?? "")  score \(scoreText(overlap["score"]))  \(state)")
        }
    }
    // A program's reports, by due date: what is owed and where each stands.
    for (index, report) in (task["reports"]?.items ?? []).enumerated() {
        let type = report["reportType"]?.text ?? ""
        let due = report["dueDate"]?.text ?? ""
        add(index == 0 ? "reports" : "", [report["ref"]?.text ?? "", type, due.isEmpty ? "" : "due \(due)", report["state"]?.text ?? ""]
            .filter { !$0.isEmpty }.joined(separator: "  "))
    }
    if let agreement = task["agreement"], agreement != .null { add("agreement", agreementText(agreement)) }
    // While open to all agencies: what each said in reply (an assistance request's offers), what a coordinator designates from.
    if let replies = task["replies"]?.items {
        if replies.isEmpty { add("replies", "(none yet)") }
        for (index, reply) in replies.enumerated() {
            let when = String((reply["at"]?.text ?? "").prefix(10))
            add(index == 0 ? "replies" : "", "\(reply["agency"]?.text ?? "") \(reply["action"]?.text ?? "") (\(reply["by"]?.text ?? ""), \(when)): \(reply["comment"]?.text ?? "")")
        }
    }
    if let allowed = task["allowedActions"] { add("you may", allowed.text.isEmpty ? "(nothing now)" : allowed.text) }
    // What the role may do in this state but a guard refuses now, and why: what to change first.
    for (index, option) in (task["blockedActions"]?.items ?? []).enumerated() {
        let reasons = option["refusedBy"]?.items?.map { $0["reason"]?.text ?? "" } ?? []
        add(index == 0 ? "not now" : "", "\(option["action"]?.text ?? ""): \(reasons.joined(separator: "; "))")
    }
    return lines.joined(separator: "\n") + "\n"
}

/// How an overlap was resolved, with what that settled: "coordinate (leadAgency undp)";
/// for one closed, which program ended and how: "PBC-2026-000002 was rejected",
/// or which change made it no overlap: "PBC-2026-000002 changed: no longer an overlap".
func resolutionText(_ overlap: JSONValue) -> String {
    if overlap["status"]?.text == "closed" { return closedText(overlap["resolutionData"] ?? .null) }
    let name = overlap["resolution"]?.text ?? ""
    guard case .object(let data)? = overlap["resolutionData"], !data.isEmpty else { return name }
    return name + " (" + data.keys.sorted().map { "\($0) \(data[$0]!.text)" }.joined(separator: ", ") + ")"
}

/// Why an overlap closed, from its resolution data or its `overlap.closed` event.
func closedText(_ data: JSONValue) -> String {
    if let edited = data["edited"]?.text { return "\(edited) changed: no longer an overlap" }
    if let task = data["notProgram"]?.text { return "\(task) is no program (a report, a request or a case): no overlap" }
    return "\(data["ended"]?.text ?? "") was \(data["state"]?.text ?? "")"
}

/// What an event says, in a few words, for `pbc show --history` and `pbc
/// watch`: the overlap and its other entry, how it was resolved, what
/// changed, until when a lease runs; for a step, the action, the states and
/// the fields it set; then the comment.
func eventSummary(_ event: JSONValue) -> String {
    let data = event["data"] ?? .null
    func value(_ key: String) -> String { data[key]?.text ?? "" }
    var words: [String] = []
    switch event["type"]?.text {
    case "overlap.detected":
        words = ["with \(value("other")), score \(scoreText(data["score"]))"]
    case "overlap.resolved":
        words = ["\(value("resolution")) with \(value("other"))"]
        if !value("leadAgency").isEmpty { words.append("(\(value("leadAgency")) leads)") }
        if !value("survivor").isEmpty { words.append("(\(value("survivor")) absorbs \(value("absorbed")))") }
        if !value("period").isEmpty { words.append("(\(value("task")) moves to \(value("period")))") }
        if value("resolution") == "withdraw" { words.append("(\(value("task")) withdrawn)") }
    case "overlap.closed":
        words = ["with \(value("other")) (\(closedText(data)))"]
    case "task.updated":
        words = ["changed \(value("changed"))"]
    case "task.claimed", "task.lease_renewed":
        words = ["until \(value("leaseExpiresAt"))"]
    case "task.assigned":
        words = ["to \(value("assignee"))"]
    case "task.released":
        words = ["by \(value("holder"))"]
    case "sla.breached":
        words = value("escalatedTo").isEmpty ? ["priority \(value("priorityFrom")) → \(value("priorityTo"))"] : ["escalated to \(value("escalatedTo"))"]
    default:
        if let action = event["action"]?.text, !action.isEmpty { words.append(action) }
        if let to = event["to"]?.text, !to.isEmpty {
            let from = event["from"]?.text ?? ""
            words.append(from.isEmpty ? "→ \(to)" : "\(from) → \(to)")
        }
        if case .object(let fields) = data, !fields.isEmpty {
            words.append(fields.keys.sorted().map { "\($0)=\(fields[$0]!.text)" }.joined(separator: " "))
        }
    }
    if let comment = event["comment"]?.text, !comment.isEmpty { words.append("“\(comment)”") }
    return words.joined(separator: " ")
}

/// The details of a task that `pbc submit` sets and `pbc edit` changes.
/// `--participant AGENCY:ROLE` as the protocol takes it.
func parseParticipant(_ text: String) throws -> JSONValue {
    let parts = text.split(separator: ":")
    guard parts.count == 2 else { throw ValidationError("--participant takes AGENCY:ROLE, not \(text)") }
    return .object(["agency": .string(String(parts[0])), "role": .string(String(parts[1]))])
}

struct TaskDetails: ParsableArguments {
    @Option(help: "At most 500 characters.") var title: String?
    @Option(help: "What the task does, where and for whom; screening compares it with other programs' (at most 20,000 characters).") var description: String?
    @Option(name: .customLong("participant"), help: "AGENCY:ROLE (funding, implementing, accountable); repeat for more.") var participants: [String] = []
    @Option(help: "ISO 3166 alpha-3 or alpha-2 code, such as BDI or BI.") var country: String?
    @Option(name: .customLong("location"), help: "Repeat for more.") var locations: [String] = []
    @Option(name: .customLong("sector"), help: "A 5-digit purpose code; repeat for more.") var sectors: [String] = []
    @Option(help: "Start of the period, YYYY-MM-DD.") var start: String?
    @Option(help: "End of the period, YYYY-MM-DD.") var end: String?
    // Unconditional, so that a negative amount reaches the server and is refused
    // for what it is, not taken for an option ("missing value for --budget").
    @Option(parsing: .unconditional, help: "The amount, such as 1500000.00.") var budget: String?
    @Option(help: "ISO 4217 code of the budget (default: USD for a new task, the task's own for an edit).") var currency: String?
    @Option(help: "low, normal, high or urgent.") var priority: String?

    var isEmpty: Bool {
        title == nil && description == nil && participants.isEmpty && country == nil && locations.isEmpty && sectors.isEmpty && start == nil
            && end == nil && budget == nil && priority == nil
    }

    func validate() throws {
        if (start == nil) != (end == nil) { throw ValidationError("--start and --end go together") }
        if currency != nil, budget == nil { throw ValidationError("--currency goes with --budget") }
    }

    /// Sets on `params` what was given; a budget without --currency is in `currency`.
    func apply(to params: inout [String: JSONValue], currency defaultCurrency: String) throws {
        if let title { params["title"] = .string(title) }
        if let description { params["description"] = .string(description) }
        if !participants.isEmpty { params["participants"] = .array(try participants.map(parseParticipant)) }
        if let country { params["country"] = .string(country) }
        if !locations.isEmpty { params["locations"] = .array(locations.map(JSONValue.string)) }
        if !sectors.isEmpty { params["sectors"] = .array(sectors.map(JSONValue.string)) }
        if let start, let end { params["period"] = .object(["start": .string(start), "end": .string(end)]) }
        if let budget { params["budget"] = .object(["amount": .string(budget), "currency": .string(currency ?? defaultCurrency)]) }
        if let priority { params["priority"] = .string(priority) }
    }
}

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create and submit a task; it is screened and routed at once.")

    @OptionGroup var client: ClientOptions
    @Option(help: "A JSON file with the task's parameters (flags given too take precedence).") var file: String?
    @Option(help: "The workflow (default: pbf-project).") var workflow: String?
    @Option(name: .customLong("lead-agency"), help: "The agency that leads the task (default for a liaison: their own).") var leadAgency: String?
    @OptionGroup var details: TaskDetails
    @Option(name: .customLong("field"), help: "A workflow field, NAME=VALUE; repeat for more.") var fields: [String] = []
    @Option(name: .customLong("idempotency-key"), help: "Makes a retry safe (default: a new one each run).") var idempotencyKey: String?

    func params() throws -> [String: JSONValue] {
        var params: [String: JSONValue] = [:]
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else { throw ClientError(exitCode: 2, message: "cannot read \(file)") }
            guard case .object(let object) = try? JSONValue.parse(String(decoding: data, as: UTF8.self)) else {
                throw ClientError(exitCode: 2, message: "\(file) must hold a JSON object of task parameters")
            }
            params = object
        }
        if let workflow { params["workflow"] = .string(workflow) }
        if params["workflow"] == nil { params["workflow"] = .string("pbf-project") }
        if let leadAgency { params["leadAgency"] = .string(leadAgency) }
        try details.apply(to: &params, currency: "USD")
        if !fields.isEmpty {
            var merged: [String: JSONValue] = [:]
            if case .object(let existing)? = params["fields"] { merged = existing }
            merged.merge(try parseFields(fields)) { _, new in new }
            params["fields"] = .object(merged)
        }
        params["idempotencyKey"] = .string(idempotencyKey ?? UUID().uuidString.lowercased())
        return params
    }

    func run() async throws {
        let params: [String: JSONValue]
        do {
            params = try self.params()
        } catch let error as ClientError {
            throw ClientOptions.fail(error)  // a file that cannot be used, before any connection
        }
        try await client.withSession { rpc in
            let result: JSONValue
            do {
                result = try await rpc.call("task.submit", params)
            } catch let error as RPCError where error.code == .actionNotAllowed {
                // Creation and submission are one transaction: nothing was kept.
                throw ClientError(
                    exitCode: ClientOptions.exitCode(for: error.code),
                    message: "\(error.message); nothing was created: submit again with what it asks for (workflow fields go with --field NAME=VALUE)")
            }
            if client.json { return try ClientOptions.printJSON(result) }
            // Shown as `pbc show` shows it, with what the submitter may do next;
            // if that read fails, as the submission's answer has it (the overlaps come beside the task).
            guard case .object(var task)? = result["task"] else { return }
            task["overlaps"] = result["overlaps"]
            let shown = try? await rpc.call("task.get", ["task": task["ref"] ?? .null])["task"]
            var text = describeTask(shown ?? .object(task))
            if result["replayed"] == .bool(true) { text += "(already submitted with this key: nothing new was created)\n" }
            print(text, terminator: "")
        }
    }
}

struct Edit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Change a task's details; a change of dates, country, sectors or locations is screened again.",
        discussion: "A repeated option (--location, --sector, --participant) gives the whole new list.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "The task's ref or id.") var task: String
    @OptionGroup var details: TaskDetails
    @Option(name: .customLong("expected-version"), help: "Refuse if the task changed since this version (default: the version just read).") var expectedVersion: Int?

    func validate() throws {
        if details.isEmpty { throw ValidationError("name at least one detail to change, such as --title, --start and --end, or --location") }
    }

    func run() async throws {
        try await client.withSession { rpc in
            let current = try await rpc.call("task.get", ["task": .string(task)])["task"] ?? .null
            var params: [String: JSONValue] = [
                "task": .string(task), "expectedVersion": expectedVersion.map { .integer(Int64($0)) } ?? current["version"] ?? .integer(0),
            ]
            try details.apply(to: &params, currency: current["budget"]?["currency"]?.text ?? "USD")
            let result = try await rpc.call("task.update", params)
            if client.json { return try ClientOptions.printJSON(result) }
            // Read again: what a new screening found shows with the task, as in pbc show.
            print(describeTask(try await rpc.call("task.get", ["task": .string(task)])["task"] ?? .null), terminator: "")
        }
    }
}

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a task, what you may do with it, and its history; or an imported activity an overlap names.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "The task's ref or id, or an imported activity's identifier.") var task: String
    @Flag(help: "Also print the task's history.") var history = false

    func run() async throws {
        try await client.withSession { rpc in
            let result: JSONValue
            do {
                result = try await rpc.call("task.get", ["task": .string(task)])
            } catch let error as RPCError where error.code == .notFound && !history {
                // An overlap names imported activities by their identifier: show one as a task is shown.
                let found: JSONValue
                do {
                    found = try await rpc.call("activity.get", ["identifier": .string(task)])
                } catch let missing as RPCError where missing.code == .notFound {
                    throw ClientError(exitCode: ClientOptions.exitCode(for: .notFound), message: "no task or imported activity \(task)")
                }
                if client.json { return try ClientOptions.printJSON(found) }
                return print((found["activities"]?.items ?? []).map(describeActivity).joined(separator: "\n"), terminator: "")
            }
            // The whole history, a page at a time: it is the audit trail, and a
            // task with hundreds of overlaps has thousands of events.
            var events: [JSONValue]?
            if history {
                var page: [String: JSONValue] = ["task": .string(task), "limit": .integer(1000)]
                events = []
                while true {
                    let answer = try await rpc.call("task.history", page)
                    if case .array(let items)? = answer["items"] { events! += items }
                    guard let next = answer["nextCursor"], next != .null else { break }
                    page["cursor"] = next
                }
            }
            if client.json {
                return try ClientOptions.printJSON(.object(["task": result["task"] ?? .null, "history": events.map(JSONValue.array) ?? .null]))
            }
            print(describeTask(result["task"] ?? .null), terminator: "")
            if let items = events {
                let rows = items.map { event in
                    [event["seq"]?.text ?? "", event["at"]?.text.prefix(19).description ?? "", event["actor"]?.text ?? "",
                     event["type"]?.text ?? "", eventSummary(event)]
                }
                print("\n" + table(["SEQ", "AT", "ACTOR", "EVENT", "DETAIL"], rows), terminator: "")
            }
        }
    }
}

struct Tasks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the tasks you can see, filtered.")

    @OptionGroup var client: ClientOptions
    @Option(help: "A workflow state, such as technical_review.") var state: String?
    @Option(help: "A workflow, such as pbf-project.") var workflow: String?
    @Option(help: "ISO 3166 alpha-3 or alpha-2 code.") var country: String?
    @Option(help: "A 5-digit purpose code, or a 3-digit category (152: conflict, peace and security) for every code in it.") var sector: String?
    @Option(help: "Lead or participating agency.") var agency: String?
    @Option(help: "The queue the task waits in.") var queue: String?
    @Option(help: "Text in the title or description.") var text: String?
    @Option(help: "At most this many (1 to 500).") var limit = 50
    @Option(help: "The next page: what the page before printed to continue with.") var after: String?

    func run() async throws {
        var params: [String: JSONValue] = ["limit": .integer(Int64(limit))]
        for (key, value) in [("state", state), ("workflow", workflow), ("country", country), ("sector", sector), ("agency", agency), ("queue", queue), ("text", text), ("cursor", after)] {
            if let value { params[key] = .string(value) }
        }
        try await client.withSession { rpc in
            let result = try await rpc.call("task.list", params)
            if client.json { return try ClientOptions.printJSON(result) }
            guard case .array(let items)? = result["items"] else { return }
            // A header over nothing reads as a broken listing.
            if items.isEmpty, after == nil {
                let filtered = [state, workflow, country, sector, agency, queue, text].contains { $0 != nil }
                return print(filtered ? "no tasks match" : "no tasks")
            }
            // When each is due where it waits (a report by the end of its due date, a review by its deadline), as pbc queue tasks shows it.
            let rows = items.map { task in
                [task["ref"]?.text ?? "", task["state"]?.text ?? "", task["queue"]?.text ?? "", task["dueAt"]?.text.prefix(16).description ?? "",
                 task["leadAgency"]?.text ?? "", task["country"]?.text ?? "", task["title"]?.text ?? ""]
            }
            print(table(["REF", "STATE", "QUEUE", "DUE", "LEAD", "COUNTRY", "TITLE"], rows), terminator: "")
            if let more = morePages(result) { print(more) }
        }
    }
}

struct Act: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Take a workflow action on a task.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "The task's ref or id.") var task: String
    @Argument(help: "The action, such as recommend.") var action: String
    @Option(name: .customLong("expected-version"), help: "Refuse if the task changed since this version (default: the version just read).") var expectedVersion: Int?
    @Option(help: "Why; some actions require one.") var comment: String?
    @Option(name: .customLong("field"), help: "A field the action sets, NAME=VALUE; repeat for more.") var fields: [String] = []

    func run() async throws {
        let fields = try parseFields(fields)
        try await client.withSession { rpc in
            var version = expectedVersion.map(Int64.init)
            if version == nil, case .integer(let current)? = try await rpc.call("task.get", ["task": .string(task)])["task"]?["version"] {
                version = current
            }
            var params: [String: JSONValue] = ["task": .string(task), "action": .string(action), "expectedVersion": .integer(version ?? 0)]
            if let comment { params["comment"] = .string(comment) }
            if !fields.isEmpty { params["fields"] = .object(fields) }
            let result: JSONValue
            do {
                result = try await rpc.call("task.act", params)
            } catch let error as RPCError where error.code == .actionNotAllowed && error.data?["allowedActions"]?.items?.contains(.string(action)) == true {
                // The action is open to the caller now: only what came with it fell short.
                throw ClientError(
                    exitCode: ClientOptions.exitCode(for: error.code),
                    message: "\(error.message); \(action) is open to you with what it asks for (fields go with --field NAME=VALUE, a comment with --comment)")
            }
            if client.json { return try ClientOptions.printJSON(result) }
            let task = result["task"] ?? .null
            print("\(task["ref"]?.text ?? "") is now \(task["state"]?.text ?? "") (version \(task["version"]?.text ?? ""))"
                + (task["queue"]?.text.isEmpty == false ? ", in queue \(task["queue"]!.text)" : "")
                + (task["agreement"].map { $0 == .null ? "" : "; \(agreementText($0))" } ?? ""))
        }
    }
}

struct Comment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Add a comment to a task's history.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "The task's ref or id.") var task: String
    @Argument(help: "The comment.") var text: String

    func run() async throws {
        try await client.withSession { rpc in
            let result = try await rpc.call("task.comment", ["task": .string(task), "comment": .string(text)])
            if client.json { return try ClientOptions.printJSON(result) }
            print("comment \(result["event"]?["seq"]?.text ?? "") added")
        }
    }
}

struct Report: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Who does what where: counts and budgets by country, sector and agency.")

    @OptionGroup var client: ClientOptions
    @Option(help: "Only this country.") var country: String?
    @Option(help: "Entries whose period reaches this date or later (YYYY-MM-DD).") var from: String?
    @Option(help: "Entries whose period starts by this date (YYYY-MM-DD).") var to: String?
    @Option(help: "A task state or an IATI activity status code.") var status: String?
    @Flag(help: "Print CSV instead of a table.") var csv = false

    func run() async throws {
        var params: [String: JSONValue] = [:]
        for (key, value) in [("country", country), ("from", from), ("to", to), ("status", status)] {
            if let value { params[key] = .string(value) }
        }
        try await client.withSession { rpc in
            let result = try await rpc.call("report.whoWhatWhere", params)
            if client.json { return try ClientOptions.printJSON(result) }
            guard case .array(let items)? = result["items"] else { return }
            let budgets = items.map { item -> [String: String] in
                guard case .array(let list)? = item["budgets"] else { return [:] }
                return Dictionary(list.map { ($0["currency"]?.text ?? "", $0["amount"]?.text ?? "") }, uniquingKeysWith: { first, _ in first })
            }
            let keys = items.map { item in
                [item["country"]?.text ?? "", item["sector"]?.text ?? "", item["agency"]?.text ?? "", item["entries"]?.text ?? ""]
            }
            let names = items.map { $0["agencyName"]?.text ?? "" }
            if csv {
                // A column of plain amounts per currency, so that a spreadsheet can sum them.
                let currencies = Set(budgets.flatMap(\.keys)).sorted()
                func field(_ text: String) -> String {
                    text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
                }
                print((["country", "sector", "agency", "entries"] + currencies + ["agency_name"]).map(field).joined(separator: ","))
                for index in items.indices {
                    print((keys[index] + currencies.map { budgets[index][$0] ?? "" } + [names[index]]).map(field).joined(separator: ","))
                }
            } else if items.isEmpty {
                // A spreadsheet wants its header whatever comes; a person wants to be told.
                print("nothing to report: no program or activity" + (country.map { " in \($0)" } ?? "") + " matches")
            } else {
                // The agency's name last: it is the longest, and an imported publisher's id says little.
                let rows = items.indices.map { index in
                    keys[index] + [budgets[index].keys.sorted().map { "\(budgets[index][$0]!) \($0)" }.joined(separator: "; "), names[index]]
                }
                print(table(["COUNTRY", "SECTOR", "AGENCY", "ENTRIES", "BUDGET", "NAME"], rows), terminator: "")
            }
        }
    }
}

import ArgumentParser
import Foundation
import JSONRPC

/// How long ago, for people: 3d 4h, 2h 5m, 40s.
func age(seconds: Int64) -> String {
    let (days, hours, minutes) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60)
    if days > 0 { return "\(days)d \(hours)h" }
    if hours > 0 { return "\(hours)h \(minutes)m" }
    if minutes > 0 { return "\(minutes)m" }
    return "\(seconds)s"
}

struct QueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue", abstract: "The queues you work: what waits, and the next task to take.", subcommands: [List.self, Tasks.self, Claim.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "Your queues: depth, claimed, oldest, breached, due within a day.")
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await client.withSession { rpc in
                let result = try await rpc.call("queue.list", ["limit": .integer(1000)])
                if client.json { return try ClientOptions.printJSON(result) }
                guard case .array(let items)? = result["items"] else { return }
                let rows = items.map { queue -> [String] in
                    var oldest = ""
                    if case .integer(let seconds)? = queue["oldestAgeSeconds"] { oldest = age(seconds: seconds) }
                    return [queue["name"]?.text ?? "", queue["depth"]?.text ?? "", queue["claimed"]?.text ?? "", oldest,
                            queue["breached"]?.text ?? "", queue["dueSoon"]?.text ?? ""]
                }
                if rows.isEmpty {
                    print("you are a member of no queue; an admin adds you with pbc admin queue add-member")
                } else {
                    print(table(["QUEUE", "DEPTH", "CLAIMED", "OLDEST", "BREACHED", "DUE SOON"], rows), terminator: "")
                }
            }
        }
    }

    struct Tasks: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A queue's tasks, most urgent first.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The queue.") var queue: String
        @Option(help: "At most this many (1 to 500).") var limit = 50
        @Option(help: "The next page: what the page before printed to continue with.") var after: String?

        func run() async throws {
            try await client.withSession { rpc in
                var params: [String: JSONValue] = ["queue": .string(queue), "limit": .integer(Int64(limit))]
                if let after { params["cursor"] = .string(after) }
                let result = try await rpc.call("queue.tasks", params)
                if client.json { return try ClientOptions.printJSON(result) }
                guard case .array(let items)? = result["items"] else { return }
                // A header over nothing reads as a broken listing.
                if items.isEmpty, after == nil { return print("nothing waits in \(queue)") }
                let rows = items.map { task in
                    [task["ref"]?.text ?? "", task["priority"]?.text ?? "", task["dueAt"]?.text.prefix(16).description ?? "",
                     task["assignee"]?["name"]?.text ?? "", task["state"]?.text ?? "", task["title"]?.text ?? ""]
                }
                print(table(["REF", "PRIORITY", "DUE", "HELD BY", "STATE", "TITLE"], rows), terminator: "")
                if let more = morePages(result) { print(more) }
            }
        }
    }

    struct Claim: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take the most urgent task no one holds, under a lease.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The queue.") var queue: String
        @Option(help: "Lease length in seconds (default: the server's, 15 minutes unless configured).") var lease: Int?

        func run() async throws {
            try await client.withSession { rpc in
                var params: [String: JSONValue] = ["queue": .string(queue)]
                if let lease { params["leaseSeconds"] = .integer(Int64(lease)) }
                let result = try await rpc.call("queue.claim", params)
                if client.json { return try ClientOptions.printJSON(result) }
                guard let task = result["task"], task != .null else {
                    print("nothing to claim in \(queue)")
                    return
                }
                // Shown as `pbc show` shows it: its overlaps, its reports and what the claimant may do now.
                let shown = try await rpc.call("task.get", ["task": task["ref"] ?? .null])["task"] ?? task
                print(describeTask(shown), terminator: "")
                print("lease      \(result["lease"]?["id"]?.text ?? "") until \(result["lease"]?["expiresAt"]?.text ?? "")")
            }
        }
    }
}

struct Assign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Hand a task to a person, or move all of one person's tasks (coordinators).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The task's ref or id (omit with --from).") var task: String?
    @Option(help: "Who gets it: a principal's name or id. With --from and no --to, the tasks go back to their queues.") var to: String?
    @Option(help: "Move every task this person holds.") var from: String?

    func validate() throws {
        if (task == nil) == (from == nil) { throw ValidationError("give a task, or --from PERSON, not both") }
        if task != nil, to == nil { throw ValidationError("--to says who gets the task") }
    }

    func run() async throws {
        var params: [String: JSONValue] = [:]
        if let task { params["task"] = .string(task) }
        if let from { params["from"] = .string(from) }
        if let to { params["to"] = .string(to) }
        try await client.withSession { rpc in
            let result = try await rpc.call("task.assign", params)
            if client.json { return try ClientOptions.printJSON(result) }
            if case .array(let moved)? = result["moved"] {
                print(moved.isEmpty ? "\(from ?? "") holds no tasks" : "moved \(moved.count): \(moved.map(\.text).joined(separator: ", "))")
            } else {
                print("\(result["task"]?["ref"]?.text ?? "") is held by \(result["task"]?["assignee"]?["name"]?.text ?? "")")
            }
        }
    }
}

struct Release: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Give a task you hold back to its queue.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The task's ref or id.") var task: String

    func run() async throws {
        try await client.withSession { rpc in
            let result = try await rpc.call("task.release", ["task": .string(task)])
            if client.json { return try ClientOptions.printJSON(result) }
            print("\(result["task"]?["ref"]?.text ?? "") is back in \(result["task"]?["queue"]?.text ?? "its queue")")
        }
    }
}

/// `pbc watch`: events as they come; after a lost connection it reconnects
/// and resumes after the last event it printed.
struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print events as they happen; reconnects and resumes after the last one seen.")
    @OptionGroup var client: ClientOptions
    @Option(name: .customLong("queue"), help: "Only this queue; repeat for more.") var queues: [String] = []
    @Option(name: .customLong("task"), help: "Only this task; repeat for more.") var tasks: [String] = []
    @Option(name: .customLong("country"), help: "Only this country; repeat for more.") var countries: [String] = []
    @Option(name: .customLong("agency"), help: "Only tasks this agency leads or takes part in; repeat for more.") var agencies: [String] = []
    @Option(name: .customLong("type"), help: "Only this event type, such as sla.breached; repeat for more.") var types: [String] = []
    @Option(help: "Start after this seq (replaying what came since); default: from now.") var since: Int?
    @Option(help: "Stop after this many events.") var count: Int?

    func run() async throws {
        var filter: [String: JSONValue] = [:]
        for (key, values) in [("queues", queues), ("tasks", tasks), ("countries", countries), ("agencies", agencies), ("types", types)]
        where !values.isEmpty {
            filter[key] = .array(values.map(JSONValue.string))
        }
        var last = since
        var printed = 0
        var backoff = 1
        while true {
            do {
                try await client.withSession(quietConnectionErrors: true) { rpc in
                    var params = filter
                    if let last { params["since"] = .integer(Int64(last)) }
                    let subscribed = try await rpc.call("event.subscribe", params)
                    if last == nil, case .integer(let after)? = subscribed["after"] { last = Int(after) }
                    backoff = 1
                    while let incoming = try await rpc.next() {
                        switch incoming {
                        case .notification(method: "event", let params):
                            let event = params["event"] ?? .null
                            // Straight to the file descriptor: a pipe reader sees each event as it comes.
                            let text = client.json ? try ClientOptions.jsonLine(event) : line(event)
                            FileHandle.standardOutput.write(Data((text + "\n").utf8))
                            if case .integer(let seq)? = event["seq"] { last = Int(seq) }
                            printed += 1
                            if let count, printed >= count { return }
                        case .notification:
                            continue
                        case .error(let error):
                            throw error
                        }
                    }
                    throw RPCClient.ConnectionError(description: "pbc closed the connection")
                }
                return
            } catch let error as RPCClient.ConnectionError {
                // Lost or refused: try again, resuming after the last event printed.
                FileHandle.standardError.write(Data("pbc: \(error.description); reconnecting in \(backoff)s\n".utf8))
            } catch let error as RPCError where error.code == .subscriberTooSlow || error.code == .unavailable {
                FileHandle.standardError.write(Data("pbc: \(error.message); reconnecting in \(backoff)s\n".utf8))
            }
            try await Task.sleep(for: .seconds(backoff))
            backoff = min(backoff * 2, 30)
        }
    }

    /// One line: seq, time, task, type, actor, and what the event says.
    func line(_ event: JSONValue) -> String {
        [event["seq"]?.text ?? "", event["at"]?.text.prefix(19).description ?? "", event["task"]?.text ?? "-",
         event["type"]?.text ?? "", event["actor"]?.text ?? "", eventSummary(event)]
            .filter { !$0.isEmpty }.joined(separator: "  ")
    }
}

import ArgumentParser
import Coordination
import Foundation
import JSONRPC
import Server
import Store

struct OverlapsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overlaps", abstract: "Overlaps across the portfolio.", subcommands: [List.self, Check.self, Scan.self],
        defaultSubcommand: List.self)

    /// The other entry of an overlap and the reasons, as `ls` and `check` print them under its heading line.
    static func printDetails(of item: JSONValue) {
        let other = item["other"] ?? .null
        // Its period too: a coordinator settles an overlap by sequencing as often as by anything.
        let period = other["period"].map { "\($0["start"]?.text ?? "") to \($0["end"]?.text ?? "")" } ?? ""
        // The lead agency by name: an imported publisher's id (us-ein-300108263) says little to a reader.
        let lead = other["leadAgencyName"]?.text ?? other["leadAgency"]?.text ?? ""
        print("    \(other["title"]?.text ?? "") [\(lead), \(other["country"]?.text ?? ""), \(period)]")
        if case .array(let reasons)? = item["reasons"] { for reason in reasons { print("    - \(reason.text)") } }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What a draft would overlap with, before it is submitted: screening as a submission runs it, storing nothing.")

        @OptionGroup var client: ClientOptions
        @Option(help: "At most 500 characters.") var title: String
        @Option(help: "What the program does, where and for whom; screening compares it with other programs'.") var description: String?
        @Option(name: .customLong("lead-agency"), help: "The agency that would lead it (default for a liaison: their own).") var leadAgency: String?
        @Option(name: .customLong("participant"), help: "AGENCY:ROLE (funding, implementing, accountable); repeat for more.")
        var participants: [String] = []
        @Option(help: "ISO 3166 alpha-3 or alpha-2 code, such as BDI or BI.") var country: String
        @Option(name: .customLong("location"), help: "Repeat for more.") var locations: [String] = []
        @Option(name: .customLong("sector"), help: "A 5-digit purpose code; repeat for more.") var sectors: [String] = []
        @Option(help: "Start of the period, YYYY-MM-DD.") var start: String
        @Option(help: "End of the period, YYYY-MM-DD.") var end: String

        func run() async throws {
            var params: [String: JSONValue] = [
                "title": .string(title), "country": .string(country), "period": .object(["start": .string(start), "end": .string(end)]),
            ]
            if let description { params["description"] = .string(description) }
            if let leadAgency { params["leadAgency"] = .string(leadAgency) }
            if !participants.isEmpty { params["participants"] = .array(try participants.map(parseParticipant)) }
            if !locations.isEmpty { params["locations"] = .array(locations.map(JSONValue.string)) }
            if !sectors.isEmpty { params["sectors"] = .array(sectors.map(JSONValue.string)) }
            try await client.withSession { rpc in
                let result = try await rpc.call("overlap.check", params)
                if client.json { return try ClientOptions.printJSON(result) }
                guard case .array(let items)? = result["overlaps"], !items.isEmpty else {
                    return print("no overlap: a submission now would find none")
                }
                print("\(items.count == 1 ? "1 overlap" : "\(items.count) overlaps"), as a submission now would find them:")
                for item in items {
                    print("\(item["other"]?["ref"]?.text ?? "")  score \(scoreText(item["score"]))")
                    OverlapsCommand.printDetails(of: item)
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls", abstract: "Overlaps of the tasks you can see (open ones unless --status says otherwise).")

        @OptionGroup var client: ClientOptions
        @Option(help: "Only this task's overlaps, or those tasks have with this imported activity (its identifier).") var task: String?
        @Option(help: "open (the default), resolved, or closed (one of the programs ended first).") var status: String?
        @Option(help: "At most this many (1 to 500; default 100).") var limit: Int?
        @Option(help: "The next page: what the page before printed to continue with.") var after: String?

        func run() async throws {
            var params: [String: JSONValue] = [:]
            if let task { params["task"] = .string(task) }
            if let status { params["status"] = .string(status) }
            if let limit { params["limit"] = .integer(Int64(limit)) }
            if let after { params["cursor"] = .string(after) }
            try await client.withSession { rpc in
                let result = try await rpc.call("overlap.list", params)
                if client.json { return try ClientOptions.printJSON(result) }
                guard case .array(let items)? = result["items"] else { return }
                if items.isEmpty { return print("no \(status ?? "open") overlaps") }
                for item in items {
                    let other = item["other"] ?? .null
                    // Open and found by the other task's screening: it holds back that task, not this one.
                    let foundBy = item["foundBy"]?.text ?? ""
                    print("\(item["id"]?.text ?? "")  \(item["task"]?.text ?? "") ~ \(other["ref"]?.text ?? "")  score \(scoreText(item["score"]))"
                        + (item["status"]?.text == "open"
                            ? (foundBy.isEmpty || foundBy == item["task"]?.text ? "" : "  found by \(foundBy)")
                            : "  \(item["status"]?.text ?? ""): \(resolutionText(item))"))
                    OverlapsCommand.printDetails(of: item)
                }
                if let more = morePages(result) { print(more) }
            }
        }
    }

    struct Scan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Screen the whole portfolio against itself (for imported data) and report the clusters of overlapping entries.")

        @OptionGroup var options: ServerOptions
        @Option(help: "Only this country (ISO alpha-3 or alpha-2).") var country: String?
        @Option(
            name: .customLong("min-score"),
            help: "Report only overlaps scoring at least this, from Config/overlap.yaml's threshold to 1. In a dense portfolio nearly everything is linked into one cluster; a higher score splits it into the likeliest duplicates.")
        var minScore: Double?
        @Flag(help: "Print JSON for scripts.") var json = false

        func validate() throws {
            if let minScore, !(0...1).contains(minScore) { throw ValidationError("--min-score must be between 0 and 1") }
        }

        func run() async throws {
            let (country, json, minScore) = (country, json, minScore)
            try await withPreparedPool(options, reading: { application in
                var overlap = try application.loadOverlapConfiguration()
                if let minScore {
                    // Under the threshold nothing is an overlap, so there is nothing more to report.
                    guard minScore >= overlap.threshold else {
                        throw ValidationError("--min-score \(minScore) is below the threshold of overlap.yaml (\(overlap.threshold)), under which nothing is an overlap")
                    }
                    overlap.threshold = minScore
                }
                return overlap
            }) { pool, _, overlap in
                // Each cluster and overlap is printed as it comes: a portfolio's overlaps may run to millions.
                var output = json ? ScanOutput.json() : ScanOutput.text()
                let bar = ProgressBar()
                defer { bar.finish() }
                let totals = try await PortfolioScan(pool: pool, configuration: overlap).scan(country: country) { done, total in
                    bar.show("scanning", fraction: total > 0 ? Double(done) / Double(total) : 1, count: done, unit: "of \(total) entries")
                } cluster: { cluster in
                    bar.finish()
                    try output.cluster(cluster)
                } overlap: { pair in
                    try output.overlap(pair)
                }
                try output.end(totals)
            }
        }
    }
}

/// How `pbc overlaps scan` prints clusters as the scan hands them on: text
/// for people, ending with the whole, or one JSON document,
/// `{"clusters": [{"country", "members": [...], "overlaps": [{"a", "b", "score", "reasons"}]}]}`,
/// written piece by piece as `ClientOptions.printJSON` would write it whole.
struct ScanOutput {
    private let json: Bool
    private var clusters = 0
    private var overlapsInCluster = 0

    static func text() -> ScanOutput { ScanOutput(json: false) }
    static func json() -> ScanOutput { ScanOutput(json: true) }

    mutating func cluster(_ cluster: PortfolioScan.Cluster) throws {
        clusters += 1
        overlapsInCluster = 0
        guard json else {
            if clusters > 1 { print("") }
            print("cluster \(clusters): \(cluster.country), \(Self.counted(cluster.members.count, "entry", "entries")), "
                + Self.counted(cluster.overlaps, "overlap", "overlaps"))
            for member in cluster.members {
                // The agency by name: an imported publisher's id (us-ein-300108263) says little to a reader.
                print("  \(member.ref)  [\(member.agencyName)] \(member.title)")
            }
            return
        }
        let heading = try ClientOptions.prettyJSON(.object([
            "country": .string(cluster.country),
            "members": .array(cluster.members.map {
                .object([
                    "ref": .string($0.ref), "title": .string($0.title), "agency": .string($0.agency), "agencyName": .string($0.agencyName),
                    "kind": .string($0.kind),
                ])
            }),
        ]))
        // The heading without its closing brace; "overlaps" sorts after "country" and "members".
        print((clusters == 1 ? "{\n  \"clusters\" : [\n" : "\n      ]\n    },\n") + Self.indented(String(heading.dropLast(2)), by: 4) + ",\n      \"overlaps\" : [")
    }

    mutating func overlap(_ pair: PortfolioScan.Pair) throws {
        overlapsInCluster += 1
        guard json else {
            print("  \(pair.first) ~ \(pair.second)  score \(String(format: "%.2f", pair.score))")
            for reason in pair.reasons { print("      \(reason)") }
            return
        }
        let item = try ClientOptions.prettyJSON(.object([
            "a": .string(pair.first), "b": .string(pair.second), "score": .double(pair.score), "reasons": .array(pair.reasons.map(JSONValue.string)),
        ]))
        print((overlapsInCluster == 1 ? "" : ",\n") + Self.indented(item, by: 8), terminator: "")
    }

    func end(_ totals: PortfolioScan.Totals) throws {
        guard json else {
            if clusters == 0 { return print("no overlaps found") }
            // The whole at the end, where a long report leaves the reader.
            return print("\n\(Self.counted(totals.clusters, "cluster", "clusters")): \(Self.counted(totals.overlaps, "overlap", "overlaps")) "
                + "among \(Self.counted(totals.entries, "entry", "entries"))")
        }
        if clusters == 0 { return try ClientOptions.printJSON(.object(["clusters": .array([])])) }
        print("\n      ]\n    }\n  ]\n}")
    }

    private static func counted(_ count: Int, _ noun: String, _ plural: String) -> String { "\(count) \(count == 1 ? noun : plural)" }

    private static func indented(_ text: String, by spaces: Int) -> String {
        let indent = String(repeating: " ", count: spaces)
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { indent + $0 }.joined(separator: "\n")
    }
}

/// `pbc resolve`: how an overlap is settled, with what each resolution needs.
struct Resolve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Resolve an overlap: distinct, coordinate (--lead-agency), merge (--survivor), sequence (--task --start --end) or withdraw (--task).")

    @OptionGroup var client: ClientOptions
    @Argument(help: "The overlap's id (from pbc overlaps).") var overlap: String
    @Argument(help: "distinct, coordinate, merge, sequence or withdraw.") var resolution: String
    @Option(name: .customLong("lead-agency"), help: "coordinate: the agency that leads.") var leadAgency: String?
    @Option(help: "merge: the task that absorbs the other.") var survivor: String?
    @Option(help: "sequence or withdraw: the task that moves or goes.") var task: String?
    @Option(help: "sequence: the new start, YYYY-MM-DD.") var start: String?
    @Option(help: "sequence: the new end, YYYY-MM-DD.") var end: String?
    @Option(help: "Why it was resolved so; kept with the resolution's event.") var comment: String?

    /// What each resolution takes, so that a missing or stray option is a usage error before anything is sent.
    static let options: [String: [String]] = [
        "distinct": [], "coordinate": ["--lead-agency"], "merge": ["--survivor"], "sequence": ["--task", "--start", "--end"], "withdraw": ["--task"],
    ]

    func validate() throws {
        guard let needed = Self.options[resolution] else {
            throw ValidationError("unknown resolution \(resolution): distinct, coordinate, merge, sequence or withdraw")
        }
        let given = [("--lead-agency", leadAgency), ("--survivor", survivor), ("--task", task), ("--start", start), ("--end", end)]
            .filter { $0.1 != nil }.map(\.0)
        let missing = needed.filter { !given.contains($0) }
        guard missing.isEmpty else { throw ValidationError("\(resolution) needs \(missing.joined(separator: ", "))") }
        let stray = given.filter { !needed.contains($0) }
        guard stray.isEmpty else { throw ValidationError("\(stray.joined(separator: ", ")) does not go with \(resolution)") }
    }

    func run() async throws {
        var params: [String: JSONValue] = ["overlap": .string(overlap), "resolution": .string(resolution)]
        if let leadAgency { params["leadAgency"] = .string(leadAgency) }
        if let survivor { params["survivor"] = .string(survivor) }
        if let task { params["task"] = .string(task) }
        if let start, let end { params["period"] = .object(["start": .string(start), "end": .string(end)]) }
        if let comment { params["comment"] = .string(comment) }
        try await client.withSession { rpc in
            let result = try await rpc.call("overlap.resolve", params)
            if client.json { return try ClientOptions.printJSON(result) }
            let resolved = result["overlap"] ?? .null
            print("\(resolved["task"]?.text ?? "") ~ \(resolved["other"]?["ref"]?.text ?? ""): \(resolved["resolution"]?.text ?? resolution)")
            // Where each task of the pair now stands, and what the coordinator may do next (deconflicted,
            // once its last overlap is settled). The resolution is done: a failed read only leaves this out.
            let tasks = [resolved["task"]?.text] + (resolved["other"]?["kind"]?.text == "task" ? [resolved["other"]?["ref"]?.text] : [])
            for ref in tasks.compactMap({ $0 }) {
                guard let task = try? await rpc.call("task.get", ["task": .string(ref)])["task"] else { continue }
                let allowed = task["allowedActions"]?.text ?? ""
                print("  \(ref) is \(task["state"]?.text ?? "")" + (allowed.isEmpty ? "" : "; you may \(allowed)"))
            }
        }
    }
}

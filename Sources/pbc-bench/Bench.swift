import ArgumentParser
import Foundation
import Histogram
import JSONRPC
import NIOCore
import NIOPosix

@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pbc-bench", abstract: "Load a running pbc over TCP and print what it sustains; see docs/performance.md.",
        subcommands: [Load.self, Idle.self])
}

struct Target: ParsableArguments {
    @Option(help: "The server, HOST:PORT (default: PBC_SERVER, else 127.0.0.1:7411).") var server: String?
    @Option(help: "The API token of the principal the load runs as (default: PBC_TOKEN); a coordinator can do every kind of work.")
    var token: String?

    var endpoint: (host: String, port: Int) {
        get throws {
            let server = server ?? ProcessInfo.processInfo.environment["PBC_SERVER"] ?? "127.0.0.1:7411"
            guard let colon = server.lastIndex(of: ":"), let port = Int(server[server.index(after: colon)...]) else {
                throw ValidationError("--server takes HOST:PORT")
            }
            return (String(server[..<colon]), port)
        }
    }

    var resolvedToken: String {
        get throws {
            guard let token = token ?? ProcessInfo.processInfo.environment["PBC_TOKEN"] else { throw ValidationError("give --token or PBC_TOKEN") }
            return token
        }
    }
}

struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "N connections, each with DEPTH requests in flight, running a mix for a fixed time.")

    @OptionGroup var target: Target
    @Option(help: "Connections.") var connections = 16
    @Option(help: "Requests in flight per connection (1: wait for each answer).") var depth = 1
    @Option(help: "Seconds to run.") var seconds = 10
    @Option(help: "Work and weights, such as submit=1,get=4,list=1,claim-act=1; kinds: \(Work.allCases.map(\.rawValue).joined(separator: ", ")).")
    var mix = "submit=1,get=4,list=1,claim-act=1"
    @Option(help: "The queue claim-act claims from.") var queue = "pbso-review"
    @Option(help: "The country task.list filters on.") var country = "SLE"
    @Option(help: "Also write the figures as JSON to this file (- for standard output only).") var json: String?

    func run() async throws {
        let (host, port) = try target.endpoint
        let token = try target.resolvedToken
        var weights: [(Work, Int)] = []
        for part in mix.split(separator: ",") {
            let pair = part.split(separator: "=")
            guard let work = Work(rawValue: String(pair[0])), pair.count == 1 || Int(pair[1]) != nil else {
                throw ValidationError("--mix takes KIND=WEIGHT,...; kinds: \(Work.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            weights.append((work, pair.count == 2 ? Int(pair[1])! : 1))
        }
        let deadline = ContinuousClock.now + .seconds(seconds)
        let started = ContinuousClock.now
        let tally = try await withThrowingTaskGroup(of: Tally.self) { group in
            for index in 0..<connections {
                let connection = BenchConnection(
                    host: host, port: port, token: token, depth: depth, mix: weights, queue: queue, country: country,
                    connectionIndex: index)
                group.addTask { try await connection.run(until: deadline) }
            }
            return try await group.reduce(into: Tally()) { $0.add($1) }
        }
        let elapsed = ContinuousClock.now - started
        let report = Report(tally: tally, seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
                            connections: connections, depth: depth, mix: mix)
        if json != "-" { print(report.table, terminator: "") }
        if let json {
            let data = try report.json
            if json == "-" { print(String(decoding: data, as: UTF8.self)) } else { try data.write(to: URL(fileURLWithPath: json)) }
        }
        for sample in tally.samples { FileHandle.standardError.write(Data("pbc-bench: \(sample)\n".utf8)) }
    }
}

/// The figures of one run, per method and in total.
struct Report {
    let tally: Tally
    let seconds: Double
    let connections: Int
    let depth: Int
    let mix: String

    struct Row: Codable {
        var method: String
        var count: UInt64
        var perSecond: Double
        var p50Ms: Double
        var p99Ms: Double
        var p999Ms: Double
        var errors: Int
    }

    var rows: [Row] {
        let methods = Set(tally.histograms.keys).union(tally.errors.keys).sorted()
        var rows = methods.map { method -> Row in
            let histogram = tally.histograms[method]
            return Row(
                method: method, count: histogram?.totalCount ?? 0, perSecond: Double(histogram?.totalCount ?? 0) / seconds,
                p50Ms: Double(histogram?.valueAtPercentile(50) ?? 0) / 1000, p99Ms: Double(histogram?.valueAtPercentile(99) ?? 0) / 1000,
                p999Ms: Double(histogram?.valueAtPercentile(99.9) ?? 0) / 1000, errors: tally.errors[method] ?? 0)
        }
        var all = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        for histogram in tally.histograms.values { all.add(histogram) }
        rows.append(Row(
            method: "all", count: all.totalCount, perSecond: Double(all.totalCount) / seconds, p50Ms: Double(all.valueAtPercentile(50)) / 1000,
            p99Ms: Double(all.valueAtPercentile(99)) / 1000, p999Ms: Double(all.valueAtPercentile(99.9)) / 1000,
            errors: tally.errors.values.reduce(0, +)))
        return rows
    }

    var table: String {
        let header = ["METHOD", "COUNT", "PER SECOND", "P50 MS", "P99 MS", "P99.9 MS", "ERRORS"]
        let body = rows.map { row in
            [row.method, "\(row.count)", String(format: "%.0f", row.perSecond), String(format: "%.2f", row.p50Ms),
             String(format: "%.2f", row.p99Ms), String(format: "%.2f", row.p999Ms), "\(row.errors)"]
        }
        let widths = header.indices.map { column in ([header] + body).map { $0[column].count }.max()! }
        let lines = ([header] + body).map { row in
            row.enumerated().map { index, cell in
                index == 0 ? cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[index] - cell.count) + cell
            }.joined(separator: "  ")
        }
        return "\(connections) connections, \(depth) in flight each, \(String(format: "%.1f", seconds)) s, mix \(mix)\n"
            + lines.joined(separator: "\n") + "\n"
    }

    var json: Data {
        get throws {
            struct Document: Codable {
                var connections: Int
                var depth: Int
                var seconds: Double
                var mix: String
                var methods: [Row]
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            return try encoder.encode(Document(connections: connections, depth: depth, seconds: seconds, mix: mix, methods: rows))
        }
    }
}

/// Opens sessions and leaves them idle, then reads the server's resident memory.
struct Idle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Resident memory of the server per idle session: N sessions opened and left idle (the server's PID is needed).")

    @OptionGroup var target: Target
    @Option(help: "Sessions to open.") var connections = 1000
    @Option(help: "The server's process id, to read its resident memory from /proc.") var pid: Int32

    func run() async throws {
        let (host, port) = try target.endpoint
        let token = try target.resolvedToken
        // A few sessions first, so that what is allocated once (pools, caches) is not counted per session.
        var warm: [NIOAsyncChannel<Frame, ByteBuffer>] = []
        for _ in 0..<10 { warm.append(try await Self.openSession(host: host, port: port, token: token)) }
        try await Task.sleep(for: .seconds(1))
        let before = try Self.residentKiB(pid)
        var channels: [NIOAsyncChannel<Frame, ByteBuffer>] = []
        for index in 0..<connections {
            channels.append(try await Self.openSession(host: host, port: port, token: token))
            if (index + 1) % 200 == 0 { FileHandle.standardError.write(Data("pbc-bench: \(index + 1) sessions open\n".utf8)) }
        }
        try await Task.sleep(for: .seconds(2))
        let after = try Self.residentKiB(pid)
        let perSession = Double(after - before) / Double(connections)
        print("\(connections) idle sessions: resident memory \(before) KiB before, \(after) KiB after, \(String(format: "%.1f", perSession)) KiB per session")
        for channel in channels + warm { try? await channel.channel.close() }
    }

    static func openSession(host: String, port: Int, token: String) async throws -> NIOAsyncChannel<Frame, ByteBuffer> {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLineBytes: 1 << 20)))
                    return try NIOAsyncChannel<Frame, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        // Write the hello and read its answer through the channel, keeping it open afterwards.
        let hello = ByteBuffer(string: #"{"jsonrpc":"2.0","id":1,"method":"session.hello","params":{"protocol":1,"token":"\#(token)","client":"pbc-bench/1"}}"# + "\n")
        try await channel.channel.writeAndFlush(hello)
        return channel
    }

    static func residentKiB(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        else { throw BenchError("cannot read the resident memory of process \(pid)") }
        return kib
    }
}

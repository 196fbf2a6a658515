import Foundation
import Histogram
import JSONRPC
import NIOCore
import NIOPosix

/// What a bench connection sends. Each kind is one request, except
/// `claimAct`, a flow of two: a claim, then `recommend` under its lease.
enum Work: String, CaseIterable, Sendable {
    case ping, submit, get, list, claimAct = "claim-act"
}

/// Latencies and errors per method, in microseconds.
struct Tally: Sendable {
    var histograms: [String: Histogram<UInt64>] = [:]
    var errors: [String: Int] = [:]
    /// The first few error messages, to say what went wrong.
    var samples: [String] = []

    mutating func record(_ method: String, micros: UInt64) {
        histograms[method, default: Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)]
            .record(max(1, micros))
    }

    mutating func fail(_ method: String, _ message: String) {
        errors[method, default: 0] += 1
        if samples.count < 5 { samples.append("\(method): \(message)") }
    }

    mutating func add(_ other: Tally) {
        for (method, histogram) in other.histograms {
            if histograms[method] == nil { histograms[method] = histogram } else { histograms[method]!.add(histogram) }
        }
        errors.merge(other.errors, uniquingKeysWith: +)
        samples += other.samples.prefix(max(0, 5 - samples.count))
    }
}

/// One connection that keeps `depth` requests in flight until a deadline.
/// It runs as a channel handler on its event loop, so that the load
/// generator spends its time on requests rather than on thread hops: each
/// answer read is matched to its request by position (the server answers in
/// order), and the next request is written, with one flush per read burst.
struct BenchConnection {
    let host: String
    let port: Int
    let token: String
    let depth: Int
    let mix: [(Work, Int)]
    let queue: String
    let country: String
    let connectionIndex: Int

    func run(until deadline: ContinuousClock.Instant) async throws -> Tally {
        let group = MultiThreadedEventLoopGroup.singleton
        let eventLoop = group.next()
        let done = eventLoop.makePromise(of: Tally.self)
        let generator = RequestGenerator(
            mix: mix, queue: queue, country: country, connectionIndex: connectionIndex, token: token)
        let remaining = deadline - ContinuousClock.now
        let deadlineNanos = DispatchTime.now().uptimeNanoseconds
            + UInt64(max(0, remaining.components.seconds * 1_000_000_000 + remaining.components.attoseconds / 1_000_000_000))
        let channel = try await ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLineBytes: 64 << 20)))
                    try channel.pipeline.syncOperations.addHandler(
                        LoadHandler(generator: generator, depth: depth, deadline: deadlineNanos, done: done))
                }
            }
            .connect(host: host, port: port).get()
        defer { channel.close(promise: nil) }
        return try await done.futureResult.get()
    }
}

/// Makes each request's line; remembers the refs submits returned, for gets.
struct RequestGenerator {
    let queue: String
    let country: String
    let connectionIndex: Int
    let token: String
    var sequence = 0
    var submitted: [String] = []
    var picker: WeightedPicker

    init(mix: [(Work, Int)], queue: String, country: String, connectionIndex: Int, token: String) {
        (self.queue, self.country, self.connectionIndex, self.token) = (queue, country, connectionIndex, token)
        picker = WeightedPicker(mix, seed: UInt64(connectionIndex + 1))
    }

    mutating func line(_ method: String, _ params: String) -> (method: String, line: ByteBuffer) {
        sequence += 1
        return (method, ByteBuffer(string: #"{"jsonrpc":"2.0","id":\#(sequence),"method":"\#(method)","params":\#(params)}"# + "\n"))
    }

    mutating func hello() -> (method: String, line: ByteBuffer) {
        line("session.hello", #"{"protocol":1,"token":"\#(token)","client":"pbc-bench/1"}"#)
    }

    mutating func next() -> (method: String, line: ByteBuffer) {
        switch picker.next() {
        case .ping: return line("ping", "{}")
        case .submit: return line("task.submit", BenchConnection.submitParams(connectionIndex, sequence))
        case .get:
            guard let ref = submitted.randomElement() else { return line("task.submit", BenchConnection.submitParams(connectionIndex, sequence)) }
            return line("task.get", #"{"task":"\#(ref)"}"#)
        case .list: return line("task.list", #"{"country":"\#(country)","limit":20}"#)
        case .claimAct: return line("queue.claim", #"{"queue":"\#(queue)"}"#)
        }
    }
}

final class LoadHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = ByteBuffer

    private var generator: RequestGenerator
    private let depth: Int
    private let deadline: UInt64
    private let done: EventLoopPromise<Tally>
    private var pending: [(method: String, started: UInt64)] = []
    private var tally = Tally()
    private var opened = false
    private var finished = false

    /// The promise is kept once, however the connection ends.
    private func finish(_ result: Result<Tally, Error>) {
        guard !finished else { return }
        finished = true
        done.completeWith(result)
    }

    init(generator: RequestGenerator, depth: Int, deadline: UInt64, done: EventLoopPromise<Tally>) {
        self.generator = generator
        self.depth = depth
        self.deadline = deadline
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        let hello = generator.hello()
        pending.append((hello.method, 0))
        context.writeAndFlush(wrapOutboundOut(hello.line), promise: nil)
    }

    private func send(_ request: (method: String, line: ByteBuffer), context: ChannelHandlerContext) {
        pending.append((request.method, DispatchTime.now().uptimeNanoseconds))
        context.write(wrapOutboundOut(request.line), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .line(let line) = unwrapInboundIn(data), !pending.isEmpty else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        let answered = pending.removeFirst()
        let answer = (try? JSONValue.parse(line)) ?? .null
        if !opened {
            guard answer["result"] != nil else {
                finish(.failure(BenchError("session.hello failed: check the token")))
                return
            }
            opened = true
            for _ in 0..<depth { send(generator.next(), context: context) }
            return
        }
        if let error = answer["error"] {
            tally.fail(answered.method, error["message"].map { "\($0)" } ?? "error")
        } else {
            tally.record(answered.method, micros: (now - answered.started) / 1000)
        }
        let result = answer["result"]
        if answered.method == "task.submit", case .string(let ref)? = result?["task"]?["ref"], generator.submitted.count < 1000 {
            generator.submitted.append(ref)
        }
        if now < deadline {
            // A claim that got a task is followed by the action under its lease; an empty queue is an error of the setup.
            if answered.method == "queue.claim", let task = result?["task"], case .string(let ref)? = task["ref"],
                case .integer(let version)? = task["version"], case .string(let lease)? = result?["lease"]?["id"]
            {
                send(generator.line("task.act", #"{"task":"\#(ref)","action":"recommend","expectedVersion":\#(version),"lease":"\#(lease)"}"#), context: context)
            } else {
                if answered.method == "queue.claim", result?["task"] == .null { tally.fail("queue.claim", "the queue is empty: seed more tasks") }
                send(generator.next(), context: context)
            }
        }
        if pending.isEmpty { finish(.success(tally)) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.failure(BenchError("pbc closed the connection")))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        finish(.failure(error))
        context.close(promise: nil)
    }
}

extension BenchConnection {
    /// A project for a country of the bench's rotation, different each time, so screening has real work.
    static func submitParams(_ connection: Int, _ sequence: Int) -> String {
        // A wide spread, as real intake has: most submissions overlap with nothing.
        let countries = ["SLE", "LBR", "GIN", "CAF", "COL", "SOM", "SSD", "MLI", "BFA", "NER", "TCD", "CMR", "NGA", "COD", "BDI", "RWA",
                         "UGA", "KEN", "ETH", "SDN", "YEM", "SYR", "IRQ", "LBN", "AFG", "PAK", "MMR", "PHL", "LKA", "NPL", "HTI", "GTM",
                         "HND", "SLV", "VEN", "ECU", "PER", "BOL", "MOZ", "ZWE"]
        let sectors = ["15220", "15110", "15130", "15150", "15160", "15170", "15180", "15210", "15230", "15240", "15250", "15261",
                       "11220", "12220", "13020", "14030", "16010", "21020", "23111", "31120", "31110", "43010", "72010", "73010"]
        let words = ["dialogue", "youth", "women", "mediation", "land", "justice", "radio", "police", "elections", "reintegration",
                     "reconciliation", "border", "governance", "livelihoods", "schools", "water", "clinics", "roads", "markets", "courts",
                     "farmers", "teachers", "returnees", "pastoralists", "fisheries", "archives", "media", "parliament", "councils", "veterans"]
        var random = SplitMix(seed: UInt64(connection) << 32 | UInt64(sequence))
        let title = (0..<4).map { _ in words[Int(random.next() % UInt64(words.count))] }.joined(separator: " ")
        let country = countries[Int(random.next() % UInt64(countries.count))]
        let sector = sectors[Int(random.next() % UInt64(sectors.count))]
        let start = 2027 + Int(random.next() % 3)
        return #"{"idempotencyKey":"bench-\#(connection)-\#(sequence)-\#(UInt32(truncatingIfNeeded: random.next()))","workflow":"pbf-project","title":"\#(title)","description":"Bench programme \#(title)","leadAgency":"pbso","country":"\#(country)","locations":["District \#(random.next() % 500)"],"sectors":["\#(sector)"],"period":{"start":"\#(start)-01-01","end":"\#(start + 1)-12-31"},"budget":{"amount":"900000.00","currency":"USD"},"fields":{"genderMarker":2,"facility":"IRF"}}"#
    }
}

struct WeightedPicker {
    let kinds: [Work]
    var random: SplitMix

    init(_ mix: [(Work, Int)], seed: UInt64) {
        kinds = mix.flatMap { Array(repeating: $0.0, count: $0.1) }
        random = SplitMix(seed: seed)
    }

    mutating func next() -> Work { kinds[Int(random.next() % UInt64(kinds.count))] }
}

/// A small, fast, seeded generator: the same run sends the same requests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

import Foundation
import JSONRPC
import NIOCore
import Store
import Synchronization

/// The event streams of one connection. A stream is registered by
/// `event.subscribe` and starts only once its reply is written, so the reply
/// comes before the first `event` notification.
final class EventStreams: Sendable {
    struct Stream: Sendable {
        let id: String
        let filter: EventFilter
        let principal: Principal
        /// Events after this seq are sent.
        let after: Int
    }

    private struct State {
        var count = 0
        var pending: [Stream] = []
        var running: [String: Task<Void, Never>] = [:]
        var closed = false
    }

    private let state = Mutex(State())

    /// Registers a stream; it starts with `startPending`.
    func add(filter: EventFilter, principal: Principal, after: Int) -> String {
        state.withLock { state in
            state.count += 1
            let id = "s\(state.count)"
            state.pending.append(Stream(id: id, filter: filter, principal: principal, after: after))
            return id
        }
    }

    /// Ends one stream; false when there is none by that id.
    func remove(_ id: String) -> Bool {
        let (found, task) = state.withLock { state -> (Bool, Task<Void, Never>?) in
            if let index = state.pending.firstIndex(where: { $0.id == id }) {
                state.pending.remove(at: index)
                return (true, nil)
            }
            guard let task = state.running.removeValue(forKey: id) else { return (false, nil) }
            return (true, task)
        }
        task?.cancel()
        return found
    }

    var isEmpty: Bool { state.withLock { $0.pending.isEmpty && $0.running.isEmpty } }
    var count: Int { state.withLock { $0.pending.count + $0.running.count } }

    /// Starts the streams registered since the last call, each with `body`.
    func startPending(_ body: @escaping @Sendable (Stream) async -> Void) {
        state.withLock { state in
            guard !state.closed else { return }
            for stream in state.pending {
                state.running[stream.id] = Task { await body(stream) }
            }
            state.pending = []
        }
    }

    /// Ends every stream: the connection is closing.
    func closeAll() {
        let tasks = state.withLock { state in
            state.closed = true
            state.pending = []
            defer { state.running = [:] }
            return Array(state.running.values)
        }
        for task in tasks { task.cancel() }
    }
}

/// Sends one stream's events: first the replay from its `after`, then live
/// ones as the hub says they are committed, with the same query for both, so
/// there is no seam to fall through.
struct StreamRunner: Sendable {
    let tasks: TaskStore
    let hub: EventHub
    /// A live subscriber this many events behind the newest is cut off.
    let maxLag: Int
    let batchSize = 200

    enum Ending: Sendable {
        /// Cancelled: unsubscribed, or the connection closed.
        case cancelled
        case tooSlow(behind: Int, lastSeq: Int)
        case failed(Error)
    }

    /// Runs until cancelled, or until the stream must end (returned).
    func run(_ stream: EventStreams.Stream, send: @Sendable (ByteBuffer) async throws -> Void) async -> Ending {
        var last = stream.after
        var caughtUp = false
        do {
            while !Task.isCancelled {
                let newest = hub.newest
                let batch = try await tasks.events(after: last, matching: stream.filter, visibleTo: stream.principal, limit: batchSize)
                for event in batch {
                    try await send(Self.notification(event, subscription: stream.id))
                    last = event.event.seq
                }
                if batch.count == batchSize {
                    // More to send. Once live, a subscriber this far behind is not keeping up.
                    let behind = hub.newest - last
                    if caughtUp, behind > maxLag { return .tooSlow(behind: behind, lastSeq: last) }
                    continue
                }
                // Everything committed when the query ran has been seen: no event at
                // or below `newest` can still appear, since events commit in seq order.
                last = max(last, newest)
                caughtUp = true
                await hub.waitForEvents(after: last)
            }
            return .cancelled
        } catch is CancellationError {
            return .cancelled
        } catch {
            return Task.isCancelled ? .cancelled : .failed(error)
        }
    }

    static func notification(_ event: StreamEvent, subscription: String) -> ByteBuffer {
        var wire = Wire.event(event.event)
        if case .object(var object) = wire {
            object["task"] = Wire.optional(event.taskRef)
            object["queue"] = Wire.optional(event.queue)
            object["country"] = Wire.optional(event.country)
            wire = .object(object)
        }
        let message = JSONValue.object([
            "jsonrpc": .string("2.0"), "method": .string("event"),
            "params": .object(["subscription": .string(subscription), "event": wire]),
        ])
        return Dispatcher.encode(message) ?? ByteBuffer()
    }
}

import Coordination
import Foundation
import JSONRPC
import Store

/// Queues, claims and leases (SPEC section 5), and event streams (section 6).
extension Methods {
    // MARK: Queues

    func queueList(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let list = try ParamsDecoder.decode(ListParams.self, from: params)
        let limit = try list.checkedLimit()
        let now = Date()
        let queues = try await tasks.queues(for: principal).filter { list.cursor == nil || $0.name > list.cursor! }
        let page = queues.prefix(limit)
        let items = page.map { queue in
            JSONValue.object([
                "name": .string(queue.name), "refines": Wire.optional(queue.refines), "depth": .integer(Int64(queue.depth)),
                "claimed": .integer(Int64(queue.claimed)), "oldestQueuedAt": queue.oldestQueuedAt.map(Wire.date) ?? .null,
                "oldestAgeSeconds": queue.oldestQueuedAt.map { .integer(Int64(max(0, now.timeIntervalSince($0)))) } ?? .null,
                "breached": .integer(Int64(queue.breached)), "dueSoon": .integer(Int64(queue.dueSoon)),
            ])
        }
        return .object(["items": .array(items), "nextCursor": queues.count > limit ? Wire.optional(page.last?.name) : .null])
    }

    struct QueueTasksParams: MethodParams {
        static let names: Set<String> = ["queue", "limit", "cursor"]
        let queue: String
        let limit: Int?
        let cursor: String?
    }

    func queueTasks(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let list = try ParamsDecoder.decode(QueueTasksParams.self, from: params)
        if let limit = list.limit, !(1...500).contains(limit) {
            throw ParamsDecoder.invalid("limit must be between 1 and 500", parameter: "limit")
        }
        let page = try await tasks.queueTasks(list.queue, as: principal, limit: list.limit ?? 50, cursor: list.cursor)
        return .object(["items": .array(page.items.map(Wire.task)), "nextCursor": Wire.optional(page.nextCursor)])
    }

    struct ClaimParams: MethodParams {
        static let names: Set<String> = ["queue", "leaseSeconds"]
        let queue: String
        let leaseSeconds: Int?
    }

    /// `{task, lease}`, or `{task: null, lease: null}` when nothing is waiting.
    func queueClaim(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let claim = try ParamsDecoder.decode(ClaimParams.self, from: params)
        let lease = try leaseDuration(claim.leaseSeconds)
        guard let task = try await tasks.claim(claim.queue, lease: lease, by: principal) else {
            return .object(["task": .null, "lease": .null])
        }
        return .object(["task": Wire.task(task), "lease": Wire.lease(task.holder)])
    }

    struct RenewParams: MethodParams {
        static let names: Set<String> = ["task", "lease", "leaseSeconds"]
        let task: String
        let lease: UUID?
        let leaseSeconds: Int?
    }

    func taskRenew(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let renew = try ParamsDecoder.decode(RenewParams.self, from: params)
        let task = try await tasks.renew(renew.task, lease: renew.lease, for: try leaseDuration(renew.leaseSeconds), by: principal)
        return .object(["task": Wire.task(task), "lease": Wire.lease(task.holder)])
    }

    struct ReleaseParams: MethodParams {
        static let names: Set<String> = ["task", "lease"]
        let task: String
        let lease: UUID?
    }

    func taskRelease(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let release = try ParamsDecoder.decode(ReleaseParams.self, from: params)
        return .object(["task": Wire.task(try await tasks.release(release.task, lease: release.lease, by: principal))])
    }

    struct AssignParams: MethodParams {
        static let names: Set<String> = ["task", "from", "to"]
        let task: String?
        let from: String?
        let to: String?
    }

    /// `{task, to}` hands one task to a person; `{from, to}` moves all of one
    /// person's tasks (`to` absent: back to their queues).
    func taskAssign(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let assign = try ParamsDecoder.decode(AssignParams.self, from: params)
        switch (assign.task, assign.from) {
        case (let task?, nil):
            guard let to = assign.to else { throw ParamsDecoder.invalid("missing parameter to: who gets the task", parameter: "to") }
            return .object(["task": Wire.task(try await tasks.assign(task, to: to, by: principal))])
        case (nil, let from?):
            let moved = try await tasks.reassignAll(from: from, to: assign.to, by: principal)
            return .object(["moved": .array(moved.map(JSONValue.string))])
        default:
            throw ParamsDecoder.invalid("give either task (one task) or from (all of one person's tasks)", parameter: assign.task == nil ? "task" : "from")
        }
    }

    private func leaseDuration(_ seconds: Int?) throws -> Duration {
        guard let seconds else { return queueSettings.lease }
        let most = queueSettings.maxLease.components.seconds
        guard (1...most).contains(Int64(seconds)) else {
            throw ParamsDecoder.invalid("leaseSeconds must be between 1 and \(most)", parameter: "leaseSeconds")
        }
        return .seconds(seconds)
    }

    // MARK: Events

    struct SubscribeParams: MethodParams {
        static let names: Set<String> = ["queues", "tasks", "countries", "agencies", "types", "since"]
        let queues: [String]?
        let tasks: [String]?
        let countries: [String]?
        let agencies: [String]?
        let types: [String]?
        let since: Int?
    }

    /// Registers a stream; its events follow the reply as `event` notifications.
    func eventSubscribe(_ params: JSONValue?, _ principal: Principal, session: Session) async throws -> JSONValue {
        let subscribe = try ParamsDecoder.decode(SubscribeParams.self, from: params)
        if let since = subscribe.since, since < 0 { throw ParamsDecoder.invalid("since must be 0 or more", parameter: "since") }
        let agencies = (subscribe.agencies ?? []).map(AgencyID.normalized)
        if principal.role == .liaison, let other = agencies.first(where: { $0 != principal.agency }) {
            throw RPCError(code: .forbidden, message: "a liaison follows their own agency's events, not \(other)'s")
        }
        guard session.streams.count < Self.maxStreamsPerConnection else {
            throw RPCError(code: .conflict, message: "at most \(Self.maxStreamsPerConnection) subscriptions per connection")
        }
        try await tasks.checkSubscriptionNames(queues: subscribe.queues ?? [], agencies: agencies, types: subscribe.types ?? [])
        let filter = EventFilter(
            queues: subscribe.queues ?? [], tasks: try await tasks.taskIDs(subscribe.tasks ?? [], visibleTo: principal),
            countries: try await tasks.countryCodes(subscribe.countries ?? []), agencies: agencies,
            types: subscribe.types ?? [])
        let after: Int
        if let since = subscribe.since {
            try await tasks.checkReplayable(since: since, retention: queueSettings.replayRetention)
            after = since
        } else {
            after = try await tasks.newestEventSeq()
        }
        let id = session.streams.add(filter: filter, principal: principal, after: after)
        return .object(["subscription": .string(id), "after": .integer(Int64(after))])
    }

    static let maxStreamsPerConnection = 16

    struct UnsubscribeParams: MethodParams {
        static let names: Set<String> = ["subscription"]
        let subscription: String
    }

    func eventUnsubscribe(_ params: JSONValue?, session: Session) throws -> JSONValue {
        let unsubscribe = try ParamsDecoder.decode(UnsubscribeParams.self, from: params)
        guard session.streams.remove(unsubscribe.subscription) else {
            throw RPCError(code: .notFound, message: "no subscription \(unsubscribe.subscription) on this connection")
        }
        return .object(["subscription": .string(unsubscribe.subscription), "ended": .bool(true)])
    }
}

import Coordination
import Foundation
import JSONRPC
import Logging
import Postgres
import Store

/// The methods the server answers, and the one place where errors become JSON-RPC errors.
public struct Methods: Sendable {
    let tasks: TaskStore
    let admin: AdminStore
    let workflows: WorkflowRegistry
    let pool: PostgresPool
    let rateLimiter: RateLimiter
    let metrics: ServerMetrics
    let logger: Logger
    let queueSettings: QueueSettings
    let streamRunner: StreamRunner

    /// Leases and event replay, from the configuration.
    struct QueueSettings: Sendable {
        /// A claim's lease unless the claimer asks for another.
        var lease: Duration = .seconds(900)
        /// The longest lease a claimer may ask for.
        var maxLease: Duration = .seconds(8 * 3600)
        /// How far back `event.subscribe` replays with `since`.
        var replayRetention: Duration = .seconds(30 * 86_400)
    }

    /// The protocol versions this server speaks.
    static let protocolVersions = [1]

    init(
        pool: PostgresPool, tasks: TaskStore, workflows: WorkflowRegistry, rateLimit: (perSecond: Double, burst: Int), metrics: ServerMetrics,
        queueSettings: QueueSettings, hub: EventHub, maxSubscriberLag: Int, logger: Logger
    ) {
        self.queueSettings = queueSettings
        self.streamRunner = StreamRunner(tasks: tasks, hub: hub, maxLag: maxSubscriberLag)
        self.pool = pool
        self.tasks = tasks
        self.admin = AdminStore(pool: pool)
        self.workflows = workflows
        self.rateLimiter = RateLimiter(perSecond: rateLimit.perSecond, burst: rateLimit.burst)
        self.metrics = metrics
        self.logger = logger
    }

    func handle(_ request: Request, session: Session) async -> Response.Outcome {
        let started = ContinuousClock.now
        let outcome: Response.Outcome
        do {
            outcome = .result(try await call(request, session: session))
        } catch {
            outcome = .error(Self.rpcError(for: error, method: request.method, logger: logger))
        }
        let duration = ContinuousClock.now - started
        var code: Int?
        if case .error(let error) = outcome { code = error.code.rawValue }
        metrics.request(method: request.method, code: code, duration: duration)
        var metadata: Logger.Metadata = [
            "rpc.method": "\(request.method)", "rpc.duration_ms": "\(duration.milliseconds)",
            "rpc.principal": "\(session.principal?.name ?? "-")",
        ]
        if let id = request.id { metadata["rpc.id"] = "\(id)" }
        if case .error(let error) = outcome { metadata["rpc.code"] = "\(error.code.rawValue)" }
        // A liveness probe at info level would drown the log; every other request gets its line.
        logger.log(level: request.method == "ping" ? .debug : .info, "request", metadata: metadata)
        return outcome
    }

    /// Every error a method can end in, as the client sees it. Nothing of SQL
    /// or of a secret reaches the client; details go to the log.
    static func rpcError(for error: Error, method: String, logger: Logger) -> RPCError {
        switch error {
        case let error as RPCError:
            return error
        case let error as StoreError:
            switch error.code {
            case .notFound:
                return RPCError(code: .notFound, message: error.message)
            case .conflict:
                return RPCError(code: .conflict, message: error.message, data: error.currentVersion.map { .object(["currentVersion": .integer(Int64($0))]) })
            case .forbidden:
                return RPCError(code: .forbidden, message: error.message)
            case .validation:
                return validation(error.fieldErrors)
            case .historyGone:
                return RPCError(code: .historyGone, message: error.message)
            default:
                // A refused task.submit kept no task: it has no state, and nothing to offer instead.
                guard let state = error.state else { return RPCError(code: .actionNotAllowed, message: error.message) }
                return RPCError(
                    code: .actionNotAllowed, message: error.message,
                    data: .object(["state": .string(state), "allowedActions": .array(error.allowedActions.map(JSONValue.string))]))
            }
        case let error as PostgresError where error.isUnavailable:
            return RPCError(code: .unavailable, message: "the database cannot be reached; retry", data: .object(["retryAfterMs": .integer(1000)]))
        default:
            logger.error("request failed", metadata: ["rpc.method": "\(method)", "error": "\(String(reflecting: error))"])
            return RPCError(code: .internalError, message: "internal error")
        }
    }

    static func validation(_ errors: [FieldError]) -> RPCError {
        RPCError(
            code: .validationFailed, message: "validation failed: " + errors.map(\.description).joined(separator: "; "),
            data: .object(["errors": .array(errors.map { .object(["field": .string($0.field), "reason": .string($0.reason)]) })]))
    }

    private func call(_ request: Request, session: Session) async throws -> JSONValue {
        switch request.method {
        case "ping":
            return .object(["pong": .bool(true)])
        case "session.hello":
            return try await hello(request.params, session: session)
        default:
            break
        }
        guard let principal = session.principal else {
            throw RPCError(code: .unauthenticated, message: "open a session with session.hello first")
        }
        if let wait = rateLimiter.admit(principal.id) {
            throw RPCError(code: .rateLimited, message: "too many requests; retry later", data: .object(["retryAfterMs": .integer(Int64(wait))]))
        }
        switch request.method {
        case "agency.list": return try await agencyList(request.params)
        case "country.list": return try await countryList(request.params)
        case "sector.list": return try await sectorList(request.params)
        case "workflow.list": return try workflowList(request.params)
        case "workflow.get": return try workflowGet(request.params)
        case "task.create": return try await taskCreate(request.params, principal)
        case "task.submit": return try await taskSubmit(request.params, principal)
        case "task.get": return try await taskGet(request.params, principal)
        case "task.list": return try await taskList(request.params, principal)
        case "task.act": return try await taskAct(request.params, principal)
        case "task.update": return try await taskUpdate(request.params, principal)
        case "task.history": return try await taskHistory(request.params, principal)
        case "task.comment": return try await taskComment(request.params, principal)
        case "activity.get": return try await activityGet(request.params, principal)
        case "overlap.check": return try await overlapCheck(request.params, principal)
        case "overlap.list": return try await overlapList(request.params, principal)
        case "overlap.resolve": return try await overlapResolve(request.params, principal)
        case "report.whoWhatWhere": return try await whoWhatWhere(request.params, principal)
        case "queue.list": return try await queueList(request.params, principal)
        case "queue.tasks": return try await queueTasks(request.params, principal)
        case "queue.claim": return try await queueClaim(request.params, principal)
        case "task.assign": return try await taskAssign(request.params, principal)
        case "task.release": return try await taskRelease(request.params, principal)
        case "task.renew": return try await taskRenew(request.params, principal)
        case "event.subscribe": return try await eventSubscribe(request.params, principal, session: session)
        case "event.unsubscribe": return try eventUnsubscribe(request.params, session: session)
        default:
            throw RPCError(code: .methodNotFound, message: "no method named \(request.method)")
        }
    }

    // MARK: Session

    struct HelloParams: MethodParams {
        static let names: Set<String> = ["protocol", "token", "client"]
        let `protocol`: ProtocolRange
        let token: String
        let client: String?

        /// `1`, or `[min, max]`.
        struct ProtocolRange: Decodable {
            let range: ClosedRange<Int>
            init(from decoder: Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let single = try? container.decode(Int.self) {
                    range = single...single
                    return
                }
                guard let pair = try? container.decode([Int].self), pair.count == 2, pair[0] <= pair[1] else {
                    throw DecodingError.dataCorruptedError(in: container, debugDescription: "a version number or [min, max]")
                }
                range = pair[0]...pair[1]
            }
        }
    }

    private func hello(_ params: JSONValue?, session: Session) async throws -> JSONValue {
        if session.principal != nil {
            throw RPCError(code: .invalidRequest, message: "the session is already open")
        }
        let hello = try ParamsDecoder.decode(HelloParams.self, from: params)
        guard let version = Self.protocolVersions.last(where: hello.protocol.range.contains) else {
            session.closeAfterReply()
            throw RPCError(
                code: .invalidParams, message: "no protocol version in common; this server speaks \(Self.protocolVersions.map(String.init).joined(separator: ", "))",
                data: .object(["parameter": .string("protocol"), "supported": .array(Self.protocolVersions.map { .integer(Int64($0)) })]))
        }
        guard let principal = try await admin.authenticate(token: hello.token) else {
            // One answer for unknown, revoked and expired tokens, and no second try on this connection.
            session.closeAfterReply()
            throw RPCError(code: .unauthenticated, message: "the token is not valid (unknown, revoked or expired)")
        }
        session.open(as: principal, protocolVersion: version)
        return .object([
            "protocol": .integer(Int64(version)),
            "principal": .object(["name": .string(principal.name), "role": .string(principal.role.rawValue), "agency": Wire.optional(principal.agency)]),
            "server": .string("pbc"),
        ])
    }

    // MARK: Reference data

    struct ListParams: MethodParams {
        static let names: Set<String> = ["limit", "cursor"]
        let limit: Int?
        let cursor: String?

        func checkedLimit() throws -> Int {
            guard let limit else { return 100 }
            guard (1...1000).contains(limit) else { throw ParamsDecoder.invalid("limit must be between 1 and 1000", parameter: "limit") }
            return limit
        }
    }

    /// A page of reference rows, keyed by their first column.
    private func page(_ params: JSONValue?, _ query: (String?, Int) -> PostgresQuery, _ item: (PostgresRow) throws -> JSONValue) async throws -> JSONValue {
        let list = try ParamsDecoder.decode(ListParams.self, from: params)
        let limit = try list.checkedLimit()
        let rows = try await pool.query(query(list.cursor, limit + 1))
        let items = try rows.prefix(limit).map(item)
        let next = rows.count > limit ? try rows[limit - 1].decode(String.self, at: 0) : nil
        return .object(["items": .array(items), "nextCursor": Wire.optional(next)])
    }

    private func agencyList(_ params: JSONValue?) async throws -> JSONValue {
        try await page(params, { cursor, limit in
            "SELECT id, name, kind, iati_ref FROM agencies WHERE \(cursor)::text IS NULL OR id > \(cursor) ORDER BY id LIMIT \(limit)"
        }) { row in
            .object([
                "id": .string(try row.decode(String.self, at: 0)), "name": .string(try row.decode(String.self, at: 1)),
                "kind": .string(try row.decode(String.self, at: 2)), "iatiRef": Wire.optional(try row.decode(String?.self, at: 3)),
            ])
        }
    }

    private func countryList(_ params: JSONValue?) async throws -> JSONValue {
        try await page(params, { cursor, limit in
            """
            SELECT c.code, c.alpha2, c.name, p.country IS NOT NULL, p.chair, p.pbf_eligibility, p.pbf_eligible_until::text
            FROM countries c LEFT JOIN pbc_configurations p ON p.country = c.code
            WHERE \(cursor)::text IS NULL OR c.code > \(cursor) ORDER BY c.code LIMIT \(limit)
            """
        }) { row in
            let configured = try row.decode(Bool.self, at: 3)
            return .object([
                "code": .string(try row.decode(String.self, at: 0)), "alpha2": .string(try row.decode(String.self, at: 1)),
                "name": .string(try row.decode(String.self, at: 2)),
                "pbc": configured
                    ? .object([
                        "chair": Wire.optional(try row.decode(String?.self, at: 4)),
                        "pbfEligibility": Wire.optional(try row.decode(String?.self, at: 5)),
                        "pbfEligibleUntil": Wire.optional(try row.decode(String?.self, at: 6)),
                    ]) : .null,
            ])
        }
    }

    private func sectorList(_ params: JSONValue?) async throws -> JSONValue {
        try await page(params, { cursor, limit in
            "SELECT code, name, category FROM sectors WHERE \(cursor)::text IS NULL OR code > \(cursor) ORDER BY code LIMIT \(limit)"
        }) { row in
            .object([
                "code": .string(try row.decode(String.self, at: 0)), "name": .string(try row.decode(String.self, at: 1)),
                "category": .string(try row.decode(String.self, at: 2)),
            ])
        }
    }

    // MARK: Workflows

    private func workflowList(_ params: JSONValue?) throws -> JSONValue {
        _ = try ParamsDecoder.decode(ListParams.self, from: params)
        let items = workflows.latest.values.sorted { $0.name < $1.name }.map { workflow in
            JSONValue.object([
                "name": .string(workflow.name), "version": .integer(Int64(workflow.version)),
                "description": Wire.optional(workflow.description), "initialState": .string(workflow.initialState.name),
            ])
        }
        return .object(["items": .array(items), "nextCursor": .null])
    }

    struct WorkflowGetParams: MethodParams {
        static let names: Set<String> = ["name", "version"]
        let name: String
        let version: Int?
    }

    private func workflowGet(_ params: JSONValue?) throws -> JSONValue {
        let get = try ParamsDecoder.decode(WorkflowGetParams.self, from: params)
        let found = get.version.map { workflows.definition(get.name, version: $0) } ?? workflows.latest[get.name]
        guard let workflow = found else {
            throw RPCError(code: .notFound, message: "no workflow \(get.name)\(get.version.map { " version \($0)" } ?? "")")
        }
        return Wire.workflow(workflow)
    }

    // MARK: Tasks

    struct TaskParams: MethodParams {
        static let names: Set<String> = [
            "workflow", "title", "description", "leadAgency", "participants", "country", "locations", "sectors", "period",
            "budget", "priority", "fields", "externalRefs",
        ]
        let workflow: String
        let title: String
        let description: String?
        let leadAgency: String?
        let participants: [Participant]?
        let country: String?
        let locations: [String]?
        let sectors: [String]?
        let period: WirePeriod?
        let budget: WireBudget?
        let priority: Priority?
        let fields: [String: FieldValue]?
        let externalRefs: [String: String]?

        func record(by principal: Principal) throws -> TaskRecord {
            TaskRecord(
                state: "", title: title, description: description ?? "", leadAgency: try Methods.lead(leadAgency, of: principal),
                participants: participants ?? [],
                country: country, locations: locations ?? [], sectors: sectors ?? [], period: period?.period, budget: budget?.money,
                fields: fields ?? [:], priority: priority ?? .normal, externalRefs: externalRefs ?? [:])
        }
    }

    /// The agency that leads a new task or a draft: the one named, else a
    /// liaison's own (a liaison leads only their agency's tasks).
    static func lead(_ named: String?, of principal: Principal) throws -> String {
        guard let lead = named.map(AgencyID.normalized) ?? (principal.role == .liaison ? principal.agency : nil) else {
            throw ParamsDecoder.invalid("missing parameter leadAgency: name the agency that leads (a liaison's own leads when none is named)", parameter: "leadAgency")
        }
        return lead
    }

    private func taskCreate(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let create = try ParamsDecoder.decode(TaskParams.self, from: params)
        let task = try await tasks.create(try create.record(by: principal), workflow: create.workflow, by: principal)
        return .object(["task": Wire.task(task)])
    }

    private func taskSubmit(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        // idempotencyKey travels beside the task's own fields.
        guard case .object(var object)? = params else { throw ParamsDecoder.invalid("params must be an object of named parameters", parameter: nil) }
        guard case .string(let key)? = object.removeValue(forKey: "idempotencyKey") else {
            throw ParamsDecoder.invalid(
                object.keys.contains("idempotencyKey") ? "parameter idempotencyKey must be a string" : "missing parameter idempotencyKey",
                parameter: "idempotencyKey")
        }
        guard (1...200).contains(key.count) else { throw ParamsDecoder.invalid("idempotencyKey must be 1 to 200 characters", parameter: "idempotencyKey") }
        let submit = try ParamsDecoder.decode(TaskParams.self, from: .object(object))
        let (task, replayed, overlaps) = try await tasks.submit(
            try submit.record(by: principal), workflow: submit.workflow, idempotencyKey: key, by: principal)
        return .object(["task": Wire.task(task), "overlaps": .array(overlaps.map(Wire.overlap)), "replayed": .bool(replayed)])
    }

    struct TaskKeyParams: MethodParams {
        static let names: Set<String> = ["task"]
        let task: String
    }

    private func taskGet(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let get = try ParamsDecoder.decode(TaskKeyParams.self, from: params)
        let detail = try await tasks.detail(get.task, as: principal)
        let task = detail.task
        guard case .object(var object) = Wire.task(task) else { return .null }
        object["overlaps"] = .array(detail.overlaps.map(Wire.overlap))
        object["reports"] = .array(detail.reports.map(Wire.report))
        if let agreement = tasks.agreement(of: detail) { object["agreement"] = Wire.agreement(agreement) }
        if let replies = detail.replies { object["replies"] = .array(replies.map(Wire.reply)) }
        let options = tasks.actionOptions(task, agreed: detail.agreedAgencies, for: principal)
        object["allowedActions"] = .array(options.filter(\.refusedBy.isEmpty).map { .string($0.name) })
        object["blockedActions"] = .array(
            options.filter { !$0.refusedBy.isEmpty }.map { option in
                .object([
                    "action": .string(option.name),
                    "refusedBy": .array(option.refusedBy.map { .object(["guard": .string($0.name), "reason": .string($0.reason)]) }),
                ])
            })
        return .object(["task": .object(object)])
    }

    struct TaskListParams: MethodParams {
        static let names: Set<String> = ["state", "workflow", "country", "sector", "agency", "queue", "assignee", "text", "limit", "cursor"]
        let state: String?
        let workflow: String?
        let country: String?
        let sector: String?
        let agency: String?
        let queue: String?
        let assignee: UUID?
        let text: String?
        let limit: Int?
        let cursor: String?
    }

    private func taskList(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let list = try ParamsDecoder.decode(TaskListParams.self, from: params)
        if let limit = list.limit, !(1...500).contains(limit) { throw ParamsDecoder.invalid("limit must be between 1 and 500", parameter: "limit") }
        let filter = TaskFilter(
            state: list.state, workflow: list.workflow, country: list.country, sector: list.sector, agency: list.agency.map(AgencyID.normalized),
            queue: list.queue, assignee: list.assignee, text: list.text, limit: list.limit ?? 50, cursor: list.cursor)
        let (items, next) = try await tasks.list(filter, as: principal)
        return .object(["items": .array(items.map(Wire.task)), "nextCursor": Wire.optional(next)])
    }

    struct ActParams: MethodParams {
        static let names: Set<String> = ["task", "action", "expectedVersion", "comment", "fields", "lease"]
        let task: String
        let action: String
        let expectedVersion: Int
        let comment: String?
        let fields: [String: FieldValue]?
        /// The lease the action is taken under, from `queue.claim`; refused when no longer held.
        let lease: UUID?
    }

    private func taskAct(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let act = try ParamsDecoder.decode(ActParams.self, from: params)
        let task = try await tasks.act(
            act.task, action: act.action, expectedVersion: act.expectedVersion,
            inputs: ActionInputs(comment: act.comment, fields: act.fields ?? [:]), lease: act.lease, by: principal)
        guard case .object(var object) = Wire.task(task) else { return .null }
        // Left waiting for agreements (an agency agreed, a proposal was made): who agreed, who is awaited.
        // Read after the commit, and only to inform: the action is done, and a failed read must not turn
        // its success into an error the caller would retry.
        if tasks.waitsForAgreement(task), let detail = try? await tasks.detail(task.ref, as: principal),
            let agreement = tasks.agreement(of: detail)
        {
            object["agreement"] = Wire.agreement(agreement)
        }
        return .object(["task": .object(object)])
    }

    struct UpdateParams: MethodParams {
        static let names: Set<String> = [
            "task", "expectedVersion", "title", "description", "country", "locations", "sectors", "period", "budget", "priority",
            "participants", "externalRefs",
        ]
        let task: String
        let expectedVersion: Int
        let title: String?
        let description: String?
        let country: String?
        let locations: [String]?
        let sectors: [String]?
        let period: WirePeriod?
        let budget: WireBudget?
        let priority: Priority?
        let participants: [Participant]?
        let externalRefs: [String: String]?
    }

    private func taskUpdate(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let update = try ParamsDecoder.decode(UpdateParams.self, from: params)
        var changes = TaskChanges()
        changes.title = update.title
        changes.description = update.description
        changes.country = update.country
        changes.locations = update.locations
        changes.sectors = update.sectors
        changes.period = update.period?.period
        changes.budget = update.budget?.money
        changes.priority = update.priority
        changes.participants = update.participants
        changes.externalRefs = update.externalRefs
        let task = try await tasks.update(update.task, expectedVersion: update.expectedVersion, changes: changes, by: principal)
        return .object(["task": Wire.task(task)])
    }

    struct HistoryParams: MethodParams {
        static let names: Set<String> = ["task", "limit", "cursor"]
        let task: String
        let limit: Int?
        let cursor: Int?
    }

    private func taskHistory(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let history = try ParamsDecoder.decode(HistoryParams.self, from: params)
        let limit = history.limit ?? 100
        guard (1...1000).contains(limit) else { throw ParamsDecoder.invalid("limit must be between 1 and 1000", parameter: "limit") }
        let events = try await tasks.history(history.task, as: principal).filter { $0.seq > (history.cursor ?? 0) }
        let page = events.prefix(limit)
        return .object([
            "items": .array(page.map(Wire.event)),
            "nextCursor": events.count > limit ? .integer(Int64(page.last!.seq)) : .null,
        ])
    }

    struct CommentParams: MethodParams {
        static let names: Set<String> = ["task", "comment"]
        let task: String
        let comment: String
    }

    private func taskComment(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let comment = try ParamsDecoder.decode(CommentParams.self, from: params)
        return .object(["event": Wire.event(try await tasks.comment(comment.task, text: comment.comment, by: principal))])
    }
}

extension Methods {
    // MARK: Overlaps

    struct ActivityGetParams: MethodParams {
        static let names: Set<String> = ["identifier"]
        let identifier: String
    }

    /// An imported activity, as an overlap names it (its identifier): what a
    /// coordinator reads to decide the overlap.
    func activityGet(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let get = try ParamsDecoder.decode(ActivityGetParams.self, from: params)
        let found = try await tasks.activities(identifier: get.identifier, as: principal)
        guard !found.isEmpty else { throw RPCError(code: .notFound, message: "no imported activity \(get.identifier)") }
        return .object(["activities": .array(found.map(Wire.activity))])
    }

    struct CheckParams: MethodParams {
        static let names: Set<String> = ["title", "description", "leadAgency", "participants", "country", "locations", "sectors", "period", "externalRefs"]
        let title: String
        let description: String?
        let leadAgency: String?
        let participants: [Participant]?
        let country: String
        let locations: [String]?
        let sectors: [String]?
        let period: WirePeriod
        let externalRefs: [String: String]?
    }

    func overlapCheck(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let check = try ParamsDecoder.decode(CheckParams.self, from: params)
        let draft = TaskRecord(
            state: "", title: check.title, description: check.description ?? "", leadAgency: try Self.lead(check.leadAgency, of: principal),
            participants: check.participants ?? [], country: check.country, locations: check.locations ?? [], sectors: check.sectors ?? [],
            period: check.period.period, externalRefs: check.externalRefs ?? [:])
        let views = try await tasks.checkOverlaps(draft, as: principal)
        return .object(["overlaps": .array(views.map { view in
            guard case .object(var object) = Wire.overlap(view) else { return .null }
            object["id"] = nil
            object["task"] = nil
            object["status"] = nil
            object["resolution"] = nil
            object["resolutionData"] = nil
            object["foundBy"] = nil
            return .object(object)
        })])
    }

    struct OverlapListParams: MethodParams {
        static let names: Set<String> = ["task", "status", "limit", "cursor"]
        let task: String?
        let status: String?
        let limit: Int?
        let cursor: UUID?
    }

    func overlapList(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let list = try ParamsDecoder.decode(OverlapListParams.self, from: params)
        if let status = list.status, !["open", "resolved", "closed"].contains(status) {
            throw ParamsDecoder.invalid("status must be open, resolved or closed", parameter: "status")
        }
        if let limit = list.limit, !(1...500).contains(limit) { throw ParamsDecoder.invalid("limit must be between 1 and 500", parameter: "limit") }
        let page = try await tasks.listOverlaps(
            task: list.task, status: list.status ?? "open", limit: list.limit ?? 100, cursor: list.cursor, as: principal)
        return .object([
            "items": .array(page.items.map(Wire.overlap)), "nextCursor": Wire.optional(page.nextCursor.map { $0.uuidString.lowercased() }),
        ])
    }

    struct ResolveParams: MethodParams {
        static let names: Set<String> = ["overlap", "resolution", "leadAgency", "survivor", "task", "period", "comment"]
        let overlap: UUID
        let resolution: String
        let leadAgency: String?
        let survivor: String?
        let task: String?
        let period: WirePeriod?
        let comment: String?
    }

    func overlapResolve(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let resolve = try ParamsDecoder.decode(ResolveParams.self, from: params)
        func required<Value>(_ value: Value?, _ name: String) throws -> Value {
            guard let value else { throw ParamsDecoder.invalid("resolution \(resolve.resolution) needs \(name)", parameter: name) }
            return value
        }
        let resolution: Resolution
        switch resolve.resolution {
        case "distinct": resolution = .distinct
        case "coordinate": resolution = .coordinate(lead: AgencyID.normalized(try required(resolve.leadAgency, "leadAgency")))
        case "merge": resolution = .merge(survivor: try required(resolve.survivor, "survivor"))
        case "sequence": resolution = .sequence(task: try required(resolve.task, "task"), period: try required(resolve.period, "period").period)
        case "withdraw": resolution = .withdraw(task: try required(resolve.task, "task"))
        default:
            throw ParamsDecoder.invalid("resolution must be distinct, coordinate, merge, sequence or withdraw", parameter: "resolution")
        }
        let view = try await tasks.resolveOverlap(resolve.overlap, as: resolution, comment: resolve.comment, by: principal)
        return .object(["overlap": Wire.overlap(view)])
    }
}

extension Methods {
    // MARK: Reports

    struct ReportParams: MethodParams {
        static let names: Set<String> = ["country", "from", "to", "status"]
        let country: String?
        let from: CalendarDate?
        let to: CalendarDate?
        let status: String?
    }

    func whoWhatWhere(_ params: JSONValue?, _ principal: Principal) async throws -> JSONValue {
        let report = try ParamsDecoder.decode(ReportParams.self, from: params)
        if let from = report.from, let to = report.to, to < from { throw ParamsDecoder.invalid("to is before from", parameter: "to") }
        let rows = try await tasks.whoWhatWhere(ReportFilter(country: report.country, from: report.from, to: report.to, status: report.status), as: principal)
        return .object(["items": .array(rows.map { row in
            .object([
                "country": .string(row.country), "sector": .string(row.sector), "agency": .string(row.agency),
                "agencyName": .string(row.agencyName), "entries": .integer(Int64(row.entries)),
                "budgets": .array(row.budgets.keys.sorted().map { .object(["currency": .string($0), "amount": .string(row.budgets[$0]!)]) }),
            ])
        })])
    }
}

extension Duration {
    /// Milliseconds with two decimals, for the request log line (without `String(format:)`, which is slow on Linux).
    var milliseconds: String {
        let (seconds, attoseconds) = components
        let hundredths = seconds * 100_000 + attoseconds / 10_000_000_000_000
        let fraction = String(hundredths % 100)
        return "\(hundredths / 100)." + (fraction.count < 2 ? "0" + fraction : fraction)
    }
}

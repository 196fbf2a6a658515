import Coordination
import Crypto
import Foundation
import Postgres

/// A person or system known to pbc, as the store sees them.
public struct Principal: Sendable, Hashable {
    public var id: UUID
    public var name: String
    public var role: Role
    public var agency: String?

    public init(id: UUID, name: String, role: Role, agency: String?) {
        self.id = id
        self.name = name
        self.role = role
        self.agency = agency
    }

    public var actor: Actor { Actor(principal: id.uuidString.lowercased(), role: role, agency: agency) }
}

/// A task with the store's bookkeeping.
public struct StoredTask: Sendable, Hashable {
    public var id: UUID
    public var ref: String
    public var workflow: String
    public var workflowVersion: Int
    public var version: Int
    public var record: TaskRecord
    public var queue: String?
    /// Who holds the task now, under which lease, until when.
    public var holder: Holder?
    public var dueAt: Date?
    public var queuedAt: Date?
    /// Overlaps of this task still open when it was read from the database; workflow guards route by it.
    public var openOverlaps: Int = 0
    public var createdAt: Date
    public var updatedAt: Date
    public var state: String { record.state }
    public var assignee: UUID? { holder?.principal }

    /// A claim's lease expires unless renewed; an assignment's does not.
    public struct Holder: Sendable, Hashable {
        public var principal: UUID
        public var name: String
        public var lease: UUID
        public var expiresAt: Date?

        public func isHeld(at now: Date) -> Bool { expiresAt.map { $0 > now } ?? true }
    }
}

/// One entry of a task's audit trail.
public struct StoredEvent: Sendable, Hashable {
    public var seq: Int
    public var type: String
    public var actor: String
    public var action: String?
    public var fromState: String?
    public var toState: String?
    public var comment: String?
    public var data: PostgresJSONB
    public var at: Date
}

/// Tasks in PostgreSQL. Every change is one transaction: the task row is
/// locked, its version checked, the engine decides, and the task, its events
/// and a NOTIFY are written together.
public struct TaskStore: Sendable {
    /// Makes the screener for one transaction: its connection and the task's ref.
    public typealias ScreenerFactory = @Sendable (PostgresConnection, String) -> any Screener

    /// The portfolio screener with the given configuration.
    public static func portfolioScreener(_ configuration: OverlapConfiguration) -> ScreenerFactory {
        { connection, ref in PortfolioScreener(connection: connection, configuration: configuration, subjectRef: ref) }
    }

    let pool: PostgresPool
    let workflows: WorkflowRegistry
    let rates: ExchangeRates
    let makeScreener: ScreenerFactory
    let routing: Routing
    /// The reports a funded project owes, scheduled where its workflow says.
    let calendar: ReportingCalendar
    let now: @Sendable () -> Date

    /// The NOTIFY channel that carries the newest event `seq` on each commit.
    public static let eventChannel = "pbc_events"

    public init(
        pool: PostgresPool, workflows: WorkflowRegistry, rates: ExchangeRates,
        screener: @escaping ScreenerFactory, routing: Routing = Routing(), calendar: ReportingCalendar = ReportingCalendar(),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.pool = pool
        self.workflows = workflows
        self.rates = rates
        self.makeScreener = screener
        self.routing = routing
        self.calendar = calendar
        self.now = now
    }

    // MARK: Changes

    /// Creates a draft in the workflow's initial state.
    public func create(_ draft: TaskRecord, workflow: String, by principal: Principal) async throws -> StoredTask {
        try await transaction(as: principal) { connection in
            try await insert(draft, workflow: workflow, by: principal, on: connection)
        }
    }

    /// Creates and submits in one transaction; a task of a workflow with no
    /// `submit` from its initial state is created there. The same agency and key with the
    /// same content give the first result again (`replayed`); with other content, a conflict.
    /// The task's overlaps are read in the same transaction.
    public func submit(
        _ draft: TaskRecord, workflow: String, idempotencyKey: String, by principal: Principal
    ) async throws -> (task: StoredTask, replayed: Bool, overlaps: [StoredOverlap]) {
        // Keys belong to the submitting agency; a principal of no agency submits for the lead agency.
        let agency = principal.agency ?? draft.leadAgency
        let requestHash = try Self.hash(draft, workflow: workflow)
        do {
            return try await transaction(as: principal) { connection in
                if let replay = try await replayed(agency: agency, key: idempotencyKey, requestHash: requestHash, principal: principal, on: connection) {
                    return (replay, true, try await storedOverlaps(of: replay, on: connection))
                }
                // The submission's own step writes its portfolio row; the draft's would be replaced at once.
                var task = try await insert(draft, workflow: workflow, by: principal, recordInPortfolio: false, on: connection)
                try await connection.query("""
                    INSERT INTO idempotency_keys (agency, key, request_hash, task_id)
                    VALUES (\(agency), \(idempotencyKey), \(requestHash), \(task.id))
                    """)
                // A workflow with no `submit` from where it starts (a progress
                // report, a deconfliction case) is entered by creating the task.
                guard workflows.definition(task.workflow, version: task.workflowVersion)?.exits(from: task.state).contains(where: { $0.name == "submit" }) == true else {
                    try await writePortfolioRows(task, on: connection)
                    return (task, false, try await storedOverlaps(of: task, on: connection))
                }
                do {
                    try await apply("submit", inputs: ActionInputs(), to: &task, by: principal, createdHere: true, on: connection)
                } catch var refused as StoreError where refused.code == .refused {
                    // The transaction ends here and keeps nothing: there is no
                    // task, so no state and no actions to offer.
                    refused.state = nil
                    refused.allowedActions = []
                    throw refused
                }
                return (task, false, try await storedOverlaps(of: task, on: connection))
            }
        } catch let error as PostgresError where error.constraint == "idempotency_keys_pkey" {
            // Another submission with this key committed first: answer as it did.
            return try await transaction(as: principal) { connection in
                guard let replay = try await replayed(agency: agency, key: idempotencyKey, requestHash: requestHash, principal: principal, on: connection) else {
                    throw error
                }
                return (replay, true, try await storedOverlaps(of: replay, on: connection))
            }
        }
    }

    /// Performs a workflow action on a task at `expectedVersion`.
    public func act(
        _ key: String, action: String, expectedVersion: Int, inputs: ActionInputs = ActionInputs(), lease: UUID? = nil,
        by principal: Principal
    ) async throws -> StoredTask {
        try await transaction(as: principal) { connection in
            guard var task = try await load(key, visibleTo: principal, forUpdate: true, on: connection) else {
                throw StoreError(.notFound, "no task \(key)")
            }
            guard task.version == expectedVersion else {
                throw StoreError(
                    .conflict, "task \(task.ref) is at version \(task.version), not \(expectedVersion): reload it and try again",
                    currentVersion: task.version)
            }
            try checkHolding(task, lease: lease, by: principal)
            try await apply(action, inputs: inputs, to: &task, by: principal, on: connection)
            return task
        }
    }

    // MARK: Reads

    /// A task, if `principal` may see it.
    public func get(_ key: String, as principal: Principal) async throws -> StoredTask {
        guard let task = try await transaction(as: principal, { try await load(key, visibleTo: principal, forUpdate: false, on: $0) }) else {
            throw StoreError(.notFound, "no task \(key)")
        }
        return task
    }

    /// A task with its overlaps and, for a program, the reports due on it that
    /// `principal` may see, read together, if `principal` may see the task.
    public func detail(_ key: String, as principal: Principal) async throws -> TaskDetail {
        try await transaction(as: principal) { connection in
            guard let task = try await load(key, visibleTo: principal, forUpdate: false, on: connection) else {
                throw StoreError(.notFound, "no task \(key)")
            }
            return TaskDetail(
                task: task, overlaps: try await storedOverlaps(of: task, on: connection), reports: try await reports(of: task, on: connection),
                agreedAgencies: try await agreedAgencies(task, on: connection), replies: try await replies(to: task, on: connection))
        }
    }

    /// The agencies' replies to a task open to all agencies: the actions that
    /// kept it in its state (`offer`), since it last entered that state.
    private func replies(to task: StoredTask, on connection: PostgresConnection) async throws -> [AgencyReply]? {
        guard workflows.definition(task.workflow, version: task.workflowVersion)?.state(task.state)?.openToAllAgencies == true else { return nil }
        return try await connection.query("""
            SELECT p.agency, e.actor_name, e.at, e.action, coalesce(e.comment, '')
            FROM events e JOIN principals p ON p.id = e.actor
            WHERE e.task_id = \(task.id) AND e.type = 'task.transitioned' AND e.from_state = \(task.state) AND e.to_state = \(task.state)
              AND p.agency IS NOT NULL
              AND e.seq > coalesce((SELECT max(s.seq) FROM events s WHERE s.task_id = \(task.id) AND s.type = 'task.transitioned'
                                                                       AND s.to_state = \(task.state) AND s.from_state <> \(task.state)), 0)
            ORDER BY e.seq
            """).map {
            AgencyReply(
                agency: try $0.decode(String.self, at: 0), by: try $0.decode(String.self, at: 1), at: try $0.decode(Date.self, at: 2),
                action: try $0.decode(String.self, at: 3), comment: try $0.decode(String.self, at: 4))
        }
    }

    /// The task's audit trail, oldest first.
    public func history(_ key: String, as principal: Principal) async throws -> [StoredEvent] {
        let rows = try await transaction(as: principal) { connection in
            guard let task = try await load(key, visibleTo: principal, forUpdate: false, on: connection) else {
                throw StoreError(.notFound, "no task \(key)")
            }
            return try await connection.query("""
                SELECT seq, type, actor_name, action, from_state, to_state, comment, data, at
                FROM events WHERE task_id = \(task.id) ORDER BY seq
                """)
        }
        return try rows.map { row in
            StoredEvent(
                seq: try row.decode(Int.self, "seq"), type: try row.decode(String.self, "type"),
                actor: try row.decode(String.self, "actor_name"), action: try row.decode(String?.self, "action"),
                fromState: try row.decode(String?.self, "from_state"), toState: try row.decode(String?.self, "to_state"),
                comment: try row.decode(String?.self, "comment"), data: try row.decode(PostgresJSONB.self, "data"),
                at: try row.decode(Date.self, "at"))
        }
    }

    /// The actions `principal`'s role may take on the task in its state, with
    /// the guards that refuse each now, as acting on the task as read would
    /// find them (`agreed`: the agreements read with it, `TaskDetail`).
    public func actionOptions(_ task: StoredTask, agreed: Set<String> = [], for principal: Principal) -> [ActionOption] {
        guard let workflow = workflows.definition(task.workflow, version: task.workflowVersion) else { return [] }
        var context = guardContext(task)
        context.agreedAgencies = agreed
        return Engine.options(workflow, task: task.record, actor: principal.actor, context: context)
    }

    /// Rewrites the task's portfolio rows as it now stands: a program's, in
    /// each of its countries; a task of a workflow that does not screen has none.
    func writePortfolioRows(_ task: StoredTask, on connection: PostgresConnection) async throws {
        try await PortfolioScreener.record(task, program: isProgram(task), on: connection)
    }

    /// The task's workflow screens its tasks, so it is a program: screened, and screened against.
    func isProgram(_ task: StoredTask) -> Bool {
        workflows.definition(task.workflow, version: task.workflowVersion)?.describesPrograms == true
    }

    /// The agencies whose liaisons took an agreement action on the task since
    /// its fields were last set by a person's action (a proposal): a new
    /// proposal needs everyone's agreement again. None, without a query, for
    /// a workflow that takes no agreements.
    private func agreedAgencies(_ task: StoredTask, on connection: PostgresConnection) async throws -> Set<String> {
        let agreements = workflows.definition(task.workflow, version: task.workflowVersion)?.actions.filter(\.recordsAgreement).map(\.name) ?? []
        guard !agreements.isEmpty else { return [] }
        return Set(try await connection.query("""
            SELECT DISTINCT p.agency FROM events e JOIN principals p ON p.id = e.actor
            WHERE e.task_id = \(task.id) AND e.action = ANY (\(agreements)) AND p.agency IS NOT NULL
              AND e.seq > coalesce((SELECT max(s.seq) FROM events s
                                    WHERE s.task_id = \(task.id) AND s.type = 'task.transitioned' AND s.data <> '{}'::jsonb), 0)
            """).map { try $0.decode(String.self, at: 0) })
    }

    /// What guards read besides the task and the actor, now.
    private func guardContext(_ task: StoredTask) -> GuardContext {
        GuardContext(now: now(), rates: rates, openOverlaps: task.openOverlaps)
    }

    // MARK: Steps

    /// Creates a task in its workflow's initial state; `principal` nil: pbc
    /// itself, which schedules a funded project's reports.
    func insert(
        _ draft: TaskRecord, workflow name: String, by principal: Principal?, recordInPortfolio: Bool = true, on connection: PostgresConnection
    ) async throws -> StoredTask {
        guard let workflow = workflows.latest[name] else {
            throw StoreError.validation([FieldError("workflow", "unknown workflow \(name); known: \(workflows.latest.keys.sorted().joined(separator: ", "))")])
        }
        // pbc itself (no principal) creates what it schedules.
        switch principal?.role {
        case .liaison?:
            guard principal?.agency == draft.leadAgency else {
                throw StoreError(.forbidden, "a liaison creates tasks led by their own agency (\(principal?.agency ?? "none")), not \(draft.leadAgency)")
            }
        case .coordinator?, .admin?, .system?, nil: break
        case .approver?, .observer?:
            throw StoreError(.forbidden, "\(principal?.role.withArticle ?? "") cannot create tasks")
        }
        var task = draft
        task.state = workflow.initialState.name
        // The fields a new task carries are its workflow's, of the kinds declared.
        let (accepted, fieldErrors) = workflow.creationFields(task.fields)
        task.fields = accepted
        let entered = now()
        let dueAt = workflow.initialState.dueAt(entered: entered, fields: task.fields)
        let queue = routing.route(workflow.initialState.queue, for: task)
        // A case's overlap and a report's project are read from fields of the right kinds.
        if fieldErrors.isEmpty, workflow.name == Self.caseWorkflow { try await prepareCase(&task, on: connection) }
        if fieldErrors.isEmpty, workflow.name == Self.reportWorkflow { try await prepareReport(&task, by: principal, on: connection) }
        // Every bad value in one answer, the fields' with the task's own.
        try await checkValues(&task, also: fieldErrors, on: connection)

        let fields = try PostgresJSONB(encoding: task.fields)
        let refs = try PostgresJSONB(encoding: task.externalRefs)
        let rows = try await connection.query("""
            INSERT INTO tasks (workflow, workflow_version, state, title, description, lead_agency, country, locations, sectors,
                               period_start, period_end, budget_amount, budget_currency, priority, fields, external_refs,
                               queue, queued_at, due_at, next_reminder_at, open_to_all_agencies, created_by)
            VALUES (\(workflow.name), \(workflow.version), \(task.state), \(task.title), \(task.description), \(task.leadAgency),
                    \(task.country), \(task.locations), \(task.sectors), \(task.period.map { PostgresDate(iso: $0.start.iso)! }),
                    \(task.period.map { PostgresDate(iso: $0.end.iso)! }), \(task.budget.flatMap { PostgresNumeric($0.amount) }),
                    \(task.budget?.currency), \(task.priority.rawValue), \(fields), \(refs),
                    \(queue), \(queue == nil ? nil : entered), \(dueAt),
                    \(workflow.initialState.nextReminder(dueAt: dueAt, after: entered)), \(workflow.initialState.openToAllAgencies),
                    \(principal?.id))
            RETURNING id
            """)
        let id = try rows.first!.decode(UUID.self, at: 0)
        if !task.participants.isEmpty {
            try await connection.query("""
                INSERT INTO task_participants (task_id, agency, role)
                SELECT \(id), agency, role FROM unnest(\(task.participants.map(\.agency)), \(task.participants.map(\.role.rawValue))) AS p(agency, role)
                """)
        }
        try recordEvent(PendingEvents.Event(
            task: id, actor: principal, type: "task.created", to: task.state,
            data: #"{"workflow":"\#(workflow.name)","workflowVersion":\#(workflow.version)}"#))
        let created = try await load(id.uuidString, visibleTo: nil, forUpdate: false, on: connection)!
        if recordInPortfolio { try await writePortfolioRows(created, on: connection) }
        return created
    }

    /// Checks a task's values, its own and those that need the database
    /// (country, agencies, sectors), and refuses them with `earlier` (its
    /// workflow fields' problems), all in one answer; the country is stored
    /// as alpha-3.
    func checkValues(_ task: inout TaskRecord, also earlier: [FieldError] = [], on connection: PostgresConnection) async throws {
        // A country code in any case is the same country: "sl" is SL, stored below as SLE.
        task.country = task.country?.uppercased()
        var errors = task.validationErrors() + earlier
        let checkCountry = errors.allSatisfy({ $0.field != "country" }) ? task.country : nil
        let checkSectors = errors.allSatisfy({ !$0.field.hasPrefix("sectors") }) ? task.sectors : []
        // One round trip: the country's code, and the agencies and sectors that do not exist.
        let row = try await connection.query("""
            SELECT (SELECT code FROM countries WHERE code = \(checkCountry) OR alpha2 = \(checkCountry)),
                   ARRAY(SELECT a FROM unnest(\(Array(task.agencies))) AS a WHERE a NOT IN (SELECT id FROM agencies) ORDER BY a),
                   ARRAY(SELECT s FROM unnest(\(checkSectors)) AS s WHERE s NOT IN (SELECT code FROM sectors) ORDER BY s)
            """).first!
        if let country = checkCountry {
            if let code = try row.decode(String?.self, at: 0) { task.country = code } else {
                errors.append(FieldError("country", "unknown country \(country)"))
            }
        }
        for agency in try row.decode([String].self, at: 1) { errors.append(FieldError("agencies", "unknown agency \(agency)")) }
        for sector in try row.decode([String].self, at: 2) { errors.append(FieldError("sectors", "unknown sector code \(sector)")) }
        guard errors.isEmpty else { throw StoreError.validation(errors) }
    }

    /// Decides an action with the engine and writes its outcome.
    /// `createdHere`: the task was created in this transaction, so no other
    /// screening has seen it and it holds no pair yet.
    private func apply(
        _ action: String, inputs: ActionInputs, to task: inout StoredTask, by principal: Principal, createdHere: Bool = false,
        on connection: PostgresConnection
    ) async throws {
        guard let workflow = workflows.definition(task.workflow, version: task.workflowVersion) else {
            throw StoreError(.notFound, "workflow \(task.workflow) version \(task.workflowVersion) is not loaded")
        }
        var context = guardContext(task)
        context.agreedAgencies = try await agreedAgencies(task, on: connection)
        let decision: Decision
        switch try await Engine.decide(
            workflow, task: task.record, actor: principal.actor, action: action, inputs: inputs, context: context,
            screener: makeScreener(connection, task.ref))
        {
        case .failure(.invalidFields(_, let errors)):
            throw StoreError.validation(errors)
        case .failure(let refusal):
            throw StoreError(
                .refused, refusal.description, refusal: refusal, state: task.state,
                allowedActions: Engine.availableActions(workflow, task: task.record, actor: principal.actor, context: context))
        case .success(let success):
            decision = success
        }
        let fields = try PostgresJSONB(encoding: decision.task.fields)
        // Entering a state: its queue (as routed), its due date and reminders;
        // the step that was held is done, so the holding ends.
        let entered = context.now
        let queue = routing.route(decision.queue, for: decision.task)
        let reminder = workflow.state(decision.finalState)?.nextReminder(dueAt: decision.dueAt, after: entered)
        // An action may move the period's end (an approved extension: `period_end` in the workflow).
        let periodChanged = decision.task.period != task.record.period
        // An action may bring an agency in (a designated lead: `joins` in the workflow).
        let joined = decision.task.participants.filter { !task.record.participants.contains($0) }
        if !joined.isEmpty {
            let unknown = try await connection.query("""
                SELECT a FROM unnest(\(joined.map(\.agency))) AS a WHERE a NOT IN (SELECT id FROM agencies) ORDER BY a
                """).map { try $0.decode(String.self, at: 0) }
            if let agency = unknown.first {
                throw StoreError.validation([FieldError(workflow.action(action)?.joinsFrom.map { "fields.\($0)" } ?? "participants", "unknown agency \(agency)")])
            }
            try await connection.query("""
                INSERT INTO task_participants (task_id, agency, role)
                SELECT \(task.id), agency, role FROM unnest(\(joined.map(\.agency)), \(joined.map(\.role.rawValue))) AS p(agency, role)
                """)
        }
        let openToAll = workflow.state(decision.finalState)?.openToAllAgencies ?? false
        // An action that leaves the task where it was (an offer to a call, an
        // agreement that waits for the other agency's) enters nothing: its due
        // date, reminders, breach, queue time and holding stay. Otherwise each
        // offer restarted the call's deadline, and dropped a coordinator's claim.
        let stays = decision.finalState == task.state
        let updated = try await connection.query(stays ? """
            UPDATE tasks SET fields = \(fields), version = version + 1,
                period_end = \(decision.task.period.map { PostgresDate(iso: $0.end.iso)! }), updated_at = now()
            WHERE id = \(task.id)
            RETURNING version, updated_at
            """ : """
            UPDATE tasks SET state = \(decision.finalState), fields = \(fields), version = version + 1,
                period_end = \(decision.task.period.map { PostgresDate(iso: $0.end.iso)! }),
                queue = \(queue), queued_at = \(queue == nil ? nil : entered), due_at = \(decision.dueAt),
                breached_at = NULL, next_reminder_at = \(reminder), open_to_all_agencies = \(openToAll),
                assignee = NULL, lease_id = NULL, lease_expires_at = NULL, updated_at = now()
            WHERE id = \(task.id)
            RETURNING version, updated_at
            """).first!
        for (index, transition) in decision.transitions.enumerated() {
            // The first step is the person's; automatic steps after it are the system's.
            let byPerson = index == 0
            try recordEvent(PendingEvents.Event(
                task: task.id, actor: byPerson ? principal : nil, type: "task.transitioned", action: transition.action,
                from: transition.from, to: transition.to, comment: byPerson ? inputs.comment : nil,
                data: byPerson ? try Self.json(inputs.fields) : "{}"))
        }
        for finding in try await storeFindings(decision.findings, of: task.id, replacing: true, on: connection) {
            try recordOverlapDetected(finding, task: task.id, ref: task.ref)
        }
        // The task as the UPDATE left it, without reading it again.
        task.record = decision.task
        task.version = try updated.decode(Int.self, at: 0)
        task.updatedAt = try updated.decode(Date.self, at: 1)
        if !stays {
            task.queue = queue
            task.queuedAt = queue == nil ? nil : entered
            task.dueAt = decision.dueAt
            task.holder = nil
        }
        try await writePortfolioRows(task, on: connection)
        if Self.endedStates.contains(task.state) {
            try await closeOverlaps(of: task, on: connection)
        } else if decision.screened && !createdHere {
            // A screening that no longer finds an open pair closes it, as an
            // edit's does. Otherwise a program revised and resubmitted (its
            // text rewritten, which an edit does not screen) left the other
            // program held by a pair its own screening had just ruled out.
            try await closeUntrueOverlaps(
                of: task, found: Set(decision.findings.map(\.other)), screener: makeScreener(connection, task.ref), on: connection)
        }
        if periodChanged, let period = decision.task.period {
            struct PeriodChange: Encodable {
                let changed = ["period"]
                let periodEnd: String
            }
            try recordEvent(PendingEvents.Event(
                task: task.id, actor: principal, type: "task.updated", data: try Self.json(PeriodChange(periodEnd: period.end.iso))))
            // A change of dates is screened again (SPEC section 4), unless the step just did.
            if !decision.screened { try await rescreen(task, on: connection) }
        }
        // Fields a person set on a case are its proposal.
        if !inputs.fields.isEmpty { try await checkCaseProposal(task, on: connection) }
        try await resolveCase(task, comment: inputs.comment, by: principal, on: connection)
        // Funding schedules the project's reports; a new end date may add some and moves the final one.
        if periodChanged || decision.transitions.contains(where: { workflow.state($0.to)?.scheduleReportsFrom != nil }) {
            try await scheduleReports(for: task, on: connection)
        }
        // Closing or terminating it ends its reporting: what falls due later is no longer owed.
        if decision.transitions.contains(where: { workflow.state($0.to)?.closesReports == true }) {
            try await closeReports(of: task, on: connection)
        }
    }

    /// Writes what screening found for a task, in two statements whatever
    /// the number of findings. With `replacing`, an overlap already recorded
    /// for the pair takes the new score and reasons and is open again, its
    /// earlier resolution cleared on both sides of the pair (the events keep
    /// it); without, a pair resolved, on either side, is left as it is. A pair
    /// still open, or closed by an edit as no longer true (sql/0014), takes
    /// the new score and reasons, on both sides, and is open. Returns the
    /// findings to announce, one per other entry (two publishers may report
    /// the same identifier: the stronger finding counts): all with
    /// `replacing`; without, those that were not open before.
    func storeFindings(
        _ findings: [OverlapFinding], of task: UUID, replacing: Bool, on connection: PostgresConnection
    ) async throws -> [OverlapFinding] {
        var seen: Set<String> = []
        let findings = findings.sorted { $0.score > $1.score }.filter { seen.insert($0.other).inserted }
        guard !findings.isEmpty else { return [] }
        let (others, scores) = (findings.map(\.other), findings.map { String($0.score) })
        let reasons = try findings.map { try Self.json($0.reasons) }
        let rows = try await connection.query("""
            WITH open_before AS (SELECT other_ref FROM task_overlaps WHERE task_id = \(task) AND status = 'open'),
            written AS (
                INSERT INTO task_overlaps (task_id, other_ref, score, reasons)
                SELECT \(task), f.other, f.score::float8, f.reasons::jsonb
                FROM unnest(\(others), \(scores), \(reasons)) AS f(other, score, reasons)
                WHERE \(replacing) OR NOT overlap_settled_by_other_side((SELECT ref FROM tasks WHERE id = \(task)), f.other)
                ON CONFLICT (task_id, other_ref) DO UPDATE
                    SET score = EXCLUDED.score, reasons = EXCLUDED.reasons, status = 'open', resolution = NULL, resolution_data = '{}',
                        resolved_by = NULL, resolved_at = NULL
                    WHERE \(replacing) OR task_overlaps.status = 'open'
                       OR (task_overlaps.status = 'closed' AND task_overlaps.resolution_data ? 'edited')
                RETURNING other_ref)
            SELECT other_ref, other_ref IN (SELECT other_ref FROM open_before) AS was_open FROM written
            """)
        // The other side's row of a pair lies past row-level security when
        // its task is another agency's: sql/0014 looks at it and makes it
        // agree with this side's.
        try await connection.query(
            "SELECT sync_other_sides(\(task), \(others), \(scores)::float8[], \(reasons)::jsonb[], \(replacing))")
        let announced = Set(try rows.filter { try replacing || !$0.decode(Bool.self, at: 1) }.map { try $0.decode(String.self, at: 0) })
        return findings.filter { announced.contains($0.other) }
    }

    /// `overlap.detected` on the screened task and, when the other entry is
    /// a task, on that one too, naming the screened task: its agencies learn
    /// that a later submission overlaps their work.
    func recordOverlapDetected(_ finding: OverlapFinding, task: UUID, ref: String) throws {
        struct Detected: Encodable {
            let other: String
            let score: Double
            let reasons: [String]
        }
        try recordEvent(PendingEvents.Event(
            task: task, type: "overlap.detected", data: try Self.json(Detected(other: finding.other, score: finding.score, reasons: finding.reasons))))
        try recordEvent(PendingEvents.Event(
            peerRef: finding.other, type: "overlap.detected",
            data: try Self.json(Detected(other: ref, score: finding.score, reasons: finding.reasons))))
    }

    private func replayed(agency: String, key: String, requestHash: String, principal: Principal, on connection: PostgresConnection) async throws -> StoredTask? {
        let rows = try await connection.query(
            "SELECT request_hash, task_id FROM idempotency_keys WHERE agency = \(agency) AND key = \(key)")
        guard let row = rows.first else { return nil }
        guard try row.decode(String.self, at: 0) == requestHash else {
            throw StoreError(.conflict, "idempotency key \(key) was already used for a different submission")
        }
        return try await load(try row.decode(UUID.self, at: 1).uuidString, visibleTo: principal, forUpdate: false, on: connection)
    }

    static func hash(_ draft: TaskRecord, workflow: String) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        var data = Data(workflow.utf8)
        data.append(try encoder.encode(draft))
        return SHA256.hash(data: data).hex
    }

    // MARK: Loading

    /// A task by id or ref; nil when it does not exist or `principal` may not see it.
    /// A liaison sees their agency's tasks, tasks their agency takes part in,
    /// and tasks in a state open to all agencies (a call for offers).
    func load(_ key: String, visibleTo principal: Principal?, forUpdate: Bool, on connection: PostgresConnection) async throws -> StoredTask? {
        let id = UUID(uuidString: key)
        let agency = principal?.role == .liaison ? principal?.agency : nil
        let restricted = principal?.role == .liaison
        let rows = try await connection.query("""
            \(unsafeRaw: Self.taskSelect)
            WHERE (t.id = \(id) OR (\(id)::uuid IS NULL AND t.ref = \(key)))
              AND (NOT \(restricted) OR t.lead_agency = \(agency) OR t.open_to_all_agencies
                   OR t.id = ANY (ARRAY(SELECT p.task_id FROM task_participants p WHERE p.agency = \(agency))))
            \(unsafeRaw: forUpdate ? "FOR NO KEY UPDATE OF t" : "")
            """)
        return try rows.first.map(Self.task(from:))
    }

    /// Tasks by id, in the order given, in one query; ids not found are left out.
    /// For pages of lists whose query has already decided what the caller may see.
    func loadAll(_ ids: [UUID], on connection: PostgresConnection) async throws -> [StoredTask] {
        guard !ids.isEmpty else { return [] }
        let rows = try await connection.query("\(unsafeRaw: Self.taskSelect) WHERE t.id = ANY (\(ids.map(\.uuidString))::uuid[])")
        let byID = Dictionary(uniqueKeysWithValues: try rows.map(Self.task(from:)).map { ($0.id, $0) })
        return ids.compactMap { byID[$0] }
    }

    /// The columns `task(from:)` reads, participants and open overlaps included.
    /// Each is read from the task row by a subquery, not a join: a row locked
    /// `FOR NO KEY UPDATE` after waiting for another transaction is read
    /// again as that one left it, but rows joined to it are not, so a task
    /// claimed meanwhile came with a holder and no holder's name.
    private static let taskSelect = """
        SELECT t.id, t.ref, t.workflow, t.workflow_version, t.state, t.version, t.title, t.description, t.lead_agency,
               t.country, t.locations, t.sectors, t.period_start, t.period_end, t.budget_amount, t.budget_currency,
               t.priority, t.fields, t.external_refs, t.queue, t.assignee,
               (SELECT h.name FROM principals h WHERE h.id = t.assignee) AS holder_name, t.lease_id,
               t.lease_expires_at, t.due_at, t.queued_at, t.created_at, t.updated_at,
               ARRAY(SELECT p.agency || ':' || p.role FROM task_participants p WHERE p.task_id = t.id ORDER BY p.agency, p.role) AS participants,
               (SELECT count(*) FROM task_overlaps o WHERE o.task_id = t.id AND o.status = 'open') AS open_overlaps
        FROM tasks t
        """

    private static func task(from row: PostgresRow) throws -> StoredTask {
        let participants = try row.decode([String].self, "participants").map { pair in
            let parts = pair.split(separator: ":", maxSplits: 1)
            return Participant(agency: String(parts[0]), role: ParticipantRole(rawValue: String(parts[1]))!)
        }
        let start = try row.decode(PostgresDate?.self, "period_start")
        let end = try row.decode(PostgresDate?.self, "period_end")
        let amount = try row.decode(PostgresNumeric?.self, "budget_amount")
        let currency = try row.decode(String?.self, "budget_currency")
        let record = TaskRecord(
            state: try row.decode(String.self, "state"), title: try row.decode(String.self, "title"),
            description: try row.decode(String.self, "description"), leadAgency: try row.decode(String.self, "lead_agency"),
            participants: participants, country: try row.decode(String?.self, "country"),
            locations: try row.decode([String].self, "locations"), sectors: try row.decode([String].self, "sectors"),
            period: start.flatMap { start in end.map { Period(start: CalendarDate(iso: start.iso)!, end: CalendarDate(iso: $0.iso)!) } },
            budget: amount.flatMap { amount in currency.map { Money(amount: amount.text, currency: $0) } },
            fields: try row.decode(PostgresJSONB.self, "fields").decode([String: FieldValue].self),
            priority: Priority(rawValue: try row.decode(String.self, "priority")) ?? .normal,
            externalRefs: try row.decode(PostgresJSONB.self, "external_refs").decode([String: String].self))
        return StoredTask(
            id: try row.decode(UUID.self, "id"), ref: try row.decode(String.self, "ref"), workflow: try row.decode(String.self, "workflow"),
            workflowVersion: try row.decode(Int.self, "workflow_version"), version: try row.decode(Int.self, "version"),
            record: record, queue: try row.decode(String?.self, "queue"), holder: try Self.holder(row),
            dueAt: try row.decode(Date?.self, "due_at"), queuedAt: try row.decode(Date?.self, "queued_at"),
            openOverlaps: try row.decode(Int.self, "open_overlaps"), createdAt: try row.decode(Date.self, "created_at"),
            updatedAt: try row.decode(Date.self, "updated_at"))
    }
}

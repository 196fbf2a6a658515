import Coordination
import Foundation
import Postgres

/// An overlap as the caller may see it: of the other entry only what is
/// needed to talk (ref, title, lead agency, country, sectors, period).
public struct OverlapView: Sendable, Hashable {
    public var id: UUID
    public var taskRef: String
    public var other: OtherEntry
    public var score: Double
    public var reasons: [String]
    public var status: String
    public var resolution: String?
    /// What the resolution settled: `leadAgency` (coordinate), `survivor` and
    /// `absorbed` (merge), `task` and `period` (sequence), `task` (withdraw);
    /// empty while open, and for `distinct`.
    public var resolutionData: [String: String] = [:]
    /// The task whose screening found it (`StoredOverlap.foundBy`).
    public var foundBy: String

    public struct OtherEntry: Sendable, Hashable {
        public var ref: String
        public var kind: String
        public var title: String
        public var leadAgency: String
        /// The lead agency's name: an imported publisher's id (us-ein-300108263) says little to a reader.
        public var leadAgencyName: String
        public var country: String
        public var sectors: [String]
        public var start: String
        public var end: String
    }
}

/// The resolutions of SPEC section 4.
public enum Resolution: Sendable, Hashable {
    /// The two are different programs.
    case distinct
    /// Both go on, linked, with one lead agency.
    case coordinate(lead: String)
    /// `survivor` absorbs the other task's participants; the other ends as merged.
    case merge(survivor: String)
    /// One task's period moves so that they follow each other; it is screened again.
    case sequence(task: String, period: Period)
    /// One task is withdrawn.
    case withdraw(task: String)

    public var name: String {
        switch self {
        case .distinct: "distinct"
        case .coordinate: "coordinate"
        case .merge: "merge"
        case .sequence: "sequence"
        case .withdraw: "withdraw"
        }
    }
}

extension TaskStore {
    /// Screens a draft as submission would, and stores nothing.
    public func checkOverlaps(_ draft: TaskRecord, as principal: Principal) async throws -> [OverlapView] {
        try await transaction(as: principal) { connection in
            var task = draft
            try await checkValues(&task, on: connection)
            guard let country = task.country, task.period != nil else {
                throw StoreError.validation([FieldError("country", "screening needs a country and a period")])
            }
            let findings = try await makeScreener(connection, "(draft)").screen(task)
            var views: [OverlapView] = []
            for finding in findings {
                if let other = try await otherEntry(finding.other, country: country, on: connection) {
                    views.append(OverlapView(
                        id: UUID(), taskRef: "(draft)", other: other, score: finding.score, reasons: finding.reasons, status: "open", resolution: nil,
                        foundBy: "(draft)"))
                }
            }
            return views
        }
    }

    /// Overlaps of the tasks `principal` may see, open ones by default, seen
    /// from the caller's side: an overlap stored on another agency's task
    /// that names the caller's task is shown as the caller's task against
    /// the other. A pair that both tasks' screenings found is listed once,
    /// as first found. With `task`,
    /// that task's overlaps in both directions, the task first; `task` may
    /// also be an imported activity's identifier, for the overlaps tasks the
    /// caller may see have with it. Pages in the
    /// order overlaps were found; `cursor` is the last overlap of the page before.
    public func listOverlaps(
        task key: String?, status: String?, limit: Int, cursor: UUID? = nil, as principal: Principal
    ) async throws -> (items: [OverlapView], nextCursor: UUID?) {
        let limit = max(1, min(limit, 500))
        let restricted = principal.role == .liaison
        return try await transaction(as: principal) { connection in
            var task: StoredTask?
            // Or an imported activity, by its identifier: the overlaps tasks have with it.
            var activity: String?
            if let key {
                if let found = try await load(key, visibleTo: principal, forUpdate: false, on: connection) {
                    task = found
                } else if try await !connection.query("SELECT 1 FROM activities WHERE identifier = \(key) LIMIT 1").isEmpty {
                    activity = key
                } else {
                    throw StoreError(.notFound, "no task or imported activity \(key)")
                }
            }
            if let cursor, try await connection.query("SELECT 1 FROM task_overlaps WHERE id = \(cursor)").isEmpty {
                throw StoreError.validation([FieldError("cursor", "no overlap \(cursor.uuidString.lowercased()) to continue after")])
            }
            // `flipped`: the overlap is shown from its other side (`overlap_subject`
            // gives its own task as much as that side may see). A liaison's
            // whole list is paged by `overlap_page_of_agency`, which finds an
            // agency's few overlaps among many without testing every row
            // against row-level security; the policies still apply to the
            // rows read here.
            let pagedForAgency = restricted && task == nil && activity == nil
            let rows = try await connection.query("""
                SELECT o.id, o.other_ref, o.score, o.reasons, o.status, o.resolution, o.resolution_data, s.ref, s.kind, s.title, s.agency, s.country, s.sectors,
                       s.start::text, s.finish::text, f.flipped, (SELECT a.name FROM agencies a WHERE a.id = s.agency) AS agency_name
                FROM task_overlaps o, LATERAL overlap_subject(o.id) s,
                     LATERAL (SELECT CASE WHEN \(task?.id)::uuid IS NOT NULL THEN o.task_id <> \(task?.id)
                                          ELSE NOT pbc_sees_task(o.task_id) END AS flipped) f
                WHERE (NOT \(pagedForAgency) OR o.id = ANY (ARRAY(SELECT overlap_page_of_agency(\(status), \(cursor), \(limit + 1)::integer))))
                  AND (\(task?.id)::uuid IS NULL OR o.task_id = \(task?.id) OR o.other_ref = \(task?.ref))
                  AND (\(activity)::text IS NULL OR o.other_ref = \(activity))
                  AND (\(status)::text IS NULL OR o.status = \(status))
                  AND (NOT \(restricted) OR pbc_sees_task(o.task_id) OR pbc_sees_task_ref(o.other_ref))
                  AND NOT overlap_twin_found_before(o.id)
                  AND (\(cursor)::uuid IS NULL OR (o.detected_at, o.id) > (SELECT c.detected_at, c.id FROM task_overlaps c WHERE c.id = \(cursor)))
                ORDER BY o.detected_at, o.id
                LIMIT \(limit + 1)
                """)
            var views: [OverlapView] = []
            for row in rows.prefix(limit) {
                let subject = OverlapView.OtherEntry(
                    ref: try row.decode(String.self, "ref"), kind: try row.decode(String.self, "kind"), title: try row.decode(String.self, "title"),
                    leadAgency: try row.decode(String.self, "agency"), leadAgencyName: try row.decode(String?.self, "agency_name") ?? "",
                    country: try row.decode(String?.self, "country") ?? "",
                    sectors: try row.decode([String].self, "sectors"), start: try row.decode(String?.self, "start") ?? "",
                    end: try row.decode(String?.self, "finish") ?? "")
                let otherRef = try row.decode(String.self, "other_ref")
                let taskRef: String
                let other: OverlapView.OtherEntry
                if try row.decode(Bool.self, "flipped") {
                    (taskRef, other) = (otherRef, subject)
                } else {
                    guard let entry = try await otherEntry(otherRef, country: subject.country, on: connection) else { continue }
                    (taskRef, other) = (subject.ref, entry)
                }
                views.append(OverlapView(
                    id: try row.decode(UUID.self, "id"), taskRef: taskRef, other: other,
                    score: try row.decode(Double.self, "score"), reasons: try row.decode(PostgresJSONB.self, "reasons").decode([String].self),
                    status: try row.decode(String.self, "status"), resolution: try row.decode(String?.self, "resolution"),
                    resolutionData: try row.decode(PostgresJSONB.self, "resolution_data").decode([String: String].self),
                    foundBy: subject.ref))
            }
            return (views, rows.count > limit ? try rows[limit - 1].decode(UUID.self, "id") : nil)
        }
    }

    /// Of the other entry, only what is needed to talk about the overlap
    /// (`overlap_peer`, the one read of another agency's task a liaison's
    /// transaction may make).
    private func otherEntry(_ ref: String, country: String, on connection: PostgresConnection) async throws -> OverlapView.OtherEntry? {
        let rows = try await connection.query("""
            SELECT p.ref, p.kind, p.title, p.agency, p.country, p.sectors, p.start::text, p.finish::text, a.name
            FROM overlap_peer(\(ref), \(country)) p LEFT JOIN agencies a ON a.id = p.agency
            """)
        guard let row = rows.first else { return nil }
        return OverlapView.OtherEntry(
            ref: try row.decode(String.self, at: 0), kind: try row.decode(String.self, at: 1), title: try row.decode(String.self, at: 2),
            leadAgency: try row.decode(String.self, at: 3), leadAgencyName: try row.decode(String?.self, at: 8) ?? "",
            country: try row.decode(String.self, at: 4), sectors: try row.decode([String].self, at: 5), start: try row.decode(String.self, at: 6),
            end: try row.decode(String.self, at: 7))
    }

    /// Resolves an open overlap, with its effects, in one transaction. A
    /// coordinator (or admin) resolves; resolving twice is a conflict.
    public func resolveOverlap(
        _ id: UUID, as resolution: Resolution, comment: String?, by principal: Principal
    ) async throws -> OverlapView {
        guard [.coordinator, .admin].contains(principal.role) else {
            throw StoreError(.forbidden, "coordinators resolve overlaps")
        }
        if let tooLong = comment.flatMap({ FreeText.refusal($0, field: "comment") }) { throw StoreError.validation([tooLong]) }
        return try await transaction(as: principal) { connection in
            try await applyResolution(id, resolution, comment: comment, by: principal, on: connection)
        }
    }

    /// A resolution and its effects, inside the caller's transaction.
    func applyResolution(
        _ id: UUID, _ resolution: Resolution, comment: String?, by principal: Principal, on connection: PostgresConnection
    ) async throws -> OverlapView {
        guard let (taskRef, otherRef, statuses) = try await lockPair(of: id, on: connection) else {
            throw StoreError(.notFound, "no overlap \(id.uuidString.lowercased())")
        }
        guard statuses[id] == "open" else {
            throw StoreError(.conflict, "overlap \(id.uuidString.lowercased()) is \(statuses[id] ?? "resolved") already")
        }
        // A case carries the pair to the agencies' agreement, or to the
        // approver's decision once escalated; deciding past it would leave
        // the case stuck and overrule the one it was escalated to. A case
        // that ends in a resolution applies it from a terminal state, so it
        // is not counted here.
        if let open = try await openCase(for: Array(statuses.keys), on: connection) {
            throw StoreError(.conflict, "overlap \(id.uuidString.lowercased()) is being settled in deconfliction case \(open); decide it there, or dismiss the case first")
        }
        try await checkResolution(resolution, between: taskRef, and: otherRef, on: connection)
        let pair = [taskRef, otherRef]
        var data: [String: String] = [:]
        var ended: StoredTask?
        switch resolution {
        case .distinct:
            break
        case .coordinate(let lead):
            data["leadAgency"] = lead
        case .merge(let survivor):
            let absorbed = survivor == taskRef ? otherRef : taskRef
            // Both tasks, as checked above.
            let from = try await load(absorbed, visibleTo: nil, forUpdate: true, on: connection)!
            let into = try await load(survivor, visibleTo: nil, forUpdate: true, on: connection)!
            let moved = Set(from.record.participants + [Participant(agency: from.record.leadAgency, role: .implementing)])
                .filter { !into.record.participants.contains($0) && $0.agency != into.record.leadAgency }
            for participant in moved.sorted(by: { ($0.agency, $0.role.rawValue) < ($1.agency, $1.role.rawValue) }) {
                try await connection.query(
                    "INSERT INTO task_participants (task_id, agency, role) VALUES (\(into.id), \(participant.agency), \(participant.role.rawValue)) ON CONFLICT DO NOTHING")
            }
            ended = try await end(from, as: "merged", action: "merge", comment: comment, by: principal, on: connection)
            try await bump(into, event: "task.updated", data: ["changed": "participants", "absorbed": absorbed], by: principal, on: connection)
            data["survivor"] = survivor
            data["absorbed"] = absorbed
        case .sequence(let ref, let period):
            var task = try await load(ref, visibleTo: nil, forUpdate: true, on: connection)!
            try await connection.query("""
                UPDATE tasks SET period_start = \(PostgresDate(iso: period.start.iso)!), period_end = \(PostgresDate(iso: period.end.iso)!),
                    version = version + 1, updated_at = now() WHERE id = \(task.id)
                """)
            task.record.period = period
            try recordEvent(PendingEvents.Event(task: task.id, actor: principal, type: "task.updated", data: #"{"changed":["period"]}"#))
            task = try await load(task.id.uuidString, visibleTo: nil, forUpdate: false, on: connection)!
            try await writePortfolioRows(task, on: connection)
            try await rescreen(task, excluding: pair, on: connection)
            // A funded program's reports follow its new period, as an extension's do.
            try await scheduleReports(for: task, on: connection)
            data["task"] = ref
            data["period"] = "\(period.start.iso)/\(period.end.iso)"
        case .withdraw(let ref):
            let task = try await load(ref, visibleTo: nil, forUpdate: true, on: connection)!
            ended = try await end(task, as: "withdrawn", action: "withdraw", comment: comment, by: principal, on: connection)
            data["task"] = ref
        }
        let resolutionData = try PostgresJSONB(encoding: data)
        // Both directions of the pair are resolved together.
        try await connection.query("""
            UPDATE task_overlaps o SET status = 'resolved', resolution = \(resolution.name), resolution_data = \(resolutionData),
                resolved_by = \(principal.id), resolved_at = now()
            FROM tasks t
            WHERE t.id = o.task_id AND o.status = 'open'
              AND ((t.ref = \(taskRef) AND o.other_ref = \(otherRef)) OR (t.ref = \(otherRef) AND o.other_ref = \(taskRef)))
            """)
        // A merge or withdrawal ended one task: its other overlaps are moot.
        if let ended = ended { try await closeOverlaps(of: ended, on: connection) }
        for row in try await connection.query("SELECT id, ref FROM tasks WHERE ref = ANY (\(pair)) ORDER BY ref") {
            var resolved = data
            resolved["overlap"] = id.uuidString.lowercased()
            resolved["resolution"] = resolution.name
            resolved["other"] = try row.decode(String.self, at: 1) == taskRef ? otherRef : taskRef
            try recordEvent(PendingEvents.Event(
                task: try row.decode(UUID.self, at: 0), actor: principal, type: "overlap.resolved", comment: comment,
                data: try Self.json(resolved)))
        }
        let views = try await connection.query("SELECT o.score, o.reasons, t.country, t.ref FROM task_overlaps o JOIN tasks t ON t.id = o.task_id WHERE o.id = \(id)")
        let view = views.first!
        let other = try await otherEntry(otherRef, country: try view.decode(String?.self, at: 2) ?? "", on: connection)
            ?? OverlapView.OtherEntry(ref: otherRef, kind: "unknown", title: "", leadAgency: "", leadAgencyName: "", country: "", sectors: [], start: "", end: "")
        return OverlapView(
            id: id, taskRef: taskRef, other: other, score: try view.decode(Double.self, at: 0),
            reasons: try view.decode(PostgresJSONB.self, at: 1).decode([String].self), status: "resolved", resolution: resolution.name,
            resolutionData: data, foundBy: try view.decode(String.self, at: 3))
    }

    /// Refuses a resolution pbc could not apply to the pair `taskRef` and
    /// `otherRef`, naming the parameter, and changes nothing: what a
    /// coordinator's resolution, and a case's proposal, are checked against.
    func checkResolution(_ resolution: Resolution, between taskRef: String, and otherRef: String, on connection: PostgresConnection) async throws {
        let pair = [taskRef, otherRef]
        /// One of the pair that is a task (an imported activity is not pbc's to move or end).
        func pairTask(_ ref: String, _ parameter: String) async throws -> StoredTask {
            guard pair.contains(ref), let task = try await load(ref, visibleTo: nil, forUpdate: false, on: connection) else {
                throw StoreError.validation([FieldError(parameter, "must be the task \(taskRef)\(otherRef.hasPrefix("PBC-") ? " or \(otherRef)" : "")")])
            }
            return task
        }
        switch resolution {
        case .distinct:
            break
        case .coordinate(let lead):
            // A known agency, and one of the two programs' own, not a third party.
            let lookup = try await connection.query("""
                SELECT EXISTS (SELECT 1 FROM agencies WHERE id = \(lead)),
                       ARRAY(SELECT DISTINCT a FROM portfolio, unnest(agencies) AS a WHERE ref = ANY (\(pair)) ORDER BY a)
                """).first!
            guard try lookup.decode(Bool.self, at: 0) else {
                throw StoreError.validation([FieldError("leadAgency", "unknown agency \(lead)")])
            }
            let involved = try lookup.decode([String].self, at: 1)
            guard involved.contains(lead) else {
                throw StoreError.validation([FieldError(
                    "leadAgency", "\(lead) takes part in neither \(taskRef) nor \(otherRef); one of \(involved.joined(separator: ", ")) leads")])
            }
        case .merge(let survivor):
            guard pair.contains(survivor) else {
                throw StoreError.validation([FieldError("survivor", "must be \(taskRef) or \(otherRef)")])
            }
            for ref in pair where try await load(ref, visibleTo: nil, forUpdate: false, on: connection) == nil {
                throw StoreError.validation([FieldError("survivor", "both sides of a merge must be tasks; \(ref) is an imported activity")])
            }
        case .sequence(let ref, let period):
            _ = try await pairTask(ref, "task")
            guard period.start <= period.end else { throw StoreError.validation([FieldError("period", "end is before start")]) }
            // Sequenced programs follow each other: the new period may not share a day with the other's.
            let other = ref == taskRef ? otherRef : taskRef
            if let row = try await connection.query(
                "SELECT lower(period)::text, (upper(period) - 1)::text FROM portfolio WHERE ref = \(other) LIMIT 1").first {
                let (start, end) = (try row.decode(String.self, at: 0), try row.decode(String.self, at: 1))
                if period.start.iso <= end && start <= period.end.iso {
                    throw StoreError.validation([FieldError(
                        "period", "\(period.start.iso) to \(period.end.iso) still shares days with \(other) (\(start) to \(end)): "
                            + "sequenced programs follow each other, one ending before the other starts")])
                }
            }
        case .withdraw(let ref):
            _ = try await pairTask(ref, "task")
        }
    }

    /// The pair an overlap belongs to, with the status of each of its
    /// directions (a pair found by both tasks' screenings has an overlap on
    /// each task), locked until the transaction ends; nil when no overlap has
    /// this id. Resolutions and cases act on the pair, so they lock it as
    /// every change does, tasks, then screening keys, then overlaps: first
    /// the pair's task rows, in ref order (an edit holds its task while it
    /// screens and rewrites that task's overlaps), then the keys of both
    /// entries (an import holds an activity's keys while it scores its pairs
    /// again), then both overlap rows, in id order. Two transactions on one
    /// pair, from either side, wait for each other instead of deadlocking.
    func lockPair(of id: UUID, on connection: PostgresConnection) async throws -> (taskRef: String, otherRef: String, statuses: [UUID: String])? {
        guard let (taskRef, otherRef) = try await pair(of: id, on: connection) else { return nil }
        try await connection.query("SELECT 1 FROM tasks WHERE ref = ANY (\([taskRef, otherRef])) ORDER BY length(ref), ref FOR NO KEY UPDATE")
        // Keys before overlap rows, as every change takes them: a withdrawal
        // or a merge ends one of the two, which takes its keys.
        try await PortfolioScreener.lockKeys(ofEntries: [taskRef, otherRef], on: connection)
        let locked = try await connection.query("""
            SELECT o.id, o.status FROM task_overlaps o JOIN tasks t ON t.id = o.task_id
            WHERE (t.ref = \(taskRef) AND o.other_ref = \(otherRef)) OR (t.ref = \(otherRef) AND o.other_ref = \(taskRef))
            ORDER BY o.id FOR UPDATE OF o
            """)
        var statuses: [UUID: String] = [:]
        for row in locked { statuses[try row.decode(UUID.self, at: 0)] = try row.decode(String.self, at: 1) }
        return (taskRef, otherRef, statuses)
    }

    /// The two entries of an overlap: the task whose row it is, and the other.
    private func pair(of id: UUID, on connection: PostgresConnection) async throws -> (taskRef: String, otherRef: String)? {
        guard let row = try await connection.query(
            "SELECT t.ref, o.other_ref FROM task_overlaps o JOIN tasks t ON t.id = o.task_id WHERE o.id = \(id)").first
        else { return nil }
        return (try row.decode(String.self, at: 0), try row.decode(String.self, at: 1))
    }

    /// The workflow that carries an overlap the agencies must agree on.
    static let caseWorkflow = "deconfliction-case"

    /// A new deconfliction case names an open overlap (field `overlap`); both
    /// agencies take part, so that their liaisons can agree or object.
    func prepareCase(_ task: inout TaskRecord, on connection: PostgresConnection) async throws {
        guard case .string(let text)? = task.fields["overlap"], let id = UUID(uuidString: text) else {
            throw StoreError.validation([FieldError("fields.overlap", "a deconfliction case names the id of an open overlap")])
        }
        guard let (_, _, statuses) = try await lockPair(of: id, on: connection) else {
            throw StoreError.validation([FieldError("fields.overlap", "no overlap \(text)")])
        }
        guard statuses[id] == "open" else { throw StoreError(.conflict, "overlap \(text) is \(statuses[id] ?? "resolved") already") }
        // One case at a time for a pair: a second would end stuck, its
        // resolution refused as made already. The pair is locked, so two
        // coordinators opening cases at once see each other's.
        if let open = try await openCase(for: Array(statuses.keys), on: connection) {
            throw StoreError(.conflict, "overlap \(text) has an open deconfliction case already: \(open)")
        }
        let rows = try await connection.query("""
            SELECT t.lead_agency, p.agency
            FROM task_overlaps o JOIN tasks t ON t.id = o.task_id LEFT JOIN LATERAL overlap_peer(o.other_ref, t.country) p ON true
            WHERE o.id = \(id)
            """)
        let row = rows.first!
        let agencies = [try row.decode(String.self, at: 0), try row.decode(String?.self, at: 1)].compactMap { $0 }
        for agency in agencies where agency != task.leadAgency && !task.participants.contains(where: { $0.agency == agency }) {
            task.participants.append(Participant(agency: agency, role: .accountable))
        }
    }

    /// The ref of a deconfliction case not yet ended that names one of
    /// these overlaps (the two rows of a pair), if any.
    private func openCase(for overlaps: [UUID], on connection: PostgresConnection) async throws -> String? {
        try await connection.query("""
            SELECT ref FROM tasks
            WHERE workflow = \(Self.caseWorkflow) AND state <> ALL (\(caseEndStates)) AND lower(fields->>'overlap') = ANY (\(overlaps.map { $0.uuidString.lowercased() }))
            LIMIT 1
            """).first.map { try $0.decode(String.self, at: 0) }
    }

    /// When a case ends in a resolution state, that resolution applies to its
    /// overlap, in the same transaction, with the parameters in the case's fields.
    func resolveCase(_ task: StoredTask, comment: String?, by principal: Principal, on connection: PostgresConnection) async throws {
        guard task.workflow == Self.caseWorkflow, Self.resolutionNames.contains(task.state),
              let (id, resolution) = try caseResolution(task, named: task.state)
        else { return }
        // The agreed resolution touches the other agency's task too: pbc applies it.
        try await Scope.widen(on: connection)
        _ = try await applyResolution(id, resolution, comment: comment ?? "decided in \(task.ref)", by: principal, on: connection)
    }

    /// A case's proposal (`propose_resolution`, or an approver's `decide`) is
    /// checked as its resolution will be when it ends: the agencies are not
    /// asked to agree to what pbc would then refuse to apply. The final step
    /// checks again, since the programs may change meanwhile.
    func checkCaseProposal(_ task: StoredTask, on connection: PostgresConnection) async throws {
        guard task.workflow == Self.caseWorkflow, !hasEnded(task), case .string(let name)? = task.record.fields["resolution"],
              let (id, resolution) = try caseResolution(task, named: name), let (taskRef, otherRef) = try await pair(of: id, on: connection)
        else { return }
        do {
            try await checkResolution(resolution, between: taskRef, and: otherRef, on: connection)
        } catch let error as StoreError where error.code == .validation {
            // Named as the case's fields that carry them.
            throw StoreError.validation(error.fieldErrors.map { FieldError("fields." + ($0.field == "period" ? "periodStart" : $0.field), $0.reason) })
        }
    }

    static let resolutionNames: Set<String> = ["distinct", "coordinate", "merge", "sequence", "withdraw"]

    /// The overlap a case names and the resolution `name` with the case's
    /// fields as its parameters; refused, naming the field, when one is missing.
    private func caseResolution(_ task: StoredTask, named name: String) throws -> (UUID, Resolution)? {
        guard case .string(let text)? = task.record.fields["overlap"], let id = UUID(uuidString: text) else { return nil }
        func field(_ field: String) throws -> String {
            guard case .string(let value)? = task.record.fields[field], !value.isEmpty else {
                throw StoreError.validation([FieldError("fields.\(field)", "resolution \(name) needs it")])
            }
            return value
        }
        switch name {
        case "distinct": return (id, .distinct)
        case "coordinate": return (id, .coordinate(lead: AgencyID.normalized(try field("leadAgency"))))
        case "merge": return (id, .merge(survivor: try field("survivor")))
        case "sequence":
            guard let start = CalendarDate(iso: try field("periodStart")), let end = CalendarDate(iso: try field("periodEnd")) else {
                throw StoreError.validation([FieldError("fields.periodStart", "periodStart and periodEnd are YYYY-MM-DD")])
            }
            return (id, .sequence(task: try field("task"), period: Period(start: start, end: end)))
        case "withdraw": return (id, .withdraw(task: try field("task")))
        default: return nil
        }
    }

    /// Ends a task outside its workflow's actions (merged or withdrawn by a
    /// resolution, a moot case dismissed, a report a closed project no longer
    /// owes waived), with its event (by pbc itself when `principal` is nil);
    /// returns it as it now stands.
    func end(
        _ task: StoredTask, as state: String, action: String, comment: String?, by principal: Principal?, on connection: PostgresConnection
    ) async throws -> StoredTask {
        guard !hasEnded(task) else {
            throw StoreError(.refused, "task \(task.ref) is \(task.state) already", state: task.state)
        }
        try await connection.query("""
            UPDATE tasks SET state = \(state), queue = NULL, due_at = NULL, next_reminder_at = NULL, breached_at = NULL, open_to_all_agencies = false,
                version = version + 1, updated_at = now()
            WHERE id = \(task.id)
            """)
        try recordEvent(PendingEvents.Event(
            task: task.id, actor: principal, type: "task.transitioned", action: action, from: task.state, to: state, comment: comment))
        let ended = try await load(task.id.uuidString, visibleTo: nil, forUpdate: false, on: connection)!
        try await writePortfolioRows(ended, on: connection)
        // A funded program withdrawn or merged away owes no more than a
        // program closed early: its reporting ends today.
        if isProgram(ended), fundedOn(ended) != nil { try await closeReports(of: ended, on: connection) }
        return ended
    }

    /// The states in which a task is no overlap candidate any more (sql/0003).
    /// `merged` is pbc's own, set by a merge outside any workflow's states.
    static let endedStates: Set<String> = ["rejected", "withdrawn", "merged"]

    /// Whether a task can no longer change: a terminal state of its workflow,
    /// or a state pbc ended it in outside the workflow (merged, withdrawn by
    /// a resolution), which its workflow may not declare.
    func hasEnded(_ task: StoredTask) -> Bool {
        Self.endedStates.contains(task.state) || workflows.definition(task.workflow, version: task.workflowVersion)?.state(task.state)?.kind == .terminal
    }

    /// Closes the open overlaps of a task that just ended (rejected,
    /// withdrawn or merged), on either side of each pair: nothing is left to
    /// deconflict, and the other task is no longer held back by them. Each
    /// is an `overlap.closed` event on both tasks of its pair.
    func closeOverlaps(of task: StoredTask, on connection: PostgresConnection) async throws {
        struct Closed: Encodable {
            let other: String
            let ended: String
            let state: String
        }
        // A screening that found this task as a candidate commits first, so
        // that its overlap is closed here, or searches after, and finds none.
        try await PortfolioScreener.lockKeys(ofEntry: task.ref, on: connection)
        // sql/0011: rows of other agencies' tasks too, whoever ended this one.
        let rows = try await connection.query("SELECT overlap, holder, holder_ref, other_ref FROM close_overlaps_of_ended(\(task.id))")
        // A deconfliction case opened to settle one of them has nothing left
        // to agree: pbc dismisses it, whatever step it had reached. Whoever
        // ended the task sees such a case: only a coordinator, or a liaison of
        // the program's lead agency, ends a program, and a case counts both
        // programs' lead agencies among its own.
        try await announceClosedPairs(rows, because: "\(task.ref) was \(task.state): nothing is left to agree", on: connection) { other in
            try Self.json(Closed(other: other, ended: task.ref, state: task.state))
        }
    }

    /// What follows pairs just closed (rows of `overlap`, `holder`,
    /// `holder_ref` and `other_ref`, as sql/0011's and sql/0014's functions
    /// return them): an `overlap.closed` event on both tasks of each pair,
    /// whose data `data(other)` gives for the task whose other side is
    /// `other`, and the deconfliction cases opened on them dismissed.
    private func announceClosedPairs(
        _ rows: PostgresRows, because reason: String, on connection: PostgresConnection, data: (_ other: String) throws -> String
    ) async throws {
        var closed: [String] = []
        for row in rows {
            closed.append(try row.decode(UUID.self, "overlap").uuidString.lowercased())
            let (holder, holderRef, other) = (try row.decode(UUID.self, "holder"), try row.decode(String.self, "holder_ref"), try row.decode(String.self, "other_ref"))
            try recordEvent(PendingEvents.Event(task: holder, type: "overlap.closed", data: try data(other)))
            try recordEvent(PendingEvents.Event(peerRef: other, type: "overlap.closed", data: try data(holderRef)))
        }
        try await Self.dismissCases(of: closed, because: reason, endStates: caseEndStates, events: PendingEvents.ofThisTransaction, on: connection)
    }

    /// Dismisses, on pbc's own behalf, the deconfliction cases still under
    /// way for these overlaps (ids in lower case), which were closed: the
    /// program on one side ended, so nothing is left to agree. At whatever
    /// step a case had reached; whoever held it holds it no more. The
    /// importer does the same when it closes overlaps with a cancelled activity.
    static func dismissCases(
        of overlaps: [String], because reason: String, endStates: [String], events: PendingEvents, on connection: PostgresConnection
    ) async throws {
        guard !overlaps.isEmpty else { return }
        // Past row-level security (sql/0015): whoever closed the overlap
        // may not see the case, which counts the lead agencies only.
        let dismissed = try await connection.query(
            "SELECT id, state FROM dismiss_cases_of(\(caseWorkflow), \(overlaps), \(endStates))")
        for row in dismissed {
            events.append(PendingEvents.Event(
                task: try row.decode(UUID.self, at: 0), type: "task.transitioned", action: "dismiss", from: try row.decode(String.self, at: 1),
                to: "dismissed", comment: reason))
        }
    }

    /// The terminal states of every version of the deconfliction-case workflow.
    var caseEndStates: [String] { workflows.terminalStates(of: Self.caseWorkflow) }

    private func bump(_ task: StoredTask, event: String, data: [String: String], by principal: Principal, on connection: PostgresConnection) async throws {
        try await connection.query("UPDATE tasks SET version = version + 1, updated_at = now() WHERE id = \(task.id)")
        try recordEvent(event, task: task.id, by: principal, data: data)
        try await writePortfolioRows(try await load(task.id.uuidString, visibleTo: nil, forUpdate: false, on: connection)!, on: connection)
    }

    /// Screens a task again after a change of its dates, country, sectors or
    /// locations; new overlaps are stored with their events (the pair just
    /// resolved is left alone), and open ones the task no longer has are
    /// closed (`closeUntrueOverlaps`).
    func rescreen(_ task: StoredTask, excluding pair: [String] = [], on connection: PostgresConnection) async throws {
        let screener = makeScreener(connection, task.ref)
        let findings = try await screener.screen(task.record).filter { !pair.contains($0.other) }
        for finding in try await storeFindings(findings, of: task.id, replacing: false, on: connection) {
            try recordOverlapDetected(finding, task: task.id, ref: task.ref)
        }
        try await closeUntrueOverlaps(of: task, found: Set(findings.map(\.other)).union(pair), screener: screener, on: connection)
    }

    /// Closes the undecided pairs of a task just screened again (an edit, a
    /// resubmission) that no longer overlap, on both sides, each with an
    /// `overlap.closed` event on both tasks that names the changed task; a
    /// deconfliction case opened on one is dismissed.
    /// Before, they stayed open: a program moved to another country was held
    /// back by overlaps it no longer had. A pair the screening did not
    /// return is scored on its own first (it returns at most 1,000
    /// candidates), so that only a pair that is truly no overlap closes.
    func closeUntrueOverlaps(
        of task: StoredTask, found: Set<String>, screener: any Screener, on connection: PostgresConnection
    ) async throws {
        struct Closed: Encodable {
            let other: String
            let edited: String
        }
        let missing = try await storedOverlaps(of: task, on: connection).filter { $0.status == "open" && !found.contains($0.other) }.map(\.other)
        guard !missing.isEmpty else { return }
        let still = Set(try await screener.screen(task.record, against: missing).map(\.other))
        let untrue = missing.filter { !still.contains($0) }
        guard !untrue.isEmpty else { return }
        let rows = try await connection.query("SELECT overlap, holder, holder_ref, other_ref FROM close_untrue_overlaps(\(task.id), \(untrue))")
        // Only the lead agency's liaisons and coordinators edit a task, and a
        // case counts both programs' lead agencies among its own: the editor sees its cases.
        try await announceClosedPairs(rows, because: "\(task.ref) changed and no longer overlaps: nothing is left to agree", on: connection) { other in
            try Self.json(Closed(other: other, edited: task.ref))
        }
    }
}

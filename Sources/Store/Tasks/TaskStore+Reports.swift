import Coordination
import Foundation
import Postgres

/// A report due on a program, as the program's page lists it.
public struct ReportSummary: Sendable, Hashable {
    public var ref: String
    public var state: String
    /// `semi-annual`, `annual` or `final`, once known.
    public var reportType: String?
    public var dueDate: String?
}

/// What an agency said in reply while a task is open to all agencies (an
/// assistance request's offers): an action that kept it in its state.
public struct AgencyReply: Sendable, Hashable {
    public var agency: String
    public var by: String
    public var at: Date
    public var action: String
    public var comment: String
}

/// Where a proposal stands while a task waits for agencies to agree to it.
public struct AgreementStanding: Sendable, Hashable {
    public var agreed: [String]
    public var awaiting: [String]

    public init(agreed: [String], awaiting: [String]) {
        self.agreed = agreed
        self.awaiting = awaiting
    }
}

/// A task with what is read beside it: its overlaps and, for a program, its reports.
public struct TaskDetail: Sendable, Hashable {
    public var task: StoredTask
    public var overlaps: [StoredOverlap]
    public var reports: [ReportSummary]
    /// For a task whose workflow takes agreements: the agencies that agreed
    /// to its fields as last set.
    public var agreedAgencies: Set<String> = []
    /// While its state is open to all agencies: their replies since it
    /// entered that state, oldest first (what a coordinator designates
    /// from); nil in any other state.
    public var replies: [AgencyReply]? = nil
}

extension TaskStore {
    /// Who has agreed to the task's proposal and who is still awaited, while
    /// its state takes agreements (an action of its workflow with
    /// `agreement: true` leaves it); nil otherwise.
    public func agreement(of detail: TaskDetail) -> AgreementStanding? {
        guard waitsForAgreement(detail.task) else { return nil }
        return AgreementStanding(
            agreed: detail.agreedAgencies.sorted(), awaiting: detail.task.record.awaitingAgreement(besides: detail.agreedAgencies))
    }

    /// The task's state takes agreements.
    public func waitsForAgreement(_ task: StoredTask) -> Bool {
        workflows.definition(task.workflow, version: task.workflowVersion)?.actions
            .contains { $0.recordsAgreement && $0.from.contains(task.state) } == true
    }
}

extension TaskStore {
    /// The workflow of the reports due on a funded program.
    public static let reportWorkflow = "progress-report"

    /// The day a program was funded: the date its workflow schedules reports
    /// from (`schedule_reports`), or, under pbf-project versions before 5,
    /// which schedule none, its first transfer's. Nil while it is not funded.
    func fundedOn(_ program: StoredTask) -> CalendarDate? {
        let field = workflows.definition(program.workflow, version: program.workflowVersion)?.reportsScheduledFrom ?? "firstTransferDate"
        guard case .string(let text)? = program.record.fields[field] else { return nil }
        return CalendarDate(iso: text)
    }

    /// A new progress report names the program it reports on (field
    /// `project`, a ref or an id), which must be funded (`fundedOn`). The report is led by one of the program's agencies, and
    /// every agency of the program takes part, so that all of them see it.
    /// The field keeps the program's ref, however it was named.
    func prepareReport(_ task: inout TaskRecord, by principal: Principal?, on connection: PostgresConnection) async throws {
        guard case .string(let key)? = task.fields["project"], !key.isEmpty else {
            throw StoreError.validation([FieldError("fields.project", "a progress report names the funded project it reports on (its ref)")])
        }
        // It says what it is from the start: its type is what the project's list of reports counts on.
        if let types = workflows.latest[Self.reportWorkflow]?.fields?["reportType"], task.fields["reportType"] == nil {
            throw StoreError.validation([FieldError("fields.reportType", "a progress report says what it is: \(types)")])
        }
        guard let project = try await load(key, visibleTo: principal, forUpdate: false, on: connection) else {
            throw StoreError.validation([FieldError("fields.project", "no task \(key)")])
        }
        guard isProgram(project) else {
            throw StoreError.validation([FieldError("fields.project", "\(project.ref) is no program (its workflow is \(project.workflow)): reports are due on funded projects")])
        }
        guard fundedOn(project) != nil else {
            throw StoreError.validation([FieldError(
                "fields.project", "\(project.ref) is not funded (it is \(project.state)): reports are due once its first transfer is recorded")])
        }
        let agencies = [Participant(agency: project.record.leadAgency, role: .accountable)] + project.record.participants
        guard agencies.contains(where: { $0.agency == task.leadAgency }) else {
            throw StoreError.validation([FieldError(
                "leadAgency", "\(task.leadAgency) has no part in \(project.ref); its report is led by \(project.record.leadAgency) or an agency taking part")])
        }
        for participant in agencies where participant.agency != task.leadAgency && !task.participants.contains(where: { $0.agency == participant.agency }) {
            task.participants.append(participant)
        }
        task.fields["project"] = .string(project.ref)
    }

    /// A report of a project, as scheduling reads it, locked.
    private struct ReportOnFile {
        var id: UUID, workflowVersion: Int, state: String, type: String?, due: String?, fields: [String: FieldValue]
    }

    private func reportsOnFile(of project: StoredTask, on connection: PostgresConnection) async throws -> [ReportOnFile] {
        try await connection.query("""
            SELECT id, workflow_version, state, fields->>'reportType', fields->>'dueDate', fields FROM tasks
            WHERE workflow = \(Self.reportWorkflow) AND fields->>'project' = \(project.ref)
            ORDER BY created_at FOR NO KEY UPDATE
            """).map { row in
                ReportOnFile(
                    id: try row.decode(UUID.self, at: 0), workflowVersion: try row.decode(Int.self, at: 1), state: try row.decode(String.self, at: 2),
                    type: try row.decode(String?.self, at: 3), due: try row.decode(String?.self, at: 4),
                    fields: try row.decode(PostgresJSONB.self, at: 5).decode([String: FieldValue].self))
            }
    }

    /// Schedules the reports the calendar says `project` owes from the date
    /// its workflow names (`schedule_reports: firstTransferDate`) to its
    /// period's end, those it does not have yet, as pbc's own doing. A report
    /// due after the end (the final one) is owed once: while it still waits
    /// for its date, it moves with the end. Run when the project enters the
    /// state that schedules reports and whenever its period changes; before
    /// that date is set it does nothing. A report ended, waived or shortened
    /// out of the period is the coordinators' to decide.
    func scheduleReports(for project: StoredTask, on connection: PostgresConnection) async throws {
        guard workflows.definition(project.workflow, version: project.workflowVersion)?.reportsScheduledFrom != nil,
            let from = fundedOn(project), let end = project.record.period?.end
        else { return }
        let owed = calendar.reports(funded: from, end: end)
        guard !owed.isEmpty else { return }
        let existing = try await reportsOnFile(of: project, on: connection)
        for due in owed where !existing.contains(where: { $0.type == due.type && $0.due == due.date.iso }) {
            if calendar.afterEnd(due.type) != nil, let report = existing.first(where: { $0.type == due.type }) {
                try await move(report, of: project, to: due.date, on: connection)
                continue
            }
            // The year tells yearly reports apart; the final one's date may move, so its title has none.
            let name = due.type.prefix(1).uppercased() + due.type.dropFirst() + " report" + (calendar.afterEnd(due.type) != nil ? "" : " \(due.date.year)")
            let title = "\(name): \(project.record.title)"
            var draft = TaskRecord(state: "", title: String(title.prefix(TaskRecord.maximumTitleLength)), leadAgency: project.record.leadAgency, country: project.record.country)
            draft.fields = ["project": .string(project.ref), "reportType": .string(due.type), "dueDate": .string(due.date.iso)]
            _ = try await insert(draft, workflow: Self.reportWorkflow, by: nil, on: connection)
        }
    }

    /// The project's reporting ends today (it entered a state that says
    /// `closes_reports: true`: closed, or terminated): the reports not yet
    /// begun that would fall due later are waived, as pbc's own doing, and a
    /// final report still waiting for its date falls due as long after today
    /// as the calendar puts it after a period's end. A report already begun
    /// stays, to be finished or waived by a coordinator.
    func closeReports(of project: StoredTask, on connection: PostgresConnection) async throws {
        let today = CalendarDate(now())
        for report in try await reportsOnFile(of: project, on: connection) {
            guard let type = report.type, let definition = workflows.definition(Self.reportWorkflow, version: report.workflowVersion) else { continue }
            if let days = calendar.afterEnd(type) {
                try await move(report, of: project, to: today.adding(days: days), on: connection)
            } else if report.state == definition.initialState.name, let due = report.due.flatMap(CalendarDate.init(iso:)), due > today,
                let task = try await load(report.id.uuidString, visibleTo: nil, forUpdate: false, on: connection)
            {
                _ = try await end(
                    task, as: "waived", action: "waive", comment: "\(project.ref) is \(project.state) on \(today): this report is no longer due",
                    by: nil, on: connection)
            }
        }
    }

    /// A report that waits for its date (in a state due on `dueDate`) takes
    /// the new one, with the due time and reminders that date gives there.
    private func move(_ report: ReportOnFile, of project: StoredTask, to date: CalendarDate, on connection: PostgresConnection) async throws {
        guard report.due != date.iso,
            let state = workflows.definition(Self.reportWorkflow, version: report.workflowVersion)?.state(report.state), state.dueField == "dueDate"
        else { return }
        var moved = report.fields
        moved["dueDate"] = .string(date.iso)
        let dueAt = state.dueAt(entered: now(), fields: moved)
        try await connection.query("""
            UPDATE tasks SET fields = \(try PostgresJSONB(encoding: moved)), due_at = \(dueAt), breached_at = NULL,
                next_reminder_at = \(state.nextReminder(dueAt: dueAt, after: now())), version = version + 1, updated_at = now()
            WHERE id = \(report.id)
            """)
        struct Moved: Encodable {
            let changed = ["fields.dueDate"]
            let dueDate: String
            let project: String
        }
        try recordEvent(PendingEvents.Event(task: report.id, actor: nil, type: "task.updated", data: try Self.json(Moved(dueDate: date.iso, project: project.ref))))
    }

    /// The reports naming `program` that the reader may see, by due date.
    func reports(of program: StoredTask, on connection: PostgresConnection) async throws -> [ReportSummary] {
        guard isProgram(program) else { return [] }
        return try await connection.query("""
            SELECT ref, state, fields->>'reportType', fields->>'dueDate' FROM tasks
            WHERE workflow = \(Self.reportWorkflow) AND fields->>'project' = \(program.ref)
            ORDER BY fields->>'dueDate' NULLS LAST, ref
            """).map { row in
                ReportSummary(
                    ref: try row.decode(String.self, at: 0), state: try row.decode(String.self, at: 1),
                    reportType: try row.decode(String?.self, at: 2), dueDate: try row.decode(String?.self, at: 3))
            }
    }
}

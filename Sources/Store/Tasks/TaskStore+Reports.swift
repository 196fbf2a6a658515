import Coordination
import Foundation
import Postgres

/// A report due on a program, as the program's page lists it.
public struct ReportSummary: Sendable, Hashable {
    public var ref: String
    public var state: String
    /// `semi_annual`, `annual` or `final`, once known.
    public var reportType: String?
    public var dueDate: String?
}

/// A task with what is read beside it: its overlaps and, for a program, its reports.
public struct TaskDetail: Sendable, Hashable {
    public var task: StoredTask
    public var overlaps: [StoredOverlap]
    public var reports: [ReportSummary]
}

extension TaskStore {
    /// The workflow of the reports due on a funded program.
    static let reportWorkflow = "progress-report"

    /// A new progress report names the program it reports on (field
    /// `project`, a ref or an id), which must be funded: its first transfer
    /// recorded. The report is led by one of the program's agencies, and
    /// every agency of the program takes part, so that all of them see it.
    /// The field keeps the program's ref, however it was named.
    func prepareReport(_ task: inout TaskRecord, by principal: Principal, on connection: PostgresConnection) async throws {
        guard case .string(let key)? = task.fields["project"], !key.isEmpty else {
            throw StoreError.validation([FieldError("fields.project", "a progress report names the funded project it reports on (its ref)")])
        }
        guard let project = try await load(key, visibleTo: principal, forUpdate: false, on: connection) else {
            throw StoreError.validation([FieldError("fields.project", "no task \(key)")])
        }
        guard isProgram(project) else {
            throw StoreError.validation([FieldError("fields.project", "\(project.ref) is no program (its workflow is \(project.workflow)): reports are due on funded projects")])
        }
        guard project.record.fields["firstTransferDate"] != nil else {
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

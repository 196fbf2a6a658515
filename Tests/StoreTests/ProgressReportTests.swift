import Coordination
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// Progress reports are due on funded projects: each names its project,
/// and the project lists its reports to everyone who may see both.
@Suite struct ProgressReportTests {
    @Test func aReportNamesItsFundedProjectAndTheProjectListsIt() async throws {
        let h = try await Harness("report_project", screener: { _, _ in NoOverlaps() })
        let project = try await h.fund(Harness.project(), key: "gitega")
        // UNICEF takes part in the project: its liaison may write a report
        // on it, naming the project by id; the report keeps the ref.
        var draft = Harness.report(on: project, type: "annual", due: "2027-11-15")
        draft.leadAgency = "unicef"
        draft.fields["project"] = .string(project.id.uuidString)
        let annual = try await h.tasks.create(draft, workflow: "progress-report", by: h.unicef)
        #expect(annual.record.fields["project"] == .string(project.ref))
        // Every agency of the project takes part in its report, so UNDP sees what UNICEF writes.
        #expect(annual.record.participants == [Participant(agency: "undp", role: .accountable)])
        let semiAnnual = try await h.tasks.create(Harness.report(on: project, due: "2027-06-15"), workflow: "progress-report", by: h.undp)
        #expect(semiAnnual.record.participants == [Participant(agency: "unicef", role: .implementing)])

        for reader in [h.undp, h.unicef, h.coordinator] {
            let reports = try await h.tasks.detail(project.ref, as: reader).reports
            #expect(reports.map(\.ref) == [semiAnnual.ref, annual.ref], "by due date, as \(reader.name)")
            #expect(reports.map(\.reportType) == ["semi-annual", "annual"])
            #expect(reports.map(\.dueDate) == ["2027-06-15", "2027-11-15"])
            #expect(reports.map(\.state) == ["scheduled", "scheduled"])
        }
        // A report has no reports of its own.
        #expect(try await h.tasks.detail(annual.ref, as: h.undp).reports.isEmpty)
        #expect(try await h.invariantViolations() == [])
    }

    @Test func aReportOnNoFundedProjectOfTheCallersIsRefusedAndLeavesNothing() async throws {
        let h = try await Harness("report_refused", screener: { _, _ in NoOverlaps() })
        let funded = try await h.fund(Harness.project(), key: "funded")
        let inReview = try await h.tasks.submit(Harness.project(title: "Land commission support"), workflow: "pbf-project", idempotencyKey: "review", by: h.undp).task
        var request = TaskRecord(state: "", title: "Two land mediators for Gitega", leadAgency: "undp", country: "BDI")
        request.fields = [:]
        let assistance = try await h.tasks.create(request, workflow: "assistance-request", by: h.undp)
        let before = try await h.pool.query("SELECT count(*) FROM tasks").first!.decode(Int.self, at: 0)

        func refusal(_ draft: TaskRecord, by principal: Principal) async -> [FieldError] {
            let error = await #expect(throws: StoreError.self) { _ = try await h.tasks.create(draft, workflow: "progress-report", by: principal) }
            #expect(error?.code == .validation)
            return error?.fieldErrors ?? []
        }
        var named = Harness.report(on: funded)
        named.fields["project"] = nil
        #expect(await refusal(named, by: h.undp) == [FieldError("fields.project", "a progress report names the funded project it reports on (its ref)")])
        named.fields["project"] = .string("PBC-2026-999999")
        #expect(await refusal(named, by: h.undp) == [FieldError("fields.project", "no task PBC-2026-999999")])
        #expect(await refusal(Harness.report(on: assistance), by: h.undp) == [FieldError(
            "fields.project", "\(assistance.ref) is no program (its workflow is assistance-request): reports are due on funded projects")])
        #expect(await refusal(Harness.report(on: inReview), by: h.undp) == [FieldError(
            "fields.project", "\(inReview.ref) is not funded (it is technical_review): reports are due once its first transfer is recorded")])
        // WFP has no part in the project: it cannot see it, so cannot report on it, even leading its own report.
        var wfp = Harness.report(on: funded)
        wfp.leadAgency = "wfp"
        #expect(await refusal(wfp, by: h.wfp) == [FieldError("fields.project", "no task \(funded.ref)")])
        // A coordinator sees every project, and a report is still led by one of the project's agencies.
        #expect(await refusal(wfp, by: h.coordinator) == [FieldError(
            "leadAgency", "wfp has no part in \(funded.ref); its report is led by undp or an agency taking part")])

        #expect(try await h.pool.query("SELECT count(*) FROM tasks").first!.decode(Int.self, at: 0) == before)
    }
}

import Coordination
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// A workflow's fields hold what they mean: a value of the wrong kind is
/// refused with the field and why, and changes nothing. Before fields were
/// declared, a proposal with facility "irf" went through review and then
/// stuck, neither IRF nor PRF; a liaison could submit a project with its
/// first transfer already recorded.
@Suite struct WorkflowFieldsTests {
    func count(_ h: Harness) async throws -> Int {
        try await h.pool.query("SELECT count(*) FROM tasks").first!.decode(Int.self, at: 0)
    }

    @Test func aProposalCarriesOnlyItsOwnFieldsOfTheirKind() async throws {
        let h = try await Harness("fields_proposal", screener: { _, _ in NoOverlaps() })
        var proposal = Harness.project()
        proposal.fields = ["facility": .string("irf"), "genderMarker": .string("two"), "firstTransferDate": .string("2027-01-05")]
        let refused = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.submit(proposal, workflow: "pbf-project", idempotencyKey: "irf", by: h.undp)
        }
        #expect(refused?.code == .validation)
        #expect(refused?.fieldErrors == [
            FieldError("fields.facility", "must be one of IRF, PRF, not irf"),
            FieldError(
                "fields.firstTransferDate",
                "a new task does not carry firstTransferDate; record_first_transfer sets it (a new task carries: facility, genderMarker)"),
            FieldError("fields.genderMarker", "must be a whole number, not two"),
        ])
        #expect(try await count(h) == 0)
        // In one answer with what the database knows is wrong: nothing is left for a second try to find.
        var unknown = proposal
        unknown.participants = [Participant(agency: "unicfe", role: .implementing)]
        unknown.sectors = ["15299"]
        let both = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.submit(unknown, workflow: "pbf-project", idempotencyKey: "unknown", by: h.undp)
        }
        #expect(both?.fieldErrors.map(\.field) == ["fields.facility", "fields.firstTransferDate", "fields.genderMarker", "agencies", "sectors"])
        #expect(try await count(h) == 0)

        // A numeral is a number: "2" from a command line is the gender marker 2.
        proposal.fields = ["facility": .string("IRF"), "genderMarker": .string("2")]
        let task = try await h.tasks.submit(proposal, workflow: "pbf-project", idempotencyKey: "ok", by: h.undp).task
        #expect(task.record.fields["genderMarker"] == .number(2))
        #expect(task.workflowVersion == 5)
    }

    /// A draft made without its facility and gender marker is given them
    /// as it is submitted; nothing else could set them, so it was stranded.
    @Test func aDraftIsGivenItsFieldsAsItIsSubmitted() async throws {
        let h = try await Harness("fields_draft", screener: { _, _ in NoOverlaps() })
        var draft = Harness.project()
        draft.fields = [:]
        let created = try await h.tasks.create(draft, workflow: "pbf-project", by: h.undp)
        let bare = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(created.ref, action: "submit", expectedVersion: created.version, by: h.undp)
        }
        #expect(bare?.refusal == .guardsFailed(action: "submit", failures: [
            GuardFailure("field_in_range(genderMarker, 0, 3)", "the field genderMarker is required"),
            GuardFailure("field_present(facility)", "the field facility is required"),
        ]))
        let submitted = try await h.tasks.act(
            created.ref, action: "submit", expectedVersion: created.version,
            inputs: ActionInputs(fields: ["facility": .string("PRF"), "genderMarker": .number(1)]), by: h.undp)
        #expect(submitted.state == "technical_review")
        #expect(submitted.record.fields == ["facility": .string("PRF"), "genderMarker": .number(1)])
    }

    @Test func anActionsFieldOfTheWrongKindChangesNothing() async throws {
        let h = try await Harness("fields_action", screener: { _, _ in NoOverlaps() })
        var task = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "p", by: h.undp).task
        task = try await h.tasks.act(task.ref, action: "recommend", expectedVersion: task.version, by: h.coordinator)
        task = try await h.tasks.act(task.ref, action: "approve", expectedVersion: task.version, by: h.approver)
        let refused = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(
                task.ref, action: "record_first_transfer", expectedVersion: task.version,
                inputs: ActionInputs(fields: ["firstTransferDate": .string("last week")]), by: h.coordinator)
        }
        #expect(refused?.code == .validation)
        #expect(refused?.fieldErrors == [FieldError("fields.firstTransferDate", "must be a date, YYYY-MM-DD, not last week")])
        let unchanged = try await h.tasks.get(task.ref, as: h.coordinator)
        #expect(unchanged.state == "approved" && unchanged.version == task.version && unchanged.record.fields["firstTransferDate"] == nil)
    }

    @Test func aReportsTypeAndDueDateAreOnesItCanHave() async throws {
        let h = try await Harness("fields_report", screener: { _, _ in NoOverlaps() })
        let project = try await h.fund(Harness.project(), key: "p")
        let before = try await count(h)
        var report = Harness.report(on: project)
        report.fields["reportType"] = .string("weekly")
        report.fields["dueDate"] = .string("June")
        let refused = await #expect(throws: StoreError.self) { _ = try await h.tasks.create(report, workflow: "progress-report", by: h.undp) }
        #expect(refused?.fieldErrors == [
            FieldError("fields.dueDate", "must be a date, YYYY-MM-DD, not June"),
            FieldError("fields.reportType", "must be one of semi-annual, annual, final, not weekly"),
        ])
        #expect(try await count(h) == before)
        // A report says what it is from the start, and keeps it: submitting cannot turn the final report into another.
        report.fields["reportType"] = nil
        report.fields["dueDate"] = .string("2028-04-30")
        let untyped = await #expect(throws: StoreError.self) { _ = try await h.tasks.create(report, workflow: "progress-report", by: h.undp) }
        #expect(untyped?.fieldErrors == [FieldError("fields.reportType", "a progress report says what it is: one of semi-annual, annual, final")])
        #expect(try await count(h) == before)
        report.fields["reportType"] = .string("final")
        var final = try await h.tasks.create(report, workflow: "progress-report", by: h.undp)
        final = try await h.tasks.act(final.ref, action: "start_drafting", expectedVersion: final.version, by: h.undp)
        let relabelled = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(
                final.ref, action: "submit_report", expectedVersion: final.version,
                inputs: ActionInputs(comment: "Committees met monthly", fields: ["reportType": .string("annual")]), by: h.undp)
        }
        #expect(relabelled?.refusal == .fieldNotSettable(action: "submit_report", field: "reportType", settable: ["document"]))
        let submitted = ActionInputs(
            comment: "Committees met monthly in all 12 communes", fields: ["document": .string("https://mptf.undp.org/reports/final-1")])
        final = try await h.tasks.act(final.ref, action: "submit_report", expectedVersion: final.version, inputs: submitted, by: h.undp)
        #expect(final.state == "under_review" && final.record.fields["reportType"] == .string("final"))
        #expect(final.record.fields["document"] == .string("https://mptf.undp.org/reports/final-1"))
    }

    /// A report goes to review with the report: where it is, and what it says
    /// in brief. Under version 4 it went with nothing for the reviewer to read.
    @Test func aReportIsSubmittedWithTheReport() async throws {
        let h = try await Harness("fields_report_document", screener: { _, _ in NoOverlaps() })
        let project = try await h.fund(Harness.project(), key: "p")
        var report = try await h.tasks.create(Harness.report(on: project, type: "annual", due: "2028-01-31"), workflow: "progress-report", by: h.undp)
        report = try await h.tasks.act(report.ref, action: "start_drafting", expectedVersion: report.version, by: h.undp)
        let empty = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(report.ref, action: "submit_report", expectedVersion: report.version, by: h.undp)
        }
        #expect(empty?.refusal == .commentRequired(action: "submit_report"))
        let unlinked = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(
                report.ref, action: "submit_report", expectedVersion: report.version, inputs: ActionInputs(comment: "Done"), by: h.undp)
        }
        #expect(unlinked?.refusal.map { "\($0)" } == "submit_report refused by field_present(document): the field document is required")
        let unchanged = try await h.tasks.detail(report.ref, as: h.undp).task
        #expect(unchanged.state == "drafting" && unchanged.version == report.version)
        report = try await h.tasks.act(
            report.ref, action: "submit_report", expectedVersion: report.version,
            inputs: ActionInputs(comment: "Done", fields: ["document": .string("MPTF-00119422 annual 2027")]), by: h.undp)
        #expect(report.state == "under_review" && report.record.fields["document"] == .string("MPTF-00119422 annual 2027"))
    }

    /// A case could agree on a resolution pbc cannot apply, and then stay
    /// agreed on nothing: the agreement had no way out.
    @Test func aCaseProposesOnlyAResolutionPBCCanApply() async throws {
        let h = try await Harness("fields_case")
        let overlap = try await h.twoOverlapping().overlap
        var deconfliction = try await h.tasks.create(Harness.caseDraft(for: overlap.id), workflow: "deconfliction-case", by: h.coordinator)
        deconfliction = try await h.tasks.act(deconfliction.ref, action: "start_consultation", expectedVersion: deconfliction.version, by: h.coordinator)
        let refused = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(
                deconfliction.ref, action: "propose_resolution", expectedVersion: deconfliction.version,
                inputs: ActionInputs(comment: "Both go on", fields: ["resolution": .string("both")]), by: h.coordinator)
        }
        #expect(refused?.fieldErrors == [FieldError("fields.resolution", "must be one of distinct, coordinate, merge, sequence, withdraw, not both")])
        #expect(try await h.tasks.get(deconfliction.ref, as: h.coordinator).state == "consultation")
    }
}

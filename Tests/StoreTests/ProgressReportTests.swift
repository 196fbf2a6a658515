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

        // Funding scheduled four reports already (the next test); these two come among them, by due date.
        let handMade = [semiAnnual.ref, annual.ref]
        for reader in [h.undp, h.unicef, h.coordinator] {
            let reports = try await h.tasks.detail(project.ref, as: reader).reports
            #expect(reports.count == 6, "as \(reader.name)")
            #expect(reports.map(\.dueDate) == reports.map(\.dueDate).sorted { ($0 ?? "") < ($1 ?? "") })
            let mine = reports.filter { handMade.contains($0.ref) }
            #expect(mine.map(\.ref) == handMade, "as \(reader.name)")
            #expect(mine.map(\.reportType) == ["semi-annual", "annual"])
            #expect(mine.map(\.dueDate) == ["2027-06-15", "2027-11-15"])
            #expect(mine.map(\.state) == ["scheduled", "scheduled"])
        }
        // A report has no reports of its own.
        #expect(try await h.tasks.detail(annual.ref, as: h.undp).reports.isEmpty)
        #expect(try await h.invariantViolations() == [])
    }

    /// Funding schedules the reports of Config/reporting.yaml; an approved
    /// extension adds those the longer period owes and moves the final one.
    @Test func fundingSchedulesTheProjectsReportsAndAnExtensionMovesTheFinalOne() async throws {
        let h = try await Harness("report_schedule", screener: { _, _ in NoOverlaps() })
        var project = try await h.fund(Harness.project(), key: "gitega")  // 2027-01-01 to 2028-06-30, first transfer 2027-01-15
        let scheduled = try await h.tasks.detail(project.ref, as: h.unicef).reports
        #expect(scheduled.map { "\($0.reportType ?? "") \($0.dueDate ?? "") \($0.state)" } == [
            "semi-annual 2027-06-15 scheduled", "annual 2027-11-15 scheduled", "semi-annual 2028-06-15 scheduled", "final 2028-09-28 scheduled",
        ])
        let first = try await h.tasks.get(scheduled[0].ref, as: h.undp)
        #expect(first.record.title == "Semi-annual report 2027: Youth and women in local peace committees")
        #expect(first.record.leadAgency == "undp" && first.record.participants == [Participant(agency: "unicef", role: .implementing)])
        #expect(first.record.country == "BDI")
        #expect(first.dueAt == ISO8601DateFormatter().date(from: "2027-06-16T00:00:00Z"))
        #expect(try await h.tasks.history(first.ref, as: h.undp).map(\.actor) == ["system"], "pbc scheduled it, nobody asked")
        let final = try await h.tasks.get(scheduled[3].ref, as: h.undp)
        #expect(final.record.title == "Final report: Youth and women in local peace committees")

        // Elections moved: the project runs to the end of 2028.
        project = try await h.tasks.act(project.ref, action: "start_implementation", expectedVersion: project.version, by: h.undp)
        project = try await h.tasks.act(
            project.ref, action: "request_extension", expectedVersion: project.version,
            inputs: ActionInputs(comment: "Elections moved to 2028", fields: ["requestedEndDate": .string("2028-12-31")]), by: h.undp)
        project = try await h.tasks.act(project.ref, action: "approve_extension", expectedVersion: project.version, by: h.coordinator)
        let extended = try await h.tasks.detail(project.ref, as: h.unicef).reports
        #expect(extended.map { "\($0.reportType ?? "") \($0.dueDate ?? "")" } == [
            "semi-annual 2027-06-15", "annual 2027-11-15", "semi-annual 2028-06-15", "annual 2028-11-15", "final 2029-03-31",
        ])
        let moved = try await h.tasks.get(final.ref, as: h.undp)
        #expect(extended.last?.ref == final.ref, "the final report moves; no second one")
        #expect(moved.version == final.version + 1)
        #expect(moved.dueAt == ISO8601DateFormatter().date(from: "2029-04-01T00:00:00Z"))
        let change = try #require(try await h.tasks.history(final.ref, as: h.undp).last)
        #expect(change.type == "task.updated" && change.actor == "system")
        struct Moved: Decodable, Equatable {
            let changed: [String]
            let dueDate: String
            let project: String
        }
        #expect(try change.data.decode(Moved.self) == Moved(changed: ["fields.dueDate"], dueDate: "2029-03-31", project: project.ref))

        // An edit that keeps the end schedules nothing more.
        var changes = TaskChanges()
        changes.period = Period(start: CalendarDate(iso: "2027-02-01")!, end: CalendarDate(iso: "2028-12-31")!)
        project = try await h.tasks.update(project.ref, expectedVersion: project.version, changes: changes, by: h.undp)
        #expect(try await h.tasks.detail(project.ref, as: h.unicef).reports.count == 5)
        // The lead agency's liaison moves the end itself: what pbc schedules then is written within that liaison's rights.
        changes.period = Period(start: CalendarDate(iso: "2027-02-01")!, end: CalendarDate(iso: "2029-06-30")!)
        _ = try await h.tasks.update(project.ref, expectedVersion: project.version, changes: changes, by: h.undp)
        #expect(try await h.tasks.detail(project.ref, as: h.unicef).reports.suffix(2).map { "\($0.reportType ?? "") \($0.dueDate ?? "")" } == [
            "semi-annual 2029-06-15", "final 2029-09-28",
        ])

        // Each is reminded of as its workflow says: 30 days before, while scheduled.
        h.clock.set("2027-05-17")
        #expect(try await h.tasks.sweep()?.reminded == [first.ref])
        #expect(try await h.invariantViolations() == [])
    }

    /// A project terminated (or closed) ends its reporting that day: a report
    /// not begun that would fall due later is waived, one begun stays, one
    /// overdue is still owed, and the final one is due 90 days from the end.
    @Test func terminatingAProjectEndsItsReporting() async throws {
        let h = try await Harness("report_close", screener: { _, _ in NoOverlaps() })
        var project = try await h.fund(Harness.project(), key: "gitega")  // reports due 2027-06-15, 2027-11-15, 2028-06-15, and 2028-09-28
        project = try await h.tasks.act(project.ref, action: "start_implementation", expectedVersion: project.version, by: h.undp)
        let reports = try await h.tasks.detail(project.ref, as: h.undp).reports
        var annual = try await h.tasks.get(reports[1].ref, as: h.undp)
        annual = try await h.tasks.act(annual.ref, action: "start_drafting", expectedVersion: annual.version, by: h.undp)

        h.clock.set("2027-09-01")
        project = try await h.tasks.act(
            project.ref, action: "suspend", expectedVersion: project.version, inputs: ActionInputs(comment: "Security situation"), by: h.coordinator)
        project = try await h.tasks.act(
            project.ref, action: "terminate", expectedVersion: project.version, inputs: ActionInputs(comment: "Cannot resume"), by: h.approver)
        let after = try await h.tasks.detail(project.ref, as: h.unicef).reports
        #expect(after.map { "\($0.reportType ?? "") \($0.dueDate ?? "") \($0.state)" } == [
            "semi-annual 2027-06-15 scheduled",  // overdue, still owed
            "annual 2027-11-15 drafting",  // begun: finished or waived by a coordinator
            "final 2027-11-30 scheduled",  // 90 days from the termination
            "semi-annual 2028-06-15 waived",
        ])
        let waived = try await h.tasks.get(reports[2].ref, as: h.undp)
        #expect(waived.state == "waived")
        #expect(waived.dueAt == nil && waived.queue == nil)
        let waiving = try #require(try await h.tasks.history(waived.ref, as: h.undp).last)
        #expect(waiving.actor == "system" && waiving.action == "waive")
        #expect(waiving.comment == "\(project.ref) is terminated on 2027-09-01: this report is no longer due")
        // Nothing is reminded of or breached for the waived report.
        h.clock.set("2028-06-20")
        let sweep = try #require(try await h.tasks.sweep())
        #expect(!sweep.reminded.contains(waived.ref) && !sweep.breached.contains(waived.ref))
        #expect(try await h.invariantViolations() == [])
    }

    /// A funded program that a later one overlaps may be sequenced (its
    /// period moved) or withdrawn by a coordinator's resolution: its reports
    /// follow, as after an extension, or end, as after a termination.
    @Test func aResolutionThatMovesOrEndsAFundedProgramMovesOrEndsItsReports() async throws {
        let h = try await Harness("report_resolution")
        let funded = try await h.fund(Harness.project(), key: "funded")  // 2027-01-01 to 2028-06-30: four reports
        func later(_ key: String) async throws -> UUID {
            var like = Harness.project(title: "Youth and women in local peace committees, Gitega")
            like.leadAgency = "unicef"
            like.participants = [Participant(agency: "unwomen", role: .implementing)]
            let overlaps = try await h.tasks.submit(like, workflow: "pbf-project", idempotencyKey: key, by: h.unicef).overlaps
            return try #require(overlaps.first { $0.other == funded.ref }).id
        }
        func listed() async throws -> [String] {
            try await h.tasks.detail(funded.ref, as: h.undp).reports.map { "\($0.reportType ?? "") \($0.dueDate ?? "") \($0.state)" }
        }
        // Sequenced to follow the later program (which ends on 2028-06-30).
        let moved = Period(start: CalendarDate(iso: "2028-07-01")!, end: CalendarDate(iso: "2029-06-30")!)
        _ = try await h.tasks.resolveOverlap(try await later("a"), as: .sequence(task: funded.ref, period: moved), comment: "UNDP runs on", by: h.coordinator)
        #expect(try await listed() == [
            "semi-annual 2027-06-15 scheduled", "annual 2027-11-15 scheduled", "semi-annual 2028-06-15 scheduled", "annual 2028-11-15 scheduled",
            "semi-annual 2029-06-15 scheduled", "final 2029-09-28 scheduled",
        ])

        h.clock.set("2027-08-01")
        _ = try await h.tasks.resolveOverlap(try await later("b"), as: .withdraw(task: funded.ref), comment: "UNICEF's goes on", by: h.coordinator)
        #expect(try await h.tasks.get(funded.ref, as: h.undp).state == "withdrawn")
        #expect(try await listed() == [
            "semi-annual 2027-06-15 scheduled", "final 2027-10-30 scheduled", "annual 2027-11-15 waived", "semi-annual 2028-06-15 waived",
            "annual 2028-11-15 waived", "semi-annual 2029-06-15 waived",
        ])
        #expect(try await h.invariantViolations() == [])
    }

    /// A project funded under a pbf-project version that schedules no
    /// reports (before 5) is funded by its first transfer's date: reports may
    /// be made for it by hand, and none are scheduled for it.
    @Test func aProjectFundedUnderAnEarlierVersionTakesReportsByHand() async throws {
        let h = try await Harness("report_earlier_version", screener: { _, _ in NoOverlaps() })
        let directory = Scratch.directory.appendingPathComponent("pbc-workflows-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let shipped = Harness.config.appendingPathComponent("workflows")
        for name in ["progress-report.yaml", "deconfliction-case.yaml", "assistance-request.yaml"] {
            try FileManager.default.copyItem(at: shipped.appendingPathComponent(name), to: directory.appendingPathComponent(name))
        }
        // pbf-project as it was before it declared fields and scheduled reports.
        let current = try String(contentsOf: shipped.appendingPathComponent("pbf-project.yaml"), encoding: .utf8)
        let earlier = current.replacingOccurrences(of: "version: 5", with: "version: 4")
            .replacingOccurrences(of: "    schedule_reports: firstTransferDate", with: "    # no reports scheduled")
        try earlier.write(to: directory.appendingPathComponent("pbf-project.yaml"), atomically: true, encoding: .utf8)
        // The database keeps every version it has seen: version 5 stays the newest.
        let registry = try await h.pool.withConnection { try await WorkflowRegistry.sync(WorkflowRegistry.read(files: WorkflowRegistry.files(in: directory)), on: $0) }
        #expect(registry.latest["pbf-project"]?.version == 5)
        #expect(registry.definition("pbf-project", version: 4)?.reportsScheduledFrom == nil)
        let store = TaskStore(
            pool: h.service, workflows: registry, rates: try Harness.rates(), screener: { _, _ in NoOverlaps() }, calendar: try Harness.calendar())
        var project = try await store.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "old", by: h.undp).task
        try await h.pool.query("UPDATE tasks SET workflow_version = 4 WHERE id = \(project.id)")
        project = try await store.act(project.ref, action: "recommend", expectedVersion: project.version, by: h.coordinator)
        project = try await store.act(project.ref, action: "approve", expectedVersion: project.version, by: h.approver)
        project = try await store.act(
            project.ref, action: "record_first_transfer", expectedVersion: project.version,
            inputs: ActionInputs(fields: ["firstTransferDate": .string("2027-01-15")]), by: h.coordinator)
        #expect(project.workflowVersion == 4 && project.state == "funded")
        #expect(try await store.detail(project.ref, as: h.undp).reports.isEmpty, "version 4 schedules no reports")
        let report = try await store.create(Harness.report(on: project), workflow: "progress-report", by: h.undp)
        #expect(try await store.detail(project.ref, as: h.undp).reports.map(\.ref) == [report.ref])
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

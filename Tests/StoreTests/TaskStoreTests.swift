import Coordination
import Foundation
import Postgres
import Store
import Testing
import TestSupport

@Suite struct TaskStoreTests {
    /// A whole pbf-project, with the refusals a real one meets on the way.
    @Test func aProjectRunsFromSubmissionToFinancialClosure() async throws {
        let h = try await Harness("pbf_run")
        let (submitted, replayed, _) = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "k-1", by: h.undp)
        #expect(!replayed)
        #expect(submitted.ref.hasPrefix("PBC-2026-"))
        #expect(submitted.state == "technical_review")
        #expect(submitted.queue == "pbso-review-BDI")  // Config/routing.yaml refines pbso-review for Burundi
        #expect(submitted.record.country == "BDI")  // alpha-2 accepted, stored as alpha-3
        #expect(submitted.version == 2)
        var task = submitted

        // A liaison cannot review.
        let wrongRole = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(task.ref, action: "request_revision", expectedVersion: task.version, inputs: ActionInputs(comment: "x"), by: h.undp)
        }
        #expect(wrongRole?.code == .refused)
        #expect(wrongRole?.refusal == .roleNotAllowed(action: "request_revision", role: .liaison, allowedRoles: [.coordinator]))

        // Revision round trip: the resubmission is screened again.
        task = try await h.tasks.act(task.ref, action: "request_revision", expectedVersion: task.version,
                                     inputs: ActionInputs(comment: "Add a conflict analysis for Ngozi"), by: h.coordinator)
        #expect(task.state == "revision_requested")
        task = try await h.tasks.act(task.ref, action: "resubmit", expectedVersion: task.version,
                                     inputs: ActionInputs(fields: ["genderMarker": .number(3)]), by: h.undp)
        #expect(task.state == "technical_review")
        #expect(task.record.fields["genderMarker"] == .number(3))

        // A stale version is a conflict that says the current one.
        let stale = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(task.ref, action: "recommend", expectedVersion: task.version - 1, by: h.coordinator)
        }
        #expect(stale?.code == .conflict)
        #expect(stale?.currentVersion == task.version)

        task = try await h.tasks.act(task.ref, action: "recommend", expectedVersion: task.version, by: h.coordinator)
        #expect(task.state == "asg_approval")
        #expect(task.queue == "asg-approval")
        task = try await h.tasks.act(task.id.uuidString, action: "approve", expectedVersion: task.version, by: h.approver)
        #expect(task.state == "approved")

        // A failed guard: funding needs the first transfer's date.
        let noTransfer = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(task.ref, action: "record_first_transfer", expectedVersion: task.version, by: h.coordinator)
        }
        #expect(noTransfer?.refusal == .guardsFailed(
            action: "record_first_transfer", failures: [GuardFailure("field_present(firstTransferDate)", "the field firstTransferDate is required")]))
        task = try await h.tasks.act(task.ref, action: "record_first_transfer", expectedVersion: task.version,
                                     inputs: ActionInputs(fields: ["firstTransferDate": .string("2027-01-15")]), by: h.coordinator)
        #expect(task.state == "funded")
        task = try await h.tasks.act(task.ref, action: "start_implementation", expectedVersion: task.version, by: h.undp)
        #expect(task.state == "implementing")

        // An extension, asked early enough; then too late.
        h.clock.set("2027-09-01")
        task = try await h.tasks.act(task.ref, action: "request_extension", expectedVersion: task.version,
                                     inputs: ActionInputs(comment: "Elections moved to 2028", fields: ["requestedEndDate": .string("2028-12-31")]), by: h.undp)
        #expect(task.state == "extension_requested")
        task = try await h.tasks.act(task.ref, action: "approve_extension", expectedVersion: task.version, by: h.approver)
        #expect(task.state == "implementing")
        // The approved date is the period's end now, in the portfolio too.
        #expect(task.record.period?.end.iso == "2028-12-31")
        #expect(try await h.tasks.get(task.ref, as: h.undp).record.period?.end.iso == "2028-12-31")
        let portfolioEnd = try await h.pool.query("SELECT (upper(period) - 1)::text FROM portfolio WHERE ref = \(task.ref)")
        #expect(try portfolioEnd.map { try $0.decode(String.self, at: 0) } == ["2028-12-31"])
        // So a second extension may be asked until 90 days before the new end, and not after.
        h.clock.set("2028-11-01")
        let late = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(task.ref, action: "request_extension", expectedVersion: task.version,
                                      inputs: ActionInputs(comment: "again", fields: ["requestedEndDate": .string("2029-06-30")]), by: h.undp)
        }
        #expect(late?.refusal?.description.contains("days_before_end(90)") == true)

        task = try await h.tasks.act(task.ref, action: "close_operations", expectedVersion: task.version, by: h.coordinator)
        task = try await h.tasks.act(task.ref, action: "close_finances", expectedVersion: task.version, by: h.coordinator)
        #expect(task.state == "financially_closed")
        #expect(task.queue == nil)

        let history = try await h.tasks.history(task.ref, as: h.undp)
        #expect(history.first?.type == "task.created")
        let extended = try #require(history.first { $0.type == "task.updated" })
        #expect(extended.actor == h.approver.name)
        struct PeriodChange: Decodable, Equatable {
            let changed: [String]
            let periodEnd: String
        }
        #expect(try extended.data.decode(PeriodChange.self) == PeriodChange(changed: ["period"], periodEnd: "2028-12-31"))
        #expect(history.compactMap(\.toState) == [
            "draft", "submitted", "screening", "technical_review", "revision_requested", "submitted", "screening", "technical_review",
            "approval_routing", "asg_approval", "approved", "funded", "implementing", "extension_requested", "implementing",
            "operationally_closed", "financially_closed",
        ])
        #expect(history.first { $0.action == "request_revision" }?.comment == "Add a conflict analysis for Ngozi")
        #expect(history.first { $0.action == "request_revision" }?.actor == "chen (pbso)")
        #expect(history.first { $0.action == "begin_screening" }?.actor == "system")
        // Refusals changed nothing: the versions count only the changes.
        #expect(task.version == 2 + 10)
        #expect(try await h.invariantViolations() == [])
    }

    @Test func eightConcurrentActsOnOneVersionLetExactlyOneThrough() async throws {
        let h = try await Harness("concurrent_acts")
        let (task, _, _) = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "k", by: h.undp)
        let before = try await h.tasks.history(task.ref, as: h.coordinator).count
        let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<8 {
                group.addTask {
                    do {
                        _ = try await h.tasks.act(task.ref, action: "request_revision", expectedVersion: task.version,
                                                  inputs: ActionInputs(comment: "reviewer \(index)"), by: h.coordinator)
                        return "ok"
                    } catch let error as StoreError where error.code == .conflict {
                        return "conflict"
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == "ok" }.count == 1)
        #expect(outcomes.filter { $0 == "conflict" }.count == 7)
        #expect(try await h.tasks.history(task.ref, as: h.coordinator).count == before + 1)
        #expect(try await h.tasks.get(task.ref, as: h.coordinator).version == task.version + 1)
        #expect(try await h.invariantViolations() == [])
    }

    @Test func eventsCannotBeRewrittenEvenByTheirOwner() async throws {
        let h = try await Harness("immutable")
        _ = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "k", by: h.undp)
        let connection = try await TestDatabase.connect(h.target)
        let owner = try await connection.query("SELECT tableowner = current_user FROM pg_tables WHERE tablename = 'events'").first!.decode(Bool.self, at: 0)
        #expect(owner)
        for statement in ["UPDATE events SET comment = 'rewritten'", "DELETE FROM events", "TRUNCATE events"] {
            let error = await #expect(throws: PostgresError.self) { try await connection.execute(unsafeSQL: statement) }
            #expect(error?.message.contains("events are append-only") == true, "\(statement)")
        }
        #expect(try await connection.query("SELECT count(*) FROM events WHERE comment = 'rewritten'").first!.decode(Int.self, at: 0) == 0)
        await connection.close()
    }

    @Test func submitIsIdempotentPerAgencyAndKey() async throws {
        let h = try await Harness("idempotent")
        let (first, firstReplayed, _) = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "same", by: h.undp)
        let (again, replayed, _) = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "same", by: h.undp)
        #expect(!firstReplayed)
        #expect(replayed)
        #expect(again.id == first.id)
        let other = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.submit(Harness.project(title: "Something else"), workflow: "pbf-project", idempotencyKey: "same", by: h.undp)
        }
        #expect(other?.code == .conflict)
        // Concurrent duplicates create one task.
        let ids = try await withThrowingTaskGroup(of: UUID.self) { group in
            for _ in 0..<6 {
                group.addTask { try await h.tasks.submit(Harness.project(title: "Race"), workflow: "pbf-project", idempotencyKey: "race", by: h.undp).task.id }
            }
            return try await group.reduce(into: Set<UUID>()) { $0.insert($1) }
        }
        #expect(ids.count == 1)
        #expect(try await h.pool.query("SELECT count(*) FROM tasks").first!.decode(Int.self, at: 0) == 2)
        #expect(try await h.invariantViolations() == [])
    }

    @Test func badInputIsRefusedWithEveryFieldAndLeavesNothingBehind() async throws {
        let h = try await Harness("validation")
        var draft = Harness.project()
        draft.title = "  "
        draft.country = "XX"
        draft.sectors = ["15220", "99999", "152"]
        draft.budget = Money(amount: "-5", currency: "usd")
        draft.period = Period(start: CalendarDate(iso: "2028-01-01")!, end: CalendarDate(iso: "2027-01-01")!)
        let error = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.submit(draft, workflow: "pbf-project", idempotencyKey: "bad", by: h.undp)
        }
        #expect(error?.code == .validation)
        let fields = Set(error?.fieldErrors.map(\.field) ?? [])
        #expect(fields.isSuperset(of: ["title", "sectors[2]", "budget.amount", "budget.currency", "period"]))
        draft = Harness.project()
        draft.country = "ZZZ"
        draft.sectors = ["15220", "99999"]
        draft.participants.append(Participant(agency: "no-such-agency", role: .funding))
        let lookups = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.submit(draft, workflow: "pbf-project", idempotencyKey: "bad2", by: h.undp)
        }
        #expect(Set(lookups?.fieldErrors.map(\.description) ?? []) == [
            "country: unknown country ZZZ", "sectors: unknown sector code 99999", "agencies: unknown agency no-such-agency",
        ])
        // Lists longer than any program's are refused, each with its limit.
        draft = Harness.project()
        draft.locations = (0...1_000).map { "District \($0)" } + [String(repeating: "x", count: 201)]
        draft.sectors = (10_000...10_100).map(String.init)
        let long = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.submit(draft, workflow: "pbf-project", idempotencyKey: "bad3", by: h.undp)
        }
        let reasons = Set(long?.fieldErrors.map(\.description) ?? [])
        #expect(reasons.isSuperset(of: [
            "sectors: must be at most 100 codes", "locations: must be at most 1000 places", "locations[1001]: must be at most 200 characters",
        ]))
        let unknownWorkflow = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.create(Harness.project(), workflow: "pbf-projekt", by: h.undp)
        }
        #expect(unknownWorkflow?.fieldErrors.first?.field == "workflow")
        // A guard refusal at submission rolls the creation back too.
        var unmarked = Harness.project()
        unmarked.fields = ["facility": .string("IRF")]
        let refused = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.submit(unmarked, workflow: "pbf-project", idempotencyKey: "unmarked", by: h.undp)
        }
        #expect(refused?.code == .refused)
        #expect(try await h.pool.query("SELECT (SELECT count(*) FROM tasks) + (SELECT count(*) FROM events) + (SELECT count(*) FROM idempotency_keys)").first!.decode(Int.self, at: 0) == 0)
        // SQL-like text is stored literally.
        var literal = Harness.project(title: "Robert'); DROP TABLE tasks; --")
        literal.description = "<script>alert(1)</script>"
        let stored = try await h.tasks.create(literal, workflow: "pbf-project", by: h.undp)
        #expect(try await h.tasks.get(stored.ref, as: h.undp).record.title == "Robert'); DROP TABLE tasks; --")
        #expect(try await h.invariantViolations() == [])
    }

    @Test func liaisonsSeeTheirAgencysTasksAndTasksTheyTakePartIn() async throws {
        let h = try await Harness("visibility")
        let task = try await h.tasks.create(Harness.project(), workflow: "pbf-project", by: h.undp)
        #expect(try await h.tasks.get(task.ref, as: h.undp).id == task.id)
        #expect(try await h.tasks.get(task.ref, as: h.unicef).id == task.id)  // participant
        #expect(try await h.tasks.get(task.ref, as: h.coordinator).id == task.id)
        let hidden = await #expect(throws: StoreError.self) { _ = try await h.tasks.get(task.ref, as: h.wfp) }
        #expect(hidden?.code == .notFound)  // not "forbidden": its existence is not told either
        let act = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(task.ref, action: "withdraw", expectedVersion: task.version, by: h.wfp)
        }
        #expect(act?.code == .notFound)
        let foreign = await #expect(throws: StoreError.self) {
            var draft = Harness.project()
            draft.leadAgency = "unicef"
            _ = try await h.tasks.create(draft, workflow: "pbf-project", by: h.undp)
        }
        #expect(foreign?.code == .forbidden)
        #expect(h.tasks.actionOptions(task, for: h.undp) == [.init(name: "submit", refusedBy: []), .init(name: "withdraw", refusedBy: [])])
        // A participating agency's liaison may submit, but withdrawing is the lead's.
        #expect(
            h.tasks.actionOptions(task, for: h.unicef) == [
                .init(name: "submit", refusedBy: []),
                .init(name: "withdraw", refusedBy: [GuardFailure("actor_is_lead_agency", "only the lead agency (undp) may do this")]),
            ])
        #expect(try await h.invariantViolations() == [])
    }

    /// task.list pages in ref order with a cursor, each visible task once, and
    /// a liaison's pages hold only what their agency may see.
    @Test func listPagesInRefOrderAndOnlyWhatTheCallerMaySee() async throws {
        let h = try await Harness("list_pages")
        var undps: [String] = []
        for index in 0..<7 {
            undps.append(try await h.tasks.create(Harness.project(title: "Peace committee \(index)"), workflow: "pbf-project", by: h.undp).ref)
            var other = Harness.project(title: "School meals \(index)")
            other.leadAgency = "wfp"
            other.participants = []
            _ = try await h.tasks.create(other, workflow: "pbf-project", by: h.wfp)
        }
        func pages(_ principal: Principal) async throws -> [[String]] {
            var result: [[String]] = []
            var cursor: String?
            repeat {
                let page = try await h.tasks.list(TaskFilter(limit: 3, cursor: cursor), as: principal)
                result.append(page.items.map(\.ref))
                cursor = page.nextCursor
            } while cursor != nil
            return result
        }
        let undpPages = try await pages(h.undp)
        #expect(undpPages.map(\.count) == [3, 3, 1])
        #expect(undpPages.flatMap { $0 } == undps)
        let all = try await pages(h.coordinator).flatMap { $0 }
        #expect(all.count == 14)
        #expect(all == all.sorted { ($0.count, $0) < ($1.count, $1) })
        let filtered = try await h.tasks.list(TaskFilter(text: "MEALS", limit: 50), as: h.coordinator)
        #expect(filtered.items.count == 7)
        #expect(filtered.items.allSatisfy { $0.record.leadAgency == "wfp" && $0.record.participants.isEmpty })
    }

    @Test func aFilterNamingWhatDoesNotExistIsRefusedNotAnEmptyList() async throws {
        let h = try await Harness("list_filter_names")
        let task = try await h.tasks.create(Harness.project(), workflow: "pbf-project", by: h.undp)
        let refused = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.list(
                TaskFilter(state: "aproved", workflow: "pbf", country: "BUR", sector: "99999", agency: "unpd", queue: "pbso-reveiw"), as: h.coordinator)
        }
        #expect(refused?.code == .validation)
        #expect(refused?.fieldErrors.map(\.field) == ["workflow", "state", "country", "sector", "agency", "queue"])
        #expect(refused?.fieldErrors.first?.reason.hasPrefix("no workflow pbf; there are ") == true)
        #expect(refused?.fieldErrors[2].reason == "unknown country BUR")
        // Names that exist but match nothing are an empty list; a country may be alpha-2 or lower case.
        #expect(try await h.tasks.list(TaskFilter(state: "approved", country: "LBR"), as: h.coordinator).items.isEmpty)
        #expect(try await h.tasks.list(TaskFilter(country: "bi"), as: h.coordinator).items.map(\.ref) == [task.ref])
        #expect(try await h.tasks.list(TaskFilter(country: "bdi", sector: "15220", agency: "undp"), as: h.coordinator).items.map(\.ref) == [task.ref])
        // A DAC category takes every code in it: 152, conflict, peace and security, holds 15220; 311, agriculture, none of the task's.
        #expect(try await h.tasks.list(TaskFilter(sector: "152"), as: h.coordinator).items.map(\.ref) == [task.ref])
        #expect(try await h.tasks.list(TaskFilter(sector: "311"), as: h.coordinator).items.isEmpty)
        let noCategory = await #expect(throws: StoreError.self) { _ = try await h.tasks.list(TaskFilter(sector: "999"), as: h.coordinator) }
        #expect(noCategory?.fieldErrors.map(\.field) == ["sector"])
        let report = await #expect(throws: StoreError.self) { _ = try await h.tasks.whoWhatWhere(ReportFilter(country: "XX"), as: h.coordinator) }
        #expect(report?.fieldErrors.map(\.reason) == ["unknown country XX"])
    }

    @Test func everyCommitWakesListenersWithTheNewestSeq() async throws {
        let h = try await Harness("notify")
        let listener = PostgresListener(target: h.target, channels: [TaskStore.eventChannel], threadPool: h.pool.threadPool)
        var events = listener.events().makeAsyncIterator()
        #expect(await events.next() == .listening)
        let (task, _, _) = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "k", by: h.undp)
        let newest = try await h.pool.query("SELECT max(seq) FROM events").first!.decode(Int.self, at: 0)
        var payloads: [String] = []
        while let event = await events.next() {
            if case .notification(let notification) = event { payloads.append(notification.payload) }
            if payloads.last == String(newest) { break }
        }
        #expect(payloads.last == String(newest))
        // A refused action commits nothing and wakes no one.
        _ = try? await h.tasks.act(task.ref, action: "approve", expectedVersion: task.version, by: h.approver)
        try await h.pool.query("SELECT pg_notify(\(TaskStore.eventChannel), 'marker')")
        guard case .notification(let next) = await events.next() else {
            Issue.record("expected the marker")
            return
        }
        #expect(next.payload == "marker")
    }

    @Test func screeningWithOverlapsRoutesToDeconflictionAndRecordsThem() async throws {
        struct TwoOverlaps: Screener {
            func screen(_ task: TaskRecord) async throws -> [OverlapFinding] {
                [OverlapFinding(other: "XM-DAC-41122-BDI-2027", score: 0.82, reasons: ["same sector 15220", "shared location Gitega"]),
                 OverlapFinding(other: "PBC-2025-000099", score: 0.64, reasons: ["same category 152"])]
            }
        }
        let h = try await Harness("screening", screener: { _, _ in TwoOverlaps() })
        let (task, _, _) = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "k", by: h.undp)
        #expect(task.state == "deconfliction")
        #expect(task.queue == "pbso-deconfliction")
        let overlaps = try await h.pool.query("SELECT other_ref, jsonb_array_length(reasons) FROM task_overlaps WHERE task_id = \(task.id) AND status = 'open' ORDER BY 1")
        #expect(try overlaps.map { try $0.decode(String.self, at: 0) } == ["PBC-2025-000099", "XM-DAC-41122-BDI-2027"])
        #expect(try overlaps.allSatisfy { try $0.decode(Int.self, at: 1) > 0 })
        #expect(try await h.tasks.history(task.ref, as: h.undp).filter { $0.type == "overlap.detected" }.count == 2)
        // With overlaps open, deconfliction cannot be declared done.
        let open = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(task.ref, action: "deconflicted", expectedVersion: task.version, by: h.coordinator)
        }
        #expect(open?.refusal?.description.contains("2 open overlaps to resolve first") == true)
        #expect(try await h.invariantViolations() == [])
    }

    @Test func theRealScreenerFindsAnotherAgencysSimilarProgram() async throws {
        let h = try await Harness("real_screening")
        let (first, _, _) = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "a", by: h.undp)
        #expect(first.state == "technical_review")
        // UNICEF proposes much the same in the same place and time.
        var similar = Harness.project(title: "Youth and women in local peace committees, Gitega")
        similar.leadAgency = "unicef"
        similar.participants = [Participant(agency: "undp", role: .implementing)]
        similar.period = Period(start: CalendarDate(iso: "2027-03-01")!, end: CalendarDate(iso: "2028-02-28")!)
        let (second, _, _) = try await h.tasks.submit(similar, workflow: "pbf-project", idempotencyKey: "b", by: h.unicef)
        #expect(second.state == "deconfliction")
        let overlaps = try await h.tasks.detail(second.ref, as: h.coordinator).overlaps
        #expect(overlaps.map(\.other) == [first.ref])
        #expect(overlaps.first.map { $0.score >= 0.5 && $0.score <= 1 } == true)
        #expect(overlaps.first?.reasons.contains("sector 1.00: same sector 15180, 15220") == true)
        #expect(overlaps.first?.reasons.contains { $0.hasPrefix("location 1.00: shared locations: gitega, ngozi") } == true)
        // The same program in another country overlaps nothing.
        var elsewhere = Harness.project(title: "Youth in local peace committees, Bo")
        elsewhere.country = "SLE"
        elsewhere.locations = ["Bo"]
        let (third, _, _) = try await h.tasks.submit(elsewhere, workflow: "pbf-project", idempotencyKey: "c", by: h.undp)
        #expect(third.state == "technical_review")
        // A withdrawn task is no candidate any more.
        let withdrawn = try await h.tasks.act(second.ref, action: "withdraw", expectedVersion: second.version, by: h.unicef)
        #expect(withdrawn.state == "withdrawn")
        var fourth = similar
        fourth.title = "Another take on peace committees"
        let (again, _, _) = try await h.tasks.submit(fourth, workflow: "pbf-project", idempotencyKey: "d", by: h.unicef)
        #expect(try await h.tasks.detail(again.ref, as: h.coordinator).overlaps.map(\.other) == [first.ref])
        #expect(try await h.invariantViolations() == [])
    }

    @Test func aTaskStartedUnderVersionOneFinishesUnderVersionOne() async throws {
        let h = try await Harness("versions")
        let directory = Scratch.directory.appendingPathComponent("pbc-wf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let v1 = """
            name: memo
            version: 1
            states:
              draft: {initial: true}
              review: {queue: pbso-review}
              done: {terminal: true}
            actions:
              submit: {from: draft, to: review, roles: [liaison]}
              accept: {from: review, to: done, roles: [coordinator]}
            """
        try v1.write(to: directory.appendingPathComponent("memo.yaml"), atomically: true, encoding: .utf8)
        var registry = try await h.pool.withConnection { try await WorkflowRegistry.sync(WorkflowRegistry.read(files: WorkflowRegistry.files(in: directory)), on: $0) }
        var store = TaskStore(pool: h.pool, workflows: registry, rates: try Harness.rates(), screener: TaskStore.portfolioScreener(OverlapConfiguration()))
        let old = try await store.create(Harness.project(), workflow: "memo", by: h.undp)
        let oldSubmitted = try await store.act(old.ref, action: "submit", expectedVersion: old.version, by: h.undp)

        // Changing version 1 in place is refused, with the way out.
        try v1.replacingOccurrences(of: "roles: [coordinator]", with: "roles: [approver]").write(
            to: directory.appendingPathComponent("memo.yaml"), atomically: true, encoding: .utf8)
        let changed = await #expect(throws: ConfigError.self) {
            _ = try await h.pool.withConnection { try await WorkflowRegistry.sync(WorkflowRegistry.read(files: WorkflowRegistry.files(in: directory)), on: $0) }
        }
        #expect(changed?.message.contains("memo version 1 changed since it was loaded; give the changed definition a new version number (version: 2)") == true)

        // Version 2: approvers accept now, and there is a new step.
        let v2 = """
            name: memo
            version: 2
            states:
              draft: {initial: true}
              review: {queue: pbso-review}
              signed: {queue: asg-approval}
              done: {terminal: true}
            actions:
              submit: {from: draft, to: review, roles: [liaison]}
              sign: {from: review, to: signed, roles: [approver]}
              accept: {from: signed, to: done, roles: [approver]}
            """
        try v2.write(to: directory.appendingPathComponent("memo.yaml"), atomically: true, encoding: .utf8)
        registry = try await h.pool.withConnection { try await WorkflowRegistry.sync(WorkflowRegistry.read(files: WorkflowRegistry.files(in: directory)), on: $0) }
        #expect(registry.latest["memo"]?.version == 2)
        #expect(registry.definition("memo", version: 1) != nil)
        store = TaskStore(pool: h.pool, workflows: registry, rates: try Harness.rates(), screener: TaskStore.portfolioScreener(OverlapConfiguration()))
        let new = try await store.create(Harness.project(), workflow: "memo", by: h.undp)
        #expect(new.workflowVersion == 2)
        // The old task still follows version 1: a coordinator accepts it straight from review.
        let finished = try await store.act(oldSubmitted.ref, action: "accept", expectedVersion: oldSubmitted.version, by: h.coordinator)
        #expect(finished.state == "done")
        #expect(finished.workflowVersion == 1)
        let newSubmitted = try await store.act(new.ref, action: "submit", expectedVersion: new.version, by: h.undp)
        let wrong = await #expect(throws: StoreError.self) {
            _ = try await store.act(newSubmitted.ref, action: "accept", expectedVersion: newSubmitted.version, by: h.coordinator)
        }
        #expect(wrong?.refusal == .notAllowedInState(action: "accept", state: "review", allowedActions: []))
        #expect(try await h.invariantViolations() == [])
    }
}

extension Refusal {
    static func notAllowedInState(action: String, state: String, allowedActions: [String]) -> Refusal {
        .notAllowedInState(action: action, state: state, allowed: allowedActions)
    }
}

import Coordination
import Foundation
import Postgres
import Store
import Testing
import TestSupport

@Suite struct OverlapResolutionTests {
    /// WFP submits a third program much like the first two.
    func aThirdByWFP(_ h: Harness, title: String) async throws -> (task: StoredTask, overlaps: [StoredOverlap]) {
        var third = Harness.project(title: title)
        third.leadAgency = "wfp"
        third.participants = []
        let (task, _, overlaps) = try await h.tasks.submit(third, workflow: "pbf-project", idempotencyKey: "c", by: h.wfp)
        return (task, overlaps)
    }

    /// A deconfliction case for `overlap`, through consultation to the
    /// agencies' agreement on `fields` (a resolution and what it needs).
    func caseAwaitingAgreement(_ h: Harness, on overlap: OverlapView, proposing fields: [String: FieldValue], comment: String) async throws -> StoredTask {
        let draft = Harness.caseDraft(for: overlap.id, title: "Peace committees in Gitega: how they go on")
        var deconfliction = try await h.tasks.create(draft, workflow: "deconfliction-case", by: h.coordinator)
        deconfliction = try await h.tasks.act(deconfliction.ref, action: "start_consultation", expectedVersion: deconfliction.version, by: h.coordinator)
        return try await h.tasks.act(
            deconfliction.ref, action: "propose_resolution", expectedVersion: deconfliction.version,
            inputs: ActionInputs(comment: comment, fields: fields), by: h.coordinator)
    }

    /// A task's overlaps say whose screening found each, and the ones that
    /// hold it back (its own screening's) come first, however strong the
    /// others: a coordinator once saw a task's hundreds of overlaps by score
    /// alone and could not tell the few that kept it in deconfliction.
    @Test func aTasksOwnOverlapsComeFirstAndEachSaysWhoFoundIt() async throws {
        let h = try await Harness("overlap_found_by")
        let (first, second, _) = try await h.twoOverlapping()
        // The same program again, by the same agencies: it overlaps the second more than the second overlaps the first.
        var again = Harness.project(title: "Youth and women in local peace committees, Gitega")
        again.leadAgency = "unicef"
        again.participants = [Participant(agency: "unwomen", role: .implementing)]
        let (third, _, _) = try await h.tasks.submit(again, workflow: "pbf-project", idempotencyKey: "c", by: h.unicef)
        #expect(third.state == "deconfliction")
        let detail = try await h.tasks.detail(second.ref, as: h.coordinator)
        let (task, overlaps) = (detail.task, detail.overlaps)
        #expect(overlaps.map(\.other) == [first.ref, third.ref])
        #expect(overlaps.map(\.foundBy) == [second.ref, third.ref])
        try #require(overlaps[1].score > overlaps[0].score, "the later program must overlap more for the order to mean something")
        // Only the one its own screening found holds it back.
        #expect(task.openOverlaps == 1)
        let listed = try await h.tasks.listOverlaps(task: second.ref, status: "open", limit: 10, as: h.coordinator).items
        #expect(Set(listed.map { "\($0.taskRef) \($0.other.ref) \($0.foundBy)" }) == ["\(second.ref) \(first.ref) \(second.ref)", "\(second.ref) \(third.ref) \(third.ref)"])
    }

    @Test func aDryRunStoresNothing() async throws {
        let h = try await Harness("overlap_check")
        _ = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "a", by: h.undp)
        let before = try await h.pool.query("SELECT (SELECT count(*) FROM tasks) + (SELECT count(*) FROM task_overlaps) + (SELECT count(*) FROM events)").first!.decode(Int.self, at: 0)
        var draft = Harness.project(title: "Peace committees for youth")
        draft.leadAgency = "unicef"
        let views = try await h.tasks.checkOverlaps(draft, as: h.unicef)
        #expect(views.count == 1)
        #expect(views.first?.other.leadAgency == "undp")
        #expect(views.first?.other.title == "Youth and women in local peace committees")
        let after = try await h.pool.query("SELECT (SELECT count(*) FROM tasks) + (SELECT count(*) FROM task_overlaps) + (SELECT count(*) FROM events)").first!.decode(Int.self, at: 0)
        #expect(after == before)
    }

    @Test func liaisonsSeeEnoughOfTheOtherTaskToTalkAndNothingMore() async throws {
        let h = try await Harness("overlap_visibility")
        let (first, second, _) = try await h.twoOverlapping()
        let seen = try await h.tasks.listOverlaps(task: second.ref, status: "open", limit: 10, as: h.unicef).items
        let other = try #require(seen.first?.other)
        #expect(other.ref == first.ref)
        #expect(other.title == first.record.title)
        #expect(other.leadAgency == "undp")
        #expect(other.country == "BDI")
        #expect(other.sectors == ["15180", "15220"])
        #expect(other.start == "2027-01-01")
        // The full task stays out of reach.
        await #expect(throws: StoreError.self) { _ = try await h.tasks.get(first.ref, as: h.wfp) }
        // A liaison of neither agency sees no overlap at all.
        #expect(try await h.tasks.listOverlaps(task: nil, status: nil, limit: 10, as: h.wfp).items.isEmpty)
    }

    @Test func theAgencyThatSubmittedFirstLearnsOfALaterOverlappingProgram() async throws {
        let h = try await Harness("overlap_other_side")
        let (first, _, _) = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "a", by: h.undp)
        #expect(first.state == "technical_review")
        var later = Harness.project(title: "Youth and women in local peace committees, Gitega")
        later.leadAgency = "wfp"
        later.participants = []
        let (second, _, _) = try await h.tasks.submit(later, workflow: "pbf-project", idempotencyKey: "b", by: h.wfp)
        #expect(second.state == "deconfliction")

        // UNDP is told, on its own task, which later task overlaps it.
        let detected = try await h.tasks.history(first.ref, as: h.undp).filter { $0.type == "overlap.detected" }
        #expect(detected.count == 1)
        struct Detected: Decodable { let other: String }
        #expect(try detected.first?.data.decode(Detected.self).other == second.ref)
        // It sees the overlap from its side, and of WFP's task only enough to talk.
        for view in [try await h.tasks.listOverlaps(task: nil, status: nil, limit: 10, as: h.undp).items,
                     try await h.tasks.listOverlaps(task: first.ref, status: "open", limit: 10, as: h.undp).items,
                     try await h.tasks.listOverlaps(task: first.ref, status: "open", limit: 10, as: h.coordinator).items] {
            #expect(view.count == 1)
            #expect(view.first?.taskRef == first.ref)
            #expect(view.first?.other.ref == second.ref)
            #expect(view.first?.other.leadAgency == "wfp")
            #expect(view.first?.other.title == later.title)
        }
        let detail = try await h.tasks.detail(first.ref, as: h.undp)
        let (seen, overlaps) = (detail.task, detail.overlaps)
        #expect(overlaps.map(\.other) == [second.ref])
        #expect(overlaps.map(\.status) == ["open"])
        await #expect(throws: StoreError.self) { _ = try await h.tasks.get(second.ref, as: h.undp) }
        // The task already under way keeps its course: the later one is in deconfliction.
        #expect(seen.openOverlaps == 0)
        #expect(seen.state == "technical_review")

        // When UNDP's edit finds the pair again from its side, each agency still sees it once.
        var move = TaskChanges()
        move.locations = ["Gitega"]
        _ = try await h.tasks.update(first.ref, expectedVersion: seen.version, changes: move, by: h.undp)
        #expect(try await h.pool.query("SELECT count(*) FROM task_overlaps").first!.decode(Int.self, at: 0) == 2)
        #expect(try await h.tasks.listOverlaps(task: nil, status: nil, limit: 10, as: h.undp).items.map(\.taskRef) == [first.ref])
        #expect(try await h.tasks.listOverlaps(task: nil, status: nil, limit: 10, as: h.wfp).items.map(\.taskRef) == [second.ref])
        #expect(try await h.tasks.listOverlaps(task: nil, status: nil, limit: 10, as: h.coordinator).items.map(\.taskRef) == [second.ref])
        #expect(try await h.tasks.listOverlaps(task: first.ref, status: nil, limit: 10, as: h.coordinator).items.map(\.other.ref) == [second.ref])
        #expect(try await h.tasks.detail(first.ref, as: h.undp).overlaps.map(\.other) == [second.ref])
        // UNICEF takes part in UNDP's task, so it sees the pair from that side; an agency of neither sees nothing.
        #expect(try await h.tasks.listOverlaps(task: nil, status: nil, limit: 10, as: h.unicef).items.map(\.taskRef) == [first.ref])
        let outsider = try await h.admin.addPrincipal(name: "ana (unwomen)", role: .liaison, agency: "unwomen")
        #expect(try await h.tasks.listOverlaps(task: nil, status: nil, limit: 10, as: outsider).items.isEmpty)
        #expect(try await h.invariantViolations() == [])
    }

    /// A liaison's whole list is paged by `overlap_page_of_agency` (sql/0019),
    /// which gathers the overlaps of an agency with few from its own tasks and
    /// walks the whole list for one with many. Either way, page after page, it
    /// must give the list row-level security defines: every overlap the
    /// agency sees, of the status asked, a pair once, in the order found.
    @Test func aLiaisonsListIsWhatItMaySeePageByPageWhicheverWayItIsFound() async throws {
        let h = try await Harness("overlap_agency_pages")
        // Six programs much alike in Gitega, led by three agencies in turn; UNICEF takes part in UNDP's.
        let liaisons = ["undp": h.undp, "unicef": h.unicef, "wfp": h.wfp]
        var submitted: [StoredTask] = []
        for (index, lead) in ["undp", "wfp", "unicef", "undp", "wfp", "unicef"].enumerated() {
            var record = Harness.project(title: "Youth and women in local peace committees, Gitega \(index)")
            record.leadAgency = lead
            record.participants = lead == "undp" ? [Participant(agency: "unicef", role: .implementing)] : []
            submitted.append(try await h.tasks.submit(record, workflow: "pbf-project", idempotencyKey: "p\(index)", by: liaisons[lead]!).task)
        }
        // An edit finds the first program's pairs again from its side, and a coordinator decides two pairs.
        var move = TaskChanges()
        move.locations = ["Gitega"]
        _ = try await h.tasks.update(submitted[0].ref, expectedVersion: submitted[0].version, changes: move, by: h.undp)
        let pairs = try await h.tasks.listOverlaps(task: nil, status: nil, limit: 100, as: h.coordinator).items
        #expect(pairs.count == 15)
        #expect(try await h.pool.query("SELECT count(*) FROM task_overlaps").first!.decode(Int.self, at: 0) > pairs.count)
        for overlap in pairs.suffix(2) {
            _ = try await h.tasks.resolveOverlap(overlap.id, as: .distinct, comment: nil, by: h.coordinator)
        }

        let outsider = try await h.admin.addPrincipal(name: "ana (unwomen)", role: .liaison, agency: "unwomen")
        var seenCounts: [String: Int] = [:]
        for (agency, liaison) in liaisons.merging(["unwomen": outsider], uniquingKeysWith: { first, _ in first }) {
            let settings = [(name: "pbc.scope", value: "agency"), (name: "pbc.agency", value: agency)]
            for status in [nil, "open", "resolved"] as [String?] {
                let what = "\(agency), \(status ?? "any status")"
                let seen = try await h.service.withTransaction(settings: settings) { connection in
                    try await connection.query("""
                        SELECT o.id FROM task_overlaps o
                        WHERE (\(status)::text IS NULL OR o.status = \(status)) AND NOT overlap_twin_found_before(o.id)
                        ORDER BY o.detected_at, o.id
                        """).map { try $0.decode(UUID.self, at: 0) }
                }
                if status == nil { seenCounts[agency] = seen.count }
                for many in [0, 1_000_000] {
                    var paged: [UUID] = []
                    var after: UUID?
                    repeat {
                        let page = try await h.service.withTransaction(settings: settings) { connection in
                            try await connection.query("SELECT overlap_page_of_agency(\(status), \(after), 2, \(Int32(many)))")
                                .map { try $0.decode(UUID.self, at: 0) }
                        }
                        paged += page
                        after = page.count == 2 ? page.last : nil
                    } while after != nil
                    #expect(paged == seen, "\(what), \(many == 0 ? "walked" : "gathered")")
                }
                var listed: [UUID] = []
                var cursor: UUID?
                repeat {
                    let page = try await h.tasks.listOverlaps(task: nil, status: status, limit: 2, cursor: cursor, as: liaison)
                    listed += page.items.map(\.id)
                    cursor = page.nextCursor
                } while cursor != nil
                #expect(listed == seen, "\(what), listed")
            }
        }
        // An agency with two of the six programs sees the 9 pairs of 15 that
        // involve them; UNICEF, in four, all but the pair of WFP's two; UNWOMEN none.
        #expect(seenCounts == ["undp": 9, "unicef": 14, "wfp": 9, "unwomen": 0])

        // A cursor the liaison may not use is refused, not read as a position:
        // an overlap that does not exist, and one of a pair WFP has no part in.
        let unseen = try #require(try await h.pool.query("""
            SELECT o.id FROM task_overlaps o JOIN tasks a ON a.id = o.task_id JOIN tasks b ON b.ref = o.other_ref
            WHERE a.lead_agency <> 'wfp' AND b.lead_agency <> 'wfp' LIMIT 1
            """).first).decode(UUID.self, at: 0)
        for cursor in [UUID(), unseen] {
            let refused = await #expect(throws: StoreError.self) {
                _ = try await h.tasks.listOverlaps(task: nil, status: nil, limit: 2, cursor: cursor, as: h.wfp)
            }
            #expect(refused?.description.contains("to continue after") == true, "\(cursor)")
        }
        // The page function serves a liaison's transaction only.
        await #expect(throws: PostgresError.self) {
            _ = try await h.service.withTransaction(settings: [(name: "pbc.scope", value: "all"), (name: "pbc.agency", value: "")]) { connection in
                try await connection.query("SELECT overlap_page_of_agency(NULL, NULL, 10)")
            }
        }
    }

    @Test func overlapListsPageWithACursor() async throws {
        let h = try await Harness("overlap_pages")
        for index in 0..<5 {
            _ = try await h.tasks.submit(
                Harness.project(title: "Youth and women in local peace committees \(index)"), workflow: "pbf-project", idempotencyKey: "p\(index)",
                by: h.undp)
        }
        let stored = try await h.pool.query("SELECT id FROM task_overlaps ORDER BY detected_at, id").map { try $0.decode(UUID.self, at: 0) }
        #expect(stored.count == 10)  // each of the five overlaps every earlier one
        var seen: [UUID] = []
        var cursor: UUID?
        var pages = 0
        repeat {
            let page = try await h.tasks.listOverlaps(task: nil, status: "open", limit: 3, cursor: cursor, as: h.coordinator)
            seen += page.items.map(\.id)
            cursor = page.nextCursor
            pages += 1
        } while cursor != nil
        #expect(pages == 4)
        #expect(seen == stored)
        let unknown = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.listOverlaps(task: nil, status: nil, limit: 3, cursor: UUID(), as: h.coordinator)
        }
        #expect(unknown?.fieldErrors.first?.field == "cursor")
    }

    @Test func distinctDismissesAndResolvingTwiceIsAConflict() async throws {
        let h = try await Harness("overlap_distinct")
        let (first, second, overlap) = try await h.twoOverlapping()
        // Both tasks name the overlap by the id that resolves it.
        for ref in [first.ref, second.ref] {
            let shown = try await h.tasks.detail(ref, as: h.coordinator).overlaps
            #expect(shown.map(\.id) == [overlap.id])
            #expect(shown.map(\.resolution) == [nil])
        }
        let liaison = await #expect(throws: StoreError.self) { _ = try await h.tasks.resolveOverlap(overlap.id, as: .distinct, comment: nil, by: h.unicef) }
        #expect(liaison?.code == .forbidden)
        let resolved = try await h.tasks.resolveOverlap(overlap.id, as: .distinct, comment: "Different target groups", by: h.coordinator)
        #expect(resolved.status == "resolved")
        #expect(resolved.resolution == "distinct")
        let twice = await #expect(throws: StoreError.self) { _ = try await h.tasks.resolveOverlap(overlap.id, as: .distinct, comment: nil, by: h.coordinator) }
        #expect(twice?.code == .conflict)
        #expect(try await h.tasks.detail(first.ref, as: h.undp).overlaps.map(\.resolution) == ["distinct"])
        // With nothing open, deconfliction can be declared done.
        let current = try await h.tasks.get(second.ref, as: h.coordinator)
        let reviewed = try await h.tasks.act(second.ref, action: "deconflicted", expectedVersion: current.version, by: h.coordinator)
        #expect(reviewed.state == "technical_review")
        let history = try await h.tasks.history(second.ref, as: h.coordinator)
        #expect(history.contains { $0.type == "overlap.resolved" && $0.comment == "Different target groups" })
        #expect(try await h.invariantViolations() == [])
    }

    /// A task sent back for revision after its overlap was dismissed is
    /// screened afresh on resubmission: the revised program may be closer to
    /// the other, so the pair is open again for a coordinator to decide, on
    /// both sides, and the earlier decision stays in the history. (The
    /// resubmission failed outright before: reopening left the old
    /// resolution on an open row, which the database refuses.)
    @Test func aResubmissionAfterARevisionOpensADismissedPairAgain() async throws {
        let h = try await Harness("overlap_resubmitted")
        let (first, second, overlap) = try await h.twoOverlapping()
        func revise(_ ref: String) async throws -> StoredTask {
            var task = try await h.tasks.get(ref, as: h.coordinator)
            if task.state == "deconfliction" {
                task = try await h.tasks.act(ref, action: "deconflicted", expectedVersion: task.version, by: h.coordinator)
            }
            task = try await h.tasks.act(
                ref, action: "request_revision", expectedVersion: task.version, inputs: ActionInputs(comment: "Name the districts"), by: h.coordinator)
            return try await h.tasks.act(ref, action: "resubmit", expectedVersion: task.version, by: task.record.leadAgency == "undp" ? h.undp : h.unicef)
        }
        // The first program is revised too, so the pair has a row on each side.
        #expect(try await revise(first.ref).state == "deconfliction")
        func rows() async throws -> [String] {
            try await h.pool.query("SELECT status || ' ' || coalesce(resolution, '-') FROM task_overlaps ORDER BY task_id").map { try $0.decode(String.self, at: 0) }
        }
        #expect(try await rows() == ["open -", "open -"])
        _ = try await h.tasks.resolveOverlap(overlap.id, as: .distinct, comment: "Different target groups", by: h.coordinator)
        #expect(try await rows() == ["resolved distinct", "resolved distinct"])

        let resubmitted = try await revise(second.ref)
        #expect(resubmitted.state == "deconfliction")
        #expect(try await rows() == ["open -", "open -"])
        for ref in [first.ref, second.ref] {
            let shown = try await h.tasks.detail(ref, as: h.coordinator).overlaps
            #expect(!shown.isEmpty && shown.allSatisfy { $0.status == "open" && $0.resolution == nil && $0.resolutionData.isEmpty }, "\(ref)")
        }
        let history = try await h.tasks.history(second.ref, as: h.coordinator)
        #expect(history.contains { $0.type == "overlap.resolved" && $0.comment == "Different target groups" })
        // Decided again, as any open overlap.
        let again = try await h.tasks.resolveOverlap(overlap.id, as: .sequence(task: second.ref, period: Period(
            start: CalendarDate(iso: "2028-07-01")!, end: CalendarDate(iso: "2029-12-31")!)), comment: nil, by: h.coordinator)
        #expect(again.resolution == "sequence")
        #expect(try await rows() == ["resolved sequence", "resolved sequence"])
        // UNDP resubmits, its dates moved onto the other's again. UNDP's
        // liaison may not see UNICEF's task, whose row of the pair is opened
        // all the same.
        var moved = TaskChanges()
        moved.period = Period(start: CalendarDate(iso: "2028-01-01")!, end: CalendarDate(iso: "2029-06-30")!)
        let current = try await h.tasks.get(first.ref, as: h.undp)
        _ = try await h.tasks.update(first.ref, expectedVersion: current.version, changes: moved, by: h.undp)
        #expect(try await rows() == ["resolved sequence", "resolved sequence"])  // an edit leaves a decided pair as it is
        #expect(try await revise(first.ref).state == "deconfliction")
        #expect(try await rows() == ["open -", "open -"])
        #expect(try await h.invariantViolations() == [])
    }

    /// When a program ends before its overlaps are resolved, they are
    /// closed on both sides: a withdrawal by resolution closes the withdrawn
    /// task's other overlaps; a liaison withdrawing their own program closes
    /// overlaps that other agencies' tasks hold (past row-level security);
    /// the task left in deconfliction can then go on without a resolution.
    /// Before, such overlaps stayed open for ever, and held that task back.
    @Test func theOverlapsOfAProgramThatEndsAreClosed() async throws {
        let h = try await Harness("overlap_closed")
        let (first, second, secondWithFirst) = try await h.twoOverlapping()
        let (late, lateOverlaps) = try await aThirdByWFP(h, title: "Youth peace committees in Gitega and Ngozi")
        #expect(Set(lateOverlaps.map(\.other)) == [first.ref, second.ref])
        func status(_ task: String, _ other: String) async throws -> String {
            try await h.pool.query("""
                SELECT o.status || ' ' || coalesce(o.resolution, '-') || ' ' || o.resolution_data::text
                FROM task_overlaps o JOIN tasks t ON t.id = o.task_id WHERE t.ref = \(task) AND o.other_ref = \(other)
                """).first!.decode(String.self, at: 0)
        }

        // The third program withdrawn by resolving its pair with the second: its pair with the first is moot.
        let lateWithSecond = try #require(lateOverlaps.first { $0.other == second.ref })
        _ = try await h.tasks.resolveOverlap(lateWithSecond.id, as: .withdraw(task: late.ref), comment: "Duplicate", by: h.coordinator)
        #expect(try await status(late.ref, second.ref) == #"resolved withdraw {"task": "\#(late.ref)"}"#)
        #expect(try await status(late.ref, first.ref) == #"closed - {"ended": "\#(late.ref)", "state": "withdrawn"}"#)
        #expect(try await status(second.ref, first.ref).hasPrefix("open"))

        // A case the agencies were settling it in, awaiting their agreement.
        let deconfliction = try await caseAwaitingAgreement(
            h, on: secondWithFirst, proposing: ["resolution": .string("coordinate"), "leadAgency": .string("undp")], comment: "UNDP leads")
        #expect(deconfliction.state == "agreement_pending")

        // UNDP withdraws its own program; the overlap UNICEF's task holds with it is closed too, and the case dismissed.
        let withdrawn = try await h.tasks.act(first.ref, action: "withdraw", expectedVersion: first.version, by: h.undp)
        #expect(withdrawn.state == "withdrawn")
        #expect(try await status(second.ref, first.ref) == #"closed - {"ended": "\#(first.ref)", "state": "withdrawn"}"#)
        #expect(try await h.tasks.get(deconfliction.ref, as: h.coordinator).state == "dismissed")
        let dismissal = try await h.tasks.history(deconfliction.ref, as: h.coordinator).last
        #expect(dismissal?.comment == "\(first.ref) was withdrawn: nothing is left to agree")
        let closed = try await h.tasks.listOverlaps(task: nil, status: "closed", limit: 10, as: h.coordinator).items
        #expect(Set(closed.map(\.id)) == [secondWithFirst.id, try #require(lateOverlaps.first { $0.other == first.ref }).id])
        #expect(try await h.tasks.listOverlaps(task: nil, status: "open", limit: 10, as: h.coordinator).items.isEmpty)
        let again = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.resolveOverlap(secondWithFirst.id, as: .distinct, comment: nil, by: h.coordinator)
        }
        #expect(again?.code == .conflict)
        #expect(again?.message.contains("is closed already") == true)

        // Nothing holds the second program back any more.
        let current = try await h.tasks.get(second.ref, as: h.coordinator)
        #expect(try await h.tasks.act(second.ref, action: "deconflicted", expectedVersion: current.version, by: h.coordinator).state == "technical_review")
        for ref in [first.ref, second.ref] {
            let closings = try await h.tasks.history(ref, as: h.coordinator).filter { $0.type == "overlap.closed" }
            #expect(!closings.isEmpty, "\(ref)")
        }
        #expect(try await h.invariantViolations() == [])
    }

    /// sql/0011 closes the open overlaps of programs that had ended before
    /// it, with their events. Its closing statement is run here on such a
    /// database, as an older pbc left it.
    @Test func theMigrationClosesOverlapsOfProgramsThatHadEnded() async throws {
        let h = try await Harness("overlap_closed_by_migration")
        let (first, second, overlap) = try await h.twoOverlapping()
        try await h.pool.query("UPDATE tasks SET state = 'rejected' WHERE ref = \(first.ref)")
        let migration = try String(
            contentsOf: TestDatabase.migrationsDirectory.appendingPathComponent("0011_overlaps_of_ended_programs_close.sql"), encoding: .utf8)
        let closing = try #require(migration.range(of: "WITH closed AS"))
        try await h.pool.withConnection { try await $0.execute(unsafeSQL: String(migration[closing.lowerBound...])) }
        let row = try #require(try await h.tasks.listOverlaps(task: second.ref, status: "closed", limit: 10, as: h.coordinator).items.first)
        #expect(row.id == overlap.id)
        #expect(row.resolutionData == ["ended": first.ref, "state": "rejected"])
        for (ref, other) in [(first.ref, second.ref), (second.ref, first.ref)] {
            let closing = try #require(try await h.tasks.history(ref, as: h.coordinator).last)
            #expect(closing.type == "overlap.closed")
            #expect(try closing.data.decode([String: String].self)["other"] == other)
        }
    }

    /// Earlier versions left a case stuck when its overlap was closed (by
    /// sql/0011, for a program that had ended) or resolved past it: sql/0013
    /// dismisses such cases, with the event that says why.
    @Test func theMigrationDismissesCasesLeftOnDecidedOverlaps() async throws {
        let h = try await Harness("overlap_cases_left")
        let (_, _, overlap) = try await h.twoOverlapping()
        let draft = Harness.caseDraft(for: overlap.id)
        let stuck = try await h.tasks.create(draft, workflow: "deconfliction-case", by: h.coordinator)
        _ = try await h.tasks.act(stuck.ref, action: "start_consultation", expectedVersion: stuck.version, by: h.coordinator)
        // As sql/0011 left it: the overlap closed, its case still in consultation.
        try await h.pool.query("UPDATE task_overlaps SET status = 'closed', resolution_data = '{\"state\": \"rejected\"}' WHERE id = \(overlap.id)")
        let migration = try String(
            contentsOf: TestDatabase.migrationsDirectory.appendingPathComponent("0013_cases_left_on_decided_overlaps.sql"), encoding: .utf8)
        try await h.pool.withConnection { try await $0.execute(unsafeSQL: migration) }
        let dismissed = try await h.tasks.get(stuck.ref, as: h.coordinator)
        #expect(dismissed.state == "dismissed")
        #expect(dismissed.queue == nil)
        let last = try #require(try await h.tasks.history(stuck.ref, as: h.coordinator).last)
        #expect(last.fromState == "consultation")
        #expect(last.comment == "the overlap was closed: a program on one side ended; nothing is left to agree")
        #expect(try await h.invariantViolations() == [])
    }

    /// An edit screens again, and finds the pair the other task's screening
    /// recorded and a coordinator dismissed: it leaves that decision as it
    /// is. Before, it recorded the pair a second time on its own side, open,
    /// which held the edited task back by an overlap already decided (the
    /// lists showed only the dismissed side).
    @Test func anEditLeavesAPairDecidedOnTheOtherSideAsItIs() async throws {
        let h = try await Harness("overlap_edit_decided")
        let (first, second, overlap) = try await h.twoOverlapping()
        _ = try await h.tasks.resolveOverlap(overlap.id, as: .distinct, comment: "Different target groups", by: h.coordinator)
        func detections() async throws -> Int {
            try await h.tasks.history(first.ref, as: h.coordinator).filter { $0.type == "overlap.detected" }.count
        }
        let detectedBefore = try await detections()
        var moved = TaskChanges()
        moved.period = Period(start: CalendarDate(iso: "2027-02-01")!, end: CalendarDate(iso: "2028-05-31")!)
        let edited = try await h.tasks.update(first.ref, expectedVersion: first.version, changes: moved, by: h.undp)
        #expect(edited.openOverlaps == 0)
        #expect(try await h.pool.query("SELECT count(*) FROM task_overlaps").first!.decode(Int.self, at: 0) == 1)
        for ref in [first.ref, second.ref] {
            #expect(try await h.tasks.detail(ref, as: h.coordinator).overlaps.map(\.status) == ["resolved"], "\(ref)")
        }
        #expect(try await detections() == detectedBefore)
    }

    @Test func mergeMovesParticipantsAndEndsTheAbsorbedTaskAsMerged() async throws {
        let h = try await Harness("overlap_merge")
        let (first, second, overlap) = try await h.twoOverlapping()
        _ = try await h.tasks.resolveOverlap(overlap.id, as: .merge(survivor: first.ref), comment: "One program", by: h.coordinator)
        let absorbed = try await h.tasks.get(second.ref, as: h.coordinator)
        #expect(absorbed.state == "merged")
        let survivor = try await h.tasks.get(first.ref, as: h.coordinator)
        #expect(Set(survivor.record.participants.map(\.agency)).isSuperset(of: ["unicef", "unwomen"]))
        // A merged task is no candidate any more.
        var again = Harness.project(title: "Youth and women in local peace committees, Gitega")
        again.leadAgency = "wfp"
        again.participants = []
        let views = try await h.tasks.checkOverlaps(again, as: h.wfp)
        #expect(views.map(\.other.ref) == [first.ref])
        // Nor can it change: `merged` is pbc's own state, which no workflow
        // declares terminal. It could be edited, screened again, and hold
        // open overlaps of its own before.
        var moved = TaskChanges()
        moved.period = Period(start: CalendarDate(iso: "2027-02-01")!, end: CalendarDate(iso: "2028-05-31")!)
        let edit = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.update(second.ref, expectedVersion: absorbed.version, changes: moved, by: h.coordinator)
        }
        #expect(edit?.message == "task \(second.ref) is merged and can no longer change")
        #expect(try await h.invariantViolations() == [])
    }

    @Test func sequenceMovesAPeriodAndScreensAgain() async throws {
        let h = try await Harness("overlap_sequence")
        let (first, second, overlap) = try await h.twoOverlapping()
        // A period that still shares days with the other's does not sequence them: refused, and nothing moves.
        let before = try await h.tasks.get(second.ref, as: h.coordinator)
        let still = Period(start: CalendarDate(iso: "2028-06-30")!, end: CalendarDate(iso: "2029-06-30")!)
        let refused = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.resolveOverlap(overlap.id, as: .sequence(task: second.ref, period: still), comment: nil, by: h.coordinator)
        }
        let otherPeriod = "\(first.record.period!.start.iso) to \(first.record.period!.end.iso)"
        #expect(refused?.fieldErrors == [FieldError(
            "period", "2028-06-30 to 2029-06-30 still shares days with \(first.ref) (\(otherPeriod)): sequenced programs follow each other, one ending before the other starts")])
        #expect(try await h.tasks.get(second.ref, as: h.coordinator) == before)
        #expect(try await h.tasks.listOverlaps(task: second.ref, status: "open", limit: 10, as: h.coordinator).items.map(\.id) == [overlap.id])
        let later = Period(start: CalendarDate(iso: "2029-01-01")!, end: CalendarDate(iso: "2029-12-31")!)
        _ = try await h.tasks.resolveOverlap(overlap.id, as: .sequence(task: second.ref, period: later), comment: nil, by: h.coordinator)
        let moved = try await h.tasks.get(second.ref, as: h.coordinator)
        #expect(moved.record.period == later)
        #expect(try await h.tasks.listOverlaps(task: second.ref, status: "open", limit: 10, as: h.coordinator).items.isEmpty)
        // The pair no longer overlaps, but it is resolved as sequenced, not closed as untrue.
        let decided = try await h.tasks.listOverlaps(task: second.ref, status: nil, limit: 10, as: h.coordinator).items
        #expect(decided.map(\.status) == ["resolved"])
        #expect(decided.map(\.resolution) == ["sequence"])
        let bad = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.resolveOverlap(overlap.id, as: .withdraw(task: "PBC-1999-000001"), comment: nil, by: h.coordinator)
        }
        #expect(bad?.code == .conflict)  // resolved already: nothing else happens
    }

    @Test func withdrawAndCoordinate() async throws {
        let h = try await Harness("overlap_withdraw")
        let (_, second, overlap) = try await h.twoOverlapping()
        let unknown = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.resolveOverlap(overlap.id, as: .coordinate(lead: "nobody"), comment: nil, by: h.coordinator)
        }
        #expect(unknown?.code == .validation)
        _ = try await h.tasks.resolveOverlap(overlap.id, as: .withdraw(task: second.ref), comment: "Duplicate", by: h.coordinator)
        #expect(try await h.tasks.get(second.ref, as: h.coordinator).state == "withdrawn")
        #expect(try await h.invariantViolations() == [])
    }

    @Test func coordinateIsLedByAnAgencyOfEitherProgram() async throws {
        let h = try await Harness("overlap_coordinate")
        let (first, second, overlap) = try await h.twoOverlapping()
        // WFP is a known agency, but takes part in neither program.
        let outsider = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.resolveOverlap(overlap.id, as: .coordinate(lead: "wfp"), comment: nil, by: h.coordinator)
        }
        #expect(outsider?.code == .validation)
        #expect(outsider?.fieldErrors.first?.reason == "wfp takes part in neither \(second.ref) nor \(first.ref); one of undp, unicef, unwomen leads")
        #expect(try await h.tasks.listOverlaps(task: second.ref, status: "open", limit: 10, as: h.coordinator).items.map(\.id) == [overlap.id])
        // UN Women, a participant of the second program, may lead both.
        let resolved = try await h.tasks.resolveOverlap(overlap.id, as: .coordinate(lead: "unwomen"), comment: nil, by: h.coordinator)
        #expect(resolved.resolution == "coordinate")
        #expect(resolved.resolutionData == ["leadAgency": "unwomen"])
        let lead = try await h.pool.query("SELECT DISTINCT resolution_data->>'leadAgency' FROM task_overlaps").map { try $0.decode(String.self, at: 0) }
        #expect(lead == ["unwomen"])
        // Both agencies see who leads, in the overlap list and on their tasks.
        #expect(try await h.tasks.listOverlaps(task: nil, status: "resolved", limit: 10, as: h.undp).items.map(\.resolutionData) == [["leadAgency": "unwomen"]])
        #expect(try await h.tasks.detail(first.ref, as: h.undp).overlaps.map(\.resolutionData) == [["leadAgency": "unwomen"]])
        #expect(try await h.invariantViolations() == [])
    }

    @Test func anEditOfDatesOrPlacesIsScreenedAgain() async throws {
        let h = try await Harness("overlap_update")
        let (first, _, _) = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "a", by: h.undp)
        var elsewhere = Harness.project(title: "Youth and women in local peace committees")
        elsewhere.leadAgency = "unicef"
        elsewhere.participants = []
        elsewhere.country = "LBR"
        let (other, _, _) = try await h.tasks.submit(elsewhere, workflow: "pbf-project", idempotencyKey: "b", by: h.unicef)
        #expect(other.state == "technical_review")
        var move = TaskChanges()
        move.country = "BDI"
        let moved = try await h.tasks.update(other.ref, expectedVersion: other.version, changes: move, by: h.unicef)
        let found = try await h.tasks.listOverlaps(task: moved.ref, status: "open", limit: 10, as: h.coordinator).items
        #expect(found.map(\.other.ref) == [first.ref])
        #expect(try await h.tasks.history(moved.ref, as: h.coordinator).contains { $0.type == "overlap.detected" })
        // What the edit found is deconflicted before the project goes for approval.
        let refused = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(moved.ref, action: "recommend", expectedVersion: moved.version, by: h.coordinator)
        }
        #expect(refused?.code == .refused)
        #expect(refused?.message.contains("open overlap") == true, "\(refused?.message ?? "")")
        _ = try await h.tasks.resolveOverlap(try #require(found.first).id, as: .distinct, comment: "Different districts", by: h.coordinator)
        let recommended = try await h.tasks.act(moved.ref, action: "recommend", expectedVersion: moved.version, by: h.coordinator)
        #expect(recommended.state == "asg_approval")
    }

    /// A program moved to another country no longer overlaps the one it
    /// was flagged against: the pair closes, on both sides, and holds
    /// neither back; a pair a coordinator decided stays decided. Moved back,
    /// the pair is open again. Before, the edit left it open for ever.
    @Test func anEditThatEndsAnOverlapClosesItAndUndoneOpensItAgain() async throws {
        let h = try await Harness("overlap_edit_untrue")
        let (first, second, overlap) = try await h.twoOverlapping()
        let (wfp, _) = try await aThirdByWFP(h, title: "Local peace committees with youth and women")
        let decided = try #require(try await h.tasks.listOverlaps(task: wfp.ref, status: "open", limit: 10, as: h.coordinator).items.first { $0.other.ref == first.ref })
        _ = try await h.tasks.resolveOverlap(decided.id, as: .distinct, comment: "Different committees", by: h.coordinator)

        var away = TaskChanges()
        away.country = "LBR"
        away.locations = ["Monrovia"]
        let moved = try await h.tasks.update(first.ref, expectedVersion: first.version, changes: away, by: h.undp)
        #expect(try await h.tasks.get(second.ref, as: h.unicef).openOverlaps == 0)
        let closed = try #require(try await h.tasks.detail(second.ref, as: h.unicef).overlaps.first { $0.id == overlap.id })
        #expect(closed.status == "closed")
        #expect(closed.resolution == nil)
        #expect(closed.resolutionData == ["edited": first.ref])
        struct Closed: Decodable, Equatable {
            let other: String
            let edited: String
        }
        for (ref, other, principal) in [(first.ref, second.ref, h.undp), (second.ref, first.ref, h.unicef)] {
            let events = try await h.tasks.history(ref, as: principal).filter { $0.type == "overlap.closed" }
            #expect(try events.map { try $0.data.decode(Closed.self) } == [Closed(other: other, edited: first.ref)], "\(ref)")
        }
        func wfpWithFirst() async throws -> [String] {
            try await h.tasks.listOverlaps(task: wfp.ref, status: nil, limit: 10, as: h.coordinator).items.filter { $0.other.ref == first.ref }.map(\.status)
        }
        #expect(try await wfpWithFirst() == ["resolved"])
        #expect(try await h.invariantViolations() == [])

        var back = TaskChanges()
        back.country = "BDI"
        back.locations = first.record.locations
        let returned = try await h.tasks.update(first.ref, expectedVersion: moved.version, changes: back, by: h.undp)
        #expect(returned.openOverlaps == 1)
        #expect(try await h.tasks.get(second.ref, as: h.unicef).openOverlaps == 1)
        let open = try await h.tasks.listOverlaps(task: second.ref, status: "open", limit: 10, as: h.coordinator).items
        #expect(open.map(\.other.ref).contains(first.ref))
        #expect(try await wfpWithFirst() == ["resolved"])
        #expect(try await h.invariantViolations() == [])

        // The same from the side that recorded the pair: its own row closes and opens again.
        let holder = try await h.tasks.get(second.ref, as: h.unicef)
        var later = TaskChanges()
        later.period = Period(start: CalendarDate(iso: "2031-01-01")!, end: CalendarDate(iso: "2031-12-31")!)
        let gone = try await h.tasks.update(second.ref, expectedVersion: holder.version, changes: later, by: h.unicef)
        #expect(gone.openOverlaps == 0)
        var sooner = TaskChanges()
        sooner.period = holder.record.period
        let again = try await h.tasks.update(second.ref, expectedVersion: gone.version, changes: sooner, by: h.unicef)
        #expect(again.openOverlaps == 2)  // with the first program, and with WFP's, which its move had closed too
        let reopened = try await h.tasks.detail(second.ref, as: h.unicef).overlaps.filter { $0.id == overlap.id }
        #expect(reopened.map(\.status) == ["open"])
        #expect(try await h.invariantViolations() == [])
    }

    /// An edit that leaves a pair an overlap rewrites its score and reasons,
    /// on both sides, so that the pair says why as the programs now stand:
    /// silently for a pair already open, which is announced once.
    @Test func anEditRewritesTheReasonsOfThePairsItStillHas() async throws {
        let h = try await Harness("overlap_edit_reasons")
        let (first, second, overlap) = try await h.twoOverlapping()
        func periodReason() async throws -> String? {
            let listed = try await h.tasks.listOverlaps(task: second.ref, status: "open", limit: 10, as: h.coordinator).items
            return listed.first { $0.id == overlap.id }?.reasons.first { $0.hasPrefix("period ") }
        }
        func detected(_ ref: String) async throws -> Int {
            try await h.tasks.history(ref, as: h.coordinator).filter { $0.type == "overlap.detected" }.count
        }
        #expect(try await periodReason() == "period 1.00: periods share 547 days (100% of the shorter)")

        // UNDP's program starts half a year earlier: the pair, recorded on UNICEF's side, says so.
        var earlier = TaskChanges()
        earlier.period = Period(start: CalendarDate(iso: "2026-07-01")!, end: CalendarDate(iso: "2027-06-30")!)
        let edited = try await h.tasks.update(first.ref, expectedVersion: first.version, changes: earlier, by: h.undp)
        #expect(try await periodReason() == "period 0.50: periods share 181 days (50% of the shorter)")

        // UNICEF's program shrinks to a quarter within it: its own row says so, with no second announcement.
        let before = try await detected(second.ref)
        let holder = try await h.tasks.get(second.ref, as: h.unicef)
        var shorter = TaskChanges()
        shorter.period = Period(start: CalendarDate(iso: "2027-01-01")!, end: CalendarDate(iso: "2027-03-31")!)
        _ = try await h.tasks.update(second.ref, expectedVersion: holder.version, changes: shorter, by: h.unicef)
        #expect(try await periodReason() == "period 1.00: periods share 90 days (100% of the shorter)")
        #expect(try await detected(second.ref) == before)
        let mirrored = try await h.tasks.detail(edited.ref, as: h.undp).overlaps.filter { $0.other == second.ref }
        #expect(!mirrored.isEmpty && mirrored.map(\.reasons).allSatisfy { $0.contains("period 1.00: periods share 90 days (100% of the shorter)") }, "\(mirrored)")
        #expect(try await h.invariantViolations() == [])
    }

    /// A deconfliction case opened on a pair that an edit then makes no
    /// overlap has nothing left to agree: it is dismissed with the pair.
    @Test func anEditThatEndsAnOverlapDismissesItsCase() async throws {
        let h = try await Harness("overlap_edit_untrue_case")
        let (first, _, overlap) = try await h.twoOverlapping()
        let opened = try await h.tasks.create(Harness.caseDraft(for: overlap.id), workflow: "deconfliction-case", by: h.coordinator)
        var later = TaskChanges()
        later.period = Period(start: CalendarDate(iso: "2031-01-01")!, end: CalendarDate(iso: "2031-12-31")!)
        _ = try await h.tasks.update(first.ref, expectedVersion: first.version, changes: later, by: h.undp)
        let dismissed = try await h.tasks.get(opened.ref, as: h.coordinator)
        #expect(dismissed.state == "dismissed")
        let step = try #require(try await h.tasks.history(opened.ref, as: h.coordinator).last)
        #expect(step.comment == "\(first.ref) changed and no longer overlaps: nothing is left to agree")
        #expect(try await h.invariantViolations() == [])
    }

    /// UNDP's program (with `partner` taking part) and UNICEF's, a pair that
    /// overlaps through the text alone: the same category but other codes
    /// and districts. UNICEF's lands in deconfliction with its one overlap.
    func overlappingByTextAlone(_ h: Harness, partner: String) async throws -> (first: StoredTask, second: StoredTask, overlap: StoredOverlap) {
        var mine = Harness.project()
        mine.participants = [Participant(agency: partner, role: .implementing)]
        mine.sectors = ["15220"]
        mine.locations = ["Gitega"]
        let first = try await h.tasks.submit(mine, workflow: "pbf-project", idempotencyKey: "a", by: h.undp).task
        var theirs = Harness.project()
        theirs.leadAgency = "unicef"
        theirs.participants = [Participant(agency: "unwomen", role: .implementing)]
        theirs.sectors = ["15210"]
        theirs.locations = ["Bujumbura"]
        let (second, _, found) = try await h.tasks.submit(theirs, workflow: "pbf-project", idempotencyKey: "b", by: h.unicef)
        #expect(second.state == "deconfliction")
        #expect(found.map(\.other) == [first.ref])
        return (first, second, try #require(found.first))
    }

    /// The first program sent back for revision, its text rewritten by UNDP
    /// (an edit that is not screened) and resubmitted by `liaison`.
    func rewrittenAndResubmitted(_ h: Harness, _ first: StoredTask, by liaison: Principal, meanwhile: () async throws -> Void = {}) async throws -> StoredTask {
        var task = try await h.tasks.act(
            first.ref, action: "request_revision", expectedVersion: first.version, inputs: ActionInputs(comment: "Say what is new"),
            by: h.coordinator)
        var rewritten = TaskChanges()
        rewritten.title = "Land registry reform for returning refugees"
        rewritten.description = "Cadastral surveys and title deeds for returnee households."
        task = try await h.tasks.update(first.ref, expectedVersion: task.version, changes: rewritten, by: h.undp)
        try await meanwhile()
        return try await h.tasks.act(first.ref, action: "resubmit", expectedVersion: task.version, by: liaison)
    }

    /// The liaison rewrites the revised program's text, which an edit does
    /// not screen, and resubmits. Its screening no longer finds the pair,
    /// which closes on both sides; both programs go on. Before, the pair
    /// stayed open and held the other program in deconfliction, though the
    /// resubmitted program's own screening had just ruled it out.
    @Test func aResubmissionThatNoLongerOverlapsClosesThePair() async throws {
        let h = try await Harness("overlap_resubmitted_apart")
        let (first, second, _) = try await overlappingByTextAlone(h, partner: "unicef")
        let task = try await rewrittenAndResubmitted(h, first, by: h.undp) { () async throws in
            // The text is not screened until the program is resubmitted.
            #expect(try await h.tasks.get(second.ref, as: h.unicef).openOverlaps == 1)
        }
        #expect(task.state == "technical_review")
        #expect(try await h.tasks.detail(first.ref, as: h.undp).overlaps.map(\.status) == ["closed"])
        let other = try await h.tasks.get(second.ref, as: h.unicef)
        #expect(other.openOverlaps == 0)
        let closed = try await h.tasks.detail(second.ref, as: h.unicef).overlaps
        #expect(closed.map(\.status) == ["closed"])
        #expect(closed.map(\.resolutionData) == [["edited": first.ref]])
        for (ref, principal) in [(first.ref, h.undp), (second.ref, h.unicef)] {
            #expect(try await h.tasks.history(ref, as: principal).filter { $0.type == "overlap.closed" }.count == 1, "\(ref)")
        }
        let recommended = try await h.tasks.act(first.ref, action: "recommend", expectedVersion: task.version, by: h.coordinator)
        #expect(recommended.state != "technical_review")
        let cleared = try await h.tasks.act(second.ref, action: "deconflicted", expectedVersion: other.version, by: h.coordinator)
        #expect(cleared.state == "technical_review")
        #expect(try await h.invariantViolations() == [])
    }

    /// A liaison of an agency that only takes part in the program may
    /// resubmit it, and does not see the case opened on its pair, which
    /// counts the two lead agencies: the case is dismissed all the same.
    @Test func aResubmissionByATakingPartAgencyDismissesACaseItCannotSee() async throws {
        let h = try await Harness("overlap_resubmitted_by_partner")
        let (first, second, overlap) = try await overlappingByTextAlone(h, partner: "wfp")
        let opened = try await h.tasks.create(Harness.caseDraft(for: overlap.id), workflow: "deconfliction-case", by: h.coordinator)
        await #expect(throws: StoreError.self) { try await h.tasks.get(opened.ref, as: h.wfp) }
        let task = try await rewrittenAndResubmitted(h, first, by: h.wfp)
        #expect(task.state == "technical_review")
        #expect(try await h.tasks.get(second.ref, as: h.unicef).openOverlaps == 0)
        #expect(try await h.tasks.get(opened.ref, as: h.coordinator).state == "dismissed")
        #expect(try await h.invariantViolations() == [])
    }

    /// Screening returns at most 1,000 candidates, so a pair it did not
    /// return may still be an overlap: the edit scores each such pair on
    /// its own before closing it. Here the screening is made to return
    /// nothing, as if the pair were past the thousandth candidate.
    @Test func anEditClosesNoPairItsScreeningLeftOutThatStillOverlaps() async throws {
        let forgetting = Switch()
        let configuration = OverlapConfiguration()
        let h = try await Harness("overlap_edit_left_out") { connection, ref in
            ForgetfulScreener(inner: PortfolioScreener(connection: connection, configuration: configuration, subjectRef: ref), forgetting: forgetting)
        }
        let (first, second, _) = try await h.twoOverlapping()
        forgetting.turnOn()
        var later = TaskChanges()
        later.period = Period(start: CalendarDate(iso: "2027-02-01")!, end: CalendarDate(iso: "2028-06-30")!)
        _ = try await h.tasks.update(first.ref, expectedVersion: first.version, changes: later, by: h.undp)
        #expect(try await h.tasks.get(second.ref, as: h.unicef).openOverlaps == 1)
        #expect(try await h.tasks.listOverlaps(task: second.ref, status: "open", limit: 10, as: h.coordinator).items.map(\.other.ref) == [first.ref])
    }

    /// A pair found by both tasks' screenings has an overlap on each task.
    /// Two coordinators resolving it at once, each from one side, get one
    /// resolution, not two: the other is told the pair is resolved already.
    @Test func aPairResolvedFromBothSidesAtOnceIsResolvedOnce() async throws {
        let h = try await Harness("overlap_both_sides_race")
        let (first, second, _) = try await h.twoOverlapping()
        var later = TaskChanges()
        later.period = Period(start: CalendarDate(iso: "2027-01-01")!, end: CalendarDate(iso: "2028-09-30")!)
        _ = try await h.tasks.update(first.ref, expectedVersion: first.version, changes: later, by: h.undp)
        let fromFirst = try #require(try await h.tasks.detail(first.ref, as: h.coordinator).overlaps.first)
        let fromSecond = try #require(try await h.tasks.detail(second.ref, as: h.coordinator).overlaps.first)
        #expect(fromFirst.id != fromSecond.id)
        let colleague = try await h.admin.addPrincipal(name: "second coordinator", role: .coordinator, agency: "pbso")
        func attempt(_ id: UUID, _ resolution: Resolution, by principal: Principal) async throws -> Result<OverlapView, StoreError> {
            do { return .success(try await h.tasks.resolveOverlap(id, as: resolution, comment: nil, by: principal)) } catch let error as StoreError {
                return .failure(error)
            }
        }
        async let distinct = attempt(fromFirst.id, .distinct, by: h.coordinator)
        async let coordinate = attempt(fromSecond.id, .coordinate(lead: "undp"), by: colleague)
        let outcomes = [try await distinct, try await coordinate]
        let won = outcomes.compactMap { try? $0.get() }
        #expect(won.count == 1)
        let refused: [StoreError] = outcomes.compactMap { if case .failure(let error) = $0 { error } else { nil } }
        #expect(refused.map(\.message).allSatisfy { $0.hasSuffix("is resolved already") }, "\(refused.map(\.message))")
        #expect(refused.map(\.code) == [.conflict])
        let resolutions = try await h.pool.query("SELECT DISTINCT resolution FROM task_overlaps").map { try $0.decode(String?.self, at: 0) }
        #expect(resolutions == [won.first?.resolution])
        let resolvedEvents = try await h.pool.query("SELECT count(*) FROM events WHERE type = 'overlap.resolved'").first!.decode(Int.self, at: 0)
        #expect(resolvedEvents == 2)  // one on each task, from the one resolution
    }

    @Test func aDeconflictionCaseCarriesTheOverlapToTheAgreedResolution() async throws {
        let h = try await Harness("overlap_case")
        let (first, second, overlap) = try await h.twoOverlapping()
        let draft = Harness.caseDraft(for: overlap.id, title: "Peace committees in Gitega: who leads")
        var deconfliction = try await h.tasks.create(draft, workflow: "deconfliction-case", by: h.coordinator)
        #expect(deconfliction.workflowVersion == 4)
        #expect(Set(deconfliction.record.participants.map(\.agency)) == ["undp", "unicef"])
        // While it is open, a second case for the overlap is refused, naming the first.
        var twice = draft
        twice.fields = ["overlap": .string(overlap.id.uuidString.uppercased())]
        let duplicate = await #expect(throws: StoreError.self) { _ = try await h.tasks.create(twice, workflow: "deconfliction-case", by: h.coordinator) }
        #expect(duplicate?.message == "overlap \(overlap.id.uuidString.uppercased()) has an open deconfliction case already: \(deconfliction.ref)")
        // Nor is the pair decided past the case, which would be left stuck.
        let past = await #expect(throws: StoreError.self) { _ = try await h.tasks.resolveOverlap(overlap.id, as: .distinct, comment: nil, by: h.coordinator) }
        #expect(past?.code == .conflict)
        #expect(past?.message == "overlap \(overlap.id.uuidString.lowercased()) is being settled in deconfliction case \(deconfliction.ref); decide it there, or dismiss the case first")
        // Both agencies' liaisons can see the case.
        #expect(try await h.tasks.get(deconfliction.ref, as: h.undp).id == deconfliction.id)
        deconfliction = try await h.tasks.act(deconfliction.ref, action: "start_consultation", expectedVersion: deconfliction.version, by: h.coordinator)
        deconfliction = try await h.tasks.act(
            deconfliction.ref, action: "propose_resolution", expectedVersion: deconfliction.version,
            inputs: ActionInputs(comment: "UNDP leads; UNICEF brings the girls' clubs", fields: ["resolution": .string("coordinate"), "leadAgency": .string("undp")]),
            by: h.coordinator)
        #expect(deconfliction.state == "agreement_pending")
        // An agency outside the case cannot agree.
        await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(deconfliction.ref, action: "agree", expectedVersion: deconfliction.version, by: h.wfp)
        }
        // Both agencies agree, one after the other: the first waits for the second.
        deconfliction = try await h.tasks.act(deconfliction.ref, action: "agree", expectedVersion: deconfliction.version, by: h.unicef)
        #expect(deconfliction.state == "agreement_pending")
        deconfliction = try await h.tasks.act(deconfliction.ref, action: "agree", expectedVersion: deconfliction.version, by: h.undp)
        #expect(deconfliction.state == "coordinate")
        let resolved = try await h.tasks.listOverlaps(task: second.ref, status: "resolved", limit: 10, as: h.coordinator).items
        #expect(resolved.map(\.resolution) == ["coordinate"])
        #expect(try await h.tasks.history(first.ref, as: h.coordinator).contains { $0.type == "overlap.resolved" })
        // A second case for the same overlap is refused: it is resolved.
        let again = await #expect(throws: StoreError.self) { _ = try await h.tasks.create(draft, workflow: "deconfliction-case", by: h.coordinator) }
        #expect(again?.code == .conflict)
        var nameless = draft
        nameless.fields = [:]
        let missing = await #expect(throws: StoreError.self) { _ = try await h.tasks.create(nameless, workflow: "deconfliction-case", by: h.coordinator) }
        #expect(missing?.fieldErrors.first?.field == "fields.overlap")
        #expect(try await h.invariantViolations() == [])
    }

    @Test func aDismissedCaseMakesRoomForANewOne() async throws {
        let h = try await Harness("overlap_case_dismissed")
        let (_, _, overlap) = try await h.twoOverlapping()
        let draft = Harness.caseDraft(for: overlap.id)
        let first = try await h.tasks.create(draft, workflow: "deconfliction-case", by: h.coordinator)
        _ = try await h.tasks.act(
            first.ref, action: "dismiss", expectedVersion: first.version, inputs: ActionInputs(comment: "Opened by mistake"), by: h.coordinator)
        let second = try await h.tasks.create(draft, workflow: "deconfliction-case", by: h.coordinator)
        #expect(second.state == "opened")
        // Dismissed too, the case leaves the pair to a coordinator's own resolution.
        _ = try await h.tasks.act(
            second.ref, action: "dismiss", expectedVersion: second.version, inputs: ActionInputs(comment: "Settled by phone"), by: h.coordinator)
        #expect(try await h.tasks.resolveOverlap(overlap.id, as: .distinct, comment: nil, by: h.coordinator).status == "resolved")
    }

    /// Under deconfliction-case version 3, UNICEF's liaison could agree, alone,
    /// to a proposal that withdrew UNDP's program. Each agency agrees to the
    /// proposal as it stands; a new proposal needs both again.
    @Test func oneAgencyAloneCannotAgreeToWithdrawTheOthersProgram() async throws {
        let h = try await Harness("overlap_case_both_agree")
        let (first, _, overlap) = try await h.twoOverlapping()
        var deconfliction = try await caseAwaitingAgreement(
            h, on: overlap, proposing: ["resolution": .string("withdraw"), "task": .string(first.ref)], comment: "UNDP steps back")
        deconfliction = try await h.tasks.act(deconfliction.ref, action: "agree", expectedVersion: deconfliction.version, by: h.unicef)
        #expect(deconfliction.state == "agreement_pending")
        #expect(try await h.tasks.get(first.ref, as: h.undp).state == "technical_review")
        // UNICEF agrees once: its page says so, and agreeing again is refused with who is still to agree.
        let seen = try await h.tasks.detail(deconfliction.ref, as: h.unicef)
        let waiting = GuardFailure("actor_has_not_agreed", "unicef has agreed to this proposal already; waiting for undp")
        #expect(h.tasks.actionOptions(seen.task, agreed: seen.agreedAgencies, for: h.unicef).first { $0.name == "agree" }?.refusedBy == [waiting])
        #expect(h.tasks.actionOptions(seen.task, agreed: seen.agreedAgencies, for: h.undp).first { $0.name == "agree" }?.refusedBy == [])
        // Everyone reading the case sees who agreed and who is awaited: the coordinator knows whom to ask.
        #expect(h.tasks.agreement(of: try await h.tasks.detail(deconfliction.ref, as: h.coordinator)) == AgreementStanding(agreed: ["unicef"], awaiting: ["undp"]))
        let twice = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(deconfliction.ref, action: "agree", expectedVersion: deconfliction.version, by: h.unicef)
        }
        #expect(twice?.refusal == .guardsFailed(action: "agree", failures: [waiting]))
        #expect(try await h.tasks.listOverlaps(task: nil, status: "open", limit: 10, as: h.coordinator).items.map(\.id).contains(overlap.id))
        // A coordinator does not agree for the agencies.
        let forThem = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(deconfliction.ref, action: "agree", expectedVersion: deconfliction.version, by: h.coordinator)
        }
        #expect(forThem?.refusal == .roleNotAllowed(action: "agree", role: .coordinator, allowedRoles: [.liaison]))

        // UNDP objects; the new proposal needs UNICEF's agreement again, not the one it gave the old.
        deconfliction = try await h.tasks.act(
            deconfliction.ref, action: "object", expectedVersion: deconfliction.version, inputs: ActionInputs(comment: "We have started"), by: h.undp)
        deconfliction = try await h.tasks.act(
            deconfliction.ref, action: "propose_resolution", expectedVersion: deconfliction.version,
            inputs: ActionInputs(comment: "Both go on, apart", fields: ["resolution": .string("distinct")]), by: h.coordinator)
        #expect(h.tasks.agreement(of: try await h.tasks.detail(deconfliction.ref, as: h.unicef)) == AgreementStanding(agreed: [], awaiting: ["undp", "unicef"]))
        deconfliction = try await h.tasks.act(deconfliction.ref, action: "agree", expectedVersion: deconfliction.version, by: h.undp)
        #expect(deconfliction.state == "agreement_pending")
        deconfliction = try await h.tasks.act(deconfliction.ref, action: "agree", expectedVersion: deconfliction.version, by: h.unicef)
        #expect(deconfliction.state == "distinct")
        // Decided, it waits for no one.
        #expect(h.tasks.agreement(of: try await h.tasks.detail(deconfliction.ref, as: h.coordinator)) == nil)
        #expect(try await h.tasks.get(first.ref, as: h.undp).state == "technical_review")
        #expect(try await h.invariantViolations() == [])
    }

    /// A proposal pbc could not apply is refused when it is made, naming
    /// the field: the agencies are never asked to agree to it.
    @Test func aCaseProposesOnlyWhatPBCCanApply() async throws {
        let h = try await Harness("overlap_case_proposal")
        let (first, second, overlap) = try await h.twoOverlapping()
        let draft = Harness.caseDraft(for: overlap.id, title: "Peace committees in Gitega: how they go on")
        var deconfliction = try await h.tasks.create(draft, workflow: "deconfliction-case", by: h.coordinator)
        deconfliction = try await h.tasks.act(deconfliction.ref, action: "start_consultation", expectedVersion: deconfliction.version, by: h.coordinator)
        let proposals: [([String: FieldValue], FieldError)] = [
            (["resolution": .string("merge")], FieldError("fields.survivor", "resolution merge needs it")),
            (["resolution": .string("merge"), "survivor": .string("PBC-1999-000001")],
             FieldError("fields.survivor", "must be \(second.ref) or \(first.ref)")),
            (["resolution": .string("coordinate"), "leadAgency": .string("WFP")],
             FieldError("fields.leadAgency", "wfp takes part in neither \(second.ref) nor \(first.ref); one of undp, unicef, unwomen leads")),
            (["resolution": .string("sequence"), "task": .string(second.ref), "periodStart": .string("2028-01-01"), "periodEnd": .string("2028-12-31")],
             FieldError("fields.periodStart", "2028-01-01 to 2028-12-31 still shares days with \(first.ref) (2027-01-01 to 2028-06-30): "
                 + "sequenced programs follow each other, one ending before the other starts")),
        ]
        for (fields, expected) in proposals {
            let refused = await #expect(throws: StoreError.self) {
                _ = try await h.tasks.act(
                    deconfliction.ref, action: "propose_resolution", expectedVersion: deconfliction.version,
                    inputs: ActionInputs(comment: "Proposed", fields: fields), by: h.coordinator)
            }
            #expect(refused?.fieldErrors == [expected], "\(fields)")
            let unchanged = try await h.tasks.get(deconfliction.ref, as: h.coordinator)
            #expect(unchanged.state == "consultation" && unchanged.version == deconfliction.version)
        }
    }

    /// The last agreement checks the resolution again, since the programs
    /// may have changed after the proposal: refused with the reason, and
    /// nothing moves.
    @Test func aCaseWhoseResolutionNoLongerFitsIsRefusedWholly() async throws {
        let h = try await Harness("overlap_case_refused")
        let (first, second, overlap) = try await h.twoOverlapping()
        let proposal: [String: FieldValue] = [
            "resolution": .string("sequence"), "task": .string(second.ref), "periodStart": .string("2028-07-01"), "periodEnd": .string("2029-06-30"),
        ]
        var deconfliction = try await caseAwaitingAgreement(h, on: overlap, proposing: proposal, comment: "UNICEF's starts after UNDP's")
        deconfliction = try await h.tasks.act(deconfliction.ref, action: "agree", expectedVersion: deconfliction.version, by: h.undp)
        // Meanwhile UNDP's program is extended into the proposed period.
        var longer = TaskChanges()
        longer.period = Period(start: CalendarDate(iso: "2027-01-01")!, end: CalendarDate(iso: "2028-12-31")!)
        _ = try await h.tasks.update(first.ref, expectedVersion: try await h.tasks.get(first.ref, as: h.undp).version, changes: longer, by: h.undp)
        let refused = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(deconfliction.ref, action: "agree", expectedVersion: deconfliction.version, by: h.unicef)
        }
        #expect(refused?.fieldErrors.first?.reason.hasPrefix("2028-07-01 to 2029-06-30 still shares days with \(first.ref) (2027-01-01 to 2028-12-31)") == true)
        // Nothing moved: the case waits for agreement, the overlap is open, UNICEF's period is as it was.
        #expect(try await h.tasks.get(deconfliction.ref, as: h.coordinator).state == "agreement_pending")
        #expect(try await h.tasks.listOverlaps(task: nil, status: "open", limit: 10, as: h.coordinator).items.map(\.id).contains(overlap.id))
        #expect(try await h.tasks.get(second.ref, as: h.coordinator).record.period == second.record.period)
    }
}

/// The real screener, whose `screen` returns nothing once `forgetting` is on.
struct ForgetfulScreener: Screener {
    let inner: any Screener
    let forgetting: Switch

    func screen(_ task: TaskRecord) async throws -> [OverlapFinding] {
        forgetting.isOn ? [] : try await inner.screen(task)
    }

    func screen(_ task: TaskRecord, against others: [String]) async throws -> [OverlapFinding] {
        try await inner.screen(task, against: others)
    }
}

import Coordination
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// Queue tests are about queues: every submission goes straight to review.
struct NoOverlaps: Screener {
    func screen(_ task: TaskRecord) async throws -> [OverlapFinding] { [] }
}

@Suite struct QueueTests {
    /// A project for Sierra Leone, which routing leaves in `pbso-review`.
    static func project(_ title: String, priority: Priority = .normal) -> TaskRecord {
        var record = Harness.project(title: title)
        record.country = "SLE"
        record.locations = ["Kailahun"]
        record.priority = priority
        return record
    }

    func submit(_ h: Harness, _ title: String, priority: Priority = .normal) async throws -> StoredTask {
        try await h.tasks.submit(Self.project(title, priority: priority), workflow: "pbf-project", idempotencyKey: title, by: h.undp).task
    }

    func events(_ h: Harness, of task: StoredTask, type: String) async throws -> [StoredEvent] {
        try await h.tasks.history(task.ref, as: h.coordinator).filter { $0.type == type }
    }

    @Test func claimsGiveTheMostUrgentUnheldTaskFirst() async throws {
        let h = try await Harness("claim_order", screener: { _, _ in NoOverlaps() })
        let old = try await submit(h, "Community dialogue in Kono")
        h.clock.advance(.seconds(3600))
        let newer = try await submit(h, "Radio programmes for reconciliation in Bo")
        let urgent = try await submit(h, "Border security training in Kailahun", priority: .urgent)
        #expect(urgent.queue == "pbso-review-urgent")  // routing by priority
        #expect(old.queue == "pbso-review")

        // The urgent one sits in its own queue; in pbso-review, the oldest goes first.
        let first = try #require(try await h.tasks.claim("pbso-review", lease: .seconds(600), by: h.coordinator))
        #expect(first.ref == old.ref)
        #expect(first.holder?.name == h.coordinator.name)
        #expect(first.holder?.expiresAt == h.clock.now.addingTimeInterval(600))
        #expect(first.version == old.version + 1)
        let second = try #require(try await h.tasks.claim("pbso-review", lease: .seconds(600), by: h.coordinator))
        #expect(second.ref == newer.ref)
        #expect(try await h.tasks.claim("pbso-review", lease: .seconds(600), by: h.coordinator) == nil)
        // Membership of pbso-review covers the queues refined from it.
        let third = try #require(try await h.tasks.claim("pbso-review-urgent", lease: .seconds(600), by: h.coordinator))
        #expect(third.ref == urgent.ref)

        // Not a member: refused; no such queue: not found.
        let stranger = try await h.admin.addPrincipal(name: "other coordinator", role: .coordinator, agency: "pbso")
        let forbidden = await #expect(throws: StoreError.self) { _ = try await h.tasks.claim("pbso-review", lease: .seconds(60), by: stranger) }
        #expect(forbidden?.code == .forbidden)
        let unknown = await #expect(throws: StoreError.self) { _ = try await h.tasks.claim("no-such-queue", lease: .seconds(60), by: h.coordinator) }
        #expect(unknown?.code == .notFound)

        let claimed = try await events(h, of: first, type: "task.claimed")
        #expect(claimed.count == 1)
        #expect(claimed.first?.actor == h.coordinator.name)
    }

    @Test func concurrentClaimersNeverGetTheSameTask() async throws {
        let h = try await Harness("claim_race", screener: { _, _ in NoOverlaps() })
        for index in 0..<40 { _ = try await submit(h, "Programme \(index) in Kenema") }
        var workers: [Principal] = []
        for index in 0..<8 {
            let worker = try await h.admin.addPrincipal(name: "coordinator \(index)", role: .coordinator, agency: "pbso")
            try await h.admin.addQueueMember(queue: "pbso-review", principal: worker.name)
            workers.append(worker)
        }
        let claims = try await withThrowingTaskGroup(of: [String].self) { group in
            for worker in workers {
                group.addTask {
                    var refs: [String] = []
                    while let task = try await h.tasks.claim("pbso-review", lease: .seconds(600), by: worker) { refs.append(task.ref) }
                    return refs
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(claims.count == 40)
        #expect(Set(claims).count == 40)
        let holders = try await h.pool.query("SELECT count(*) FROM tasks WHERE queue = 'pbso-review' AND assignee IS NULL")
        #expect(try holders.first!.decode(Int.self, at: 0) == 0)
    }

    /// A transaction that writes a row referring to a task (an event on it
    /// from another task's screening, an overlap, a participant) holds a
    /// key-share lock on the task's row until it commits. A claim must not
    /// take that for "held by someone" and pass the task over.
    @Test func aClaimIsNotPassedOverByAWriteThatRefersToTheTask() async throws {
        let h = try await Harness("claim_referenced", screener: { _, _ in NoOverlaps() })
        let task = try await submit(h, "Women mediators in Kailahun")
        try await h.pool.withConnection { other in
            try await other.execute(unsafeSQL: "BEGIN")
            try await other.query("INSERT INTO task_participants (task_id, agency, role) VALUES (\(task.id), 'wfp', 'funding')")
            let claimed = try await h.tasks.claim("pbso-review", lease: .seconds(600), by: h.coordinator)
            try await other.execute(unsafeSQL: "ROLLBACK")
            #expect(claimed?.ref == task.ref)
        }
    }

    /// A liaison's edit that waits for a coordinator's claim of the same
    /// task reads the task as the claim left it, with the holder's name.
    /// PostgreSQL reads again a locked row that changed while it waited, but
    /// not the rows joined to it: the edit read a holder with no name and
    /// failed with an internal error (found by a concurrent walk over the wire).
    @Test func anEditThatWaitsForAClaimSeesWhoHoldsTheTask() async throws {
        let h = try await Harness("edit_waits_for_claim", screener: { _, _ in NoOverlaps() })
        let task = try await submit(h, "Women mediators in Kailahun")
        try await h.pool.withConnection { claim in
            // What a claim writes, held uncommitted.
            try await claim.execute(unsafeSQL: "BEGIN")
            try await claim.query("""
                UPDATE tasks SET assignee = \(h.coordinator.id), lease_id = gen_random_uuid(), lease_expires_at = now() + interval '10 minutes',
                    version = version + 1
                WHERE id = \(task.id)
                """)
            var changes = TaskChanges()
            changes.title = "Women mediators in Kailahun and Kenema"
            async let edited = h.tasks.update(task.ref, expectedVersion: task.version + 1, changes: changes, by: h.undp)
            #expect(try await transactionsWaitingForALock(h) > 0)
            try await claim.execute(unsafeSQL: "COMMIT")
            let after = try await edited
            #expect(after.holder?.name == h.coordinator.name)
            #expect(after.record.title == "Women mediators in Kailahun and Kenema")
        }
    }

    @Test func anExpiredLeaseReturnsTheTaskAndItsHolderCannotActUnderIt() async throws {
        let h = try await Harness("lease_expiry", screener: { _, _ in NoOverlaps() })
        _ = try await submit(h, "Land dispute mediation in Kono")
        let colleague = try await h.admin.addPrincipal(name: "second coordinator", role: .coordinator, agency: "pbso")
        try await h.admin.addQueueMember(queue: "pbso-review", principal: colleague.name)

        let mine = try #require(try await h.tasks.claim("pbso-review", lease: .seconds(600), by: h.coordinator))
        let lease = try #require(mine.holder?.lease)
        // While the lease holds, a colleague can neither claim nor act on it.
        #expect(try await h.tasks.claim("pbso-review", lease: .seconds(600), by: colleague) == nil)
        let held = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(mine.ref, action: "recommend", expectedVersion: mine.version, by: colleague)
        }
        #expect(held?.code == .conflict)
        #expect(held?.message.contains("held by chen (pbso)") == true)

        // Renewing moves the expiry; then time runs out.
        let renewed = try await h.tasks.renew(mine.ref, lease: lease, for: .seconds(600), by: h.coordinator)
        #expect(renewed.holder?.expiresAt == h.clock.now.addingTimeInterval(600))
        h.clock.advance(.seconds(601))
        let expired = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(mine.ref, action: "recommend", expectedVersion: renewed.version, lease: lease, by: h.coordinator)
        }
        #expect(expired?.code == .conflict)
        #expect(expired?.message.contains("expired") == true)

        // The sweep gives it back to the queue, once.
        let report = try #require(try await h.tasks.sweep())
        #expect(report.leasesExpired == [mine.ref])
        #expect(try await h.tasks.sweep()?.leasesExpired == [])
        let back = try await h.tasks.get(mine.ref, as: h.coordinator)
        #expect(back.holder == nil)
        #expect(try await events(h, of: back, type: "task.lease_expired").count == 1)

        // The colleague claims it; the old lease is refused, the new holder's action succeeds.
        let theirs = try #require(try await h.tasks.claim("pbso-review", lease: .seconds(600), by: colleague))
        #expect(theirs.ref == mine.ref)
        let lost = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(mine.ref, action: "recommend", expectedVersion: theirs.version, lease: lease, by: h.coordinator)
        }
        #expect(lost?.code == .conflict)
        #expect(lost?.message.contains("no longer yours") == true)
        let done = try await h.tasks.act(
            theirs.ref, action: "recommend", expectedVersion: theirs.version, lease: theirs.holder?.lease, by: colleague)
        #expect(done.state == "asg_approval")
        #expect(done.holder == nil)  // the step is done; the next queue's workers take it from here
    }

    @Test func assignReleaseAndReassignEveryTaskOfOnePerson() async throws {
        let h = try await Harness("reassign", screener: { _, _ in NoOverlaps() })
        let a = try await submit(h, "Women mediators network in Bo")
        let b = try await submit(h, "Youth employment for peace in Makeni")
        let away = try await h.admin.addPrincipal(name: "on leave", role: .coordinator, agency: "pbso")
        let cover = try await h.admin.addPrincipal(name: "cover", role: .coordinator, agency: "pbso")

        let assigned = try await h.tasks.assign(a.ref, to: away.name, by: h.coordinator)
        #expect(assigned.holder?.name == "on leave")
        #expect(assigned.holder?.expiresAt == nil)  // an assignment does not expire
        _ = try await h.tasks.assign(b.ref, to: away.id.uuidString, by: h.coordinator)
        let liaison = await #expect(throws: StoreError.self) { _ = try await h.tasks.assign(a.ref, to: cover.name, by: h.undp) }
        #expect(liaison?.code == .forbidden)
        let notAWorker = await #expect(throws: StoreError.self) { _ = try await h.tasks.assign(a.ref, to: h.wfp.name, by: h.coordinator) }
        #expect(notAWorker?.code == .validation)

        let moved = try await h.tasks.reassignAll(from: away.name, to: cover.name, by: h.coordinator)
        #expect(moved == [a.ref, b.ref])
        #expect(try await h.tasks.get(a.ref, as: h.coordinator).holder?.name == "cover")
        let assignedEvents = try await events(h, of: a, type: "task.assigned")
        #expect(assignedEvents.count == 2)

        let released = try await h.tasks.release(b.ref, lease: nil, by: cover)
        #expect(released.holder == nil)
        let again = await #expect(throws: StoreError.self) { _ = try await h.tasks.release(b.ref, lease: nil, by: cover) }
        #expect(again?.code == .conflict)
        let emptied = try await h.tasks.reassignAll(from: cover.name, to: nil, by: h.coordinator)
        #expect(emptied == [a.ref])
        #expect(try await h.tasks.get(a.ref, as: h.coordinator).holder == nil)
    }

    @Test func aBreachIsHandledOnceEvenWithSeveralInstancesSweeping() async throws {
        let h = try await Harness("sla_breach", screener: { _, _ in NoOverlaps() })
        let review = try await submit(h, "Transitional justice outreach in Kenema")
        #expect(review.dueAt == h.clock.now.addingTimeInterval(15 * 86_400))  // technical_review: sla 15d

        // Three instances, each its own store and pool over the same database.
        var instances: [TaskStore] = []
        var pools: [PostgresPool] = []
        for _ in 0..<3 {
            let pool = PostgresPool(configuration: .init(target: h.target, maxConnections: 2))
            pools.append(pool)
            let clock = h.clock
            instances.append(TaskStore(
                pool: pool, workflows: h.workflows, rates: try Harness.rates(), screener: { _, _ in NoOverlaps() },
                routing: try Harness.routing(), now: { clock.now }))
        }
        defer { for pool in pools { Task { await pool.shutdown() } } }

        h.clock.advance(.seconds(14 * 86_400))
        for instance in instances { #expect(try await instance.sweep()?.breached ?? [] == []) }
        h.clock.advance(.seconds(2 * 86_400))
        let breachedRefs = try await withThrowingTaskGroup(of: [String].self) { group in
            for instance in instances {
                group.addTask {
                    var breached: [String] = []
                    for _ in 0..<5 { breached += try await instance.sweep()?.breached ?? [] }
                    return breached
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(breachedRefs == [review.ref])
        let breached = try await events(h, of: review, type: "sla.breached")
        #expect(breached.count == 1)
        let after = try await h.tasks.get(review.ref, as: h.coordinator)
        #expect(after.record.priority == .high)  // technical_review names no escalation queue: priority goes up
        #expect(after.queue == "pbso-review")
        let data = try breached.first!.data.decode([String: String].self)
        #expect(data["priorityFrom"] == "normal")
        #expect(data["priorityTo"] == "high")

        // Entering a new state starts its SLA afresh.
        let recommended = try await h.tasks.act(review.ref, action: "recommend", expectedVersion: after.version, by: h.coordinator)
        #expect(recommended.dueAt == h.clock.now.addingTimeInterval(10 * 86_400))
    }

    @Test func aBreachInDeconflictionMovesTheTaskToTheEscalationQueue() async throws {
        let h = try await Harness("sla_escalation")
        struct Always: Screener {
            func screen(_ task: TaskRecord) async throws -> [OverlapFinding] {
                [OverlapFinding(other: "XM-DAC-41114-SLE-1", score: 0.9, reasons: ["same sector"])]
            }
        }
        let stuck = try await TaskStore(
            pool: h.pool, workflows: h.workflows, rates: try Harness.rates(), screener: { _, _ in Always() }, routing: try Harness.routing(),
            now: { h.clock.now }
        ).submit(Self.project("Security sector reform in Freetown"), workflow: "pbf-project", idempotencyKey: "k", by: h.undp).task
        #expect(stuck.state == "deconfliction")
        #expect(stuck.queue == "pbso-deconfliction")
        let held = try #require(try await h.tasks.claim("pbso-deconfliction", lease: .seconds(86_400 * 30), by: h.coordinator))
        #expect(held.holder != nil)

        h.clock.advance(.seconds(11 * 86_400))
        #expect(try await h.tasks.sweep()?.breached == [stuck.ref])
        let escalated = try await h.tasks.get(stuck.ref, as: h.coordinator)
        #expect(escalated.queue == "pbso-escalations")
        #expect(escalated.holder == nil)
        #expect(escalated.queuedAt == h.clock.now)
        let data = try #require(try await events(h, of: stuck, type: "sla.breached").first).data.decode([String: String].self)
        #expect(data["escalatedFrom"] == "pbso-deconfliction")
        #expect(data["escalatedTo"] == "pbso-escalations")
        #expect(try await h.tasks.sweep()?.breached == [])
    }

    @Test func progressReportsAreDueOnTheirDateWithRemindersBefore() async throws {
        let h = try await Harness("reminders", screener: { _, _ in NoOverlaps() })
        let project = try await h.fund(Self.project("Community dialogue in Kono"), key: "kono")
        let report = Harness.report(on: project, due: "2027-01-31")
        let task = try await h.tasks.create(report, workflow: "progress-report", by: h.undp)
        #expect(task.state == "scheduled")
        #expect(task.queue == "agency-reports")
        #expect(task.dueAt == ISO8601DateFormatter().date(from: "2027-02-01T00:00:00Z"))

        h.clock.set("2026-12-15")  // more than 30 days ahead: nothing yet
        #expect(try await h.tasks.sweep()?.reminded == [])
        h.clock.set("2027-01-02")  // 30 days before
        #expect(try await h.tasks.sweep()?.reminded == [task.ref])
        #expect(try await h.tasks.sweep()?.reminded == [])
        h.clock.set("2027-01-26")  // 7 days before
        #expect(try await h.tasks.sweep()?.reminded == [task.ref])
        let reminders = try await events(h, of: task, type: "sla.reminder")
        #expect(reminders.count == 2)
        #expect(try reminders.last!.data.decode([String: String].self)["state"] == "scheduled")

        // Drafting keeps the same due date and reminds a day before.
        let drafting = try await h.tasks.act(task.ref, action: "start_drafting", expectedVersion: task.version, by: h.undp)
        #expect(drafting.dueAt == task.dueAt)
        h.clock.set("2027-01-31")
        #expect(try await h.tasks.sweep()?.reminded == [task.ref])
        h.clock.set("2027-02-02")
        let late = try #require(try await h.tasks.sweep())
        #expect(late.breached == [task.ref])
        #expect(late.reminded == [])
    }

    /// A report has no `submit`: submitting one creates it where its workflow
    /// starts, once per key, rather than being refused with nothing kept.
    @Test func submittingAReportSchedulesIt() async throws {
        let h = try await Harness("report_submit", screener: { _, _ in NoOverlaps() })
        let project = try await h.fund(Self.project("Community dialogue in Kono"), key: "kono")
        let report = Harness.report(on: project, type: "annual", due: "2027-11-15")
        let (task, replayed, _) = try await h.tasks.submit(report, workflow: "progress-report", idempotencyKey: "kono-annual", by: h.undp)
        #expect(!replayed)
        #expect(task.state == "scheduled")
        #expect(task.queue == "agency-reports")
        let again = try await h.tasks.submit(report, workflow: "progress-report", idempotencyKey: "kono-annual", by: h.undp)
        #expect(again.replayed && again.task.id == task.id)
        #expect(try await h.invariantViolations() == [])
    }

    @Test func queueListShowsDepthClaimsAgeAndBreaches() async throws {
        let h = try await Harness("queue_list", screener: { _, _ in NoOverlaps() })
        let a = try await submit(h, "Peace education in Bo")
        h.clock.advance(.seconds(60))
        _ = try await submit(h, "Peace education in Kenema")
        _ = try await h.tasks.claim("pbso-review", lease: .seconds(15 * 86_400), by: h.coordinator)
        h.clock.advance(.seconds(15 * 86_400 - 3600))  // due in an hour
        var queues = try await h.tasks.queues(for: h.coordinator)
        #expect(queues.map(\.name).contains("pbso-review-BDI"))  // refined from a queue they belong to
        #expect(!queues.map(\.name).contains("asg-approval"))
        var review = try #require(queues.first { $0.name == "pbso-review" })
        #expect(review.depth == 2)
        #expect(review.claimed == 1)
        #expect(review.dueSoon == 2)
        #expect(review.breached == 0)
        #expect(review.oldestQueuedAt == a.queuedAt)
        h.clock.advance(.seconds(7200))
        queues = try await h.tasks.queues(for: h.coordinator)
        review = try #require(queues.first { $0.name == "pbso-review" })
        #expect(review.breached == 2)
        #expect(review.claimed == 0)  // the lease ran out too

        // Paging through a queue in urgency order.
        let first = try await h.tasks.queueTasks("pbso-review", as: h.coordinator, limit: 1)
        #expect(first.items.map(\.ref) == [a.ref])
        let next = try await h.tasks.queueTasks("pbso-review", as: h.coordinator, limit: 1, cursor: first.nextCursor)
        #expect(next.items.count == 1)
        #expect(next.items.first?.ref != a.ref)
        #expect(next.nextCursor == nil)
        let bad = await #expect(throws: StoreError.self) { _ = try await h.tasks.queueTasks("pbso-review", as: h.coordinator, cursor: "bogus") }
        #expect(bad?.code == .validation)
    }

    @Test func eventReadsFilterAndScopeByAgency() async throws {
        let h = try await Harness("event_reads", screener: { _, _ in NoOverlaps() })
        let start = try await h.tasks.newestEventSeq()
        let mine = try await submit(h, "Dialogue platforms in Kono")
        var other = Self.project("School feeding in Bombali")
        other.leadAgency = "wfp"
        other.participants = []
        let theirs = try await h.tasks.submit(other, workflow: "pbf-project", idempotencyKey: "w", by: h.wfp).task

        let all = try await h.tasks.events(after: start, matching: EventFilter(), visibleTo: h.coordinator, limit: 100)
        #expect(all.map(\.event.seq) == all.map(\.event.seq).sorted())
        #expect(Set(all.compactMap(\.taskRef)) == [mine.ref, theirs.ref])
        // A liaison of a participating agency sees the UNDP task's events, not WFP's.
        let unicef = try await h.tasks.events(after: start, matching: EventFilter(), visibleTo: h.unicef, limit: 100)
        #expect(Set(unicef.compactMap(\.taskRef)) == [mine.ref])
        let byQueue = try await h.tasks.events(after: start, matching: EventFilter(queues: ["pbso-review"]), visibleTo: h.coordinator, limit: 100)
        #expect(!byQueue.isEmpty)
        #expect(byQueue.allSatisfy { $0.queue == "pbso-review" })
        let byType = try await h.tasks.events(
            after: start, matching: EventFilter(tasks: [theirs.id], types: ["task.transitioned"]), visibleTo: h.coordinator, limit: 100)
        #expect(byType.map(\.event.toState) == ["submitted", "screening", "technical_review"])
        let byAgency = try await h.tasks.events(after: start, matching: EventFilter(agencies: ["unicef"]), visibleTo: h.coordinator, limit: 100)
        #expect(Set(byAgency.compactMap(\.taskRef)) == [mine.ref])

        // Replays: ahead of the log is invalid; older than retention is gone.
        let ahead = await #expect(throws: StoreError.self) { try await h.tasks.checkReplayable(since: 1_000_000, retention: .seconds(86_400)) }
        #expect(ahead?.code == .validation)
        try await h.tasks.checkReplayable(since: start, retention: .seconds(86_400))
        // Events carry the database's time; two days after it, they are past a one-day window.
        h.clock.set(date: Date().addingTimeInterval(2 * 86_400))
        let gone = await #expect(throws: StoreError.self) { try await h.tasks.checkReplayable(since: start, retention: .seconds(86_400)) }
        #expect(gone?.code == .historyGone)
    }
}

@Suite struct ScreeningBoundTests {
    /// The SQL bound that keeps hopeless candidates in the database never
    /// drops one whose exact score reaches the threshold.
    @Test func filteringInSQLFindsExactlyWhatScoringEveryCandidateFinds() async throws {
        let h = try await Harness("screening_bound", screener: { _, _ in NoOverlaps() })
        var random = SystemRandomNumberGenerator()
        let sectors = ["15220", "15210", "15130", "15110", "11220", "12220"]
        let places = ["Kailahun", "Kenema", "Bo", "Kono", "Makeni", "Port Loko"]
        let words = ["dialogue", "youth", "women", "mediation", "land", "justice", "radio", "police"]
        func record() -> TaskRecord {
            var task = Harness.project(title: (0..<3).map { _ in words.randomElement(using: &random)! }.joined(separator: " "))
            task.country = "SLE"
            task.leadAgency = ["undp", "unicef", "wfp"].randomElement(using: &random)!
            task.participants = Bool.random(using: &random) ? [Participant(agency: "unfpa", role: .implementing)] : []
            task.sectors = Array(Set((0..<Int.random(in: 1...2, using: &random)).map { _ in sectors.randomElement(using: &random)! }))
            task.locations = Array(Set((0..<Int.random(in: 1...2, using: &random)).map { _ in places.randomElement(using: &random)! }))
            let start = Int.random(in: 0...700, using: &random)
            let base = CalendarDate(iso: "2027-01-01")!.daysSinceEpoch
            func date(_ days: Int) -> CalendarDate { CalendarDate(Date(timeIntervalSince1970: Double(base + days) * 86_400)) }
            task.period = Period(start: date(start), end: date(start + Int.random(in: 90...700, using: &random)))
            return task
        }
        for _ in 0..<80 { _ = try await h.tasks.create(record(), workflow: "pbf-project", by: h.coordinator) }
        let configuration = OverlapConfiguration()
        var everyCandidate = configuration
        everyCandidate.threshold = 0
        var found = 0
        for index in 0..<40 {
            let task = record()
            let subject = PortfolioEntry(
                ref: "SUBJECT-\(index)", agency: task.leadAgency, agencies: task.agencies, country: "SLE", sectors: Set(task.sectors),
                locations: Set(task.locations), period: task.period!, externalIDs: [])
            let text = task.title + " " + task.description
            let filtered = try await h.pool.withConnection {
                try await PortfolioScreener.findings(for: subject, text: text, on: $0, configuration: configuration)
            }
            let all = try await h.pool.withConnection {
                try await PortfolioScreener.findings(for: subject, text: text, on: $0, configuration: everyCandidate)
            }
            // Scores are kept to three decimals: one that rounds to the threshold may fall either side of it.
            let surely = Set(all.filter { $0.score > configuration.threshold + 0.0005 }.map(\.other))
            let perhaps = Set(all.filter { $0.score >= configuration.threshold - 0.0005 }.map(\.other))
            #expect(surely.isSubset(of: Set(filtered.map(\.other))), "subject \(index): the bound dropped an overlap")
            #expect(Set(filtered.map(\.other)).isSubset(of: perhaps), "subject \(index)")
            found += filtered.count
        }
        #expect(found > 0)  // the data makes overlaps, so the comparison means something
    }

    /// The portfolio scan screens each entry against the entries after it
    /// only, so that each pair is scored once. It reports exactly the pairs
    /// that screening either entry against the whole portfolio finds, with
    /// the same scores.
    @Test func theScanReportsEveryPairThatScreeningEitherEntryFinds() async throws {
        let h = try await Harness("screening_scan", screener: { _, _ in NoOverlaps() })
        var random = SystemRandomNumberGenerator()
        let words = ["dialogue", "youth", "women", "mediation", "land", "justice"]
        var created: [StoredTask] = []
        for _ in 0..<60 {
            var task = Harness.project(title: (0..<3).map { _ in words.randomElement(using: &random)! }.joined(separator: " "))
            task.country = "SLE"
            task.leadAgency = ["undp", "unicef", "wfp"].randomElement(using: &random)!
            task.participants = []
            task.sectors = [["15220", "15210", "15130", "11220"].randomElement(using: &random)!]
            task.locations = [["Kailahun", "Kenema", "Bo"].randomElement(using: &random)!]
            let start = CalendarDate(iso: "2027-01-01")!.daysSinceEpoch + Int.random(in: 0...900, using: &random)
            func date(_ days: Int) -> CalendarDate { CalendarDate(Date(timeIntervalSince1970: Double(days) * 86_400)) }
            task.period = Period(start: date(start), end: date(start + Int.random(in: 90...500, using: &random)))
            created.append(try await h.tasks.create(task, workflow: "pbf-project", by: h.coordinator))
        }
        struct Pair: Hashable { let first: String, second: String, score: Double }
        var screened: Set<Pair> = []
        for task in created {
            let record = task.record
            let subject = PortfolioEntry(
                ref: task.ref, agency: record.leadAgency, agencies: record.agencies, country: "SLE", sectors: Set(record.sectors),
                locations: Set(record.locations), period: record.period!, externalIDs: [])
            let findings = try await h.pool.withConnection {
                try await PortfolioScreener.findings(
                    for: subject, text: record.title + " " + record.description, on: $0, configuration: OverlapConfiguration())
            }
            for finding in findings {
                screened.insert(Pair(first: min(task.ref, finding.other), second: max(task.ref, finding.other), score: finding.score))
            }
        }
        var scanned: Set<Pair> = []
        try await PortfolioScan(pool: h.service, configuration: OverlapConfiguration()).scan(overlap: {
            scanned.insert(Pair(first: $0.first, second: $0.second, score: $0.score))
        })
        #expect(scanned == screened)
        #expect(screened.count > 10)  // the data makes overlaps, so the comparison means something
    }

    /// Every candidate is examined, however many share the slice, and of more
    /// than 1,000 overlaps the 1,000 strongest are kept: the strongest of
    /// 6,001, written last, comes first. (Screening once looked at the first
    /// 5,000 candidates the index gave and kept the first 1,000 that passed.)
    @Test func theStrongestOverlapsAreKeptInADenseSlice() async throws {
        let h = try await Harness("screening_dense", screener: { _, _ in NoOverlaps() })
        // 6,000 programmes in the same category, place and period: each an
        // overlap (0.18 + 0.2 + 0.15 and a little text); one more with the same
        // code and text as well.
        try await h.pool.query("""
            WITH made AS (
                INSERT INTO activities (identifier, reporting_agency, title, content_hash, source)
                SELECT 'DENSE-' || g, 'wfp', 'Programme ' || g, 'x', 'test' FROM generate_series(1, 6001) AS g
                RETURNING id, substr(identifier, 7)::int AS g)
            INSERT INTO portfolio (ref, country, kind, activity_id, agency, agencies, period, sectors, categories, locations, title, body)
            SELECT 'DENSE-' || g, 'SLE', 'activity', id, 'wfp', '{wfp}', daterange('2027-01-01', '2028-12-31', '[]'),
                   CASE WHEN g = 6001 THEN '{15110}'::text[] ELSE '{15130}' END, '{151}', '{kenema}', 'Programme ' || g,
                   CASE WHEN g = 6001 THEN 'Legal aid clinics for land disputes in Kenema' ELSE 'Road maintenance lot ' || g END
            FROM made ORDER BY g
            """)
        let subject = PortfolioEntry(
            ref: "SUBJECT", agency: "undp", agencies: ["undp"], country: "SLE", sectors: ["15110"], locations: ["Kenema"],
            period: Period(start: CalendarDate(iso: "2027-03-01")!, end: CalendarDate(iso: "2028-06-30")!))
        let findings = try await h.service.withConnection {
            try await PortfolioScreener.findings(
                for: subject, text: "Legal aid clinics for land disputes in Kenema", on: $0, configuration: OverlapConfiguration())
        }
        #expect(findings.count == 1000)
        #expect(findings.first?.other == "DENSE-6001")
        #expect(findings.dropFirst().allSatisfy { $0.score < findings[0].score })

        // A liaison's submission there records those 1,000, each with its event, in one transaction.
        var draft = Harness.project(title: "Legal aid clinics for land disputes in Kenema")
        draft.country = "SLE"
        draft.sectors = ["15110"]
        draft.locations = ["Kenema"]
        draft.participants = []
        draft.description = ""
        draft.period = subject.period
        let screening = TaskStore(
            pool: h.service, workflows: h.workflows, rates: try Harness.rates(), screener: TaskStore.portfolioScreener(OverlapConfiguration()),
            routing: try Harness.routing())
        let (task, _, overlaps) = try await screening.submit(draft, workflow: "pbf-project", idempotencyKey: "dense", by: h.undp)
        #expect(task.state == "deconfliction")
        #expect(overlaps.count == 1000)
        #expect(overlaps.first?.other == "DENSE-6001")
        let detected = try await screening.history(task.ref, as: h.undp).filter { $0.type == "overlap.detected" }
        #expect(detected.count == 1000)
    }
}

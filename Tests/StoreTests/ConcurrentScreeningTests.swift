import Coordination
import Foundation
import Logging
import Postgres
@testable import Store
import Synchronization
import Testing
import TestSupport

/// Where screenings wait for each other: each arrives and waits, up to
/// `patience`, until `expected` have arrived.
final class Rendezvous: Sendable {
    let arrived = Atomic<Int>(0)
    let expected: Int
    let patience: Duration

    init(expected: Int, patience: Duration) {
        self.expected = expected
        self.patience = patience
    }

    func arrive() async throws {
        arrived.add(1, ordering: .sequentiallyConsistent)
        let deadline = ContinuousClock.now + patience
        while arrived.load(ordering: .sequentiallyConsistent) < expected, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// The real screener, which then waits at the rendezvous: it holds each
/// submission open between its search of the portfolio and its commit,
/// where a simultaneous submission would slip past unseen.
struct WaitingScreener: Screener {
    let inner: any Screener
    let rendezvous: Rendezvous

    func screen(_ task: TaskRecord) async throws -> [OverlapFinding] {
        let findings = try await inner.screen(task)
        try await rendezvous.arrive()
        return findings
    }

    /// Scoring single pairs again waits for nobody.
    func screen(_ task: TaskRecord, against others: [String]) async throws -> [OverlapFinding] {
        try await inner.screen(task, against: others)
    }
}

@Suite struct ConcurrentScreeningTests {
    /// UNDP and UNICEF submit the same program at the same moment. Each
    /// submission's search runs before the other commits; unless they are
    /// kept apart, neither sees the other and both go to review unflagged.
    @Test func ofTwoSimultaneousSubmissionsOfOneProgramTheLaterIsFlagged() async throws {
        let rendezvous = Rendezvous(expected: 2, patience: .seconds(3))
        let configuration = OverlapConfiguration()
        let h = try await Harness("overlap_simultaneous") { connection, ref in
            WaitingScreener(inner: PortfolioScreener(connection: connection, configuration: configuration, subjectRef: ref), rendezvous: rendezvous)
        }
        var same = Harness.project()
        same.leadAgency = "unicef"
        same.participants = [Participant(agency: "undp", role: .implementing)]
        async let first = h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "a", by: h.undp)
        async let second = h.tasks.submit(same, workflow: "pbf-project", idempotencyKey: "b", by: h.unicef)
        let submitted = [try await first, try await second]
        #expect(submitted.map(\.task.state).sorted() == ["deconfliction", "technical_review"])
        let flagged = try #require(submitted.first { $0.task.state == "deconfliction" })
        let other = try #require(submitted.first { $0.task.state == "technical_review" })
        #expect(flagged.overlaps.map(\.other) == [other.task.ref])
        // The one that went to review learns of it on its own task, as after any later submission.
        #expect(try await h.tasks.detail(other.task.ref, as: h.coordinator).overlaps.map(\.other) == [flagged.task.ref])
    }

    /// A dry run in a slice where a submission is being screened waits for
    /// that submission and reports it, instead of answering "no overlap" a
    /// moment before the program it duplicates is committed.
    @Test func aDryRunDuringASubmissionOfTheSameProgramReportsIt() async throws {
        let rendezvous = Rendezvous(expected: 2, patience: .seconds(2))
        let configuration = OverlapConfiguration()
        let h = try await Harness("overlap_check_waits") { connection, ref in
            WaitingScreener(inner: PortfolioScreener(connection: connection, configuration: configuration, subjectRef: ref), rendezvous: rendezvous)
        }
        async let submitted = h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "a", by: h.undp)
        while rendezvous.arrived.load(ordering: .sequentiallyConsistent) == 0 { try await Task.sleep(for: .milliseconds(10)) }
        var draft = Harness.project()
        draft.leadAgency = "unicef"
        let checked = try await h.tasks.checkOverlaps(draft, as: h.unicef)
        #expect(checked.map(\.other.ref) == [try await submitted.task.ref])
    }

    /// A nationwide program may name hundreds of districts. Its screening
    /// holds a bounded number of locks, not one per district, which a few
    /// such submissions at once could run PostgreSQL's shared lock table out of.
    @Test func aProgramOfManyDistrictsHoldsABoundedNumberOfLocks() async throws {
        // The screening waits there, holding its locks, until the test has counted them and arrives too.
        let rendezvous = Rendezvous(expected: 2, patience: .seconds(30))
        let configuration = OverlapConfiguration()
        let h = try await Harness("overlap_many_districts") { connection, ref in
            WaitingScreener(inner: PortfolioScreener(connection: connection, configuration: configuration, subjectRef: ref), rendezvous: rendezvous)
        }
        var nationwide = Harness.project(title: "District peace committees, nationwide")
        nationwide.locations = (1...400).map { "District \($0)" }
        async let submitted = h.tasks.submit(nationwide, workflow: "pbf-project", idempotencyKey: "nationwide", by: h.undp)
        var held = 0
        for _ in 0..<1_500 where held == 0 {
            try await Task.sleep(for: .milliseconds(20))
            held = try await h.pool.query("""
                SELECT count(*) FROM pg_locks
                WHERE locktype = 'advisory' AND classid = 7412 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                """).first!.decode(Int.self, at: 0)
        }
        try await rendezvous.arrive()
        #expect(held > 0)
        #expect(held <= 64)
        #expect(try await submitted.task.state == "technical_review")
    }

    /// A resolution and a resubmission of one pair at the same moment wait
    /// for each other in turn instead of deadlocking. The resubmission holds
    /// its task while it screens, then reopens the pair's overlap row; the
    /// resolution locks the pair's two tasks before their overlap rows, as
    /// every change does, so it holds nothing the resubmission needs. In the
    /// other order PostgreSQL would break the cycle after a second and the
    /// store would run one transaction again, which the store logs: the test
    /// counts those retries (there must be none), not time.
    @Test func aResolutionDuringAResubmissionOfThePairWaitsWithoutDeadlock() async throws {
        let retries = Retries()
        var logger = Logger(label: "pbc.postgres") { _ in retries }
        logger.logLevel = .debug
        let rendezvous = Rendezvous(expected: 2, patience: .seconds(60))
        let armed = Switch()
        let configuration = OverlapConfiguration()
        let h = try await Harness("overlap_resolve_resubmit", screener: { connection, ref in
            ArmedScreener(inner: PortfolioScreener(connection: connection, configuration: configuration, subjectRef: ref), armed: armed, rendezvous: rendezvous)
        }, logger: logger)
        var same = Harness.project()
        same.leadAgency = "unicef"
        same.participants = [Participant(agency: "undp", role: .implementing)]
        _ = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "a", by: h.undp)
        let (later, _, laterOverlaps) = try await h.tasks.submit(same, workflow: "pbf-project", idempotencyKey: "b", by: h.unicef)
        let overlap = try #require(laterOverlaps.first)
        // Resolved, reviewed, sent back for revision: the resubmission will find the pair again.
        _ = try await h.tasks.resolveOverlap(overlap.id, as: .distinct, comment: nil, by: h.coordinator)
        var task = try await h.tasks.act(later.ref, action: "deconflicted", expectedVersion: later.version, by: h.coordinator)
        task = try await h.tasks.act(
            later.ref, action: "request_revision", expectedVersion: task.version, inputs: ActionInputs(comment: "Say how it differs"), by: h.coordinator)

        armed.turnOn()
        async let resubmitted = h.tasks.act(later.ref, action: "resubmit", expectedVersion: task.version, by: h.unicef)
        while rendezvous.arrived.load(ordering: .sequentiallyConsistent) == 0 { try await Task.sleep(for: .milliseconds(10)) }
        // The resubmission holds its task and waits in its screening; now the resolution starts and must wait for it.
        async let resolved = h.tasks.resolveOverlap(overlap.id, as: .distinct, comment: "Still distinct", by: h.coordinator)
        let waiting = try await transactionsWaitingForALock(h)
        #expect(waiting > 0, "the resolution never waited for the resubmission")
        try await rendezvous.arrive()
        let state = try await resubmitted.state
        _ = try await resolved
        #expect(state == "deconfliction")
        #expect(retries.count == 0, "a transaction ran again after a deadlock")
        #expect(try await h.tasks.detail(later.ref, as: h.coordinator).overlaps.map(\.status) == ["resolved"])
    }

    /// UNDP withdraws its program while UNICEF's submission of the same one
    /// is being screened against it. The withdrawal closes the program's
    /// open overlaps; the one the screening is about to record must be
    /// among them, not left open with a program that no longer exists (a
    /// concurrent random walk over the wire found such overlaps). So the
    /// withdrawal waits for the screening to commit, then closes it too.
    @Test func aProgramWithdrawnWhileASubmissionIsScreenedAgainstItKeepsNoOpenOverlap() async throws {
        let (h, first, second, rendezvous) = try await Self.submissionHeldInItsScreening("overlap_withdrawn_meanwhile")
        // The screening has found UNDP's program and holds its findings uncommitted.
        async let withdrawn = h.tasks.act(first.ref, action: "withdraw", expectedVersion: first.version, by: h.undp)
        let waiting = try await transactionsWaitingForALock(h)
        #expect(waiting > 0, "the withdrawal never waited for the screening")
        try await rendezvous.arrive()
        let (later, _, found) = try await second.value
        #expect(found.map(\.other) == [first.ref])
        #expect(try await withdrawn.state == "withdrawn")
        let overlaps = try await h.tasks.detail(later.ref, as: h.coordinator).overlaps
        #expect(overlaps.map(\.status) == ["closed"])
        #expect(try await h.tasks.history(later.ref, as: h.coordinator).contains { $0.type == "overlap.closed" })
        #expect(try await h.invariantViolations() == [])
    }
}

extension ConcurrentScreeningTests {
    /// UNDP's program, submitted; then UNICEF's submission of the same one,
    /// held in its screening after the search that found UNDP's, its
    /// findings uncommitted, until the test arrives at the rendezvous.
    static func submissionHeldInItsScreening(
        _ label: String
    ) async throws -> (Harness, StoredTask, Task<(task: StoredTask, replayed: Bool, overlaps: [StoredOverlap]), any Error>, Rendezvous) {
        try await submissionHeldInItsScreening(label) { h in
            try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "a", by: h.undp).task
        }
    }

    /// The same, screened against what `existing` put in the portfolio.
    static func submissionHeldInItsScreening<Existing>(
        _ label: String, against existing: (Harness) async throws -> Existing
    ) async throws -> (Harness, Existing, Task<(task: StoredTask, replayed: Bool, overlaps: [StoredOverlap]), any Error>, Rendezvous) {
        let rendezvous = Rendezvous(expected: 2, patience: .seconds(60))
        let armed = Switch()
        let configuration = OverlapConfiguration()
        let h = try await Harness(label) { connection, ref in
            ArmedScreener(inner: PortfolioScreener(connection: connection, configuration: configuration, subjectRef: ref), armed: armed, rendezvous: rendezvous)
        }
        let first = try await existing(h)
        var same = Harness.project()
        same.leadAgency = "unicef"
        same.participants = [Participant(agency: "undp", role: .implementing)]
        armed.turnOn()
        let second = Task { try await h.tasks.submit(same, workflow: "pbf-project", idempotencyKey: "b", by: h.unicef) }
        while rendezvous.arrived.load(ordering: .sequentiallyConsistent) == 0 { try await Task.sleep(for: .milliseconds(10)) }
        return (h, first, second, rendezvous)
    }

    /// UNICEF's submission is screened against UNDP's program under the
    /// keys the program has; UNDP then moves its program to other places
    /// and withdraws it. The move waits for the screening to commit, so the
    /// withdrawal, which locks only the keys the program has by then, still
    /// finds the overlap the screening recorded and closes it. Had the move
    /// gone first, a withdrawal before the screening's commit would have
    /// left that overlap open with a withdrawn program.
    @Test func aProgramMovedWhileASubmissionIsScreenedAgainstItWaitsForThatScreening() async throws {
        let (h, first, second, rendezvous) = try await Self.submissionHeldInItsScreening("overlap_moved_meanwhile")
        // The screening has found UNDP's program in Burundi; UNDP moves it to Sierra Leone.
        var moved = TaskChanges()
        moved.country = "SLE"
        moved.locations = ["Kailahun"]
        async let edited = h.tasks.update(first.ref, expectedVersion: first.version, changes: moved, by: h.undp)
        #expect(try await transactionsWaitingForALock(h) > 0, "the move never waited for the screening")
        try await rendezvous.arrive()
        let (later, _, found) = try await second.value
        #expect(found.map(\.other) == [first.ref])
        let after = try await edited
        #expect(after.record.country == "SLE")
        _ = try await h.tasks.act(first.ref, action: "withdraw", expectedVersion: after.version, by: h.undp)
        #expect(try await h.tasks.detail(later.ref, as: h.coordinator).overlaps.map(\.status) == ["closed"])
        #expect(try await h.invariantViolations() == [])
    }

    /// UNICEF's submission is screened against an imported activity; its
    /// publisher then moves the activity years later. The import waits for
    /// the screening to commit, then finds the overlap it recorded no longer
    /// holds, and closes it. Had the import gone first, its check would have
    /// come before that overlap existed, and left it open.
    @Test func anActivityMovedWhileASubmissionIsScreenedAgainstItHasThatOverlapClosed() async throws {
        let directory = Scratch.directory.appendingPathComponent("pbc-csv-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (h, _, second, rendezvous) = try await Self.submissionHeldInItsScreening("overlap_activity_moved_meanwhile") { h in
            try await CSVImportTests.importGitegaActivity(status: "2", h, in: directory)
        }
        async let moved = CSVImportTests.importGitegaActivity(status: "2", start: "2032-01-01", end: "2033-12-31", h, in: directory)
        #expect(try await transactionsWaitingForALock(h) > 0, "the import never waited for the screening")
        try await rendezvous.arrive()
        let (later, _, found) = try await second.value
        #expect(found.map(\.other) == ["GAC-BDI-2027-01"])
        #expect(try await moved.updated == 1)
        let overlaps = try await h.tasks.detail(later.ref, as: h.coordinator).overlaps
        #expect(overlaps.map(\.status) == ["closed"])
        #expect(overlaps.map(\.resolutionData) == [["edited": "GAC-BDI-2027-01"]])
    }
}

extension ConcurrentScreeningTests {
    /// UNDP's program overlapped an imported activity until UNDP moved it to
    /// Kailahun, Sierra Leone, which closed the pair. The publisher then
    /// moves the activity there too, which opens the pair again, while UNDP
    /// withdraws the program. The import takes the locks of the keys the
    /// activity will have, so it waits for a withdrawal under way there:
    /// either the withdrawal commits first and the import no longer finds
    /// the program, or the import does and the withdrawal closes the pair it
    /// opened. It used to take only the keys the activity had, and could
    /// open the pair with a program withdrawn in between (the one
    /// explanation found for a concurrent random walk that failed so once).
    @Test func anActivityMovedToWhereAProgramIsBeingWithdrawnWaitsForTheWithdrawal() async throws {
        let directory = Scratch.directory.appendingPathComponent("pbc-csv-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (h, task, _) = try await Self.programOverlappingTheGitegaActivity("overlap_activity_reopened_meanwhile", in: directory)
        var moved = TaskChanges()
        moved.country = "SLE"
        moved.locations = ["Kailahun"]
        let after = try await h.tasks.update(task.ref, expectedVersion: task.version, changes: moved, by: h.undp)
        #expect(try await h.tasks.detail(task.ref, as: h.coordinator).overlaps.map(\.status) == ["closed"])
        // A withdrawal under way holds the program's key locks, as `act` takes them before it ends a program.
        let withdrawing = try await Self.holdingTheKeys(of: task.ref, h)
        async let movedToo = CSVImportTests.importGitegaActivity(status: "2", country: "SL", location: "Kailahun", h, in: directory)
        #expect(try await transactionsWaitingForALock(h) > 0, "the import never waited for the withdrawal under way")
        async let withdrawn = h.tasks.act(task.ref, action: "withdraw", expectedVersion: after.version, by: h.undp)
        try await withdrawing.execute(unsafeSQL: "COMMIT")
        await withdrawing.close()
        #expect(try await movedToo.updated == 1)
        #expect(try await withdrawn.state == "withdrawn")
        #expect(try await h.tasks.detail(task.ref, as: h.coordinator).overlaps.map(\.status) == ["closed"])
        #expect(try await h.invariantViolations() == [])
    }
}

extension ConcurrentScreeningTests {
    /// A coordinator resolves UNDP's overlap with an imported activity by
    /// withdrawing the program while the activity is imported again. The
    /// import holds the activity's key locks and then locks the pair's rows
    /// to score them again; the resolution takes the keys of both entries
    /// before the pair's rows, as every change takes keys before overlap
    /// rows, so while it waits it holds nothing the import needs. It used
    /// to lock the pair's rows first: the import then waited for them, the
    /// resolution for the keys, and PostgreSQL broke the cycle after a
    /// second (the concurrent walk's PostgreSQL log showed it).
    @Test func aResolutionDuringAnImportOfItsActivityWaitsHoldingNoRowOfThePair() async throws {
        let directory = Scratch.directory.appendingPathComponent("pbc-csv-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (h, task, overlap) = try await Self.programOverlappingTheGitegaActivity("overlap_resolve_during_import", in: directory)
        // An import of the activity under way, at the point where it holds the activity's key locks.
        let importing = try await Self.holdingTheKeys(of: "GAC-BDI-2027-01", h)
        async let resolved = h.tasks.resolveOverlap(overlap.id, as: .withdraw(task: task.ref), comment: nil, by: h.coordinator)
        #expect(try await transactionsWaitingForALock(h) > 0, "the resolution never waited for the import")
        // The import's next step: the pair's rows, which the waiting resolution must not hold.
        let locked = try await importing.query("SELECT id FROM task_overlaps WHERE id = \(overlap.id) FOR UPDATE NOWAIT")
        #expect(locked.count == 1)
        try await importing.execute(unsafeSQL: "COMMIT")
        await importing.close()
        #expect(try await resolved.status == "resolved")
        #expect(try await h.tasks.get(task.ref, as: h.coordinator).state == "withdrawn")
    }
}

extension ConcurrentScreeningTests {
    /// The Gitega activity imported, and UNDP's program like it submitted: their pair is open.
    static func programOverlappingTheGitegaActivity(_ label: String, in directory: URL) async throws -> (Harness, StoredTask, StoredOverlap) {
        let h = try await Harness(label)
        _ = try await CSVImportTests.importGitegaActivity(status: "2", h, in: directory)
        let (task, _, found) = try await h.tasks.submit(
            CSVImportTests.likeTheGitegaActivity(), workflow: "pbf-project", idempotencyKey: "like-gitega", by: h.undp)
        #expect(found.map(\.other) == ["GAC-BDI-2027-01"])
        return (h, task, try #require(found.first))
    }

    /// A transaction of its own that holds the screening keys of the entry
    /// `ref`, as a change of it under way does; COMMIT ends it.
    static func holdingTheKeys(of ref: String, _ h: Harness) async throws -> PostgresConnection {
        let connection = try await TestDatabase.connect(h.target)
        try await connection.execute(unsafeSQL: "BEGIN")
        try await PortfolioScreener.lockKeys(ofEntry: ref, on: connection)
        return connection
    }
}

/// How many of the test database's transactions wait for a lock, once
/// one does (polled for up to 30 seconds; 0 if none ever did).
func transactionsWaitingForALock(_ h: Harness) async throws -> Int {
    for _ in 0..<1_500 {
        try await Task.sleep(for: .milliseconds(20))
        let waiting = try await h.pool.query("""
            SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE NOT l.granted AND a.datname = current_database()
            """).first!.decode(Int.self, at: 0)
        if waiting > 0 { return waiting }
    }
    return 0
}

/// The real screener, which waits at the rendezvous once armed.
struct ArmedScreener: Screener {
    let inner: any Screener
    let armed: Switch
    let rendezvous: Rendezvous

    func screen(_ task: TaskRecord) async throws -> [OverlapFinding] {
        let findings = try await inner.screen(task)
        if armed.isOn { try await rendezvous.arrive() }
        return findings
    }

    /// Scoring single pairs again waits for nobody.
    func screen(_ task: TaskRecord, against others: [String]) async throws -> [OverlapFinding] {
        try await inner.screen(task, against: others)
    }
}

/// Counts the store's "retrying transaction" log lines: each is a
/// transaction run again after a deadlock or serialization failure.
final class Retries: LogHandler, Sendable {
    private let counted = Mutex(0)
    var count: Int { counted.withLock { $0 } }

    func log(event: LogEvent) {
        if event.message.description == "retrying transaction" { counted.withLock { $0 += 1 } }
    }

    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    var logLevel: Logger.Level {
        get { .debug }
        set {}
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }
}

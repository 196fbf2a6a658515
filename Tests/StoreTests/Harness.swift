import Coordination
import Foundation
import Logging
import Postgres
import Store
import Synchronization
import Testing
import TestSupport

/// A migrated database with the shipped reference data and workflows, a
/// clock the test moves, and principals of several roles and agencies.
struct Harness {
    let target: ConnectionTarget
    /// The login role's pool (a superuser here): set-up, and checks that read past row-level security.
    let pool: PostgresPool
    /// The store's pool, as pbc serves: every statement as `Database.serviceRole`, bound by row-level security.
    let service: PostgresPool
    let workflows: WorkflowRegistry
    let tasks: TaskStore
    let admin: AdminStore
    let clock: TestClock
    let undp: Principal  // liaison of the lead agency
    let unicef: Principal  // liaison of a participating agency
    let wfp: Principal  // liaison of an agency with no part in the task
    let coordinator: Principal
    let approver: Principal

    final class TestClock: Sendable {
        private let value = Mutex(ISO8601DateFormatter().date(from: "2026-11-29T09:00:00Z")!)
        var now: Date { value.withLock { $0 } }
        func set(_ iso: String) { value.withLock { $0 = ISO8601DateFormatter().date(from: iso + "T09:00:00Z")! } }
        func set(date: Date) { value.withLock { $0 = date } }
        func advance(_ duration: Duration) { value.withLock { $0 = $0.addingTimeInterval(TimeInterval(duration.components.seconds)) } }
    }

    static var config: URL { TestDatabase.repositoryRoot.appendingPathComponent("Config") }

    static func rates() throws -> ExchangeRates {
        try ExchangeRates.load(yaml: String(contentsOf: config.appendingPathComponent("rates.yaml"), encoding: .utf8), file: "rates.yaml")
    }

    /// `logger` is the store's pool's: a test may read what the store logs.
    /// With `locale` the database is that locale's (the others' is C).
    init(
        _ label: String, screener: @escaping TaskStore.ScreenerFactory = TaskStore.portfolioScreener(OverlapConfiguration()),
        logger: Logger = Logger(label: "pbc.postgres"), locale: String? = nil
    ) async throws {
        if let locale {
            target = try await TestDatabase.create(label, locale: locale)
        } else {
            target = try await TestDatabase.create(label)
        }
        pool = PostgresPool(configuration: .init(target: target, maxConnections: 10))
        service = PostgresPool(configuration: .init(target: target.runningAs(Database.serviceRole), maxConnections: 10), logger: logger)
        try await pool.withConnection { try await ReferenceData.load(from: Self.config).sync(on: $0) }
        let files = try WorkflowRegistry.read(files: WorkflowRegistry.files(in: Self.config.appendingPathComponent("workflows")))
        workflows = try await pool.withConnection { try await WorkflowRegistry.sync(files, on: $0) }
        let clock = TestClock()
        self.clock = clock
        tasks = TaskStore(
            pool: service, workflows: workflows, rates: try Self.rates(), screener: screener, routing: try Self.routing(),
            calendar: try Self.calendar(), now: { clock.now })
        try await tasks.syncQueues()
        admin = AdminStore(pool: pool)
        undp = try await admin.addPrincipal(name: "amina (undp)", role: .liaison, agency: "undp")
        unicef = try await admin.addPrincipal(name: "kofi (unicef)", role: .liaison, agency: "unicef")
        wfp = try await admin.addPrincipal(name: "lena (wfp)", role: .liaison, agency: "wfp")
        coordinator = try await admin.addPrincipal(name: "chen (pbso)", role: .coordinator, agency: "pbso")
        approver = try await admin.addPrincipal(name: "asg", role: .approver, agency: "pbso")
        for queue in ["pbso-review", "pbso-deconfliction", "pbso-escalations", "pbso-funding"] {
            try await admin.addQueueMember(queue: queue, principal: coordinator.name)
        }
        try await admin.addQueueMember(queue: "asg-approval", principal: approver.name)
    }

    static func calendar() throws -> ReportingCalendar {
        try ReportingCalendar.load(
            yaml: String(contentsOf: config.appendingPathComponent("reporting.yaml"), encoding: .utf8), file: "reporting.yaml")
    }

    static func routing() throws -> Routing {
        try Routing.load(yaml: String(contentsOf: config.appendingPathComponent("routing.yaml"), encoding: .utf8), file: "routing.yaml")
    }

    static func project(title: String = "Youth and women in local peace committees", facility: String = "IRF", amount: String = "1500000.00") -> TaskRecord {
        TaskRecord(
            state: "draft", title: title, description: "Strengthening local peace committees in Gitega and Ngozi.",
            leadAgency: "undp", participants: [Participant(agency: "unicef", role: .implementing)], country: "BI",
            locations: ["Gitega", "Ngozi"], sectors: ["15220", "15180"],
            period: Period(start: CalendarDate(iso: "2027-01-01")!, end: CalendarDate(iso: "2028-06-30")!),
            budget: Money(amount: amount, currency: "USD"), fields: ["genderMarker": .number(2), "facility": .string(facility)])
    }

    /// `record` submitted, recommended, approved and funded (its first
    /// transfer recorded), as a project must be for reports to be due on it.
    func fund(_ record: TaskRecord, key: String) async throws -> StoredTask {
        var task = try await tasks.submit(record, workflow: "pbf-project", idempotencyKey: key, by: undp).task
        task = try await tasks.act(task.ref, action: "recommend", expectedVersion: task.version, by: coordinator)
        task = try await tasks.act(task.ref, action: "approve", expectedVersion: task.version, by: approver)
        return try await tasks.act(
            task.ref, action: "record_first_transfer", expectedVersion: task.version,
            inputs: ActionInputs(fields: ["firstTransferDate": .string("2027-01-15")]), by: coordinator)
    }

    /// A report due on `project`, led by its lead agency.
    static func report(on project: StoredTask, type: String = "semi-annual", due: String = "2027-06-15") -> TaskRecord {
        TaskRecord(
            state: "", title: "\(type.capitalized) report: \(project.record.title)", leadAgency: project.record.leadAgency,
            fields: ["project": .string(project.ref), "reportType": .string(type), "dueDate": .string(due)])
    }

    /// Two agencies submit much the same program: the second lands in deconfliction with one open overlap.
    func twoOverlapping() async throws -> (first: StoredTask, second: StoredTask, overlap: OverlapView) {
        let (first, _, _) = try await tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "a", by: undp)
        var similar = Harness.project(title: "Youth and women in local peace committees, Gitega")
        similar.leadAgency = "unicef"
        similar.participants = [Participant(agency: "unwomen", role: .implementing)]
        let (second, _, _) = try await tasks.submit(similar, workflow: "pbf-project", idempotencyKey: "b", by: unicef)
        #expect(second.state == "deconfliction")
        let overlap = try #require(try await tasks.listOverlaps(task: second.ref, status: "open", limit: 10, as: coordinator).items.first)
        return (first, second, overlap)
    }

    /// The importer as `pbc import` runs it, with the default overlap configuration.
    var importer: ActivityImporter { ActivityImporter(pool: service, workflows: workflows, overlap: OverlapConfiguration()) }

    /// A deconfliction case for `overlap`, as a coordinator opens one.
    static func caseDraft(for overlap: UUID, title: String = "Who leads in Gitega") -> TaskRecord {
        var draft = TaskRecord(state: "", title: title, leadAgency: "pbso")
        draft.fields = ["overlap": .string(overlap.uuidString.lowercased())]
        return draft
    }

    /// What must hold whatever happened: every task's state is the `to`
    /// state of its last event that changed state; no overlap with a program
    /// that ended is open; the two rows of a pair agree, score and reasons
    /// too; no case is still under way on an overlap that is no longer open.
    func invariantViolations() async throws -> [String] {
        try await pool.query("""
            SELECT t.ref || ': state ' || t.state || ', last event ' || coalesce(e.to_state, 'none')
            FROM tasks t
            LEFT JOIN LATERAL (SELECT to_state FROM events WHERE task_id = t.id AND to_state IS NOT NULL ORDER BY seq DESC LIMIT 1) e ON true
            WHERE e.to_state IS DISTINCT FROM t.state
            UNION ALL
            SELECT h.ref || ' ~ ' || o.other_ref || ': open, though '
                   || CASE WHEN h.state IN ('rejected', 'withdrawn', 'merged') THEN h.ref || ' is ' || h.state ELSE e.ref || ' is ' || e.state END
            FROM task_overlaps o JOIN tasks h ON h.id = o.task_id LEFT JOIN tasks e ON e.ref = o.other_ref
            WHERE o.status = 'open' AND (h.state IN ('rejected', 'withdrawn', 'merged') OR e.state IN ('rejected', 'withdrawn', 'merged'))
            UNION ALL
            SELECT ta.ref || ' ~ ' || tb.ref || ': ' || a.status || ' ' || a.score || ' on one side, ' || b.status || ' ' || b.score || ' on the other'
            FROM task_overlaps a JOIN tasks ta ON ta.id = a.task_id JOIN tasks tb ON tb.ref = a.other_ref
            JOIN task_overlaps b ON b.task_id = tb.id AND b.other_ref = ta.ref
            WHERE a.status <> b.status OR a.resolution IS DISTINCT FROM b.resolution OR a.score <> b.score OR a.reasons <> b.reasons
            UNION ALL
            SELECT c.ref || ': case still ' || c.state || ', its overlap ' || o.status
            FROM tasks c JOIN task_overlaps o ON o.id::text = lower(c.fields->>'overlap')
            WHERE c.workflow = 'deconfliction-case' AND o.status <> 'open'
              AND c.state NOT IN ('distinct', 'coordinate', 'merge', 'sequence', 'withdraw', 'dismissed')
            """).map { try $0.decode(String.self, at: 0) }
    }
}

/// The migrations of sql/ applied in two steps, to test what one migration
/// does to data written before it: first those ahead of `file`, then the rest.
struct StagedMigrations {
    let directory = Scratch.directory.appendingPathComponent("pbc-sql-\(UUID().uuidString)")
    let files: [String]
    let split: Int

    init(splittingAt file: String) throws {
        files = try FileManager.default.contentsOfDirectory(atPath: TestDatabase.migrationsDirectory.path)
            .filter { $0.hasSuffix(".sql") }.sorted()
        split = try #require(files.firstIndex(of: file), "no migration \(file)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func applyBefore(on connection: PostgresConnection) async throws {
        try await apply(files[..<split], on: connection)
    }

    func applyRest(on connection: PostgresConnection) async throws {
        try await apply(files[split...], on: connection)
    }

    private func apply(_ names: ArraySlice<String>, on connection: PostgresConnection) async throws {
        for name in names where !FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path) {
            try FileManager.default.copyItem(
                at: TestDatabase.migrationsDirectory.appendingPathComponent(name), to: directory.appendingPathComponent(name))
        }
        _ = try await Migrator(directory: directory).migrate(on: connection)
    }
}

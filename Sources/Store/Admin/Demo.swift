import Coordination
import Foundation

/// What `pbc serve --demo` puts in the database so that someone new can try
/// pbc at once: one principal of each role, three submissions, two of
/// which overlap (the later one waits in deconfliction) and one of which is
/// funded (with the progress reports that schedules), and a request for
/// expertise whose call for offers every agency sees. Seeding again adds
/// nothing but fresh tokens (the principals are found by name, the
/// submissions replay by their idempotency keys).
public enum Demo {
    public struct Login: Sendable, Hashable {
        public var name: String
        public var role: Role
        public var agency: String?
        /// Made at this start; only its hash is stored.
        public var token: String
    }

    static let principals: [(name: String, role: Role, agency: String?, queues: [String])] = [
        ("amina.diallo@undp.org", .liaison, "undp", []),
        ("kofi.mensah@unicef.org", .liaison, "unicef", []),
        ("lena.berg@wfp.org", .liaison, "wfp", []),
        ("chen.wei@un.org", .coordinator, "pbso", [
            "pbso-review", "pbso-deconfliction", "pbso-escalations", "pbso-funding", "pbso-portfolio", "pbso-reports", "pbso-triage",
        ]),
        ("asg.pbso@un.org", .approver, "pbso", ["asg-approval", "jsc-approval"]),
        ("auditor@example.org", .observer, nil, []),
        ("admin@example.org", .admin, nil, []),
    ]

    /// Seeds what is missing and returns a fresh token for each demo principal.
    public static func seed(tasks: TaskStore, admin: AdminStore) async throws -> [Login] {
        var logins: [Login] = []
        var byAgency: [String: Principal] = [:]
        var coordinator: Principal?
        var approver: Principal?
        for entry in principals {
            let principal: Principal
            do {
                principal = try await admin.principal(named: entry.name)
            } catch let error as StoreError where error.code == .notFound {
                principal = try await admin.addPrincipal(name: entry.name, role: entry.role, agency: entry.agency)
            }
            for queue in entry.queues { try await admin.addQueueMember(queue: queue, principal: entry.name) }
            if entry.role == .liaison, let agency = entry.agency { byAgency[agency] = principal }
            if entry.role == .coordinator { coordinator = principal }
            if entry.role == .approver { approver = principal }
            logins.append(Login(name: entry.name, role: entry.role, agency: entry.agency, token: try await admin.createToken(for: entry.name).token))
        }
        for (key, agency, draft) in submissions {
            guard let liaison = byAgency[agency] else { continue }
            var task = try await tasks.submit(draft, workflow: "pbf-project", idempotencyKey: key, by: liaison).task
            // WFP's program, which overlaps none, is approved and funded, so that its reports are scheduled.
            guard key == "demo-wfp-1", task.state == "technical_review", let coordinator, let approver else { continue }
            task = try await tasks.act(task.ref, action: "recommend", expectedVersion: task.version, by: coordinator)
            task = try await tasks.act(task.ref, action: "approve", expectedVersion: task.version, by: approver)
            _ = try await tasks.act(
                task.ref, action: "record_first_transfer", expectedVersion: task.version,
                inputs: ActionInputs(fields: ["firstTransferDate": .string("2027-02-15")]), by: coordinator)
        }
        if let liaison = byAgency["undp"], let coordinator {
            let request = TaskRecord(
                state: "draft", title: "Two land mediators for Gitega",
                description: "The provincial land commission asks for two mediators for disputes between returnees and residents.",
                leadAgency: "undp", country: "BDI", locations: ["Gitega"])
            let asked = try await tasks.submit(request, workflow: "assistance-request", idempotencyKey: "demo-undp-request", by: liaison).task
            if asked.state == "triage" {
                _ = try await tasks.act(asked.ref, action: "open_offers", expectedVersion: asked.version, by: coordinator)
            }
        }
        return logins
    }

    static var submissions: [(key: String, agency: String, draft: TaskRecord)] {
        func project(
            _ title: String, _ description: String, lead: String, participants: [Participant], country: String, locations: [String],
            start: String, end: String, amount: String
        ) -> TaskRecord {
            TaskRecord(
                state: "draft", title: title, description: description, leadAgency: lead, participants: participants, country: country,
                locations: locations, sectors: ["15220"],
                period: Period(start: CalendarDate(iso: start)!, end: CalendarDate(iso: end)!),
                budget: Money(amount: amount, currency: "USD"), fields: ["genderMarker": .number(2), "facility": .string("IRF")])
        }
        return [
            ("demo-undp-1", "undp", project(
                "Youth and women in local peace committees", "Strengthening local peace committees in Gitega and Ngozi.",
                lead: "undp", participants: [Participant(agency: "unicef", role: .implementing)], country: "BDI",
                locations: ["Gitega", "Ngozi"], start: "2027-01-01", end: "2028-06-30", amount: "1500000.00")),
            ("demo-unicef-1", "unicef", project(
                "Young women in Gitega peace committees", "Local peace committees with young women in Gitega.",
                lead: "unicef", participants: [], country: "BDI", locations: ["Gitega"], start: "2027-03-01", end: "2028-12-31",
                amount: "800000.00")),
            ("demo-wfp-1", "wfp", project(
                "Community dialogue on land in Kailahun", "Dialogue between returnees and host communities about land.",
                lead: "wfp", participants: [], country: "SLE", locations: ["Kailahun"], start: "2027-02-01", end: "2028-01-31",
                amount: "600000.00")),
        ]
    }
}

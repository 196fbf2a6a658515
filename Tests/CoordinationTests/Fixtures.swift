import Coordination
import Foundation

enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func shipped() throws -> [WorkflowDefinition] {
        let directory = root.appendingPathComponent("Config/workflows")
        return try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted().filter { $0.hasSuffix(".yaml") }.map { name in
            let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            return try WorkflowParser.parse(yaml: text, file: name).get()
        }
    }

    static func routing() throws -> Routing {
        let text = try String(contentsOf: root.appendingPathComponent("Config/routing.yaml"), encoding: .utf8)
        return try Routing.load(yaml: text, file: "routing.yaml")
    }

    static func workflow(_ name: String) throws -> WorkflowDefinition {
        try shipped().first { $0.name == name }!
    }

    static let rates = ExchangeRates(base: "USD", rates: ["EUR": Decimal(string: "1.08")!, "XOF": Decimal(string: "0.00165")!])

    static func context(_ now: String = "2026-11-29", openOverlaps: Int = 0) -> GuardContext {
        let date = ISO8601DateFormatter().date(from: now + "T12:00:00Z")!
        return GuardContext(now: date, rates: rates, openOverlaps: openOverlaps)
    }

    static let liaison = Actor(principal: "amina", role: .liaison, agency: "undp")
    static let otherLiaison = Actor(principal: "kofi", role: .liaison, agency: "unicef")
    static let coordinator = Actor(principal: "chen", role: .coordinator, agency: "pbso")
    static let approver = Actor(principal: "asg", role: .approver, agency: "pbso")

    static func project(facility: String = "IRF", amount: String = "1500000.00", currency: String = "USD", end: String = "2028-06-30") -> TaskRecord {
        TaskRecord(
            state: "draft", leadAgency: "undp", participants: [Participant(agency: "unicef", role: .implementing)],
            period: Period(start: CalendarDate(iso: "2026-01-01")!, end: CalendarDate(iso: end)!),
            budget: Money(amount: amount, currency: currency), fields: ["genderMarker": .number(2), "facility": .string(facility)])
    }
}

/// Reports exactly the overlaps a test chooses.
struct ChosenOverlaps: Screener {
    let findings: [OverlapFinding]
    init(_ count: Int) {
        findings = (0..<count).map { OverlapFinding(other: "PBC-2026-00000\($0)", score: 0.8, reasons: ["same sector 15220"]) }
    }
    func screen(_ task: TaskRecord) async throws -> [OverlapFinding] { findings }
}

import Coordination
import Foundation
import Testing
import TestSupport

/// Random walks through every shipped workflow: whatever is tried, a task is
/// only ever in a state its workflow defines, and from every state it reaches
/// a terminal state is still reachable.
@Suite struct WorkflowPropertyTests {
    static let agencies = ["undp", "unicef", "pbso", "wfp"]

    func randomValue(for field: String, using random: inout SplitMix) -> FieldValue {
        switch field {
        case "genderMarker": .number(Double(Int.random(in: -1...4, using: &random)))
        case "facility": .string(["IRF", "PRF", "XYZ"].randomElement(using: &random)!)
        case "resolution": .string(["distinct", "coordinate", "merge", "sequence", "withdraw", "absorb"].randomElement(using: &random)!)
        default: .string("2027-0\(Int.random(in: 1...9, using: &random))-01")
        }
    }

    @Test(arguments: ["pbf-project", "assistance-request", "deconfliction-case", "progress-report"])
    func randomActionSequencesStayInDefinedStates(_ name: String) async throws {
        let workflow = try Fixtures.workflow(name)
        let stateNames = Set(workflow.states.map(\.name))
        let canFinish = statesThatReachATerminal(workflow)
        var random = SplitMix(seed: 0x5EED ^ UInt64(name.utf8.count))
        var visited: Set<String> = []
        for _ in 0..<300 {
            var task = TaskRecord(
                state: workflow.initialState.name, leadAgency: "undp", participants: [Participant(agency: "unicef", role: .funding)],
                period: Period(start: CalendarDate(iso: "2026-01-01")!, end: CalendarDate(iso: ["2027-01-10", "2029-12-31"].randomElement(using: &random)!)!),
                budget: Money(amount: ["900000", "2999999.99", "3000000.01", "12000000"].randomElement(using: &random)!,
                              currency: ["USD", "EUR", "XOF"].randomElement(using: &random)!),
                fields: ["genderMarker": randomValue(for: "genderMarker", using: &random), "facility": randomValue(for: "facility", using: &random)])
            for _ in 0..<40 {
                #expect(stateNames.contains(task.state))
                visited.insert(task.state)
                #expect(canFinish.contains(task.state), "\(name): stuck in \(task.state)")
                guard workflow.state(task.state)?.kind != .terminal else { break }
                // Anything at all, mostly sensible: a random action, role, agency and inputs.
                let action = Bool.random(using: &random) && !workflow.exits(from: task.state).isEmpty
                    ? workflow.exits(from: task.state).randomElement(using: &random)!
                    : workflow.actions.randomElement(using: &random)!
                let role = Bool.random(using: &random) ? action.roles.randomElement(using: &random)! : Role.allCases.randomElement(using: &random)!
                let actor = Actor(principal: "p", role: role, agency: Self.agencies.randomElement(using: &random))
                var fields: [String: FieldValue] = [:]
                for field in action.fields where Bool.random(using: &random) { fields[field] = randomValue(for: field, using: &random) }
                let inputs = ActionInputs(comment: Bool.random(using: &random) ? "because" : nil, fields: fields)
                let context = Fixtures.context(["2026-06-01", "2028-01-01"].randomElement(using: &random)!)
                let result = try await Engine.decide(
                    workflow, task: task, actor: actor, action: action.name, inputs: inputs, context: context,
                    screener: ChosenOverlaps(Int.random(in: 0...1, using: &random)))
                switch result {
                case .success(let decision):
                    #expect(decision.transitions.first?.from == task.state)
                    for transition in decision.transitions { #expect(stateNames.contains(transition.to)) }
                    #expect(workflow.state(decision.finalState)?.kind != .automatic, "\(name): left in automatic state \(decision.finalState)")
                    task = decision.task
                case .failure:
                    break  // refused: the task stays as it was
                }
            }
        }
        #expect(visited.count > 2, "\(name): the walk went nowhere: \(visited)")
    }

    func statesThatReachATerminal(_ workflow: WorkflowDefinition) -> Set<String> {
        var finishing = Set(workflow.states.filter { $0.kind == .terminal }.map(\.name))
        var changed = true
        while changed {
            changed = false
            for action in workflow.actions where finishing.contains(action.to) {
                for from in action.from where finishing.insert(from).inserted { changed = true }
            }
        }
        return finishing
    }
}

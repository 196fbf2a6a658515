import Foundation

/// What the person acting supplies with an action.
public struct ActionInputs: Sendable, Hashable {
    public var comment: String?
    public var fields: [String: FieldValue]

    public init(comment: String? = nil, fields: [String: FieldValue] = [:]) {
        self.comment = comment
        self.fields = fields
    }
}

/// One step through the workflow.
public struct Transition: Sendable, Hashable {
    public var action: String
    public var from: String
    public var to: String
    /// Taken by the system on leaving an automatic state.
    public var automatic: Bool
}

/// A guard that refused an action, and why.
public struct GuardFailure: Sendable, Hashable {
    /// The guard as the workflow states it, such as `field_in_range(genderMarker, 0, 3)`.
    public var name: String
    public var reason: String

    public init(_ name: String, _ reason: String) {
        self.name = name
        self.reason = reason
    }
}

/// An action the actor's role may take in the task's state, and the guards
/// that refuse it now (none: it may be taken).
public struct ActionOption: Sendable, Hashable {
    public var name: String
    public var refusedBy: [GuardFailure]

    public init(name: String, refusedBy: [GuardFailure]) {
        self.name = name
        self.refusedBy = refusedBy
    }
}

/// Why an action was refused, precisely enough to act on.
public enum Refusal: Error, Sendable, Hashable, CustomStringConvertible {
    case unknownAction(action: String, known: [String])
    case notAllowedInState(action: String, state: String, allowed: [String])
    case roleNotAllowed(action: String, role: Role, allowedRoles: [Role])
    /// Every guard of the action that refused, in the workflow's order, so
    /// that one answer says all that must change.
    case guardsFailed(action: String, failures: [GuardFailure])
    case commentRequired(action: String)
    case fieldNotSettable(action: String, field: String, settable: [String])
    /// Values the action's fields cannot hold (a date that is none, a choice not offered).
    case invalidFields(action: String, errors: [FieldError])
    case noAutomaticExit(state: String, reasons: [String])

    public var description: String {
        switch self {
        case .unknownAction(let action, _):
            "the workflow has no action \(action)"
        case .notAllowedInState(let action, let state, let allowed):
            "\(action) is not allowed in state \(state)" + (allowed.isEmpty ? "" : "; allowed: \(allowed.joined(separator: ", "))")
        case .roleNotAllowed(let action, let role, let allowedRoles):
            "\(role.withArticle) may not \(action); it is for: \(allowedRoles.map(\.rawValue).joined(separator: ", "))"
        case .guardsFailed(let action, let failures):
            "\(action) refused by " + failures.map { "\($0.name): \($0.reason)" }.joined(separator: "; and by ")
        case .commentRequired(let action):
            "\(action) needs a comment"
        case .fieldNotSettable(let action, let field, let settable):
            "\(action) cannot set \(field)" + (settable.isEmpty ? "" : "; it sets: \(settable.joined(separator: ", "))")
        case .invalidFields(let action, let errors):
            "\(action) refused: " + errors.map(\.description).joined(separator: "; ")
        case .noAutomaticExit(let state, let reasons):
            "no way out of automatic state \(state): \(reasons.joined(separator: "; "))"
        }
    }
}

/// An overlap that screening reports for a task.
public struct OverlapFinding: Sendable, Hashable {
    /// The other portfolio entry (a task ref or an imported activity's identifier).
    public var other: String
    public var score: Double
    /// Which fields matched and each component's score, in words.
    public var reasons: [String]

    public init(other: String, score: Double, reasons: [String]) {
        self.other = other
        self.score = score
        self.reasons = reasons
    }
}

/// Screening for overlap, which a workflow state can ask for on entry.
/// The overlap issue provides the one that reads the portfolio.
public protocol Screener: Sendable {
    /// The overlaps the task has with the portfolio, after `task` is as the transition left it.
    func screen(_ task: TaskRecord) async throws -> [OverlapFinding]

    /// The overlaps the task still has with these entries (by ref), each
    /// scored whatever else `screen` found: an edit asks it of the pairs
    /// still open that its screening did not return, before closing them.
    func screen(_ task: TaskRecord, against others: [String]) async throws -> [OverlapFinding]
}

extension Screener {
    /// `screen`'s findings among `others`: exact for a screener that returns every overlap.
    public func screen(_ task: TaskRecord, against others: [String]) async throws -> [OverlapFinding] {
        let wanted = Set(others)
        return try await screen(task).filter { wanted.contains($0.other) }
    }
}

/// What an action does, all of it decided before anything is written.
public struct Decision: Sendable {
    /// The action taken and any automatic steps after it, in order.
    public var transitions: [Transition]
    public var task: TaskRecord
    /// The queue of the state the task ends in.
    public var queue: String?
    /// When the task is due out of that state, from its SLA or due-date field.
    public var dueAt: Date?
    /// What screening found on the way, when a state screened.
    public var findings: [OverlapFinding]
    public var screened: Bool

    public var finalState: String { task.state }
}

/// The workflow engine: (definition, task, actor, action, inputs) gives a
/// decision or a precise refusal. It reads and writes nothing.
public enum Engine {
    /// The actions of the task's state open to the actor's role, each with
    /// the guards that stop it now. A guard on a field the action itself sets
    /// stops nothing: the field comes with the action.
    public static func options(_ workflow: WorkflowDefinition, task: TaskRecord, actor: Actor, context: GuardContext) -> [ActionOption] {
        workflow.exits(from: task.state).filter { $0.roles.contains(actor.role) }.map { action in
            let blocking = action.guards.filter { $0.field.map { !action.fields.contains($0) } ?? true }
            return ActionOption(
                name: action.name,
                refusedBy: blocking.compactMap { guardCondition in
                    guardCondition.failure(task: task, actor: actor, context: context).map { GuardFailure(guardCondition.description, $0) }
                })
        }
    }

    /// The actions `actor` may take now: allowed in the state and for the
    /// role, and no guard against them.
    public static func availableActions(_ workflow: WorkflowDefinition, task: TaskRecord, actor: Actor, context: GuardContext) -> [String] {
        options(workflow, task: task, actor: actor, context: context).filter(\.refusedBy.isEmpty).map(\.name)
    }

    /// One action by a person (or the system), without the automatic steps after it.
    public static func step(
        _ workflow: WorkflowDefinition, task: TaskRecord, actor: Actor, action name: String, inputs: ActionInputs,
        context: GuardContext
    ) -> Result<(Transition, TaskRecord), Refusal> {
        guard let action = workflow.action(name) else {
            return .failure(.unknownAction(action: name, known: workflow.actions.map(\.name)))
        }
        guard action.from.contains(task.state) else {
            return .failure(
                .notAllowedInState(action: name, state: task.state, allowed: availableActions(workflow, task: task, actor: actor, context: context)))
        }
        guard action.roles.contains(actor.role) else {
            return .failure(.roleNotAllowed(action: name, role: actor.role, allowedRoles: action.roles))
        }
        if action.commentRequired, (inputs.comment ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            return .failure(.commentRequired(action: name))
        }
        var updated = task
        var invalid: [FieldError] = [inputs.comment.flatMap { FreeText.refusal($0, field: "comment") }].compactMap { $0 }
        for (field, value) in inputs.fields.sorted(by: { $0.key < $1.key }) {
            guard action.fields.contains(field) else {
                return .failure(.fieldNotSettable(action: name, field: field, settable: action.fields))
            }
            switch workflow.check(field: field, value) {
            case .success(let accepted): updated.fields[field] = accepted
            case .failure(let error): invalid.append(error)
            }
        }
        guard invalid.isEmpty else { return .failure(.invalidFields(action: name, errors: invalid)) }
        // Guards see the task as the action would leave it (a field set now counts).
        let failures = action.guards.compactMap { guardCondition in
            guardCondition.failure(task: updated, actor: actor, context: context).map { GuardFailure(guardCondition.description, $0) }
        }
        guard failures.isEmpty else {
            return .failure(.guardsFailed(action: name, failures: failures))
        }
        if let field = action.periodEndFrom {
            guard case .string(let text)? = updated.fields[field], let end = CalendarDate(iso: text) else {
                return .failure(.guardsFailed(action: name, failures: [GuardFailure("period_end(\(field))", "\(field) holds no date (YYYY-MM-DD)")]))
            }
            guard let period = updated.period else {
                return .failure(.guardsFailed(action: name, failures: [GuardFailure("period_end(\(field))", "the task has no period to change")]))
            }
            guard end >= period.start else {
                return .failure(
                    .guardsFailed(action: name, failures: [GuardFailure("period_end(\(field))", "\(field) \(text) is before the period starts on \(period.start.iso)")]))
            }
            updated.period = Period(start: period.start, end: end)
        }
        if let field = action.joinsFrom {
            guard case .string(let named)? = updated.fields[field], !named.isEmpty else {
                return .failure(.guardsFailed(action: name, failures: [GuardFailure("joins(\(field))", "\(field) names no agency")]))
            }
            let agency = AgencyID.normalized(named)
            updated.fields[field] = .string(agency)
            if agency != updated.leadAgency, !updated.participants.contains(where: { $0.agency == agency }) {
                updated.participants.append(Participant(agency: agency, role: .implementing))
            }
        }
        updated.state = action.to
        return .success((Transition(action: name, from: task.state, to: action.to, automatic: false), updated))
    }

    /// The action, then every automatic step it leads to, screening where a
    /// state asks for it. Automatic exits are tried in file order; the first
    /// whose guards hold is taken.
    public static func decide(
        _ workflow: WorkflowDefinition, task: TaskRecord, actor: Actor, action: String, inputs: ActionInputs,
        context: GuardContext, screener: any Screener
    ) async throws -> Result<Decision, Refusal> {
        var context = context
        var current: TaskRecord
        var transitions: [Transition] = []
        switch step(workflow, task: task, actor: actor, action: action, inputs: inputs, context: context) {
        case .failure(let refusal): return .failure(refusal)
        case .success(let (transition, updated)):
            transitions.append(transition)
            current = updated
        }
        // The person's agreement counts at once, for the automatic steps after it.
        if workflow.action(action)?.recordsAgreement == true, let agency = actor.agency {
            context.agreedAgencies.insert(agency)
        }
        var findings: [OverlapFinding] = []
        var screened = false
        // A valid workflow has no automatic cycle; the bound guards against one anyway.
        for _ in 0..<workflow.states.count {
            guard let state = workflow.state(current.state), state.kind == .automatic else { break }
            if state.screen {
                findings = try await screener.screen(current)
                context.openOverlaps = findings.count
                screened = true
            }
            var reasons: [String] = []
            var next: (Transition, TaskRecord)?
            for exit in workflow.exits(from: state.name) {
                switch step(workflow, task: current, actor: .system, action: exit.name, inputs: ActionInputs(), context: context) {
                case .success(let result):
                    next = result
                case .failure(let refusal):
                    reasons.append(refusal.description)
                }
                if next != nil { break }
            }
            guard let next else {
                return .failure(.noAutomaticExit(state: state.name, reasons: reasons))
            }
            var transition = next.0
            transition.automatic = true
            transitions.append(transition)
            current = next.1
        }
        let final = workflow.state(current.state)
        let dueAt = final?.dueAt(entered: context.now, fields: current.fields)
        return .success(
            Decision(transitions: transitions, task: current, queue: final?.queue, dueAt: dueAt, findings: findings, screened: screened))
    }
}

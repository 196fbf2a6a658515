import Foundation

/// A workflow: states and the actions between them. Loaded from YAML and
/// validated by `WorkflowParser`; see docs/workflows.md.
public struct WorkflowDefinition: Sendable, Hashable {
    public var name: String
    public var version: Int
    public var description: String?
    public var states: [State]
    public var actions: [Action]
    /// The workflow fields its tasks carry, and what each holds. Nil for a
    /// definition that declares none (the shipped ones before pbf-project 5
    /// and its peers), whose tasks may carry any field with any value.
    public var fields: [String: FieldType]? = nil

    public struct State: Sendable, Hashable {
        public var name: String
        public var kind: Kind
        /// Run overlap screening on entry (before the automatic exit is chosen).
        public var screen: Bool
        /// The queue a task in this state waits in.
        public var queue: String?
        /// How long a task may wait here; sets `dueAt` on entry.
        public var sla: Duration?
        /// A date field of the task that sets `dueAt` on entry instead of the
        /// SLA (due at the end of that day, UTC), as a report's due date does.
        public var dueField: String?
        /// The queue a breached task moves to; without one, a breach raises its priority.
        public var escalate: String?
        /// How long before `dueAt` to remind, longest first.
        public var remind: [Duration] = []
        /// Liaisons of every agency see a task while it is here, as a call
        /// for offers must be seen by those who may offer.
        public var openToAllAgencies = false
        /// On entry, pbc schedules the reports of the reporting calendar due
        /// from the date in this field to the period's end (`schedule_reports:
        /// firstTransferDate`: a project's reports once it is funded).
        public var scheduleReportsFrom: String? = nil
        /// On entry, the project's reporting ends that day: reports not yet
        /// begun that would fall due later are waived, and the final one falls
        /// due as long after that day as after a period's end (`closes_reports:
        /// true`: a project closed or terminated).
        public var closesReports = false
        /// The fields a new task may carry (the initial state's); the others
        /// are set by the actions that list them.
        public var fields: [String] = []
        public var line: Int

        /// When a task entering this state at `entered` is due out of it.
        public func dueAt(entered: Date, fields: [String: FieldValue]) -> Date? {
            if let dueField, case .string(let text)? = fields[dueField], let date = CalendarDate(iso: text) {
                return date.endOfDayUTC
            }
            return sla.map { entered.addingTimeInterval(TimeInterval($0.components.seconds)) }
        }

        /// The first reminder after `now` for a task due at `dueAt`, if one is left.
        public func nextReminder(dueAt: Date?, after now: Date) -> Date? {
            guard let dueAt else { return nil }
            return remind.map { dueAt.addingTimeInterval(-TimeInterval($0.components.seconds)) }.filter { $0 > now }.min()
        }

        public enum Kind: String, Sendable, Hashable {
            case initial, normal, automatic, terminal
        }
    }

    public struct Action: Sendable, Hashable {
        public var name: String
        public var from: [String]
        public var to: String
        public var roles: [Role]
        public var guards: [Guard]
        public var commentRequired: Bool
        /// Fields the action may set from its inputs.
        public var fields: [String]
        /// The field whose date becomes the end of the task's period when the
        /// action is taken (`period_end: requestedEndDate`: an approved extension).
        public var periodEndFrom: String? = nil
        /// The field naming an agency that joins the task, as implementing,
        /// when the action is taken (`joins: designatedAgency`: the agency
        /// designated to lead an assistance request's delivery).
        public var joinsFrom: String? = nil
        /// Taking the action is the actor's agency agreeing to the task's
        /// fields as last set (`agreement: true`; see `all_agencies_agreed`).
        public var recordsAgreement = false
        public var line: Int
    }

    /// The value a field takes from `value`, or why it cannot; the value as
    /// given when the workflow declares no fields.
    public func check(field: String, _ value: FieldValue) -> Result<FieldValue, FieldError> {
        if let tooLong = FreeText.refusal(value.description, field: "fields.\(field)") { return .failure(tooLong) }
        guard let fields else { return .success(value) }
        guard let type = fields[field] else {
            return .failure(FieldError("fields.\(field)", "\(name) has no field \(field); its fields: \(fields.keys.sorted().joined(separator: ", "))"))
        }
        guard let accepted = type.accepting(value) else { return .failure(FieldError("fields.\(field)", type.refusal(of: value))) }
        return .success(accepted)
    }

    /// The fields a new task carries, as they are stored, and every problem
    /// with them: an undeclared field, one that only an action sets, or a
    /// value of the wrong kind.
    public func creationFields(_ given: [String: FieldValue]) -> (fields: [String: FieldValue], errors: [FieldError]) {
        var accepted: [String: FieldValue] = [:]
        var errors: [FieldError] = []
        for (field, value) in given.sorted(by: { $0.key < $1.key }) {
            if fields?[field] != nil, !initialState.fields.contains(field) {
                let setters = actions.filter { $0.fields.contains(field) }.map(\.name)
                errors.append(FieldError(
                    "fields.\(field)",
                    "a new task does not carry \(field)" + (setters.isEmpty ? "" : "; \(setters.joined(separator: " or ")) sets it")
                        + (initialState.fields.isEmpty ? "" : " (a new task carries: \(initialState.fields.joined(separator: ", ")))")))
                continue
            }
            switch check(field: field, value) {
            case .success(let value): accepted[field] = value
            case .failure(let error): errors.append(error)
            }
        }
        return (accepted, errors)
    }

    /// The date field reports are scheduled from, if a state schedules them.
    public var reportsScheduledFrom: String? { states.lazy.compactMap(\.scheduleReportsFrom).first }

    /// Its tasks are programs: a workflow that screens its tasks for overlap
    /// describes programs, and only programs are screened against. A report,
    /// a request or a deconfliction case is none, whatever place and period
    /// it names.
    public var describesPrograms: Bool { states.contains(where: \.screen) }

    public func state(_ name: String) -> State? { states.first { $0.name == name } }
    public func action(_ name: String) -> Action? { actions.first { $0.name == name } }
    public var initialState: State { states.first { $0.kind == .initial }! }

    /// The actions that leave `state`, in file order.
    public func exits(from state: String) -> [Action] { actions.filter { $0.from.contains(state) } }

    /// Graphviz DOT: states as nodes (automatic dashed, terminal doubled), actions as edges.
    public var dot: String {
        func quoted(_ text: String) -> String { "\"" + text.replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        var lines = ["digraph \(quoted("\(name) v\(version)")) {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
        for state in states {
            var attributes: [String] = []
            switch state.kind {
            case .initial: attributes.append("style=\"rounded,bold\"")
            case .automatic: attributes.append("style=\"rounded,dashed\"")
            case .terminal: attributes.append("peripheries=2")
            case .normal: break
            }
            if let queue = state.queue { attributes.append("xlabel=\(quoted(queue))") }
            lines.append("  \(quoted(state.name))\(attributes.isEmpty ? "" : " [\(attributes.joined(separator: ", "))]");")
        }
        for action in actions {
            for from in action.from {
                let roles = action.roles.map(\.rawValue).joined(separator: ",")
                lines.append("  \(quoted(from)) -> \(quoted(action.to)) [label=\(quoted("\(action.name)\\n[\(roles)]"))];")
            }
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }
}

/// What a workflow field holds (`fields:` in a definition).
public enum FieldType: Sendable, Hashable, CustomStringConvertible {
    case text, integer, number, boolean
    /// A calendar date, YYYY-MM-DD.
    case date
    /// One of these texts, exactly.
    case oneOf([String])

    /// The types a definition names; a list of texts is `oneOf`.
    public static let named: [FieldType] = [.text, .integer, .number, .boolean, .date]
    public static var names: [String] { named.map(\.name) }

    public init?(name: String) {
        guard let type = Self.named.first(where: { $0.name == name }) else { return nil }
        self = type
    }

    /// How definitions and `workflow.get` spell it: `choice` for `oneOf`.
    public var name: String {
        switch self {
        case .text: "text"
        case .integer: "integer"
        case .number: "number"
        case .boolean: "boolean"
        case .date: "date"
        case .oneOf: "choice"
        }
    }

    public var description: String {
        switch self {
        case .text: "text"
        case .integer: "a whole number"
        case .number: "a number"
        case .boolean: "true or false"
        case .date: "a date, YYYY-MM-DD"
        case .oneOf(let choices): "one of \(choices.joined(separator: ", "))"
        }
    }

    /// `value` as the field stores it, or nil when the field cannot hold it.
    /// Text takes a number or a boolean as its text, since a command line
    /// cannot tell "2027" the text from 2027 the number; a number takes a numeral.
    public func accepting(_ value: FieldValue) -> FieldValue? {
        switch self {
        case .text:
            return value.description.isEmpty ? nil : .string(value.description)
        case .integer:
            guard let number = value.number, number.rounded() == number, abs(number) < 1e15 else { return nil }
            return .number(number)
        case .number:
            guard let number = value.number, number.isFinite else { return nil }
            return .number(number)
        case .boolean:
            switch value {
            case .bool: return value
            case .string("true"): return .bool(true)
            case .string("false"): return .bool(false)
            default: return nil
            }
        case .date:
            guard case .string(let text) = value, CalendarDate(iso: text) != nil else { return nil }
            return value
        case .oneOf(let choices):
            return choices.contains(value.description) ? .string(value.description) : nil
        }
    }

    /// Why the field does not take `value` (quoted up to 60 characters).
    public func refusal(of value: FieldValue) -> String {
        let text = value.description
        return "must be \(self), not \(text.isEmpty ? "empty" : text.count > 60 ? text.prefix(60) + "…" : text)"
    }
}

import Foundation

/// A workflow: states and the actions between them. Loaded from YAML and
/// validated by `WorkflowParser`; see docs/workflows.md.
public struct WorkflowDefinition: Sendable, Hashable {
    public var name: String
    public var version: Int
    public var description: String?
    public var states: [State]
    public var actions: [Action]

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
        public var line: Int
    }

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

import Foundation
import Yams

/// Every problem found in one workflow file, each with its line.
public struct WorkflowProblems: Error, Sendable, CustomStringConvertible {
    public var problems: [ConfigError]
    public init(problems: [ConfigError]) { self.problems = problems }
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// Reads a workflow file and checks it: unknown states, unreachable states,
/// non-terminal dead ends, terminal states with exits, automatic states with
/// no exit, duplicate or ambiguous actions, unknown guards and roles, and
/// states from which no terminal state can be reached.
public enum WorkflowParser {
    public static func parse(yaml: String, file: String) -> Result<WorkflowDefinition, WorkflowProblems> {
        var parser = Parser(file: file)
        let definition = parser.parse(yaml)
        // Meaning is checked even when some parts were malformed, so that one
        // run lists every problem; checks that need a sound graph skip themselves.
        if let definition {
            parser.validate(definition)
        }
        guard parser.problems.isEmpty, let definition else {
            let sorted = parser.problems.sorted { ($0.line ?? 0, $0.message) < ($1.line ?? 0, $1.message) }
            return .failure(WorkflowProblems(problems: sorted))
        }
        return .success(definition)
    }

    private struct Parser {
        let file: String
        var problems: [ConfigError] = []

        init(file: String) { self.file = file }

        mutating func problem(_ line: Int?, _ message: String) {
            problems.append(ConfigError(file: file, line: line, message: message))
        }

        // MARK: Structure

        mutating func parse(_ yaml: String) -> WorkflowDefinition? {
            let root: Node
            do {
                guard let node = try Yams.compose(yaml: yaml) else {
                    problem(1, "the file is empty")
                    return nil
                }
                root = node
            } catch YamlError.duplicatedKeysInMapping(let duplicates, let context) {
                // Yams names the keys, not where they are: find each one's second appearance.
                let lines = yaml.split(separator: "\n", omittingEmptySubsequences: false)
                for key in duplicates {
                    let places = lines.indices.filter { index in
                        index + 1 >= context.mark.line
                            && lines[index].trimmingCharacters(in: .whitespaces).hasPrefix("\(key):")
                    }
                    let first = places.first.map { $0 + 1 }
                    problem(places.dropFirst().first.map { $0 + 1 } ?? first, "duplicate key \(key)" + (first.map { " (first at line \($0))" } ?? ""))
                }
                return nil
            } catch let error as YamlError {
                problem(Self.line(of: error), "not valid YAML: \(Self.reason(of: error))")
                return nil
            } catch {
                problem(nil, "not valid YAML: \(error)")
                return nil
            }
            guard let mapping = root.mapping else {
                problem(root.mark?.line, "a workflow is a mapping with name, version, states and actions")
                return nil
            }
            checkKeys(mapping, allowed: ["name", "version", "description", "fields", "states", "actions"], in: "a workflow")
            let name = mapping["name"]?.string
            if let name {
                if name.range(of: "^[a-z][a-z0-9-]*$", options: .regularExpression) == nil {
                    problem(mapping["name"]?.mark?.line, "the name \(name) must be lowercase letters, digits and dashes")
                }
            } else {
                problem(root.mark?.line, "the workflow has no name")
            }
            var version = 0
            if let node = mapping["version"] {
                if let value = node.int, value >= 1 { version = value } else {
                    problem(node.mark?.line, "version must be a whole number from 1 up")
                }
            } else {
                problem(root.mark?.line, "the workflow has no version")
            }
            guard let statesNode = mapping["states"], let statesMapping = statesNode.mapping, !statesMapping.isEmpty else {
                problem(mapping["states"]?.mark?.line ?? root.mark?.line, "states must be a mapping of state names")
                return nil
            }
            guard let actionsNode = mapping["actions"], let actionsMapping = actionsNode.mapping else {
                problem(mapping["actions"]?.mark?.line ?? root.mark?.line, "actions must be a mapping of action names")
                return nil
            }
            var states: [WorkflowDefinition.State] = []
            for (key, value) in statesMapping {
                if let state = parseState(key, value) {
                    if let first = states.first(where: { $0.name == state.name }) {
                        problem(state.line, "duplicate state \(state.name) (first at line \(first.line))")
                    } else {
                        states.append(state)
                    }
                }
            }
            var actions: [WorkflowDefinition.Action] = []
            for (key, value) in actionsMapping {
                if let action = parseAction(key, value) {
                    if let first = actions.first(where: { $0.name == action.name }) {
                        problem(action.line, "duplicate action \(action.name) (first at line \(first.line))")
                    } else {
                        actions.append(action)
                    }
                }
            }
            guard let name else { return nil }
            var definition = WorkflowDefinition(
                name: name, version: version, description: mapping["description"]?.string, states: states, actions: actions)
            if let node = mapping["fields"] { definition.fields = parseFields(node) }
            return definition
        }

        /// `fields:` maps each field to what it holds: a type's name, or a list of the texts it may be.
        mutating func parseFields(_ node: Node) -> [String: FieldType] {
            guard let mapping = node.mapping else {
                problem(node.mark?.line, "fields must map each field to what it holds: \(FieldType.names.joined(separator: ", ")), or a list of choices")
                return [:]
            }
            var fields: [String: FieldType] = [:]
            for (key, value) in mapping {
                guard let field = key.string, field.range(of: "^[a-zA-Z][a-zA-Z0-9]*$", options: .regularExpression) != nil else {
                    problem(key.mark?.line, "field names are letters and digits, such as dueDate")
                    continue
                }
                if let choices = value.sequence {
                    let texts = choices.compactMap { $0.scalar?.string }.filter { !$0.isEmpty }
                    if texts.isEmpty || texts.count != choices.count || Set(texts).count != texts.count {
                        problem(value.mark?.line, "field \(field) lists its choices as distinct texts: [IRF, PRF]")
                    } else {
                        fields[field] = .oneOf(texts)
                    }
                } else if let type = value.string.flatMap(FieldType.init(name:)) {
                    fields[field] = type
                } else {
                    problem(value.mark?.line, "field \(field) holds \(FieldType.names.joined(separator: ", ")), or one of a list of choices, not \(value.string ?? "this")")
                }
            }
            return fields
        }

        mutating func parseState(_ key: Node, _ value: Node) -> WorkflowDefinition.State? {
            let line = key.mark?.line ?? 0
            guard let name = key.string, name.range(of: "^[a-z][a-z0-9_]*$", options: .regularExpression) != nil else {
                problem(line, "state names are lowercase words joined by underscores")
                return nil
            }
            let properties = value.mapping ?? [:]
            if value.mapping == nil, value.scalar?.string.isEmpty == false {
                problem(line, "state \(name) must be a mapping (or empty)")
            }
            checkKeys(
                properties,
                allowed: [
                    "initial", "terminal", "automatic", "screen", "queue", "sla", "due", "escalate", "remind", "open_to_all_agencies", "fields",
                    "schedule_reports", "closes_reports", "description",
                ],
                in: "state \(name)")
            let flags = ["initial", "automatic", "terminal"].filter { properties[$0]?.bool == true }
            if flags.count > 1 {
                problem(line, "state \(name) is \(flags.joined(separator: " and ")); a state is at most one of initial, automatic, terminal")
            }
            let kind: WorkflowDefinition.State.Kind =
                flags.first.flatMap(WorkflowDefinition.State.Kind.init(rawValue:)) ?? .normal
            let screen = properties["screen"]?.bool ?? false
            if screen, kind != .automatic {
                problem(properties["screen"]?.mark?.line ?? line, "only an automatic state can screen for overlaps (state \(name))")
            }
            var sla: Duration?
            if let slaNode = properties["sla"] {
                sla = slaNode.string.flatMap(Self.duration)
                if sla == nil {
                    problem(slaNode.mark?.line, "sla of state \(name) must be a number of days, hours or minutes: 15d, 48h, 30m")
                }
                if kind == .terminal || kind == .automatic {
                    problem(slaNode.mark?.line, "\(kind.rawValue) state \(name) cannot have an sla: no task waits in it")
                }
            }
            if let node = properties["queue"], node.string.flatMap(Self.queueName) == nil {
                problem(node.mark?.line, "queue of state \(name) must be a queue name (letters, digits and dashes)")
            }
            let dueField = properties["due"]?.string
            if let node = properties["due"], dueField?.range(of: "^[a-zA-Z][a-zA-Z0-9]*$", options: .regularExpression) == nil {
                problem(node.mark?.line, "due of state \(name) names the date field that sets the due date, such as dueDate")
            }
            let waits = kind == .initial || kind == .normal
            if let node = properties["due"], !waits {
                problem(node.mark?.line, "\(kind.rawValue) state \(name) cannot have a due date: no task waits in it")
            }
            let escalate = properties["escalate"]?.string
            if let node = properties["escalate"] {
                if escalate.flatMap(Self.queueName) == nil {
                    problem(node.mark?.line, "escalate of state \(name) must be a queue name (letters, digits and dashes)")
                }
                if sla == nil, dueField == nil {
                    problem(node.mark?.line, "state \(name) escalates on breach but has no sla or due date to breach")
                }
            }
            var remind: [Duration] = []
            if let node = properties["remind"] {
                let texts = node.sequence.map { $0.compactMap(\.string) } ?? []
                remind = texts.compactMap(Self.duration)
                if node.sequence == nil || remind.count != texts.count || texts.count != node.sequence?.count {
                    problem(node.mark?.line, "remind of state \(name) must be a list of durations before the due date: [7d, 1d]")
                }
                if sla == nil, dueField == nil {
                    problem(node.mark?.line, "state \(name) has reminders but no sla or due date to remind of")
                }
                remind.sort(by: >)
            }
            let openToAll = properties["open_to_all_agencies"]?.bool ?? false
            if let node = properties["open_to_all_agencies"] {
                if node.bool == nil { problem(node.mark?.line, "open_to_all_agencies of state \(name) is true or false") }
                if openToAll, !waits { problem(node.mark?.line, "\(kind.rawValue) state \(name) cannot be open to all agencies: no task waits in it") }
            }
            let fields = Self.strings(properties["fields"])
            if let node = properties["fields"], kind != .initial {
                problem(node.mark?.line, "state \(name) lists fields, but only the initial state does: those a new task may carry")
            }
            let scheduleReportsFrom = properties["schedule_reports"]?.string
            if let node = properties["schedule_reports"] {
                if scheduleReportsFrom?.range(of: "^[a-zA-Z][a-zA-Z0-9]*$", options: .regularExpression) == nil {
                    problem(node.mark?.line, "schedule_reports of state \(name) names the date field reports are due from, such as firstTransferDate")
                }
                if kind == .terminal { problem(node.mark?.line, "terminal state \(name) cannot schedule reports: the task has ended") }
            }
            let closesReports = properties["closes_reports"]?.bool ?? false
            if let node = properties["closes_reports"], node.bool == nil {
                problem(node.mark?.line, "closes_reports of state \(name) is true or false")
            }
            return WorkflowDefinition.State(
                name: name, kind: kind, screen: screen, queue: properties["queue"]?.string, sla: sla,
                dueField: dueField, escalate: escalate, remind: remind, openToAllAgencies: openToAll, scheduleReportsFrom: scheduleReportsFrom,
                closesReports: closesReports, fields: fields, line: line)
        }

        mutating func parseAction(_ key: Node, _ value: Node) -> WorkflowDefinition.Action? {
            let line = key.mark?.line ?? 0
            guard let name = key.string, name.range(of: "^[a-z][a-z0-9_]*$", options: .regularExpression) != nil else {
                problem(line, "action names are lowercase words joined by underscores")
                return nil
            }
            guard let properties = value.mapping else {
                problem(line, "action \(name) must be a mapping with from, to and roles")
                return nil
            }
            checkKeys(
                properties, allowed: ["from", "to", "roles", "guards", "comment", "fields", "period_end", "joins", "agreement", "description"],
                in: "action \(name)")
            let from = Self.strings(properties["from"])
            if from.isEmpty { problem(line, "action \(name) has no from state") }
            guard let to = properties["to"]?.string else {
                problem(line, "action \(name) has no to state")
                return nil
            }
            var roles: [Role] = []
            for roleNode in properties["roles"]?.sequence.map(Array.init) ?? [] {
                if let text = roleNode.string, let role = Role(rawValue: text) {
                    roles.append(role)
                } else {
                    problem(
                        roleNode.mark?.line ?? line,
                        "unknown role \(roleNode.string ?? "?") in action \(name) (roles: \(Role.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
            }
            if properties["roles"]?.sequence?.isEmpty ?? true {
                problem(line, "action \(name) must list the roles allowed to take it")
            }
            var guards: [Guard] = []
            if let guardsNode = properties["guards"] {
                if let sequence = guardsNode.sequence {
                    for node in sequence {
                        if let parsed = parseGuard(node, action: name) { guards.append(parsed) }
                    }
                } else {
                    problem(guardsNode.mark?.line, "guards of action \(name) must be a list")
                }
            }
            var commentRequired = false
            if let comment = properties["comment"] {
                switch comment.string {
                case "required": commentRequired = true
                case "optional": commentRequired = false
                default: problem(comment.mark?.line, "comment of action \(name) is required or optional")
                }
            }
            var periodEndFrom: String?
            if let node = properties["period_end"] {
                if let field = node.string, field.range(of: "^[A-Za-z][A-Za-z0-9_]*$", options: .regularExpression) != nil {
                    periodEndFrom = field
                } else {
                    problem(node.mark?.line, "period_end of action \(name) names the field that holds the new end date")
                }
            }
            let fields = Self.strings(properties["fields"])
            var joinsFrom: String?
            if let node = properties["joins"] {
                if let field = node.string, fields.contains(field) {
                    joinsFrom = field
                } else {
                    problem(node.mark?.line, "joins of action \(name) names one of its fields, the one that holds the agency that joins")
                }
            }
            let recordsAgreement = properties["agreement"]?.bool ?? false
            if let node = properties["agreement"], node.bool == nil {
                problem(node.mark?.line, "agreement of action \(name) is true or false")
            }
            return WorkflowDefinition.Action(
                name: name, from: from, to: to, roles: roles, guards: guards, commentRequired: commentRequired,
                fields: fields, periodEndFrom: periodEndFrom, joinsFrom: joinsFrom, recordsAgreement: recordsAgreement, line: line)
        }

        mutating func parseGuard(_ node: Node, action: String) -> Guard? {
            let line = node.mark?.line
            let name: String
            let argument: Node?
            if let text = node.scalar?.string {
                name = text
                argument = nil
            } else if let mapping = node.mapping, mapping.count == 1, let key = mapping.first?.key.string {
                name = key
                argument = mapping.first?.value
            } else {
                problem(line, "a guard is a name, or a name with its arguments (action \(action))")
                return nil
            }
            func bad(_ expected: String) -> Guard? {
                problem(line, "guard \(name) of action \(action) takes \(expected)")
                return nil
            }
            switch name {
            case "open_overlaps": return argument == nil ? .openOverlaps : bad("no arguments")
            case "no_open_overlaps": return argument == nil ? .noOpenOverlaps : bad("no arguments")
            case "budget_present": return argument == nil ? .budgetPresent : bad("no arguments")
            case "period_present": return argument == nil ? .periodPresent : bad("no arguments")
            case "actor_in_task_agencies": return argument == nil ? .actorInTaskAgencies : bad("no arguments")
            case "actor_is_lead_agency": return argument == nil ? .actorIsLeadAgency : bad("no arguments")
            case "actor_outside_task_agencies": return argument == nil ? .actorOutsideTaskAgencies : bad("no arguments")
            case "all_agencies_agreed": return argument == nil ? .allAgenciesAgreed : bad("no arguments")
            case "actor_has_not_agreed": return argument == nil ? .actorHasNotAgreed : bad("no arguments")
            case "budget_at_most", "budget_above":
                guard let amountText = argument?["amount"]?.string,
                    let amount = Decimal(string: amountText, locale: Locale(identifier: "en_US_POSIX")),
                    let currency = argument?["currency"]?.string, currency.count == 3
                else { return bad("{amount: \"3000000\", currency: USD}") }
                return name == "budget_at_most" ? .budgetAtMost(amount: amount, currency: currency) : .budgetAbove(amount: amount, currency: currency)
            case "field_present":
                guard let field = argument?.string else { return bad("a field name") }
                return .fieldPresent(field)
            case "field_in_range":
                guard let field = argument?["field"]?.string, let min = argument?["min"]?.float, let max = argument?["max"]?.float, min <= max
                else { return bad("{field: NAME, min: N, max: N}") }
                return .fieldInRange(field: field, min: min, max: max)
            case "field_equals":
                guard let field = argument?["field"]?.string, let value = argument?["value"] else { return bad("{field: NAME, value: V}") }
                let fieldValue: FieldValue =
                    if let bool = value.bool { .bool(bool) } else if let number = value.float { .number(number) } else { .string(value.string ?? "") }
                return .fieldEquals(field: field, value: fieldValue)
            case "days_before_end":
                guard let days = argument?.int, days >= 0 else { return bad("a number of days") }
                return .daysBeforeEnd(days)
            default:
                problem(line, "unknown guard \(name) in action \(action) (guards: \(Guard.names.joined(separator: ", ")))")
                return nil
            }
        }

        mutating func checkKeys(_ mapping: Node.Mapping, allowed: Set<String>, in place: String) {
            for (key, _) in mapping where !allowed.contains(key.string ?? "") {
                problem(key.mark?.line, "unknown key \(key.string ?? "?") in \(place) (known: \(allowed.sorted().joined(separator: ", ")))")
            }
        }

        // MARK: Meaning

        mutating func validate(_ workflow: WorkflowDefinition) {
            let names = Set(workflow.states.map(\.name))
            let initials = workflow.states.filter { $0.kind == .initial }
            if initials.isEmpty {
                problem(workflow.states.first?.line, "no initial state: mark one with initial: true")
            }
            for extra in initials.dropFirst() {
                problem(extra.line, "a second initial state \(extra.name) (the first is \(initials[0].name))")
            }
            for action in workflow.actions {
                for state in action.from + [action.to] where !names.contains(state) {
                    problem(action.line, "action \(action.name) names unknown state \(state)")
                }
            }
            for state in workflow.states {
                let exits = workflow.exits(from: state.name)
                switch state.kind {
                case .terminal:
                    for exit in exits {
                        problem(exit.line, "terminal state \(state.name) has an exit: action \(exit.name)")
                    }
                case .automatic:
                    if exits.isEmpty { problem(state.line, "automatic state \(state.name) has no exit") }
                    for exit in exits where exit.roles != [.system] {
                        problem(exit.line, "action \(exit.name) leaves automatic state \(state.name), so only the system takes it: roles: [system]")
                    }
                    for (index, exit) in exits.enumerated() {
                        if exit.guards.isEmpty, index < exits.count - 1 {
                            problem(exit.line, "action \(exit.name) leaves automatic state \(state.name) with no guard before other exits: the ones after it could never run")
                        }
                        if let twin = exits[..<index].first(where: { Set($0.guards) == Set(exit.guards) }), !exit.guards.isEmpty {
                            problem(exit.line, "actions \(twin.name) and \(exit.name) leave automatic state \(state.name) under the same guards: which one runs is ambiguous")
                        }
                    }
                case .initial, .normal:
                    if exits.isEmpty { problem(state.line, "state \(state.name) is not terminal but has no exit: a task would be stranded there") }
                }
            }
            if let fields = workflow.fields {
                validateFields(workflow, declared: fields)
            } else {
                for state in workflow.states where !state.fields.isEmpty {
                    problem(state.line, "state \(state.name) lists the fields a new task carries, but the workflow declares none (fields:)")
                }
            }
            if !workflow.actions.contains(where: \.recordsAgreement) {
                for action in workflow.actions where action.guards.contains(.allAgenciesAgreed) || action.guards.contains(.actorHasNotAgreed) {
                    problem(action.line, "action \(action.name) reads agreements, but no action is an agreement (agreement: true)")
                }
            }
            guard let initial = initials.first, problems.isEmpty else { return }
            // Reachable from the initial state.
            var reached: Set<String> = [initial.name]
            var frontier = [initial.name]
            while let state = frontier.popLast() {
                for exit in workflow.exits(from: state) where reached.insert(exit.to).inserted {
                    frontier.append(exit.to)
                }
            }
            for state in workflow.states where !reached.contains(state.name) {
                problem(state.line, "state \(state.name) cannot be reached from the initial state \(initial.name)")
            }
            // Able to reach a terminal state.
            var finishing = Set(workflow.states.filter { $0.kind == .terminal }.map(\.name))
            var changed = true
            while changed {
                changed = false
                for action in workflow.actions where finishing.contains(action.to) {
                    for from in action.from where finishing.insert(from).inserted { changed = true }
                }
            }
            for state in workflow.states where reached.contains(state.name) && !finishing.contains(state.name) {
                problem(state.line, "no terminal state can be reached from state \(state.name)")
            }
        }

        /// With fields declared, every field the definition names is one of
        /// them, and of a kind that fits where it is named.
        mutating func validateFields(_ workflow: WorkflowDefinition, declared: [String: FieldType]) {
            func named(_ field: String, line: Int, by place: String, as kinds: [FieldType]? = nil) {
                guard let type = declared[field] else {
                    problem(line, "\(place) names field \(field), which the workflow's fields do not declare")
                    return
                }
                if let kinds, !kinds.contains(type) {
                    problem(line, "\(place) needs field \(field) to be \(kinds.map(\.description).joined(separator: " or ")), not \(type)")
                }
            }
            for state in workflow.states {
                for field in state.fields { named(field, line: state.line, by: "state \(state.name)") }
                if let field = state.dueField { named(field, line: state.line, by: "due of state \(state.name)", as: [.date]) }
                if let field = state.scheduleReportsFrom { named(field, line: state.line, by: "schedule_reports of state \(state.name)", as: [.date]) }
            }
            for action in workflow.actions {
                for field in action.fields { named(field, line: action.line, by: "action \(action.name)") }
                if let field = action.periodEndFrom { named(field, line: action.line, by: "period_end of action \(action.name)", as: [.date]) }
                if let field = action.joinsFrom { named(field, line: action.line, by: "joins of action \(action.name)", as: [.text]) }
                for guardCondition in action.guards {
                    let place = "guard \(guardCondition) of action \(action.name)"
                    switch guardCondition {
                    case .fieldPresent(let field): named(field, line: action.line, by: place)
                    case .fieldInRange(let field, _, _): named(field, line: action.line, by: place, as: [.integer, .number])
                    case .fieldEquals(let field, let value):
                        named(field, line: action.line, by: place)
                        if let type = declared[field], type.accepting(value) == nil {
                            problem(action.line, "\(place) compares with a value field \(field) never holds: it \(type.refusal(of: value))")
                        }
                    default: break
                    }
                }
            }
        }

        // MARK: Helpers

        static func strings(_ node: Node?) -> [String] {
            guard let node else { return [] }
            if let text = node.scalar?.string { return [text] }
            return node.sequence?.compactMap(\.string) ?? []
        }

        static func queueName(_ text: String) -> String? {
            text.range(of: "^[A-Za-z0-9][A-Za-z0-9-]*$", options: .regularExpression) != nil ? text : nil
        }

        static func duration(_ text: String) -> Duration? {
            guard let unit = text.last, let number = Int(text.dropLast()), number > 0 else { return nil }
            switch unit {
            case "d": return .seconds(number * 86_400)
            case "h": return .seconds(number * 3600)
            case "m": return .seconds(number * 60)
            default: return nil
            }
        }

        static func line(of error: YamlError) -> Int? {
            switch error {
            case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): mark.line
            default: nil
            }
        }

        static func reason(of error: YamlError) -> String {
            switch error {
            case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _): problem
            default: "\(error)"
            }
        }
    }
}

import Foundation

/// The fixed vocabulary of conditions an action can require. They are Swift,
/// not a scripting language: a workflow file names them and gives arguments.
public enum Guard: Sendable, Hashable, CustomStringConvertible {
    case openOverlaps
    case noOpenOverlaps
    case budgetPresent
    case budgetAtMost(amount: Decimal, currency: String)
    case budgetAbove(amount: Decimal, currency: String)
    case periodPresent
    case fieldPresent(String)
    case fieldInRange(field: String, min: Double, max: Double)
    case fieldEquals(field: String, value: FieldValue)
    /// Today is at least this many days before the end of the task's period.
    case daysBeforeEnd(Int)
    /// The actor belongs to the lead or a participating agency.
    case actorInTaskAgencies
    case actorIsLeadAgency
    /// The actor's agency neither leads the task nor takes part in it: it
    /// answers another agency's call (an offer).
    case actorOutsideTaskAgencies
    /// Every participating agency has agreed (an action with `agreement:
    /// true`) to the task's fields as last set.
    case allAgenciesAgreed
    /// The actor's agency has not yet agreed to the task's fields as last set.
    case actorHasNotAgreed

    /// The names a workflow file uses.
    public static let names = [
        "open_overlaps", "no_open_overlaps", "budget_present", "budget_at_most", "budget_above", "period_present",
        "field_present", "field_in_range", "field_equals", "days_before_end", "actor_in_task_agencies", "actor_is_lead_agency",
        "actor_outside_task_agencies", "all_agencies_agreed", "actor_has_not_agreed",
    ]

    public var description: String {
        switch self {
        case .openOverlaps: "open_overlaps"
        case .noOpenOverlaps: "no_open_overlaps"
        case .budgetPresent: "budget_present"
        case .budgetAtMost(let amount, let currency): "budget_at_most(\(amount) \(currency))"
        case .budgetAbove(let amount, let currency): "budget_above(\(amount) \(currency))"
        case .periodPresent: "period_present"
        case .fieldPresent(let field): "field_present(\(field))"
        case .fieldInRange(let field, let min, let max): "field_in_range(\(field), \(FieldValue.number(min)), \(FieldValue.number(max)))"
        case .fieldEquals(let field, let value): "field_equals(\(field), \(value))"
        case .daysBeforeEnd(let days): "days_before_end(\(days))"
        case .actorInTaskAgencies: "actor_in_task_agencies"
        case .actorIsLeadAgency: "actor_is_lead_agency"
        case .actorOutsideTaskAgencies: "actor_outside_task_agencies"
        case .allAgenciesAgreed: "all_agencies_agreed"
        case .actorHasNotAgreed: "actor_has_not_agreed"
        }
    }

    /// The task field the guard reads, for those that read one.
    public var field: String? {
        switch self {
        case .fieldPresent(let field), .fieldInRange(let field, _, _), .fieldEquals(let field, _): field
        default: nil
        }
    }

    /// Nil when the guard holds; otherwise why not, in words for the person acting.
    public func failure(task: TaskRecord, actor: Actor, context: GuardContext) -> String? {
        switch self {
        case .openOverlaps:
            return context.openOverlaps > 0 ? nil : "the task has no open overlaps"
        case .noOpenOverlaps:
            let count = context.openOverlaps
            return count == 0 ? nil : "the task has \(count) open overlap\(count == 1 ? "" : "s") to resolve first"
        case .budgetPresent:
            return task.budget == nil ? "the task has no budget" : nil
        case .budgetAtMost(let cap, let currency), .budgetAbove(let cap, let currency):
            guard let budget = task.budget, let amount = budget.decimal else { return "the task has no budget" }
            guard let converted = context.rates.convert(amount, from: budget.currency, to: currency) else {
                return "no exchange rate between \(budget.currency) and \(currency) in Config/rates.yaml"
            }
            if case .budgetAtMost = self {
                return converted <= cap ? nil : "the budget (\(budget.amount) \(budget.currency)) is above \(cap) \(currency)"
            }
            return converted > cap ? nil : "the budget (\(budget.amount) \(budget.currency)) is not above \(cap) \(currency)"
        case .periodPresent:
            return task.period == nil ? "the task has no period" : nil
        case .fieldPresent(let field):
            return task.fields[field] == nil ? "the field \(field) is required" : nil
        case .fieldInRange(let field, let min, let max):
            guard let value = task.fields[field] else { return "the field \(field) is required" }
            guard let number = value.number, number >= min, number <= max else {
                return "the field \(field) must be between \(FieldValue.number(min)) and \(FieldValue.number(max)), not \(value)"
            }
            return nil
        case .fieldEquals(let field, let expected):
            return task.fields[field] == expected ? nil : "the field \(field) must be \(expected)"
        case .daysBeforeEnd(let days):
            guard let period = task.period else { return "the task has no period" }
            let left = period.end.daysSinceEpoch - CalendarDate(context.now).daysSinceEpoch
            if left >= days { return nil }
            if left < 0 { return "the period ended on \(period.end); this is asked at least \(days) days before its end" }
            return "only \(left) day\(left == 1 ? " remains" : "s remain") before the period ends on \(period.end); at least \(days) are needed"
        case .actorInTaskAgencies:
            guard actor.role == .system || actor.agency.map(task.agencies.contains) == true else {
                return "the actor's agency is neither the lead nor a participant"
            }
            return nil
        case .actorIsLeadAgency:
            guard actor.role == .system || actor.agency == task.leadAgency else {
                return "only the lead agency (\(task.leadAgency)) may do this"
            }
            return nil
        case .actorOutsideTaskAgencies:
            guard let agency = actor.agency, task.agencies.contains(agency) else { return nil }
            return "\(agency) \(agency == task.leadAgency ? "leads" : "takes part in") the task already; this is for the other agencies"
        case .allAgenciesAgreed:
            let waiting = task.awaitingAgreement(besides: context.agreedAgencies)
            return waiting.isEmpty ? nil : "waiting for \(waiting.joined(separator: " and ")) to agree"
        case .actorHasNotAgreed:
            guard let agency = actor.agency, context.agreedAgencies.contains(agency) else { return nil }
            let waiting = task.awaitingAgreement(besides: context.agreedAgencies)
            return "\(agency) has agreed to this proposal already" + (waiting.isEmpty ? "" : "; waiting for \(waiting.joined(separator: " and "))")
        }
    }
}

extension TaskRecord {
    /// The agencies whose agreement a proposal still needs: every
    /// participant's (a deconfliction case's are the agencies of its
    /// overlap), but those in `agreed`.
    public func awaitingAgreement(besides agreed: Set<String>) -> [String] {
        Set(participants.map(\.agency)).subtracting(agreed).sorted()
    }
}

/// What guards read besides the task and the actor.
public struct GuardContext: Sendable {
    public var now: Date
    public var rates: ExchangeRates
    /// Open overlaps of the task, as screening left them.
    public var openOverlaps: Int
    /// The agencies whose liaisons agreed to the task's fields as last set.
    public var agreedAgencies: Set<String>

    public init(now: Date, rates: ExchangeRates, openOverlaps: Int = 0, agreedAgencies: Set<String> = []) {
        self.now = now
        self.rates = rates
        self.openOverlaps = openOverlaps
        self.agreedAgencies = agreedAgencies
    }
}

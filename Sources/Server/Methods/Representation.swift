import Coordination
import Foundation
import JSONRPC
import Store

/// How domain values look on the wire.
enum Wire {
    static func date(_ date: Date) -> JSONValue { .string(InternetTime.string(date)) }

    static func optional(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }

    static func task(_ task: StoredTask) -> JSONValue {
        let record = task.record
        var fields: [String: JSONValue] = [:]
        for (key, value) in record.fields {
            switch value {
            case .string(let text): fields[key] = .string(text)
            case .number(let number): fields[key] = number.rounded() == number && abs(number) < 1e15 ? .integer(Int64(number)) : .double(number)
            case .bool(let flag): fields[key] = .bool(flag)
            }
        }
        return .object([
            "id": .string(task.id.uuidString.lowercased()),
            "ref": .string(task.ref),
            "workflow": .string(task.workflow),
            "workflowVersion": .integer(Int64(task.workflowVersion)),
            "state": .string(record.state),
            "version": .integer(Int64(task.version)),
            "title": .string(record.title),
            "description": .string(record.description),
            "leadAgency": .string(record.leadAgency),
            "participants": .array(record.participants.map { .object(["agency": .string($0.agency), "role": .string($0.role.rawValue)]) }),
            "country": optional(record.country),
            "locations": .array(record.locations.map(JSONValue.string)),
            "sectors": .array(record.sectors.map(JSONValue.string)),
            "period": record.period.map { .object(["start": .string($0.start.iso), "end": .string($0.end.iso)]) } ?? .null,
            "budget": record.budget.map { .object(["amount": .string($0.amount), "currency": .string($0.currency)]) } ?? .null,
            "priority": .string(record.priority.rawValue),
            "fields": .object(fields),
            "externalRefs": .object(record.externalRefs.mapValues(JSONValue.string)),
            "queue": optional(task.queue),
            "assignee": task.holder.map { holder in
                .object([
                    "id": .string(holder.principal.uuidString.lowercased()), "name": .string(holder.name),
                    "leaseExpiresAt": holder.expiresAt.map(date) ?? .null,
                ])
            } ?? .null,
            "dueAt": task.dueAt.map(date) ?? .null,
            "createdAt": date(task.createdAt),
            "updatedAt": date(task.updatedAt),
        ])
    }

    /// The lease a claim or renewal gives: its id (for `task.act`) and expiry.
    static func lease(_ holder: StoredTask.Holder?) -> JSONValue {
        guard let holder else { return .null }
        return .object(["id": .string(holder.lease.uuidString.lowercased()), "expiresAt": holder.expiresAt.map(date) ?? .null])
    }

    static func event(_ event: StoredEvent) -> JSONValue {
        let data = (try? JSONValue.parse(event.data.text)) ?? .object([:])
        return .object([
            "seq": .integer(Int64(event.seq)),
            "type": .string(event.type),
            "actor": .string(event.actor),
            "action": optional(event.action),
            "from": optional(event.fromState),
            "to": optional(event.toState),
            "comment": optional(event.comment),
            "data": data,
            "at": date(event.at),
        ])
    }

    /// An imported activity: what its publisher reported, and where and when screening meets it.
    static func activity(_ activity: ImportedActivity) -> JSONValue {
        func shares(_ list: [ImportedActivity.Share]) -> JSONValue {
            .array(list.map { .object(["code": .string($0.code), "percentage": optional($0.percentage)]) })
        }
        return .object([
            "identifier": .string(activity.identifier),
            "publisher": .object(["id": .string(activity.publisher), "name": .string(activity.publisherName)]),
            "title": .string(activity.title), "description": .string(activity.description), "status": optional(activity.status),
            "countries": shares(activity.countries), "regions": shares(activity.regions),
            "sectors": .array((activity.sectors + activity.otherSectors).map(JSONValue.string)),
            "locations": .array(activity.locations.map(JSONValue.string)),
            "participants": .array(activity.participants.map {
                .object(["ref": optional($0.ref), "name": optional($0.name), "role": .string($0.role)])
            }),
            "period": .object(["start": optional(activity.start), "end": optional(activity.end)]),
            "screened": .array(activity.screened.map {
                .object(["country": .string($0.country), "start": .string($0.start), "end": .string($0.end), "active": .bool($0.active)])
            }),
            "budgets": .array(activity.budgets.map { .object(["currency": .string($0.currency), "amount": .string($0.amount)]) }),
            "genderMarker": activity.genderMarker.map { .integer(Int64($0)) } ?? .null,
            "source": .string(activity.source), "updatedAt": date(activity.updatedAt),
        ])
    }

    /// Who agreed to a task's proposal and who is awaited, as `task.get` and `task.act` give it.
    static func reply(_ reply: AgencyReply) -> JSONValue {
        .object([
            "agency": .string(reply.agency), "by": .string(reply.by), "at": date(reply.at), "action": .string(reply.action),
            "comment": .string(reply.comment),
        ])
    }

    static func agreement(_ agreement: AgreementStanding) -> JSONValue {
        .object(["agreed": .array(agreement.agreed.map(JSONValue.string)), "awaiting": .array(agreement.awaiting.map(JSONValue.string))])
    }

    /// A report due on a program, as `task.get` lists it.
    static func report(_ report: ReportSummary) -> JSONValue {
        .object([
            "ref": .string(report.ref), "state": .string(report.state), "reportType": optional(report.reportType),
            "dueDate": optional(report.dueDate),
        ])
    }

    static func overlap(_ overlap: StoredOverlap) -> JSONValue {
        .object([
            "id": .string(overlap.id.uuidString.lowercased()),
            "other": .string(overlap.other),
            "score": .double(overlap.score),
            "reasons": .array(overlap.reasons.map(JSONValue.string)),
            "status": .string(overlap.status),
            "resolution": optional(overlap.resolution),
            "resolutionData": .object(overlap.resolutionData.mapValues(JSONValue.string)),
            "foundBy": .string(overlap.foundBy),
        ])
    }

    /// An overlap with, of the other entry, only what is needed to talk about it.
    static func overlap(_ view: OverlapView) -> JSONValue {
        .object([
            "id": .string(view.id.uuidString.lowercased()),
            "task": .string(view.taskRef),
            "other": .object([
                "ref": .string(view.other.ref),
                "kind": .string(view.other.kind),
                "title": .string(view.other.title),
                "leadAgency": .string(view.other.leadAgency),
                "leadAgencyName": .string(view.other.leadAgencyName),
                "country": .string(view.other.country),
                "sectors": .array(view.other.sectors.map(JSONValue.string)),
                "period": .object(["start": .string(view.other.start), "end": .string(view.other.end)]),
            ]),
            "score": .double(view.score),
            "reasons": .array(view.reasons.map(JSONValue.string)),
            "status": .string(view.status),
            "resolution": optional(view.resolution),
            "resolutionData": .object(view.resolutionData.mapValues(JSONValue.string)),
            "foundBy": .string(view.foundBy),
        ])
    }

    static func workflow(_ workflow: WorkflowDefinition) -> JSONValue {
        .object([
            "name": .string(workflow.name),
            "version": .integer(Int64(workflow.version)),
            "description": optional(workflow.description),
            "initialState": .string(workflow.initialState.name),
            "fields": workflow.fields.map { fields in
                .array(fields.keys.sorted().map { name in
                    let type = fields[name]!
                    var choices: JSONValue = .null
                    if case .oneOf(let values) = type { choices = .array(values.map(JSONValue.string)) }
                    return .object(["name": .string(name), "type": .string(type.name), "choices": choices])
                })
            } ?? .null,
            "states": .array(workflow.states.map { state in
                .object([
                    "name": .string(state.name),
                    "kind": .string(state.kind.rawValue),
                    "screen": .bool(state.screen),
                    "queue": optional(state.queue),
                    "slaSeconds": state.sla.map { .integer($0.components.seconds) } ?? .null,
                    "dueField": optional(state.dueField),
                    "escalateTo": optional(state.escalate),
                    "remindSecondsBefore": .array(state.remind.map { .integer($0.components.seconds) }),
                    "openToAllAgencies": .bool(state.openToAllAgencies),
                    "fields": .array(state.fields.map(JSONValue.string)),
                    "scheduleReportsFrom": optional(state.scheduleReportsFrom),
                    "closesReports": .bool(state.closesReports),
                ])
            }),
            "actions": .array(workflow.actions.map { action in
                .object([
                    "name": .string(action.name),
                    "from": .array(action.from.map(JSONValue.string)),
                    "to": .string(action.to),
                    "roles": .array(action.roles.map { .string($0.rawValue) }),
                    "guards": .array(action.guards.map { .string($0.description) }),
                    "commentRequired": .bool(action.commentRequired),
                    "fields": .array(action.fields.map(JSONValue.string)),
                    "periodEndFrom": optional(action.periodEndFrom),
                    "joins": optional(action.joinsFrom),
                    "agreement": .bool(action.recordsAgreement),
                ])
            }),
        ])
    }
}

/// Parameter types that decode from the wire's spelling.
struct WirePeriod: Decodable {
    let start: CalendarDate
    let end: CalendarDate
    var period: Period { Period(start: start, end: end) }
}

struct WireBudget: Decodable {
    let amount: String
    let currency: String
    var money: Money { Money(amount: amount, currency: currency) }
}

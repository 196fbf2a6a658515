import Coordination
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// How the Commission draws on expertise from across the UN system: a
/// request, a call for offers every agency sees, a designated agency that
/// delivers.
@Suite struct AssistanceRequestTests {
    static func request() -> TaskRecord {
        TaskRecord(
            state: "", title: "Expertise on land mediation in Gitega", description: "The provincial land commission asks for two mediators.",
            leadAgency: "undp", country: "BI")
    }

    @Test func everyAgencySeesACallForOffersAndTheDesignatedOneDelivers() async throws {
        let h = try await Harness("assistance_request")
        var task = try await h.tasks.create(Self.request(), workflow: "assistance-request", by: h.undp)
        task = try await h.tasks.act(task.ref, action: "submit", expectedVersion: task.version, by: h.undp)
        #expect(task.state == "triage")
        // Until the call for offers, only the requesting agency sees it.
        await #expect(throws: StoreError.self) { _ = try await h.tasks.get(task.ref, as: h.unicef) }
        task = try await h.tasks.act(task.ref, action: "open_offers", expectedVersion: task.version, by: h.coordinator)
        #expect(task.state == "offers_open")

        // Any agency sees it, in its list too, and may offer.
        #expect(try await h.tasks.get(task.ref, as: h.wfp).id == task.id)
        #expect(try await h.tasks.list(TaskFilter(workflow: "assistance-request"), as: h.unicef).items.map(\.ref) == [task.ref])
        // The requesting agency does not offer to its own request (version 4).
        let own = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(task.ref, action: "offer", expectedVersion: task.version, inputs: ActionInputs(comment: "Ourselves"), by: h.undp)
        }
        #expect(own?.refusal == .guardsFailed(action: "offer", failures: [
            GuardFailure("actor_outside_task_agencies", "undp leads the task already; this is for the other agencies"),
        ]))
        task = try await h.tasks.act(task.ref, action: "offer", expectedVersion: task.version, inputs: ActionInputs(comment: "Two mediators from Bujumbura"), by: h.unicef)
        task = try await h.tasks.act(task.ref, action: "offer", expectedVersion: task.version, inputs: ActionInputs(comment: "One land surveyor"), by: h.wfp)
        #expect(try await h.tasks.history(task.ref, as: h.unicef).filter { $0.action == "offer" }.map(\.actor) == ["kofi (unicef)", "lena (wfp)"])
        // The coordinator's page lists the offers, what they designate from.
        let offers = try await h.tasks.detail(task.ref, as: h.coordinator).replies?.map { "\($0.agency) \($0.action): \($0.comment)" }
        #expect(offers == ["unicef offer: Two mediators from Bujumbura", "wfp offer: One land surveyor"])

        // The call was announced to every agency's stream, with the offers made to it.
        func streamed(to principal: Principal) async throws -> [String] {
            try await h.tasks.events(after: 0, matching: EventFilter(tasks: [task.id]), visibleTo: principal, limit: 100)
                .map { "\($0.event.action ?? $0.event.type) \($0.event.actor)" }
        }
        let call = ["open_offers chen (pbso)", "offer kofi (unicef)", "offer lena (wfp)"]
        #expect(try await streamed(to: h.wfp) == call)
        // An agency pbc does not know cannot be designated; nothing changes.
        let unknown = await #expect(throws: StoreError.self) {
            _ = try await h.tasks.act(
                task.ref, action: "designate_lead", expectedVersion: task.version,
                inputs: ActionInputs(fields: ["designatedAgency": .string("unicfe")]), by: h.coordinator)
        }
        #expect(unknown?.fieldErrors == [FieldError("fields.designatedAgency", "unknown agency unicfe")])
        // The designated agency takes part from now on; the call is over for the others. Its id is taken as typed ("UNICEF").
        task = try await h.tasks.act(
            task.ref, action: "designate_lead", expectedVersion: task.version,
            inputs: ActionInputs(fields: ["designatedAgency": .string("UNICEF")]), by: h.coordinator)
        #expect(task.record.participants == [Participant(agency: "unicef", role: .implementing)])
        #expect(task.record.fields["designatedAgency"] == .string("unicef"))
        // Past the call, the page lists no replies.
        #expect(try await h.tasks.detail(task.ref, as: h.coordinator).replies == nil)
        await #expect(throws: StoreError.self) { _ = try await h.tasks.get(task.ref, as: h.wfp) }
        #expect(try await h.tasks.list(TaskFilter(workflow: "assistance-request"), as: h.wfp).items.isEmpty)
        // What follows the call is the request's own agencies' again.
        #expect(try await streamed(to: h.wfp) == call)
        #expect(try await streamed(to: h.unicef).last == "designate_lead chen (pbso)")
        task = try await h.tasks.act(task.ref, action: "start_delivery", expectedVersion: task.version, by: h.unicef)
        task = try await h.tasks.act(task.ref, action: "deliver", expectedVersion: task.version, inputs: ActionInputs(comment: "Mediators deployed"), by: h.unicef)
        task = try await h.tasks.act(task.ref, action: "close", expectedVersion: task.version, by: h.coordinator)
        #expect(task.state == "closed")
        #expect(try await h.invariantViolations() == [])
    }

    /// An offer leaves the request where it was: the call keeps its
    /// deadline and the coordinator holding it keeps it. Each offer used to
    /// enter the call anew, restarting its 14 days and dropping the claim.
    @Test func anOfferKeepsTheCallsDeadlineAndWhoHoldsIt() async throws {
        let h = try await Harness("assistance_request_offer_stays")
        var task = try await h.tasks.create(Self.request(), workflow: "assistance-request", by: h.undp)
        task = try await h.tasks.act(task.ref, action: "submit", expectedVersion: task.version, by: h.undp)
        task = try await h.tasks.act(task.ref, action: "open_offers", expectedVersion: task.version, by: h.coordinator)
        task = try await h.tasks.assign(task.ref, to: h.coordinator.name, by: h.coordinator)
        let deadline = try #require(task.dueAt)
        h.clock.advance(.seconds(5 * 86_400))
        let offered = try await h.tasks.act(
            task.ref, action: "offer", expectedVersion: task.version, inputs: ActionInputs(comment: "Two mediators from Ngozi"), by: h.unicef)
        let read = try await h.tasks.get(task.ref, as: h.coordinator)
        for seen in [offered, read] {
            #expect(seen.state == "offers_open" && seen.version == task.version + 1)
            #expect(seen.dueAt == deadline, "the call's 14 days run from its opening")
            #expect(seen.holder?.principal == h.coordinator.id)
        }
        // The deadline passes nine days later, offers or not.
        h.clock.advance(.seconds(10 * 86_400))
        #expect(try await h.tasks.sweep()?.breached == [task.ref])
    }

    /// A designation that names no agency (a number, an empty text) is refused
    /// with why, and the request stays open for offers.
    @Test func aDesignationThatNamesNoAgencyIsRefused() async throws {
        let h = try await Harness("assistance_request_bad_designation")
        var task = try await h.tasks.create(Self.request(), workflow: "assistance-request", by: h.undp)
        task = try await h.tasks.act(task.ref, action: "submit", expectedVersion: task.version, by: h.undp)
        task = try await h.tasks.act(task.ref, action: "open_offers", expectedVersion: task.version, by: h.coordinator)
        let expected: [(FieldValue, String)] = [(.number(7), "unknown agency 7"), (.string(""), "must be text, not empty")]
        for (value, reason) in expected {
            let refused = await #expect(throws: StoreError.self) {
                _ = try await h.tasks.act(
                    task.ref, action: "designate_lead", expectedVersion: task.version, inputs: ActionInputs(fields: ["designatedAgency": value]),
                    by: h.coordinator)
            }
            #expect(refused?.code == .validation)
            #expect(refused?.fieldErrors == [FieldError("fields.designatedAgency", reason)], "\(value)")
        }
        let unchanged = try await h.tasks.get(task.ref, as: h.coordinator)
        #expect(unchanged.state == "offers_open" && unchanged.version == task.version && unchanged.record.participants.isEmpty)
    }

    /// The database itself keeps the call for offers to its state: a liaison
    /// of another agency reads the request only while it is open.
    @Test func rowLevelSecurityOpensTheCallForOffersOnly() async throws {
        let h = try await Harness("assistance_request_rls")
        var task = try await h.tasks.create(Self.request(), workflow: "assistance-request", by: h.undp)
        task = try await h.tasks.act(task.ref, action: "submit", expectedVersion: task.version, by: h.undp)
        func seenByWFP() async throws -> Int {
            try await h.service.withConnection { connection in
                try await connection.withTransaction { connection in
                    try await connection.query("SELECT set_config('pbc.scope', 'agency', true), set_config('pbc.agency', 'wfp', true)")
                    return try await connection.query("SELECT count(*) FROM tasks WHERE id = \(task.id)").first!.decode(Int.self, at: 0)
                }
            }
        }
        #expect(try await seenByWFP() == 0)
        task = try await h.tasks.act(task.ref, action: "open_offers", expectedVersion: task.version, by: h.coordinator)
        #expect(try await seenByWFP() == 1)
        _ = try await h.tasks.act(
            task.ref, action: "designate_lead", expectedVersion: task.version,
            inputs: ActionInputs(fields: ["designatedAgency": .string("unicef")]), by: h.coordinator)
        #expect(try await seenByWFP() == 0)
    }
}

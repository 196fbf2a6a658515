import Coordination
import Foundation
import Testing

@Suite struct EngineTests {
    func decide(
        _ workflow: WorkflowDefinition, _ task: TaskRecord, _ actor: Actor, _ action: String, inputs: ActionInputs = ActionInputs(),
        context: GuardContext = Fixtures.context(), overlaps: Int = 0
    ) async throws -> Result<Decision, Refusal> {
        try await Engine.decide(workflow, task: task, actor: actor, action: action, inputs: inputs, context: context, screener: ChosenOverlaps(overlaps))
    }

    @Test func submissionWithoutOverlapsGoesToReviewThroughScreening() async throws {
        let workflow = try Fixtures.workflow("pbf-project")
        let decision = try await decide(workflow, Fixtures.project(), Fixtures.liaison, "submit").get()
        #expect(decision.transitions.map(\.to) == ["submitted", "screening", "technical_review"])
        #expect(decision.transitions.map(\.automatic) == [false, true, true])
        #expect(decision.screened)
        #expect(decision.queue == "pbso-review")
        #expect(decision.dueAt == Fixtures.context().now.addingTimeInterval(15 * 86_400))
    }

    @Test func submissionWithOverlapsGoesToDeconfliction() async throws {
        let workflow = try Fixtures.workflow("pbf-project")
        let decision = try await decide(workflow, Fixtures.project(), Fixtures.liaison, "submit", overlaps: 2).get()
        #expect(decision.finalState == "deconfliction")
        #expect(decision.findings.count == 2)
        #expect(decision.queue == "pbso-deconfliction")
    }

    @Test func refusalsArePrecise() async throws {
        let workflow = try Fixtures.workflow("pbf-project")
        // Wrong state: the allowed actions are listed.
        var reviewing = Fixtures.project()
        reviewing.state = "technical_review"
        guard case .failure(.notAllowedInState(_, let state, let allowed)) = try await decide(workflow, reviewing, Fixtures.coordinator, "approve") else {
            Issue.record("expected notAllowedInState")
            return
        }
        #expect(state == "technical_review")
        #expect(allowed == ["request_revision", "recommend", "reject"])
        // Wrong role.
        #expect(
            try await decide(workflow, Fixtures.project(), Fixtures.approver, "submit")
                == .failure(.roleNotAllowed(action: "submit", role: .approver, allowedRoles: [.liaison, .coordinator])))
        #expect(Refusal.roleNotAllowed(action: "submit", role: .approver, allowedRoles: [.liaison, .coordinator]).description
            == "an approver may not submit; it is for: liaison, coordinator")
        #expect(Role.liaison.withArticle == "a liaison" && Role.observer.withArticle == "an observer" && Role.admin.withArticle == "an admin")
        // A failed guard says which and why: the gender marker is required at submission.
        var unmarked = Fixtures.project()
        unmarked.fields["genderMarker"] = nil
        #expect(try await decide(workflow, unmarked, Fixtures.liaison, "submit") == .failure(.guardsFailed(
            action: "submit", failures: [GuardFailure("field_in_range(genderMarker, 0, 3)", "the field genderMarker is required")])))
        // Every guard that refuses is named at once, in the workflow's order, so one answer says all that must change.
        var unfinished = unmarked
        unfinished.budget = nil
        unfinished.fields["facility"] = nil
        #expect(try await decide(workflow, unfinished, Fixtures.liaison, "submit") == .failure(.guardsFailed(action: "submit", failures: [
            GuardFailure("budget_present", "the task has no budget"),
            GuardFailure("field_in_range(genderMarker, 0, 3)", "the field genderMarker is required"),
            GuardFailure("field_present(facility)", "the field facility is required"),
        ])))
        #expect(Refusal.guardsFailed(action: "submit", failures: [GuardFailure("budget_present", "the task has no budget"), GuardFailure("field_present(facility)", "the field facility is required")]).description
            == "submit refused by budget_present: the task has no budget; and by field_present(facility): the field facility is required")
        // An agency that is not on the task cannot submit it.
        let outsider = Actor(principal: "x", role: .liaison, agency: "wfp")
        guard case .failure(.guardsFailed(_, let failures)) = try await decide(workflow, Fixtures.project(), outsider, "submit") else {
            Issue.record("expected actor_in_task_agencies to fail")
            return
        }
        #expect(failures.map(\.name) == ["actor_in_task_agencies"])
        // A comment is required to ask for a revision.
        #expect(try await decide(workflow, reviewing, Fixtures.coordinator, "request_revision") == .failure(.commentRequired(action: "request_revision")))
        // Only listed fields may be set.
        #expect(
            try await decide(workflow, reviewing, Fixtures.coordinator, "recommend", inputs: ActionInputs(fields: ["budget": .string("9")]))
                == .failure(.fieldNotSettable(action: "recommend", field: "budget", settable: [])))
        #expect(try await decide(workflow, reviewing, Fixtures.coordinator, "fly") == .failure(.unknownAction(action: "fly", known: workflow.actions.map(\.name))))
    }

    /// A comment and a workflow field's value are kept for good and sent to
    /// every subscriber: each is at most 10,000 characters, in every workflow,
    /// and a refusal quotes a long value only in part.
    @Test func freeTextIsBoundedWhereverItIsGiven() async throws {
        let workflow = try Fixtures.workflow("pbf-project")
        var reviewing = Fixtures.project()
        reviewing.state = "technical_review"
        let long = String(repeating: "x", count: FreeText.maximumLength + 1)
        let full = String(repeating: "x", count: FreeText.maximumLength)
        #expect(try await decide(workflow, reviewing, Fixtures.coordinator, "request_revision", inputs: ActionInputs(comment: long))
            == .failure(.invalidFields(action: "request_revision", errors: [FieldError("comment", "must be at most 10000 characters")])))
        #expect(try await decide(workflow, reviewing, Fixtures.coordinator, "request_revision", inputs: ActionInputs(comment: full)).get()
            .finalState == "revision_requested")
        // A field's value, whatever its kind: too long is said as such, not as a choice it is not.
        #expect(try await decide(workflow, Fixtures.project(), Fixtures.liaison, "submit", inputs: ActionInputs(fields: ["facility": .string(long)]))
            == .failure(.invalidFields(action: "submit", errors: [FieldError("fields.facility", "must be at most 10000 characters")])))
        #expect(FieldType.date.refusal(of: .string(String(repeating: "y", count: 100)))
            == "must be a date, YYYY-MM-DD, not " + String(repeating: "y", count: 60) + "…")
        // A workflow that declares no fields takes any, but not any length, at creation or in an action.
        let undeclared = try WorkflowParser.parse(
            yaml: WorkflowValidationTests.base.replacingOccurrences(of: "    roles: [coordinator]", with: "    roles: [coordinator]\n    fields: [note]"),
            file: "sample.yaml").get()
        #expect(undeclared.creationFields(["note": .string(long)]).errors == [FieldError("fields.note", "must be at most 10000 characters")])
        #expect(undeclared.creationFields(["note": .string(full)]).errors.isEmpty)
        let inReview = TaskRecord(state: "review", title: "t", leadAgency: "undp")
        #expect(try await decide(undeclared, inReview, Fixtures.coordinator, "finish", inputs: ActionInputs(fields: ["note": .string(long)]))
            == .failure(.invalidFields(action: "finish", errors: [FieldError("fields.note", "must be at most 10000 characters")])))
        // External references name activities: each a name and a reference of 1 to 200 characters.
        var referenced = Fixtures.project()
        referenced.externalRefs = ["iati": "", "": "XM-1", "crs": String(repeating: "r", count: 201), "ok": "XM-DAC-41114-1"]
        #expect(referenced.validationErrors().filter { $0.field.hasPrefix("externalRefs") } == [
            FieldError("externalRefs", "names must be 1 to 200 characters"),
            FieldError("externalRefs.crs", "must be 1 to 200 characters"),
            FieldError("externalRefs.iati", "must be 1 to 200 characters"),
        ])
    }

    /// What a task offers its reader is what acting would accept: an action a
    /// guard refuses now is offered apart, with the guard's reason, unless the
    /// guard reads a field the action itself sets.
    @Test func theActionsOfferedAreThoseNoGuardRefusesNow() async throws {
        let workflow = try Fixtures.workflow("pbf-project")
        var held = Fixtures.project()
        held.state = "deconfliction"
        #expect(Engine.options(workflow, task: held, actor: Fixtures.coordinator, context: Fixtures.context(openOverlaps: 1)) == [
            ActionOption(name: "deconflicted", refusedBy: [GuardFailure("no_open_overlaps", "the task has 1 open overlap to resolve first")]),
            ActionOption(name: "reject", refusedBy: []),
        ])
        #expect(Engine.availableActions(workflow, task: held, actor: Fixtures.coordinator, context: Fixtures.context()) == ["deconflicted", "reject"])
        // A refusal for the state lists only what would be accepted.
        #expect(
            try await decide(workflow, held, Fixtures.coordinator, "recommend", context: Fixtures.context(openOverlaps: 1))
                == .failure(.notAllowedInState(action: "recommend", state: "deconfliction", allowed: ["reject"])))
        // The first transfer's date comes with the action that records it.
        var approved = Fixtures.project()
        approved.state = "approved"
        #expect(approved.fields["firstTransferDate"] == nil)
        #expect(Engine.availableActions(workflow, task: approved, actor: Fixtures.coordinator, context: Fixtures.context()).contains("record_first_transfer"))
    }

    @Test func theIRFCapConvertsCurrencies() async throws {
        let workflow = try Fixtures.workflow("pbf-project")
        func route(_ task: TaskRecord) async throws -> Result<Decision, Refusal> {
            var reviewing = task
            reviewing.state = "technical_review"
            return try await decide(workflow, reviewing, Fixtures.coordinator, "recommend")
        }
        #expect(try await route(Fixtures.project(amount: "3000000")).get().finalState == "asg_approval")
        // EUR 2.9M is USD 3.132M at 1.08: over the ASG's cap, and an IRF has no other way.
        guard case .failure(.noAutomaticExit(let state, let reasons)) = try await route(Fixtures.project(amount: "2900000", currency: "EUR")) else {
            Issue.record("expected the IRF cap to refuse")
            return
        }
        #expect(state == "approval_routing")
        #expect(reasons.contains { $0.contains("is above 3000000 USD") })
        #expect(try await route(Fixtures.project(amount: "2700000", currency: "EUR")).get().finalState == "asg_approval")
        #expect(try await route(Fixtures.project(facility: "PRF", amount: "9000000")).get().finalState == "jsc_approval")
        guard case .failure(.noAutomaticExit(_, let unknownRate)) = try await route(Fixtures.project(amount: "100", currency: "GBP")) else {
            Issue.record("expected a missing rate to refuse")
            return
        }
        #expect(unknownRate.contains { $0.contains("no exchange rate between GBP and USD") })
    }

    /// Offers to a call come from the other agencies: neither the one that
    /// asks nor one already taking part offers to its own request.
    @Test func anOfferComesFromAnotherAgency() async throws {
        let workflow = try Fixtures.workflow("assistance-request")
        var call = TaskRecord(state: "offers_open", leadAgency: "undp", participants: [Participant(agency: "unicef", role: .implementing)])
        let inputs = ActionInputs(comment: "Two mediators")
        let wfp = Actor(principal: "lena", role: .liaison, agency: "wfp")
        #expect(try await decide(workflow, call, wfp, "offer", inputs: inputs).get().finalState == "offers_open")
        for (actor, reason) in [
            (Fixtures.liaison, "undp leads the task already; this is for the other agencies"),
            (Fixtures.otherLiaison, "unicef takes part in the task already; this is for the other agencies"),
        ] {
            #expect(try await decide(workflow, call, actor, "offer", inputs: inputs)
                == .failure(.guardsFailed(action: "offer", failures: [GuardFailure("actor_outside_task_agencies", reason)])))
        }
        call.participants = []
        #expect(try await decide(workflow, call, Fixtures.otherLiaison, "offer", inputs: inputs).get().finalState == "offers_open")
    }

    @Test func anExtensionNeedsNinetyDaysBeforeTheEnd() async throws {
        let workflow = try Fixtures.workflow("pbf-project")
        var implementing = Fixtures.project(end: "2027-03-01")
        implementing.state = "implementing"
        let inputs = ActionInputs(comment: "elections moved", fields: ["requestedEndDate": .string("2027-09-01")])
        #expect(try await decide(workflow, implementing, Fixtures.liaison, "request_extension", inputs: inputs, context: Fixtures.context("2026-12-01")).get().finalState == "extension_requested")
        #expect(try await decide(workflow, implementing, Fixtures.liaison, "request_extension", inputs: inputs, context: Fixtures.context("2027-01-15"))
            == .failure(.guardsFailed(action: "request_extension", failures: [
                GuardFailure("days_before_end(90)", "only 45 days remain before the period ends on 2027-03-01; at least 90 are needed"),
            ])))
        #expect(try await decide(workflow, implementing, Fixtures.liaison, "request_extension", inputs: inputs, context: Fixtures.context("2027-02-28"))
            == .failure(.guardsFailed(action: "request_extension", failures: [
                GuardFailure("days_before_end(90)", "only 1 day remains before the period ends on 2027-03-01; at least 90 are needed"),
            ])))
        #expect(try await decide(workflow, implementing, Fixtures.liaison, "request_extension", inputs: inputs, context: Fixtures.context("2027-04-01"))
            == .failure(.guardsFailed(action: "request_extension", failures: [
                GuardFailure("days_before_end(90)", "the period ended on 2027-03-01; this is asked at least 90 days before its end"),
            ])))
        // Only the lead agency asks.
        guard case .failure(.guardsFailed(_, let failures)) = try await decide(
            workflow, implementing, Fixtures.otherLiaison, "request_extension", inputs: inputs, context: Fixtures.context("2026-12-01"))
        else {
            Issue.record("expected actor_is_lead_agency to refuse")
            return
        }
        #expect(failures.map(\.name) == ["actor_is_lead_agency"])
    }

    @Test func deconflictionCasesEndInTheAgreedResolution() async throws {
        let workflow = try Fixtures.workflow("deconfliction-case")
        var task = TaskRecord(
            state: "agreement_pending", leadAgency: "pbso",
            participants: [Participant(agency: "undp", role: .accountable), Participant(agency: "unicef", role: .accountable)])
        task.fields["resolution"] = .string("coordinate")
        // UNDP's agreement alone leaves the proposal waiting for UNICEF's.
        #expect(try await decide(workflow, task, Fixtures.liaison, "agree").get().finalState == "agreement_pending")
        var unicefAgreed = Fixtures.context()
        unicefAgreed.agreedAgencies = ["unicef"]
        #expect(try await decide(workflow, task, Fixtures.liaison, "agree", context: unicefAgreed).get().finalState == "coordinate")
        task.fields["resolution"] = .string("absorb")
        guard case .failure(.noAutomaticExit("agreed", _)) = try await decide(workflow, task, Fixtures.liaison, "agree", context: unicefAgreed) else {
            Issue.record("an unknown resolution must not end the case")
            return
        }
    }

    @Test func anApprovedExtensionMovesThePeriodsEnd() async throws {
        let workflow = try Fixtures.workflow("pbf-project")
        var requested = Fixtures.project(end: "2027-03-01")
        requested.state = "extension_requested"
        requested.fields["requestedEndDate"] = .string("2027-09-01")
        let approved = try await decide(workflow, requested, Fixtures.approver, "approve_extension").get()
        #expect(approved.task.period?.end.iso == "2027-09-01")
        #expect(approved.task.period?.start == requested.period?.start)
        // Declining leaves the period as it was.
        let declined = try await decide(workflow, requested, Fixtures.approver, "decline_extension", inputs: ActionInputs(comment: "no")).get()
        #expect(declined.task.period == requested.period)
        // A date that is not one, or one before the start, is refused with the reason.
        for (value, reason) in [
            ("soon", "requestedEndDate holds no date (YYYY-MM-DD)"),
            ("2020-01-01", "requestedEndDate 2020-01-01 is before the period starts on \(requested.period!.start.iso)"),
        ] {
            var task = requested
            task.fields["requestedEndDate"] = .string(value)
            guard case .failure(.guardsFailed("approve_extension", let failures)) = try await decide(
                workflow, task, Fixtures.approver, "approve_extension"), failures.map(\.name) == ["period_end(requestedEndDate)"], let given = failures.first?.reason
            else {
                Issue.record("expected \(value) to be refused")
                continue
            }
            #expect(given == reason)
        }
    }

    @Test func graphsAreDOT() throws {
        let dot = try Fixtures.workflow("pbf-project").dot
        #expect(dot.hasPrefix("digraph \"pbf-project v5\" {"))
        #expect(dot.contains("\"screening\" [style=\"rounded,dashed\"];"))
        #expect(dot.contains("\"financially_closed\" [peripheries=2];"))
        #expect(dot.contains("\"technical_review\" -> \"revision_requested\" [label=\"request_revision\\n[coordinator]\"];"))
    }
}

extension Result where Success == Decision, Failure == Refusal {
    static func == (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.failure(let a), .failure(let b)): a == b
        case (.success(let a), .success(let b)): a.transitions == b.transitions
        default: false
        }
    }
}

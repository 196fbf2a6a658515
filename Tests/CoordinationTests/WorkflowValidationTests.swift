import Coordination
import Foundation
import Testing

@Suite struct WorkflowValidationTests {
    @Test func everyShippedWorkflowValidates() throws {
        let workflows = try Fixtures.shipped()
        #expect(Set(workflows.map(\.name)) == ["pbf-project", "assistance-request", "deconfliction-case", "progress-report"])
    }

    /// A valid base to break one rule at a time.
    static let base = """
        name: sample
        version: 1
        states:
          draft:
            initial: true
          review:
            queue: pbso-review
            sla: 5d
          done:
            terminal: true
        actions:
          submit:
            from: draft
            to: review
            roles: [liaison]
          finish:
            from: review
            to: done
            roles: [coordinator]
        """

    @Test func aStateCanBeOpenToAllAgenciesAndAnActionCanBringOneIn() throws {
        let yaml = Self.base
            .replacingOccurrences(of: "    sla: 5d", with: "    sla: 5d\n    open_to_all_agencies: true")
            .replacingOccurrences(of: "    roles: [coordinator]", with: "    roles: [coordinator]\n    fields: [partner]\n    joins: partner")
        let workflow = try WorkflowParser.parse(yaml: yaml, file: "sample.yaml").get()
        #expect(workflow.state("review")?.openToAllAgencies == true)
        #expect(workflow.state("draft")?.openToAllAgencies == false)
        #expect(workflow.action("finish")?.joinsFrom == "partner")
        #expect(workflow.action("submit")?.joinsFrom == nil)
    }

    @Test func dueDatesComeFromTheSLAOrADateFieldAndRemindersComeBeforeThem() throws {
        let yaml = Self.base.replacingOccurrences(of: "    sla: 5d", with: "    sla: 5d\n    due: reportDue\n    remind: [1d, 3d]\n    escalate: pbso-escalations")
        let review = try #require(try WorkflowParser.parse(yaml: yaml, file: "sample.yaml").get().state("review"))
        #expect(review.remind == [.seconds(3 * 86_400), .seconds(86_400)])  // longest first
        #expect(review.escalate == "pbso-escalations")
        let entered = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(review.dueAt(entered: entered, fields: [:]) == entered.addingTimeInterval(5 * 86_400))
        let due = try #require(review.dueAt(entered: entered, fields: ["reportDue": .string("2027-03-31")]))
        #expect(due == ISO8601DateFormatter().date(from: "2027-04-01T00:00:00Z"))
        #expect(review.nextReminder(dueAt: due, after: due.addingTimeInterval(-10 * 86_400)) == due.addingTimeInterval(-3 * 86_400))
        #expect(review.nextReminder(dueAt: due, after: due.addingTimeInterval(-3 * 86_400)) == due.addingTimeInterval(-86_400))
        #expect(review.nextReminder(dueAt: due, after: due.addingTimeInterval(-3600)) == nil)
    }

    @Test func routingRefinesQueuesByCountrySectorAndPriority() throws {
        let routing = try Routing.load(yaml: """
            routes:
              - from: pbso-review
                priority: urgent
                to: pbso-review-urgent
              - from: pbso-review
                country: BDI
                to: pbso-review-BDI
              - from: pbso-review
                sector: "152"
                to: pbso-review-security
            """, file: "routing.yaml")
        var task = TaskRecord(state: "", title: "t", description: "", leadAgency: "undp", country: "BDI", sectors: ["15220"])
        #expect(routing.route("pbso-review", for: task) == "pbso-review-BDI")
        task.priority = .urgent
        #expect(routing.route("pbso-review", for: task) == "pbso-review-urgent")  // the first rule that matches
        task.priority = .normal
        task.country = "SLE"
        #expect(routing.route("pbso-review", for: task) == "pbso-review-security")  // 15220 is in category 152
        task.sectors = ["11220"]
        #expect(routing.route("pbso-review", for: task) == "pbso-review")
        #expect(routing.route("agency-revisions", for: task) == "agency-revisions")
        #expect(routing.route(nil, for: task) == nil)

        for (yaml, reason) in [
            ("routes:\n  - from: a\n    to: b\n", "needs a country, sector or priority"),
            ("routes:\n  - from: a\n    to: b\n    country: Burundi\n", "must be an ISO 3166-1 alpha-3 code"),
            ("routes:\n  - from: a\n    to: b\n    sector: \"1522\"\n", "5-digit DAC code or a 3-digit category"),
            ("routes:\n  - from: a\n    to: b\n    priority: asap\n", "priority asap is not one of"),
            ("routes:\n  - from: a\n    to: b\n    colour: red\n", "unknown key colour"),
            ("routes:\n  - from: a\n    country: BDI\n", "needs from and to"),
            ("queues: []\n", "one key, routes"),
        ] {
            #expect(throws: ConfigError.self, "\(reason)") { try Routing.load(yaml: yaml, file: "routing.yaml") }
            do { _ = try Routing.load(yaml: yaml, file: "routing.yaml") } catch let error as ConfigError {
                #expect(error.description.contains(reason), "\(error)")
            }
        }
        // The shipped file loads.
        #expect(!(try Fixtures.routing()).rules.isEmpty)
    }

    @Test func theBaseIsValid() throws {
        let workflow = try WorkflowParser.parse(yaml: Self.base, file: "sample.yaml").get()
        #expect(workflow.states.map(\.name) == ["draft", "review", "done"])
        #expect(workflow.dot.contains("\"draft\" -> \"review\""))
    }

    /// The base with its fields declared (lines 3 to 7): states start at line 8, finish at line 21.
    static let typed = base.replacingOccurrences(
        of: "version: 1\n", with: "version: 1\nfields:\n  dueDate: date\n  kind: [a, b]\n  size: integer\n  note: text\n")

    /// Where the base says what finish does, something more.
    static func finish(_ more: String, in yaml: String = typed) -> String {
        yaml.replacingOccurrences(of: "    roles: [coordinator]", with: "    roles: [coordinator]\n" + more)
    }

    @Test func declaredFieldsSayWhatEachHoldsAndWhatANewTaskCarries() throws {
        let yaml = Self.finish("    fields: [size, kind]").replacingOccurrences(of: "    initial: true", with: "    initial: true\n    fields: [note, dueDate]")
        let workflow = try WorkflowParser.parse(yaml: yaml, file: "sample.yaml").get()
        #expect(workflow.fields == ["dueDate": .date, "kind": .oneOf(["a", "b"]), "size": .integer, "note": .text])
        #expect(workflow.initialState.fields == ["note", "dueDate"])

        // A new task carries the initial state's fields, each of its kind, and no other.
        let accepted = workflow.creationFields(["note": .number(2027), "dueDate": .string("2027-06-15")])
        #expect(accepted.errors == [])
        #expect(accepted.fields == ["note": .string("2027"), "dueDate": .string("2027-06-15")])
        let refused = workflow.creationFields(["dueDate": .string("June"), "size": .number(3), "colour": .string("red")])
        #expect(refused.errors == [
            FieldError("fields.colour", "sample has no field colour; its fields: dueDate, kind, note, size"),
            FieldError("fields.dueDate", "must be a date, YYYY-MM-DD, not June"),
            FieldError("fields.size", "a new task does not carry size; finish sets it (a new task carries: note, dueDate)"),
        ])

        // An action's fields are checked as it sets them; every bad one is named.
        let task = TaskRecord(state: "review", title: "t", leadAgency: "undp")
        let actor = Actor(principal: "c", role: .coordinator, agency: "pbso")
        let context = Fixtures.context()
        guard case .failure(let refusal) = Engine.step(
            workflow, task: task, actor: actor, action: "finish", inputs: ActionInputs(fields: ["size": .number(2.5), "kind": .string("c")]), context: context)
        else {
            Issue.record("finish took a size of 2.5 and a kind c")
            return
        }
        #expect(refusal == .invalidFields(action: "finish", errors: [
            FieldError("fields.kind", "must be one of a, b, not c"), FieldError("fields.size", "must be a whole number, not 2.5"),
        ]))
        let good = try Engine.step(
            workflow, task: task, actor: actor, action: "finish", inputs: ActionInputs(fields: ["size": .string("3"), "kind": .string("b")]), context: context).get()
        #expect(good.1.fields == ["size": .number(3), "kind": .string("b")])

        // A definition that declares no fields takes any, as before.
        let open = try WorkflowParser.parse(yaml: Self.finish("    fields: [size]", in: Self.base), file: "sample.yaml").get()
        #expect(open.fields == nil)
        #expect(open.creationFields(["colour": .string("red")]).errors == [])
    }

    /// One broken definition per rule: the reason and the line it is reported at.
    static let broken: [(rule: String, yaml: String, line: Int, reason: String)] = [
        ("an action's field undeclared", finish("    fields: [colour]"), 21, "action finish names field colour, which the workflow's fields do not declare"),
        ("a guard's field undeclared", finish("    guards: [{field_present: colour}]"), 21,
            "guard field_present(colour) of action finish names field colour, which the workflow's fields do not declare"),
        ("a new task's field undeclared", typed.replacingOccurrences(of: "    initial: true", with: "    initial: true\n    fields: [colour]"), 9,
            "state draft names field colour, which the workflow's fields do not declare"),
        ("due from a field that holds no date", typed.replacingOccurrences(of: "    sla: 5d", with: "    sla: 5d\n    due: note"), 11,
            "due of state review needs field note to be a date, YYYY-MM-DD, not text"),
        ("a range over text", finish("    guards: [{field_in_range: {field: note, min: 0, max: 3}}]"), 21,
            "needs field note to be a whole number or a number, not text"),
        ("a comparison with a value never held", finish("    guards: [{field_equals: {field: kind, value: c}}]"), 21,
            "compares with a value field kind never holds: it must be one of a, b, not c"),
        ("an unknown kind of field", typed.replacingOccurrences(of: "size: integer", with: "size: big"), 6,
            "field size holds text, integer, number, boolean, date, or one of a list of choices, not big"),
        ("choices repeated", typed.replacingOccurrences(of: "kind: [a, b]", with: "kind: [a, a]"), 5, "field kind lists its choices as distinct texts"),
        ("reports scheduled from a field that holds no date", typed.replacingOccurrences(of: "    sla: 5d", with: "    sla: 5d\n    schedule_reports: note"), 11,
            "schedule_reports of state review needs field note to be a date, YYYY-MM-DD, not text"),
        ("reports scheduled as a task ends", typed.replacingOccurrences(of: "    terminal: true", with: "    terminal: true\n    schedule_reports: dueDate"), 16,
            "terminal state done cannot schedule reports"),
        ("waiting for an agreement nobody gives", finish("    guards: [all_agencies_agreed]", in: base), 16,
            "action finish reads agreements, but no action is an agreement (agreement: true)"),
        ("agreement not a boolean", finish("    agreement: maybe", in: base), 20, "agreement of action finish is true or false"),
        ("closes_reports not a boolean", base.replacingOccurrences(of: "    sla: 5d", with: "    sla: 5d\n    closes_reports: soon"), 9,
            "closes_reports of state review is true or false"),
        ("a new task's fields in a workflow that declares none", base.replacingOccurrences(of: "    initial: true", with: "    initial: true\n    fields: [note]"), 4,
            "state draft lists the fields a new task carries, but the workflow declares none"),
        ("fields on a state a task does not start in", typed.replacingOccurrences(of: "    sla: 5d", with: "    sla: 5d\n    fields: [note]"), 14,
            "state review lists fields, but only the initial state does"),
        ("yaml syntax", base.replacingOccurrences(of: "roles: [liaison]", with: "roles: [liaison"), 16, "not valid YAML"),
        ("unknown state", base.replacingOccurrences(of: "to: done", with: "to: finished"), 16, "action finish names unknown state finished"),
        ("action from an unknown state", base + "\n  orphan:\n    from: limbo\n    to: done\n    roles: [coordinator]\n", 20,
            "action orphan names unknown state limbo"),
        ("non-terminal dead end", base.replacingOccurrences(of: "  done:\n    terminal: true\n", with: "  done:\n    terminal: true\n  stuck:\n    queue: x\n")
            .replacingOccurrences(of: "to: done", with: "to: stuck"), 11, "state stuck is not terminal but has no exit"),
        ("terminal with exit", base + "\n  reopen:\n    from: done\n    to: review\n    roles: [coordinator]", 20, "terminal state done has an exit: action reopen"),
        ("automatic without exit", base.replacingOccurrences(of: "  done:\n    terminal: true\n", with: "  done:\n    terminal: true\n  limbo:\n    automatic: true\n")
            + "\n  drop:\n    from: review\n    to: limbo\n    roles: [coordinator]", 11, "automatic state limbo has no exit"),
        ("duplicate action", base + "\n  submit:\n    from: review\n    to: done\n    roles: [liaison]", 20, "duplicate key submit (first at line 12)"),
        ("duplicate state", base.replacingOccurrences(of: "  done:\n    terminal: true\n", with: "  done:\n    terminal: true\n  review:\n    queue: again\n"), 11, "duplicate key review (first at line 6)"),
        ("ambiguous automatic exits", """
            name: sample
            version: 1
            states:
              draft:
                initial: true
              routing:
                automatic: true
              a:
                terminal: true
              b:
                terminal: true
            actions:
              submit:
                from: draft
                to: routing
                roles: [liaison]
              to_a:
                from: routing
                to: a
                roles: [system]
                guards: [open_overlaps]
              to_b:
                from: routing
                to: b
                roles: [system]
                guards: [open_overlaps]
            """, 22, "actions to_a and to_b leave automatic state routing under the same guards"),
        ("unknown guard", base.replacingOccurrences(of: "    roles: [coordinator]", with: "    roles: [coordinator]\n    guards: [has_money]"), 20, "unknown guard has_money"),
        ("unknown role", base.replacingOccurrences(of: "roles: [coordinator]", with: "roles: [coordinator, janitor]"), 19, "unknown role janitor"),
        ("no initial state", base.replacingOccurrences(of: "    initial: true\n", with: ""), 4, "no initial state"),
        ("unknown key", base.replacingOccurrences(of: "    sla: 5d", with: "    sla: 5d\n    colour: blue"), 9, "unknown key colour in state review"),
        ("bad sla", base.replacingOccurrences(of: "sla: 5d", with: "sla: five days"), 8, "sla of state review must be"),
        ("no terminal reachable", base.replacingOccurrences(of: "    to: done\n", with: "    to: review\n"), 0, ""),
        ("automatic exit taken by a person", """
            name: sample
            version: 1
            states:
              draft:
                initial: true
              routing:
                automatic: true
              done:
                terminal: true
            actions:
              submit:
                from: draft
                to: routing
                roles: [liaison]
              route:
                from: routing
                to: done
                roles: [coordinator]
            """, 15, "only the system takes it"),
        ("escalation without an sla", base.replacingOccurrences(of: "  done:\n    terminal: true\n", with: "  done:\n    terminal: true\n  hold:\n    queue: x\n    escalate: pbso-escalations\n")
            + "\n  park:\n    from: review\n    to: hold\n    roles: [coordinator]\n  unpark:\n    from: hold\n    to: done\n    roles: [coordinator]", 13,
            "state hold escalates on breach but has no sla or due date to breach"),
        ("bad escalation queue", base.replacingOccurrences(of: "    sla: 5d", with: "    sla: 5d\n    escalate: the boss"), 9, "escalate of state review must be a queue name"),
        ("bad reminders", base.replacingOccurrences(of: "    sla: 5d", with: "    sla: 5d\n    remind: [2d, soon]"), 9, "remind of state review must be a list of durations"),
        ("a due date on a terminal state", base.replacingOccurrences(of: "  done:\n    terminal: true\n", with: "  done:\n    terminal: true\n    due: dueDate\n"), 11,
            "terminal state done cannot have a due date"),
        ("bad queue name", base.replacingOccurrences(of: "queue: pbso-review", with: "queue: pbso review"), 7, "queue of state review must be a queue name"),
        ("bad guard arguments", base.replacingOccurrences(of: "    roles: [coordinator]", with: "    roles: [coordinator]\n    guards: [{days_before_end: soon}]"), 20, "guard days_before_end of action finish takes a number of days"),
        ("bad period_end", base.replacingOccurrences(of: "    roles: [coordinator]", with: "    roles: [coordinator]\n    period_end: [a, b]"), 20,
            "period_end of action finish names the field that holds the new end date"),
        ("open to all agencies where no task waits", base.replacingOccurrences(of: "    terminal: true", with: "    terminal: true\n    open_to_all_agencies: true"), 11,
            "terminal state done cannot be open to all agencies: no task waits in it"),
        ("open to all agencies not a boolean", base.replacingOccurrences(of: "    sla: 5d", with: "    sla: 5d\n    open_to_all_agencies: everyone"), 9,
            "open_to_all_agencies of state review is true or false"),
        ("joins a field the action does not set", base.replacingOccurrences(of: "    roles: [coordinator]", with: "    roles: [coordinator]\n    joins: partner"), 20,
            "joins of action finish names one of its fields, the one that holds the agency that joins"),
    ]

    @Test(arguments: broken.indices)
    func eachBrokenDefinitionIsRejectedWithItsReasonAndLine(_ index: Int) throws {
        let (rule, yaml, line, reason) = Self.broken[index]
        guard case .failure(let problems) = WorkflowParser.parse(yaml: yaml, file: "broken.yaml") else {
            Issue.record("\(rule): accepted a broken definition")
            return
        }
        if reason.isEmpty { return }  // checked by the dedicated tests below
        let match = problems.problems.first { $0.message.contains(reason) }
        #expect(match != nil, "\(rule): \(problems)")
        #expect(match?.line == line, "\(rule): \(problems)")
        #expect(match?.file == "broken.yaml")
        #expect(match?.description.hasPrefix("broken.yaml:\(line): ") == true)
    }

    @Test func unreachableStatesAreNamedAtTheirLine() {
        let yaml = Self.base.replacingOccurrences(of: "  done:\n    terminal: true\n", with: "  done:\n    terminal: true\n  island:\n    queue: nowhere\n")
            + "\n  leave_island:\n    from: island\n    to: done\n    roles: [coordinator]"
        guard case .failure(let problems) = WorkflowParser.parse(yaml: yaml, file: "f.yaml") else {
            Issue.record("accepted")
            return
        }
        #expect(problems.problems.map(\.description) == ["f.yaml:11: state island cannot be reached from the initial state draft"])
    }

    @Test func statesThatCannotFinishAreNamed() {
        let yaml = Self.base.replacingOccurrences(of: "    to: done\n", with: "    to: review\n")
        guard case .failure(let problems) = WorkflowParser.parse(yaml: yaml, file: "f.yaml") else {
            Issue.record("accepted")
            return
        }
        let messages = problems.problems.map(\.description)
        #expect(messages.contains("f.yaml:3: no terminal state can be reached from state draft") || messages.contains { $0.contains("state done cannot be reached") })
    }

    @Test func everyProblemIsReportedNotJustTheFirst() {
        let yaml = Self.base
            .replacingOccurrences(of: "roles: [coordinator]", with: "roles: [janitor]\n    guards: [magic]")
        guard case .failure(let problems) = WorkflowParser.parse(yaml: yaml, file: "f.yaml") else {
            Issue.record("accepted")
            return
        }
        #expect(problems.problems.count >= 2)
        #expect(problems.problems.contains { $0.message.contains("unknown role janitor") })
        #expect(problems.problems.contains { $0.message.contains("unknown guard magic") })
    }
}

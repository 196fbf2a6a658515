import Coordination
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

    @Test func theBaseIsValid() throws {
        let workflow = try WorkflowParser.parse(yaml: Self.base, file: "sample.yaml").get()
        #expect(workflow.states.map(\.name) == ["draft", "review", "done"])
        #expect(workflow.dot.contains("\"draft\" -> \"review\""))
    }

    /// One broken definition per rule: the reason and the line it is reported at.
    static let broken: [(rule: String, yaml: String, line: Int, reason: String)] = [
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
        ("bad guard arguments", base.replacingOccurrences(of: "    roles: [coordinator]", with: "    roles: [coordinator]\n    guards: [{days_before_end: soon}]"), 20, "guard days_before_end of action finish takes a number of days"),
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

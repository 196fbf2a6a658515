import Foundation
import Postgres
import Subprocess
import Testing
import TestSupport

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// The client side of `pbc`, as a liaison or coordinator uses it from a terminal.
@Suite struct ClientCommandTests {
    struct Outcome {
        var status: TerminationStatus
        var output: String
        var error: String
    }

    func pbc(_ arguments: [String], server: ServerHarness, as principal: String?, extraEnvironment: [String: String?] = [:]) async throws -> Outcome {
        let home = Scratch.directory.appendingPathComponent("pbc-home-\(UUID().uuidString)")
        var environment: [Environment.Key: String?] = [
            "PBC_SERVER": "127.0.0.1:\(server.port)", "PBC_TOKEN": principal.map { server.tokens[$0]! }, "HOME": home.path,
            "XDG_CONFIG_HOME": nil,
        ]
        for (key, value) in extraEnvironment { environment[Environment.Key(stringLiteral: key)] = value }
        let result = try await Subprocess.run(
            .path(FilePath(PBCBinary.path)), arguments: Arguments(arguments), environment: .inherit.updating(environment),
            output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        return Outcome(status: result.terminationStatus, output: result.standardOutput, error: result.standardError)
    }

    @Test func aLiaisonAndACoordinatorWorkFromTheCommandLine() async throws {
        let server = try await ServerHarness.start("cli_client")
        let submit = try await pbc(
            ["submit", "--title", "Community radio for dialogue", "--lead-agency", "undp", "--participant", "unesco:implementing",
             "--country", "BDI", "--location", "Bujumbura", "--sector", "15153", "--start", "2027-01-01", "--end", "2027-12-31",
             "--budget", "400000.00", "--field", "genderMarker=2", "--field", "facility=IRF", "--idempotency-key", "radio-1"],
            server: server, as: "undp-liaison")
        #expect(submit.status == .exited(0), "\(submit.error)")
        #expect(submit.output.contains("state      technical_review (version 2)"))
        #expect(submit.output.contains("with       unesco (implementing)"))
        // And what the submitter may do next, as `pbc show` says it.
        #expect(submit.output.contains("you may    withdraw\n"), "\(submit.output)")
        let ref = try #require(submit.output.split(separator: " ").first.map(String.init))
        #expect(ref.hasPrefix("PBC-"))
        let again = try await pbc(
            ["submit", "--title", "Community radio for dialogue", "--lead-agency", "undp", "--participant", "unesco:implementing",
             "--country", "BDI", "--location", "Bujumbura", "--sector", "15153", "--start", "2027-01-01", "--end", "2027-12-31",
             "--budget", "400000.00", "--field", "genderMarker=2", "--field", "facility=IRF", "--idempotency-key", "radio-1"],
            server: server, as: "undp-liaison")
        #expect(again.output.contains("already submitted with this key"))
        // Without the workflow's fields it is refused, and nothing is left behind to act on.
        let refused = try await pbc(
            ["submit", "--title", "Radio without fields", "--lead-agency", "undp", "--country", "BDI", "--location", "Bujumbura",
             "--sector", "15153", "--start", "2027-01-01", "--end", "2027-12-31", "--budget", "400000.00"],
            server: server, as: "undp-liaison")
        #expect(refused.status == .exited(6))
        #expect(refused.error.hasPrefix("pbc: error: submit refused by "), "\(refused.error)")
        #expect(refused.error.hasSuffix("; nothing was created: submit again with what it asks for (workflow fields go with --field NAME=VALUE)\n"))
        #expect(!refused.error.contains("allowed:"))

        let tasks = try await pbc(["tasks", "--state", "technical_review"], server: server, as: "coordinator")
        #expect(tasks.output.split(separator: "\n").first?.split(separator: " ") == ["REF", "STATE", "QUEUE", "DUE", "LEAD", "COUNTRY", "TITLE"])
        // When it is due in review: 15 days from now, to the minute.
        let due = try #require(tasks.output.split(separator: "\n").first { $0.hasPrefix(ref) }?.split(separator: " ")[3])
        #expect(due.count == 16 && due.dropFirst(10).first == "T", "\(tasks.output)")
        #expect(tasks.output.contains(ref))
        // An action open to the caller but refused for what came with it says how to give it; one not open does not.
        let bare = try await pbc(["act", ref, "request_revision"], server: server, as: "coordinator")
        #expect(bare.status == .exited(6))
        #expect(
            bare.error == "pbc: error: request_revision needs a comment; request_revision is open to you with what it asks for "
                + "(fields go with --field NAME=VALUE, a comment with --comment)\n", "\(bare.error)")
        let early = try await pbc(["act", ref, "approve"], server: server, as: "coordinator")
        #expect(early.status == .exited(6))
        #expect(!early.error.contains("open to you"), "\(early.error)")
        let acted = try await pbc(["act", ref, "request_revision", "--comment", "Add the listening survey"], server: server, as: "coordinator")
        #expect(acted.status == .exited(0), "\(acted.error)")
        #expect(acted.output == "\(ref) is now revision_requested (version 3), in queue agency-revisions\n")
        let shown = try await pbc(["show", ref, "--history"], server: server, as: "undp-liaison")
        #expect(shown.output.contains("you may    resubmit, withdraw"))
        #expect(shown.output.contains("request_revision technical_review → revision_requested “Add the listening survey”"), "\(shown.output)")
        let json = try await pbc(["tasks", "--json"], server: server, as: "undp-liaison")
        let parsed = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        #expect((parsed?["items"] as? [Any])?.count == 1)
        let comment = try await pbc(["comment", ref, "Survey attached"], server: server, as: "undp-liaison")
        #expect(comment.output.hasPrefix("comment "))
        // A liaison's own agency leads what they submit unless they name another; a coordinator names it.
        // Codes as people type them: a country in lower case, an agency in upper case.
        let chiefs = ["submit", "--title", "Mediation training for chiefs", "--country", "sl", "--participant", "UNDP:implementing", "--location", "Kailahun",
             "--sector", "15220", "--start", "2027-01-01", "--end", "2027-12-31", "--budget", "250000.00", "--currency", "EUR",
             "--field", "genderMarker=1", "--field", "facility=IRF"]
        let unled = try await pbc(chiefs + ["--idempotency-key", "chiefs-0"], server: server, as: "coordinator")
        #expect(unled.status != .exited(0))
        #expect(unled.error.contains("missing parameter leadAgency: name the agency that leads"), "\(unled.error)")
        let euros = try await pbc(chiefs + ["--idempotency-key", "chiefs-1"], server: server, as: "unicef-liaison")
        #expect(euros.status == .exited(0), "\(euros.error)")
        #expect(euros.output.contains("lead       unicef\n"), "\(euros.output)")
        #expect(euros.output.contains("with       undp (implementing)\ncountry    SLE\n"), "\(euros.output)")
        let theirs = try await pbc(["tasks", "--agency", "UNICEF"], server: server, as: "coordinator")
        #expect(theirs.output.contains("Mediation training for chiefs"), "\(theirs.output) \(theirs.error)")
        let report = try await pbc(["report", "--country", "BI"], server: server, as: "coordinator")
        #expect(report.output.split(separator: "\n").first?.hasPrefix("COUNTRY") == true)
        #expect(report.output.contains("400000.00 USD"))
        #expect(report.output.split(separator: "\n").first?.hasSuffix("NAME") == true)
        #expect(report.output.contains("United Nations Development Programme"), "\(report.output)")
        #expect(try await pbc(["report", "--country", "TD"], server: server, as: "coordinator").output == "nothing to report: no program or activity in TD matches\n")
        let csv = try await pbc(["report", "--csv"], server: server, as: "coordinator")
        // A column of plain amounts per currency, for spreadsheets.
        #expect(csv.output == "country,sector,agency,entries,EUR,USD,agency_name\nBDI,15153,undp,1,,400000.00,United Nations Development Programme\n"
            + "SLE,15220,unicef,1,250000.00,,United Nations Children's Fund\n")
        await server.stop()
    }

    /// A report is submitted as a project is, naming the project, once the
    /// project is funded; the project's page then lists what is due on it.
    @Test func aFundedProjectListsItsReports() async throws {
        let server = try await ServerHarness.start("cli_reports")
        let submit = try await pbc(
            ["submit", "--title", "Community radio for dialogue", "--lead-agency", "undp", "--country", "BDI", "--location", "Bujumbura",
             "--sector", "15153", "--start", "2027-01-01", "--end", "2027-12-31", "--budget", "400000.00", "--field", "genderMarker=2",
             "--field", "facility=IRF"],
            server: server, as: "undp-liaison")
        let ref = try #require(submit.output.split(separator: " ").first.map(String.init))
        let report = [
            "submit", "--workflow", "progress-report", "--title", "Semi-annual report: community radio", "--lead-agency", "undp",
            "--field", "project=\(ref)", "--field", "dueDate=2027-06-15", "--field", "reportType=semi-annual",
        ]
        let early = try await pbc(report, server: server, as: "undp-liaison")
        #expect(early.status == .exited(2))
        #expect(
            early.error == "pbc: error: validation failed: fields.project: \(ref) is not funded (it is technical_review): "
                + "reports are due once its first transfer is recorded\n", "\(early.error)")

        let recommended = try await pbc(["act", ref, "recommend"], server: server, as: "coordinator")
        #expect(recommended.status == .exited(0), "\(recommended.error)")
        let approved = try await pbc(["act", ref, "approve"], server: server, as: "approver")
        #expect(approved.status == .exited(0), "\(approved.error)")
        // A field holds what it means: a transfer's date is a date.
        let soon = try await pbc(["act", ref, "record_first_transfer", "--field", "firstTransferDate=soon"], server: server, as: "coordinator")
        #expect(soon.status == .exited(2))
        #expect(soon.error == "pbc: error: validation failed: fields.firstTransferDate: must be a date, YYYY-MM-DD, not soon\n", "\(soon.error)")
        let funded = try await pbc(["act", ref, "record_first_transfer", "--field", "firstTransferDate=2027-01-15"], server: server, as: "coordinator")
        #expect(funded.status == .exited(0), "\(funded.error)")
        let semiAnnual = try await pbc(report, server: server, as: "undp-liaison")
        #expect(semiAnnual.status == .exited(0), "\(semiAnnual.error)")
        #expect(semiAnnual.output.contains("state      scheduled (version 1)"), "\(semiAnnual.output)")
        let reportRef = try #require(semiAnnual.output.split(separator: " ").first.map(String.init))
        // Funding scheduled the reports the calendar gives for 2027; the one made by hand comes among them.
        let shown = try await pbc(["show", ref], server: server, as: "undp-liaison")
        let lines = shown.output.split(separator: "\n").map(String.init)
        let listed = try #require(lines.firstIndex { $0.hasPrefix("reports ") }, "\(shown.output)")
        #expect(lines[listed..<listed + 4].map { $0.dropFirst(11).split(separator: " ", omittingEmptySubsequences: true).dropFirst().joined(separator: " ") } == [
            "semi-annual due 2027-06-15 scheduled", "semi-annual due 2027-06-15 scheduled", "annual due 2027-11-15 scheduled", "final due 2028-03-30 scheduled",
        ], "\(shown.output)")
        #expect(shown.output.contains("\(reportRef)  semi-annual  due 2027-06-15  scheduled\n"), "\(shown.output)")
        await server.stop()
    }

    @Test func theCoordinatorsDayWorksFromTheCommandLine() async throws {
        let server = try await ServerHarness.start("cli_queues")
        var refs: [String] = []
        for (index, title) in ["Community radio for dialogue", "Land commission support"].enumerated() {
            let submitted = try await pbc(
                ["submit", "--title", title, "--lead-agency", "undp", "--country", "BDI", "--location", index == 0 ? "Bujumbura" : "Gitega",
                 "--sector", index == 0 ? "15153" : "31110", "--start", "2027-01-01", "--end", "2027-12-31", "--budget", "400000.00",
                 "--field", "genderMarker=2", "--field", "facility=IRF"],
                server: server, as: "undp-liaison")
            #expect(submitted.status == .exited(0), "\(submitted.error)")
            refs.append(try #require(submitted.output.split(separator: " ").first.map(String.init)))
        }

        let queues = try await pbc(["queue", "ls"], server: server, as: "coordinator")
        #expect(queues.status == .exited(0), "\(queues.error)")
        let lines = queues.output.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("QUEUE") == true)
        let bdi = try #require(lines.first { $0.hasPrefix("pbso-review-BDI ") })
        #expect(bdi.split(separator: " ", omittingEmptySubsequences: true).prefix(3) == ["pbso-review-BDI", "2", "0"])
        #expect(!queues.output.contains("asg-approval"))
        // `pbc queue` alone is the same list (each queue's name, depth and claimed; the oldest's age moves on).
        func counts(_ output: String) -> [[Substring]] { output.split(separator: "\n").map { Array($0.split(separator: " ").prefix(3)) } }
        #expect(counts(try await pbc(["queue"], server: server, as: "coordinator").output) == counts(queues.output))

        let claimed = try await pbc(["queue", "claim", "pbso-review-BDI"], server: server, as: "coordinator")
        #expect(claimed.status == .exited(0), "\(claimed.error)")
        #expect(claimed.output.hasPrefix(refs[0]))  // the older of two equally urgent tasks
        #expect(claimed.output.contains("held by    coordinator until "))
        #expect(claimed.output.contains("lease      "))
        // What the claimant may do with it now, as `pbc show` says it.
        #expect(claimed.output.contains("you may    request_revision, recommend, reject\n"), "\(claimed.output)")
        let shown = try await pbc(["show", refs[0]], server: server, as: "coordinator")
        #expect(shown.output.contains("held by    coordinator"))
        let acted = try await pbc(["act", refs[0], "recommend"], server: server, as: "coordinator")
        #expect(acted.output == "\(refs[0]) is now asg_approval (version 4), in queue asg-approval\n")

        // created, submit, screen, clear screening, claimed, recommend
        let watched = try await pbc(["watch", "--task", refs[0], "--since", "0", "--count", "6"], server: server, as: "coordinator")
        #expect(watched.status == .exited(0), "\(watched.error)")
        let events = watched.output.split(separator: "\n").map(String.init)
        #expect(events.count == 6)
        #expect(events[0].contains("task.created"))
        #expect(events[4].contains("task.claimed  coordinator  until 20"), "\(events[4])")
        #expect(events[5].contains("task.transitioned  coordinator  recommend technical_review → approval_routing"), "\(events[5])")
        let json = try await pbc(["watch", "--task", refs[0], "--since", "0", "--count", "1", "--json"], server: server, as: "coordinator")
        let first = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        #expect(first?["type"] as? String == "task.created")

        // Handing work around: assign, then everything of one person back to the queue.
        let assigned = try await pbc(["assign", refs[1], "--to", "coordinator"], server: server, as: "coordinator")
        #expect(assigned.output == "\(refs[1]) is held by coordinator\n")
        let moved = try await pbc(["assign", "--from", "coordinator"], server: server, as: "coordinator")
        #expect(moved.output == "moved 1: \(refs[1])\n")
        let empty = try await pbc(["queue", "claim", "pbso-funding"], server: server, as: "coordinator")
        #expect(empty.output == "nothing to claim in pbso-funding\n")
        // An empty listing says so, rather than printing a header over nothing.
        #expect(try await pbc(["queue", "tasks", "pbso-funding"], server: server, as: "coordinator").output == "nothing waits in pbso-funding\n")
        #expect(try await pbc(["tasks", "--state", "closed"], server: server, as: "coordinator").output == "no tasks match\n")
        let notMember = try await pbc(["queue", "claim", "pbso-review"], server: server, as: "approver")
        #expect(notMember.status == .exited(5))
        let overlaps = try await pbc(["overlaps"], server: server, as: "coordinator")
        #expect(overlaps.output == "no open overlaps\n")
        await server.stop()
    }

    @Test func aCoordinatorSeesAndSettlesAnOverlapFromTheCommandLine() async throws {
        let server = try await ServerHarness.start("cli_overlaps")
        func submit(_ title: String, lead: String, key: String) async throws -> (ref: String, output: String) {
            let submitted = try await pbc(
                ["submit", "--title", title, "--lead-agency", lead, "--country", "BDI", "--location", "Gitega", "--sector", "15220",
                 "--start", "2027-01-01", "--end", "2028-06-30", "--budget", "500000", "--field", "genderMarker=2", "--field", "facility=IRF",
                 "--idempotency-key", key],
                server: server, as: "\(lead)-liaison")
            #expect(submitted.status == .exited(0), "\(submitted.error)")
            return (try #require(submitted.output.split(separator: " ").first.map(String.init)), submitted.output)
        }
        // Before submitting, a liaison asks what a draft would overlap with: nothing is stored.
        let before = ["overlaps", "check", "--title", "Young women in Gitega local peace committees", "--country", "BI", "--location", "Gitega",
                      "--sector", "15220", "--start", "2027-01-01", "--end", "2028-06-30"]
        #expect(try await pbc(before, server: server, as: "unicef-liaison").output == "no overlap: a submission now would find none\n")
        let first = try await submit("Youth and women in local peace committees", lead: "undp", key: "first").ref
        let checked = try await pbc(before, server: server, as: "unicef-liaison")
        #expect(checked.output.hasPrefix("1 overlap, as a submission now would find them:\n\(first)  score 0."), "\(checked.output) \(checked.error)")
        #expect(checked.output.contains("    Youth and women in local peace committees [United Nations Development Programme, BDI, 2027-01-01 to 2028-06-30]\n"))
        #expect(checked.output.contains("    - location 1.00: shared locations: gitega\n"))
        let second = try await submit("Young women in Gitega local peace committees", lead: "unicef", key: "second").ref
        // Submitting again with the same key shows the first answer, overlap included.
        let replayed = try await submit("Young women in Gitega local peace committees", lead: "unicef", key: "second").output
        #expect(replayed.contains("overlaps   \(first)  score 0."), "\(replayed)")
        #expect(replayed.contains("  open, overlap "), "\(replayed)")

        let listed = try await pbc(["overlaps"], server: server, as: "coordinator")
        #expect(listed.status == .exited(0), "\(listed.error)")
        #expect(listed.output.contains("\(second) ~ \(first)"))
        // Scores with two decimals, as the scan prints them: 0.83, not 0.827.
        let scored = try #require(listed.output.split(separator: "\n").first)
        #expect(scored.range(of: #"  score 0\.\d\d$"#, options: .regularExpression) != nil, "\(scored)")
        // The other program as the coordinator settles it: who leads it, where, and when (to sequence the two).
        #expect(listed.output.contains("    Youth and women in local peace committees [United Nations Development Programme, BDI, 2027-01-01 to 2028-06-30]\n"), "\(listed.output)")
        #expect(listed.output.contains("- sector 1.00: same sector 15220"))
        #expect(listed.output.contains("- location 1.00: shared locations: gitega"))
        let id = try #require(listed.output.split(separator: " ").first.map(String.init))
        // A task shows each overlap with the id that resolves it.
        let shown = try await pbc(["show", second], server: server, as: "coordinator")
        #expect(shown.output.contains("overlaps   \(first)  score 0."), "\(shown.output)")
        #expect(shown.output.contains("  open, overlap \(id)\n"), "\(shown.output)")
        // It is not offered as ready for review while the overlap is open, and says why.
        #expect(shown.output.contains("you may    reject\nnot now    deconflicted: the task has 1 open overlap to resolve first\n"), "\(shown.output)")

        // Put to the agencies in a case: who agreed and who is awaited, in the answer and on the case's page.
        let opened = try await pbc(
            ["submit", "--workflow", "deconfliction-case", "--title", "Gitega committees: who does what", "--lead-agency", "pbso",
             "--field", "overlap=\(id)"],
            server: server, as: "coordinator")
        let deconfliction = try #require(opened.output.split(separator: " ").first.map(String.init), "\(opened.error)")
        _ = try await pbc(["act", deconfliction, "start_consultation"], server: server, as: "coordinator")
        let proposed = try await pbc(
            ["act", deconfliction, "propose_resolution", "--field", "resolution=coordinate", "--field", "leadAgency=undp", "--comment", "UNDP leads"],
            server: server, as: "coordinator")
        #expect(proposed.output.hasSuffix("in queue agency-agreement; waiting for undp and unicef\n"), "\(proposed.output) \(proposed.error)")
        let agreed = try await pbc(["act", deconfliction, "agree"], server: server, as: "unicef-liaison")
        #expect(agreed.output.hasSuffix("in queue agency-agreement; unicef agreed; waiting for undp\n"), "\(agreed.output) \(agreed.error)")
        let pending = try await pbc(["show", deconfliction], server: server, as: "coordinator")
        #expect(pending.output.contains("agreement  unicef agreed; waiting for undp\n"), "\(pending.output)")
        let objected = try await pbc(["act", deconfliction, "object", "--comment", "Let us decide it here"], server: server, as: "undp-liaison")
        #expect(objected.output.hasSuffix("in queue pbso-deconfliction\n"), "\(objected.output)")
        #expect(!(try await pbc(["show", deconfliction], server: server, as: "coordinator").output.contains("agreement  ")))
        _ = try await pbc(["act", deconfliction, "dismiss", "--comment", "Decided directly"], server: server, as: "coordinator")

        // What a resolution needs is checked before anything is sent.
        let noLead = try await pbc(["resolve", id, "coordinate"], server: server, as: "coordinator")
        #expect(noLead.status == .exited(64))
        #expect(noLead.error.contains("coordinate needs --lead-agency"))
        let stray = try await pbc(["resolve", id, "distinct", "--survivor", first], server: server, as: "coordinator")
        #expect(stray.status == .exited(64))
        #expect(stray.error.contains("--survivor does not go with distinct"))
        let unknown = try await pbc(["resolve", id, "ignore"], server: server, as: "coordinator")
        #expect(unknown.error.contains("unknown resolution ignore"))
        let liaison = try await pbc(["resolve", id, "distinct"], server: server, as: "unicef-liaison")
        #expect(liaison.status == .exited(5))

        let resolved = try await pbc(["resolve", id, "coordinate", "--lead-agency", "undp", "--comment", "UNDP leads"], server: server, as: "coordinator")
        #expect(resolved.status == .exited(0), "\(resolved.error)")
        // With where each program now stands: the one held in deconfliction may go on.
        #expect(
            resolved.output == "\(second) ~ \(first): coordinate\n  \(second) is deconfliction; you may deconflicted, reject\n"
                + "  \(first) is technical_review; you may request_revision, recommend, reject\n", "\(resolved.output)")
        let twice = try await pbc(["resolve", id, "distinct"], server: server, as: "coordinator")
        #expect(twice.status == .exited(4))
        #expect(try await pbc(["overlaps"], server: server, as: "coordinator").output == "no open overlaps\n")
        let cleared = try await pbc(["show", second], server: server, as: "coordinator")
        #expect(cleared.output.contains("you may    deconflicted, reject\n"), "\(cleared.output)")
        #expect(!cleared.output.contains("not now"), "\(cleared.output)")
        let history = try await pbc(["show", second, "--history"], server: server, as: "unicef-liaison")
        #expect(history.output.contains("overlap.resolved"))
        #expect(history.output.contains("  resolved: coordinate (leadAgency undp)\n"), "\(history.output)")
        let settled = try await pbc(["overlaps", "--status", "resolved"], server: server, as: "coordinator")
        #expect(settled.output.contains("score 0."), "\(settled.output)")
        #expect(settled.output.contains("  resolved: coordinate (leadAgency undp)\n"), "\(settled.output)")
        #expect(history.output.contains("overlap.detected   with \(first), score 0."), "\(history.output)")
        #expect(history.output.contains("overlap.resolved   coordinate with \(first) (undp leads) “UNDP leads”\n"), "\(history.output)")
        await server.stop()
    }

    @Test func watchResumesAfterTheLastEventItSawWhenTheServerComesBack() async throws {
        let first = try await ServerHarness.start("cli_watch")
        let port = first.port
        // Watch through the first server; pbc keeps the address and reconnects to whatever serves it next.
        let watched = Task { try await pbc(["watch", "--since", "0", "--count", "8", "--json"], server: first, as: "coordinator") }
        try await first.withSession("undp-liaison") { client in
            _ = try await client.call("task.submit", id: 1, params: ServerHarness.project(key: "watch-1", title: "Before the restart"))
        }
        try await Task.sleep(for: .seconds(1))
        await first.stop()
        let second = try await first.another { $0.port = port }
        try await second.withSession("undp-liaison") { client in
            _ = try await client.call("task.submit", id: 1, params: ServerHarness.project(key: "watch-2", title: "After the restart"))
        }
        let outcome = try await within(60, "pbc watch to finish") { try await watched.value }
        #expect(outcome.status == .exited(0), "\(outcome.error)")
        let seqs = outcome.output.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["seq"] as? Int
        }
        #expect(seqs == Array(1...8))  // every event once, in order, across the reconnect
        #expect(outcome.error.contains("reconnecting"))
        await second.stop()
    }

    /// A liaison revises a task from the command line. Moving it onto
    /// another program's ground is screened again, and the task shown after
    /// the edit names the overlap with the id that resolves it. A new budget
    /// keeps the task's currency; a stale version is a conflict; an edit that
    /// names nothing to change is a usage error.
    @Test func anEditIsScreenedAgainAndShowsWhatItFound() async throws {
        let server = try await ServerHarness.start("cli_edit")
        func submit(_ arguments: [String], as principal: String) async throws -> String {
            let outcome = try await pbc(
                ["submit", "--sector", "15220", "--start", "2027-01-01", "--end", "2027-12-31", "--field", "genderMarker=1", "--field", "facility=IRF"]
                    + arguments, server: server, as: principal)
            #expect(outcome.status == .exited(0), "\(outcome.error)")
            #expect(outcome.output.contains("state      technical_review"), "\(outcome.output)")
            return try #require(outcome.output.split(separator: " ").first.map(String.init))
        }
        let gitega = try await submit(
            ["--title", "Peace committees in Gitega", "--lead-agency", "undp", "--country", "BDI", "--location", "Gitega", "--budget", "400000"],
            as: "undp-liaison")
        let kailahun = try await submit(
            ["--title", "Land dialogue in Kailahun", "--lead-agency", "wfp", "--country", "SLE", "--location", "Kailahun", "--budget", "300000",
             "--currency", "EUR"],
            as: "wfp-liaison")

        let moved = try await pbc(
            ["edit", kailahun, "--title", "Peace committees in Gitega and Kirundo", "--country", "BDI", "--location", "Gitega", "--location",
             "Kirundo", "--budget", "350000"],
            server: server, as: "wfp-liaison")
        #expect(moved.status == .exited(0), "\(moved.error)")
        #expect(moved.output.contains("locations  Gitega, Kirundo"), "\(moved.output)")
        #expect(moved.output.contains("budget     350000.00 EUR"), "\(moved.output)")
        let overlap = try #require(moved.output.split(separator: "\n").first { $0.hasPrefix("overlaps   \(gitega)") }, "\(moved.output)")
        #expect(overlap.contains("open, overlap "))

        let stale = try await pbc(["edit", kailahun, "--title", "Again", "--expected-version", "1"], server: server, as: "wfp-liaison")
        #expect(stale.status == .exited(4))
        let nothing = try await pbc(["edit", kailahun], server: server, as: "wfp-liaison")
        #expect(nothing.status == .exited(64))
        #expect(nothing.error.contains("name at least one detail to change"))
        let halfPeriod = try await pbc(["edit", kailahun, "--start", "2027-02-01"], server: server, as: "wfp-liaison")
        #expect(halfPeriod.status == .exited(64))
        #expect(halfPeriod.error.contains("--start and --end go together"))
        let notTheirs = try await pbc(["edit", gitega, "--title", "Mine now"], server: server, as: "wfp-liaison")
        #expect(notTheirs.status == .exited(3), "\(notTheirs.error)")
        // Gitega's program came first: the pair holds back Kailahun's, whose screening found it, and Gitega's side says so.
        #expect(!overlap.contains("found by"))
        let first = try await pbc(["show", gitega], server: server, as: "coordinator")
        #expect(first.output.contains("Peace committees in Gitega\n"))
        let seen = try #require(first.output.split(separator: "\n").first { $0.hasPrefix("overlaps   \(kailahun)") }, "\(first.output)")
        #expect(seen.hasSuffix(", found by \(kailahun)"), "\(seen)")
        let listed = try await pbc(["overlaps", "--task", gitega], server: server, as: "coordinator")
        #expect(listed.output.contains(" \(gitega) ~ \(kailahun)  score ") && listed.output.contains("  found by \(kailahun)\n"), "\(listed.output)")

        // UNDP moves its program to other years: it no longer overlaps, and both sides read why.
        let later = try await pbc(["edit", gitega, "--start", "2031-01-01", "--end", "2031-12-31"], server: server, as: "undp-liaison")
        #expect(later.status == .exited(0), "\(later.error)")
        #expect(later.output.contains("overlaps   \(kailahun)  score "), "\(later.output)")
        #expect(later.output.contains("closed: \(gitega) changed: no longer an overlap\n"), "\(later.output)")
        let told = try await pbc(["show", kailahun, "--history"], server: server, as: "wfp-liaison")
        #expect(told.output.contains("overlap.closed     with \(gitega) (\(gitega) changed: no longer an overlap)"), "\(told.output)")
        // Moved back, the pair is open again.
        let back = try await pbc(["edit", gitega, "--start", "2027-01-01", "--end", "2027-12-31"], server: server, as: "undp-liaison")
        #expect(back.status == .exited(0), "\(back.error)")
        #expect(try #require(back.output.split(separator: "\n").first { $0.contains("  \(kailahun)  score ") }).contains("open, overlap "), "\(back.output)")

        // WFP withdraws its program: the overlap is closed, and both sides read why.
        let withdrawn = try await pbc(["act", kailahun, "withdraw"], server: server, as: "wfp-liaison")
        #expect(withdrawn.status == .exited(0), "\(withdrawn.error)")
        let shown = try await pbc(["show", gitega, "--history"], server: server, as: "undp-liaison")
        #expect(shown.output.contains("overlaps   \(kailahun)  score "), "\(shown.output)")
        #expect(shown.output.contains("closed: \(kailahun) was withdrawn\n"), "\(shown.output)")
        #expect(shown.output.contains("overlap.closed     with \(kailahun) (\(kailahun) was withdrawn)"), "\(shown.output)")
        let closed = try await pbc(["overlaps", "--status", "closed"], server: server, as: "coordinator")
        #expect(closed.output.contains("  closed: \(kailahun) was withdrawn\n"), "\(closed.output)")
        #expect(try await pbc(["overlaps"], server: server, as: "coordinator").output == "no open overlaps\n")
        await server.stop()
    }

    /// An overlap names an imported activity by its identifier; `pbc show` shows it as a task is shown.
    @Test func anImportedActivityIsShownByItsIdentifier() async throws {
        let server = try await ServerHarness.start("cli_activity")
        // Imported as an operator does, by `pbc import` against the server's database (a URL of the throwaway cluster).
        guard let url = try await CommandLineTests.url(of: server.target) else { return await server.stop() }
        let fixture = TestDatabase.repositoryRoot.appendingPathComponent("Tests/Fixtures/activities.csv").path
        let imported = try await pbc(["import", "csv", fixture, "--database-url", url], server: server, as: nil)
        #expect(imported.status == .exited(0), "\(imported.error)")
        let shown = try await pbc(["show", "GAC-BDI-2027-01"], server: server, as: "undp-liaison")
        #expect(shown.status == .exited(0), "\(shown.error)")
        #expect(shown.output.hasPrefix("GAC-BDI-2027-01  Women, peace and security in Gitega\n"), "\(shown.output)")
        for line in ["status     2 (implementation)", "countries  BI", "sectors    15170, 15220", "period     2027-01-01 to 2028-12-31",
                     "screened   BDI 2027-01-01 to 2028-12-31", "budget     2500000.00 CAD", "with       unwomen (implementing)"] {
            #expect(shown.output.contains(line + "\n"), "\(line) in \(shown.output)")
        }
        #expect(shown.output.contains("publisher  "))
        let json = try await pbc(["show", "EU-LBR-2026-07", "--json"], server: server, as: "coordinator")
        let parsed = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        let activity = (parsed?["activities"] as? [[String: Any]])?.first
        #expect((activity?["screened"] as? [[String: Any]])?.compactMap { $0["country"] as? String } == ["LBR", "SLE"])
        // What overlaps it: a program planned where the Gitega activity works.
        let planned = try await pbc(
            ["submit", "--title", "Women, peace and security in Gitega", "--country", "BI", "--location", "Gitega", "--sector", "15220",
             "--start", "2027-03-01", "--end", "2028-06-30", "--budget", "500000", "--field", "genderMarker=2", "--field", "facility=IRF"],
            server: server, as: "undp-liaison")
        let ref = try #require(planned.output.split(separator: " ").first.map(String.init), "\(planned.error)")
        let withIt = try await pbc(["overlaps", "--task", "GAC-BDI-2027-01"], server: server, as: "coordinator")
        #expect(withIt.output.contains("  \(ref) ~ GAC-BDI-2027-01  score "), "\(withIt.output) \(withIt.error)")
        // Its publisher by name, as the reader knows it.
        #expect(withIt.output.contains("    Women, peace and security in Gitega [Global Affairs Canada, BDI, 2027-01-01 to 2028-12-31]\n"), "\(withIt.output)")
        // A liaison sees those of the tasks they see: UNDP its own, WFP none.
        #expect(try await pbc(["overlaps", "--task", "GAC-BDI-2027-01"], server: server, as: "undp-liaison").output.contains("\(ref) ~ GAC-BDI-2027-01"))
        #expect(try await pbc(["overlaps", "--task", "GAC-BDI-2027-01"], server: server, as: "wfp-liaison").output == "no open overlaps\n")
        let missing = try await pbc(["show", "NO-SUCH-1"], server: server, as: "undp-liaison")
        #expect(missing.status == .exited(3))
        #expect(missing.error == "pbc: error: no task or imported activity NO-SUCH-1\n")
        await server.stop()
    }

    /// A coordinator designates from the offers, which the request's page lists.
    @Test func aCallForOffersListsTheOffersMade() async throws {
        let server = try await ServerHarness.start("cli_offers")
        let asked = try await pbc(
            ["submit", "--workflow", "assistance-request", "--title", "Two land mediators for Gitega", "--country", "BI", "--location", "Gitega"],
            server: server, as: "undp-liaison")
        let ref = try #require(asked.output.split(separator: " ").first.map(String.init), "\(asked.error)")
        #expect(try await pbc(["act", ref, "open_offers"], server: server, as: "coordinator").status == .exited(0))
        #expect(try await pbc(["show", ref], server: server, as: "coordinator").output.contains("replies    (none yet)\n"))
        let offered = try await pbc(["act", ref, "offer", "--comment", "Two mediators from our Gitega office"], server: server, as: "unicef-liaison")
        #expect(offered.status == .exited(0), "\(offered.error)")
        let shown = try await pbc(["show", ref], server: server, as: "coordinator").output
        let reply = try #require(shown.split(separator: "\n").first { $0.hasPrefix("replies    ") }, "\(shown)")
        #expect(reply.hasPrefix("replies    unicef offer ("), "\(reply)")
        #expect(reply.hasSuffix("): Two mediators from our Gitega office"), "\(reply)")
        await server.stop()
    }

    /// A pair sql/0022 closed because one side is no program reads so on both sides.
    @Test func aPairClosedAsNoProgramSaysSo() async throws {
        let server = try await ServerHarness.start("cli_not_program")
        var refs: [String] = []
        for (title, lead) in [("Peace committees in Gitega", "undp"), ("Semi-annual report: peace committees in Gitega", "unicef")] {
            let submitted = try await pbc(
                ["submit", "--title", title, "--lead-agency", lead, "--country", "BDI", "--location", "Gitega", "--sector", "15220",
                 "--start", "2027-01-01", "--end", "2028-06-30", "--budget", "500000", "--field", "genderMarker=2", "--field", "facility=IRF"],
                server: server, as: "\(lead)-liaison")
            refs.append(try #require(submitted.output.split(separator: " ").first.map(String.init), "\(submitted.error)"))
        }
        // The second as an earlier version left a report screened against, then the migration.
        let migration = try String(
            contentsOf: TestDatabase.migrationsDirectory.appendingPathComponent("0022_only_programs_are_screened_against.sql"), encoding: .utf8)
        let pool = PostgresPool(configuration: .init(target: server.target, maxConnections: 1))
        try await pool.withConnection { connection in
            try await connection.query("UPDATE tasks SET workflow = 'progress-report', workflow_version = (SELECT max(version) FROM workflow_definitions WHERE name = 'progress-report') WHERE ref = \(refs[1])")
            try await connection.withTransaction { try await $0.execute(unsafeSQL: migration) }
        }
        await pool.shutdown()
        let shown = try await pbc(["show", refs[0], "--history"], server: server, as: "undp-liaison")
        let why = "\(refs[1]) is no program (a report, a request or a case): no overlap"
        #expect(shown.output.contains("closed: \(why)\n"), "\(shown.output)")
        #expect(shown.output.contains("overlap.closed     with \(refs[1]) (\(why))"), "\(shown.output)")
        await server.stop()
    }

    /// A listing longer than a page says how to get the next one, and the
    /// next one follows on; a history longer than a page is shown whole
    /// (it once stopped at 1,000 events without a word).
    @Test func listingsGoOnPageByPageAndAHistoryIsWhole() async throws {
        // The comments below come faster than a client may send by default.
        let server = try await ServerHarness.start("cli_pages") { $0.rateLimitBurst = 2_000 }
        var refs: [String] = []
        try await server.withSession("undp-liaison") { client in
            for index in 0..<3 {
                let submitted = try await client.call("task.submit", params: ServerHarness.project(key: "page-\(index)", title: "Program \(index)"))
                refs.append(try #require(submitted?["result"]?["task"]?["ref"]?.string))
            }
            // 1,001 comments on the first, sent at once and answered in order.
            for index in 0...1000 {
                try await client.send(raw: #"{"jsonrpc":"2.0","id":\#(index + 10),"method":"task.comment","params":{"task":"\#(refs[0])","comment":"note \#(index)"}}"# + "\n")
            }
            for _ in 0...1000 { #expect(try await client.receive()?["result"] != nil) }
        }
        var seen: [String] = []
        var after: String?
        for page in 1...3 {
            let listed = try await pbc(["tasks", "--limit", "1"] + (after.map { ["--after", $0] } ?? []), server: server, as: "coordinator")
            #expect(listed.status == .exited(0), "\(listed.error)")
            let lines = listed.output.split(separator: "\n")
            seen += lines.dropFirst().filter { $0.hasPrefix("PBC-") }.map { String($0.prefix(15)) }
            let more = "(more: the same command with --after "
            after = lines.last.flatMap { $0.hasPrefix(more) ? String($0.dropFirst(more.count).dropLast()) : nil }
            #expect((after == nil) == (page == 3), "\(listed.output)")
        }
        #expect(seen == refs)
        // A page to go on from that no listing gave is refused, not read as a position.
        let badQueueCursor = try await pbc(["queue", "tasks", "pbso-review", "--after", "not-a-cursor"], server: server, as: "coordinator")
        #expect(badQueueCursor.status == .exited(2))
        #expect(badQueueCursor.error == "pbc: error: validation failed: cursor: not a cursor this server gave out\n", "\(badQueueCursor.error)")
        let badOverlapCursor = try await pbc(["overlaps", "--after", "not-a-cursor"], server: server, as: "coordinator")
        #expect(badOverlapCursor.status == .exited(2))
        #expect(badOverlapCursor.error.hasPrefix("pbc: error: parameter cursor must be an id"), "\(badOverlapCursor.error)")

        let shown = try await pbc(["show", refs[0], "--history", "--json"], server: server, as: "coordinator")
        let history = try #require((try JSONSerialization.jsonObject(with: Data(shown.output.utf8)) as? [String: Any])?["history"] as? [[String: Any]])
        #expect(history.first?["type"] as? String == "task.created")
        let notes = history.compactMap { $0["comment"] as? String }
        #expect(notes == (0...1000).map { "note \($0)" })
        let seqs = history.compactMap { $0["seq"] as? Int }
        #expect(seqs == seqs.sorted() && Set(seqs).count == history.count)
        await server.stop()
    }

    @Test func exitCodesTellFailuresApart() async throws {
        let server = try await ServerHarness.start("cli_exit")
        let notFound = try await pbc(["show", "PBC-1999-000009"], server: server, as: "undp-liaison")
        #expect(notFound.status == .exited(3))
        #expect(notFound.error == "pbc: error: no task or imported activity PBC-1999-000009\n")
        let noHistory = try await pbc(["show", "PBC-1999-000009", "--history"], server: server, as: "undp-liaison")
        #expect(noHistory.status == .exited(3))
        #expect(noHistory.error == "pbc: error: no task PBC-1999-000009\n")  // only tasks have a history
        let noToken = try await pbc(["tasks"], server: server, as: nil)
        #expect(noToken.status == .exited(5))
        #expect(noToken.error.contains("no token: set PBC_TOKEN"))
        let badToken = try await pbc(["tasks"], server: server, as: nil, extraEnvironment: ["PBC_TOKEN": "pbc_wrong"])
        #expect(badToken.status == .exited(5))
        let forbidden = try await pbc(["submit", "--title", "x", "--lead-agency", "unicef"], server: server, as: "undp-liaison")
        #expect(forbidden.status == .exited(5))
        let invalid = try await pbc(["submit", "--title", "x", "--lead-agency", "undp", "--sector", "12"], server: server, as: "undp-liaison")
        #expect(invalid.status == .exited(2))
        #expect(invalid.error.contains("sectors[0]"))
        let negative = try await pbc(["submit", "--title", "x", "--lead-agency", "undp", "--budget", "-5"], server: server, as: "undp-liaison")
        #expect(negative.status == .exited(2))
        #expect(negative.error.contains("budget.amount: must be a non-negative decimal"), "\(negative.error)")
        let noFile = try await pbc(["submit", "--file", "/nonexistent/task.json"], server: server, as: "undp-liaison")
        #expect(noFile.status == .exited(2))
        #expect(noFile.error == "pbc: error: cannot read /nonexistent/task.json\n")
        let usage = try await pbc(["act"], server: server, as: "undp-liaison")
        #expect(usage.status == .exited(64))
        let submitted = try await pbc(
            ["submit", "--title", "Dialogue", "--lead-agency", "undp", "--country", "BDI", "--sector", "15220", "--start", "2027-01-01",
             "--end", "2027-12-31", "--budget", "1000", "--field", "genderMarker=1", "--field", "facility=IRF"],
            server: server, as: "undp-liaison")
        let ref = try #require(submitted.output.split(separator: " ").first.map(String.init))
        let conflict = try await pbc(["act", ref, "withdraw", "--expected-version", "1"], server: server, as: "undp-liaison")
        #expect(conflict.status == .exited(4))
        let refused = try await pbc(["act", ref, "approve"], server: server, as: "undp-liaison")
        #expect(refused.status == .exited(6))
        #expect(refused.error.contains("allowed: withdraw"))
        let unreachable = try await pbc(["tasks", "--server", "127.0.0.1:1"], server: server, as: "undp-liaison")
        #expect(unreachable.status == .exited(1))
        #expect(unreachable.error.hasPrefix("pbc: error: cannot reach pbc at 127.0.0.1:1"))
        // The config file serves when the environment does not.
        let config = Scratch.directory.appendingPathComponent("pbc-xdg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: config.appendingPathComponent("pbc"), withIntermediateDirectories: true)
        try "server: 127.0.0.1:\(server.port)\ntoken: \(server.tokens["coordinator"]!)\n".write(
            to: config.appendingPathComponent("pbc/config.yaml"), atomically: true, encoding: .utf8)
        let fromFile = try await pbc(["tasks"], server: server, as: nil, extraEnvironment: ["PBC_SERVER": nil, "XDG_CONFIG_HOME": config.path])
        #expect(fromFile.status == .exited(0), "\(fromFile.error)")
        #expect(fromFile.output.contains(ref))
        await server.stop()
    }
}

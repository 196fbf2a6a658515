import Coordination
import Foundation
import Postgres
import Store
import Testing
import TestSupport

@Suite struct ReferenceAndAdminTests {
    @Test func referenceDataLoadsCompletelyAndIdempotently() async throws {
        let h = try await Harness("reference")
        func counts() async throws -> [Int] {
            let row = try await h.pool.query("""
                SELECT (SELECT count(*) FROM countries), (SELECT count(*) FROM pbc_configurations), (SELECT count(*) FROM sectors),
                       (SELECT count(*) FROM agencies)
                """).first!
            return try (0..<4).map { try row.decode(Int.self, at: $0) }
        }
        let first = try await counts()
        #expect(first[0] == 249)
        #expect(first[1] == 5)
        #expect(first[2] >= 90)
        #expect(first[3] >= 25)
        try await h.pool.withConnection { try await ReferenceData.load(from: Harness.config).sync(on: $0) }
        #expect(try await counts() == first)
        let undp = try await h.pool.query("SELECT iati_ref, kind FROM agencies WHERE id = 'undp'").first!
        #expect(try undp.decode(String.self, at: 0) == "XM-DAC-41114")
        let burundi = try await h.pool.query("SELECT c.alpha2, p.chair FROM countries c JOIN pbc_configurations p ON p.country = c.code WHERE c.code = 'BDI'").first!
        #expect(try burundi.decode(String.self, at: 0) == "BI")
        let category = try await h.pool.query("SELECT category FROM sectors WHERE code = '15220'").first!.decode(String.self, at: 0)
        #expect(category == "152")
    }

    /// Every server start and every `pbc import` syncs the reference files.
    /// With the files unchanged it must not lock the agency and country rows
    /// that submissions running meanwhile hold for their foreign keys: it
    /// used to rewrite them all, and the two deadlocked until a liaison's
    /// submission failed. A row that differs from its file is still put back.
    @Test func aSyncOfUnchangedFilesWaitsForNoSubmissionAndMendsWhatDiffers() async throws {
        let h = try await Harness("reference_no_wait")
        let reference = try ReferenceData.load(from: Harness.config)
        try await h.pool.withConnection { submission in
            // What a submission's foreign keys hold until it commits.
            try await submission.execute(unsafeSQL: """
                BEGIN;
                SELECT 1 FROM agencies WHERE id IN ('undp', 'unicef') FOR KEY SHARE;
                SELECT 1 FROM countries WHERE code = 'BDI' FOR KEY SHARE;
                SELECT 1 FROM sectors WHERE code = '15220' FOR KEY SHARE
                """)
            try await h.pool.withConnection { sync in
                // Waiting would be for ever, while the submission is open: a lock timeout ends it with an error.
                try await sync.execute(unsafeSQL: "SET lock_timeout = '5s'")
                try await reference.sync(on: sync)
                try await sync.execute(unsafeSQL: "RESET lock_timeout")
            }
            try await submission.execute(unsafeSQL: "ROLLBACK")
        }
        try await h.pool.query("UPDATE agencies SET name = 'Renamed by hand' WHERE id = 'undp'")
        try await h.pool.withConnection { try await reference.sync(on: $0) }
        let name = try await h.pool.query("SELECT name FROM agencies WHERE id = 'undp'").first!.decode(String.self, at: 0)
        #expect(name == reference.agencies.first { $0.id == "undp" }?.name)
    }

    @Test func tokensAreStoredOnlyAsHashesAndCanBeRevoked() async throws {
        let h = try await Harness("tokens")
        let (id, token) = try await h.admin.createToken(for: "amina (undp)")
        #expect(token.hasPrefix("pbc_"))
        #expect(token.count > 40)
        let stored = try await h.pool.query("SELECT encode(token_hash, 'hex') FROM api_tokens WHERE id = \(id)").first!.decode(String.self, at: 0)
        #expect(!stored.contains(token))
        #expect(try await h.pool.query("SELECT count(*) FROM api_tokens WHERE encode(token_hash, 'escape') LIKE '%pbc_%'").first!.decode(Int.self, at: 0) == 0)
        #expect(try await h.admin.authenticate(token: token)?.name == "amina (undp)")
        #expect(try await h.admin.authenticate(token: token + "x") == nil)
        try await h.admin.revokeToken(id.uuidString)
        #expect(try await h.admin.authenticate(token: token) == nil)
        await #expect(throws: StoreError.self) { try await h.admin.revokeToken(id.uuidString) }
        // Expired tokens are refused too.
        let expiry = Date().addingTimeInterval(3)
        let (_, expiring) = try await h.admin.createToken(for: "chen (pbso)", expiresAt: expiry)
        let beforeExpiry = try await h.admin.authenticate(token: expiring)
        if Date() < expiry { #expect(beforeExpiry != nil) }  // a loaded machine may have taken the three seconds already
        try await Task.sleep(until: .now + .seconds(max(0, expiry.timeIntervalSinceNow) + 0.2))
        #expect(try await h.admin.authenticate(token: expiring) == nil)
    }

    @Test func adminInputIsChecked() async throws {
        let h = try await Harness("admin")
        try await h.admin.addAgency(id: "oas-test", name: "Test agency", kind: .regionalOrganization, iatiRef: nil)
        #expect(try await h.admin.agencies().contains { $0.id == "oas-test" })
        let duplicate = await #expect(throws: StoreError.self) { try await h.admin.addAgency(id: "undp", name: "Again", kind: .unEntity, iatiRef: nil) }
        #expect(duplicate?.code == .conflict)
        let bad = await #expect(throws: StoreError.self) { try await h.admin.addAgency(id: "Bad Id", name: "", kind: .ngo, iatiRef: nil) }
        #expect(bad?.fieldErrors.map(\.field) == ["id", "name"])
        let noAgency = await #expect(throws: StoreError.self) { _ = try await h.admin.addPrincipal(name: "x", role: .liaison, agency: nil) }
        #expect(noAgency?.code == .validation)
        let unknownAgency = await #expect(throws: StoreError.self) { _ = try await h.admin.addPrincipal(name: "y", role: .liaison, agency: "nowhere") }
        #expect(unknownAgency?.fieldErrors.first?.reason == "unknown agency nowhere")
        let taken = await #expect(throws: StoreError.self) { _ = try await h.admin.addPrincipal(name: "asg", role: .approver, agency: "pbso") }
        #expect(taken?.code == .conflict)
    }
}

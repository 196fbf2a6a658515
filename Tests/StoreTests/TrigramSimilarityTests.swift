import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// Screening's text similarity comes from the trigrams each portfolio entry
/// keeps (sql/0021), no longer from pg_trgm's similarity() of the two texts.
/// It must be the same number to the last bit, or a candidate would score,
/// and an overlap be found, differently than the scoring documents.
@Suite struct TrigramSimilarityTests {
    /// Texts in several scripts, cases and punctuations. In a database whose
    /// locale knows letters beyond ASCII, pg_trgm shows their trigrams as
    /// hex codes, which trigram_set reads differently from ASCII ones.
    static let texts = [
        "Youth and women in local peace committees",
        "YOUTH and Women in Local Peace Committees, Gitega",
        "Réponse à l'épidémie d'Ebola en Guinée : santé communautaire",
        "Riposte à l'épidémie — santé communautaire en Guinée",
        "ÉPIDÉMIE épidémie Épidémie",
        "دعم لجان السلام المحلية في المجتمعات",
        "لجان السلام المحلية",
        "地域の平和構築委員会への支援",
        "平和構築の支援",
        "Поддержка местных комитетов мира",
        "Ñandú ñandu NANDU",
        "0x1 0x12 0x123456 x0",
        "(*&^$@%@",
        "a",
        "",
    ]

    @Test func theKeptTrigramsGivePgTrgmsSimilarityInEveryScript() async throws {
        let h = try await Harness("trigrams_scripts", locale: "C.UTF-8")
        try await h.pool.withConnection { connection in
            let rows = try await connection.query("""
                SELECT a, b, similarity(a, b)::float8, trigram_similarity(trigram_set(a), trigram_set(b)),
                       cardinality(show_trgm(a)), cardinality(trigram_set(a))
                FROM unnest(\(Self.texts)::text[]) AS a, unnest(\(Self.texts)::text[]) AS b
                """)
            #expect(rows.count == Self.texts.count * Self.texts.count)
            var alike = 0
            for row in rows {
                let (a, b) = (try row.decode(String.self, at: 0), try row.decode(String.self, at: 1))
                let (expected, kept) = (try row.decode(Double.self, at: 2), try row.decode(Double.self, at: 3))
                #expect(kept == expected, "\(a) / \(b)")
                // One integer per trigram: no two trigrams of a text fall together.
                #expect(try row.decode(Int.self, at: 4) == row.decode(Int.self, at: 5), "\(a)")
                if expected > 0 && a != b { alike += 1 }
            }
            // The texts share trigrams across cases and accents, not only with themselves.
            #expect(alike >= 20)
            // Every text with letters beyond ASCII (accented, Arabic, Japanese,
            // Cyrillic) has trigrams pg_trgm shows in hex, and no other has.
            let hex = try await connection.query("""
                SELECT a FROM unnest(\(Self.texts)::text[]) AS a WHERE EXISTS (SELECT FROM unnest(show_trgm(a)) t WHERE t ~ '^0x[0-9a-f]{6}$')
                """).map { try $0.decode(String.self, at: 0) }
            #expect(Set(hex) == Set(Self.texts.filter { !$0.allSatisfy(\.isASCII) }))
            #expect(hex.count == 9)
            // Each trigram is the integer of its three bytes, as pg_trgm compares them.
            for row in try await connection.query("SELECT a, show_trgm(a), trigram_set(a) FROM unnest(\(Self.texts)::text[]) AS a") {
                let codes = try row.decode([String].self, at: 1).map { trigram in
                    trigram.utf8.count == 8 && trigram.hasPrefix("0x")
                        ? Int(trigram.dropFirst(2), radix: 16)!
                        : trigram.utf8.reduce(0) { $0 << 8 | Int($1) }
                }
                let text = try row.decode(String.self, at: 0)
                #expect(try row.decode([Int].self, at: 2) == codes.sorted(), "\(text)")
            }
        }
    }

    /// Each entry's trigrams follow its text, whoever writes it: made when the
    /// entry is inserted, made again when its text changes.
    @Test func anEntrysTrigramsFollowItsText() async throws {
        let h = try await Harness("trigrams_follow", locale: "C.UTF-8")
        let (task, _, _) = try await h.tasks.submit(Harness.project(), workflow: "pbf-project", idempotencyKey: "a", by: h.undp)
        func kept() async throws -> (trigrams: [Int], matchBody: Bool) {
            let rows = try await h.pool.withConnection { connection in
                try await connection.query("SELECT trigrams, trigrams = trigram_set(body) FROM portfolio WHERE task_id = \(task.id)")
                    .map { (try $0.decode([Int].self, at: 0), try $0.decode(Bool.self, at: 1)) }
            }
            try #require(rows.count == 1)
            return rows[0]
        }
        let submitted = try await kept()
        #expect(submitted.matchBody && !submitted.trigrams.isEmpty)
        var changes = TaskChanges()
        changes.description = "Réconciliation et dialogue communautaire à Gitega"
        _ = try await h.tasks.update(task.ref, expectedVersion: task.version, changes: changes, by: h.undp)
        let edited = try await kept()
        #expect(edited.matchBody && edited.trigrams != submitted.trigrams)
    }

    /// Entries written before sql/0021 get their trigrams from it, and
    /// screening scores them as pg_trgm's similarity() did.
    @Test func theMigrationGivesEveryEntryItsTrigrams() async throws {
        let target = try await TestDatabase.createEmpty("trigrams_0021")
        let migrations = try StagedMigrations(splittingAt: "0021_trigrams_made_once.sql")
        let connection = try await TestDatabase.connect(target)
        try await migrations.applyBefore(on: connection)
        let subject = "Community dialogue and reconciliation in Gitega and Ngozi"
        try await connection.execute(unsafeSQL: """
            INSERT INTO countries (code, alpha2, name) VALUES ('BDI', 'BI', 'Burundi');
            INSERT INTO agencies (id, name, kind) VALUES ('xm-test', 'Test publisher', 'external');
            INSERT INTO activities (identifier, reporting_agency, title, content_hash, source)
            VALUES ('XM-1', 'xm-test', 'Dialogue', 'h1', ''), ('XM-2', 'xm-test', 'Water', 'h2', '');
            INSERT INTO portfolio (ref, country, kind, activity_id, agency, agencies, period, sectors, categories, locations, title, body)
            SELECT identifier, 'BDI', 'activity', id, 'xm-test', '{xm-test}', '[2027-01-01,2028-01-01)', '{15220}', '{152}', '{gitega}', title,
                   CASE identifier WHEN 'XM-1' THEN 'Dialogue: community reconciliation committees in Gitega'
                                   ELSE 'Water points and sanitation in Ngozi' END
            FROM activities;
            """)
        try await migrations.applyRest(on: connection)
        let rows = try await connection.query("""
            SELECT p.ref, cardinality(p.trigrams) > 0 AND p.trigrams = trigram_set(p.body), e.text_similarity, similarity(p.body, \(subject))::float8
            FROM portfolio p JOIN screening_entries('{XM-1,XM-2}', 'BDI', \(subject)) e ON e.ref = p.ref
            ORDER BY p.ref
            """).map { (try $0.decode(String.self, at: 0), try $0.decode(Bool.self, at: 1), try $0.decode(Double.self, at: 2), try $0.decode(Double.self, at: 3)) }
        #expect(rows.map(\.0) == ["XM-1", "XM-2"])
        for (ref, kept, screened, expected) in rows {
            #expect(kept, "\(ref)")
            #expect(screened == expected && expected > 0, "\(ref)")
        }
        await connection.close()
    }

    /// An intarray a database already has in another schema stops the
    /// migration with what to do, and the database is left as it was.
    @Test func anIntarrayInstalledElsewhereIsNamedWithTheRemedy() async throws {
        let target = try await TestDatabase.createEmpty("trigrams_intarray_elsewhere")
        let migrations = try StagedMigrations(splittingAt: "0021_trigrams_made_once.sql")
        let connection = try await TestDatabase.connect(target)
        try await migrations.applyBefore(on: connection)
        try await connection.execute(unsafeSQL: "CREATE EXTENSION intarray")
        let refused = await #expect(throws: PostgresError.self) { try await migrations.applyRest(on: connection) }
        #expect(refused?.message == "sql/0021_trigrams_made_once.sql failed: pbc needs the extension intarray in the schema intarray; it is installed in public")
        #expect(refused?.hint == "once, as its owner: CREATE SCHEMA intarray; ALTER EXTENSION intarray SET SCHEMA intarray;")
        #expect(try await connection.query("SELECT count(*)::int FROM information_schema.columns WHERE column_name = 'trigrams'")
            .map { try $0.decode(Int.self, at: 0) } == [0])
        // Done as the hint says, the migration goes through.
        try await connection.execute(unsafeSQL: "CREATE SCHEMA intarray; ALTER EXTENSION intarray SET SCHEMA intarray;")
        try await migrations.applyRest(on: connection)
        #expect(try await connection.query("SELECT trigram_similarity(trigram_set('peace dialogue'), trigram_set('peace dialogues'))")
            .map { try $0.decode(Double.self, at: 0) }.first ?? 0 > 0.5)
        await connection.close()
    }
}

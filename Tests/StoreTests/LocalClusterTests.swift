import Foundation
import Postgres
import Store
import Testing
import TestSupport

@Suite struct LocalClusterTests {
    @Test func missingPostgreSQLSaysWhatToInstall() {
        let error = #expect(throws: LocalClusterError.self) {
            _ = try LocalCluster.Binaries.find(in: ["/nonexistent/bin"])
        }
        #expect(error?.description.contains("initdb, pg_ctl") == true)
        #expect(error?.description.contains("apt-get install postgresql") == true)
        #expect(error?.description.contains("DATABASE_URL") == true)
    }

    @Test func theInstalledServerIsFound() throws {
        let binaries = try LocalCluster.Binaries.find()
        #expect(FileManager.default.isExecutableFile(atPath: binaries.initdb))
        #expect(FileManager.default.isExecutableFile(atPath: binaries.pgCtl))
    }

    /// The private cluster (the tests run on one unless PBC_TEST_DATABASE_URL
    /// names a server) sorts as C does, by code point, but knows letters
    /// beyond ASCII: a French, Arabic or Russian title makes trigrams, and
    /// its capitals fold, as they would on the `postgres` image's locale.
    @Test(.enabled(if: (ProcessInfo.processInfo.environment["PBC_TEST_DATABASE_URL"] ?? "").isEmpty, "runs on the private cluster"))
    func aPrivateClusterKnowsLettersBeyondASCII() async throws {
        let connection = try await TestDatabase.connect(try await TestDatabase.create("letters"))
        let row = try #require(try await connection.query("""
            SELECT datcollate, datctype, lower('ÉLECTIONS À GITEGA'), cardinality(show_trgm('حوار')), cardinality(show_trgm('Мир')),
                   similarity('Réconciliation communautaire', 'RÉCONCILIATION COMMUNAUTAIRE')::float8
            FROM pg_database WHERE datname = current_database()
            """).first)
        #expect(try row.decode(String.self, at: 0) == "C")
        #expect(try row.decode(String.self, at: 1) == "C.UTF-8")
        #expect(try row.decode(String.self, at: 2) == "élections à gitega")
        #expect(try row.decode(Int.self, at: 3) > 0)
        #expect(try row.decode(Int.self, at: 4) > 0)
        #expect(try row.decode(Double.self, at: 5) == 1)
        await connection.close()
    }
}

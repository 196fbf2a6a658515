import Foundation
import Store
import Testing

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
}

import Foundation
import Store
import Testing
import TestSupport

@Suite struct EventTypeTests {
    /// A subscription may name only the types in `TaskStore.eventTypes`, so a
    /// type the store writes but the list lacks could never be followed.
    /// Every type written appears in the store's source as a literal
    /// (`recordEvent("…"` or `type: "…"`); each must be listed.
    @Test func everyTypeTheStoreWritesCanBeSubscribedTo() throws {
        let sources = TestDatabase.repositoryRoot.appendingPathComponent("Sources/Store")
        let files = try #require(FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil))
            .compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" }
        var written: Set<String> = []
        let literal = try Regex(#"(?:recordEvent\(\s*|type: )"([a-z]+\.[a-z_]+)""#)
        for file in files {
            let text = try String(contentsOf: file, encoding: .utf8)
            for match in text.matches(of: literal) { written.insert(String(match.output[1].substring!)) }
        }
        #expect(written.count >= 10, "the pattern no longer finds the store's event types: \(written)")
        #expect(written.subtracting(TaskStore.eventTypes).isEmpty, "written but not listed: \(written.subtracting(TaskStore.eventTypes))")
    }

    /// Names a subscription could not match are refused, each with its field.
    @Test func aSubscriptionNamingWhatDoesNotExistIsRefused() async throws {
        let h = try await Harness("event_names")
        let refused = await #expect(throws: StoreError.self) {
            try await h.tasks.checkSubscriptionNames(queues: ["pbso-review", "pbso-reveiw"], agencies: ["undp", "nobody"], types: ["task.created", "task.craeted"])
        }
        #expect(refused?.fieldErrors.map(\.field).sorted() == ["agencies", "queues", "types"])
        #expect(refused?.fieldErrors.map(\.reason).contains("no queue pbso-reveiw") == true)
        try await h.tasks.checkSubscriptionNames(queues: ["pbso-review"], agencies: ["undp"], types: Array(TaskStore.eventTypes))
    }
}

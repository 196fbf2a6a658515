import Coordination
import Foundation
import Testing

@Suite struct OverlapScoringTests {
    let configuration = OverlapConfiguration()

    func entry(
        _ ref: String, agency: String = "undp", country: String = "BDI", sectors: Set<String> = ["15220"], locations: Set<String> = ["Gitega"],
        start: String = "2027-01-01", end: String = "2027-12-31", agencies: Set<String>? = nil, external: Set<String> = []
    ) -> PortfolioEntry {
        PortfolioEntry(
            ref: ref, agency: agency, agencies: agencies ?? [agency], country: country, sectors: sectors, locations: locations,
            period: Period(start: CalendarDate(iso: start)!, end: CalendarDate(iso: end)!), externalIDs: external)
    }

    @Test func theSameSectorInAnotherCountryIsNoOverlap() {
        #expect(!OverlapScoring.isCandidate(entry("a"), entry("b", country: "LBR"), configuration: configuration))
        #expect(OverlapScoring.isCandidate(entry("a"), entry("b"), configuration: configuration))
    }

    @Test func periodsApartByLessThanTheToleranceOverlap() {
        let later = entry("b", start: "2028-03-01", end: "2028-12-31")  // 60 days between (2028 is a leap year)
        #expect(OverlapScoring.isCandidate(entry("a"), later, configuration: configuration))
        let muchLater = entry("c", start: "2028-06-01", end: "2028-12-31")  // 152 days
        #expect(!OverlapScoring.isCandidate(entry("a"), muchLater, configuration: configuration))
        let (_, components) = OverlapScoring.score(entry("a"), later, textSimilarity: 0, configuration: configuration)
        #expect(components.first { $0.name == "period" }?.reason == "periods 60 days apart, within the tolerance")
    }

    /// The same bound as the candidate query's (`screening_candidates`: a
    /// period within the tolerance of the subject's, ends included): 89 days
    /// between is within 90, 90 days between is not. Before, this definition
    /// took 90 too, and an edit's check of a single pair could disagree with
    /// the screening.
    @Test func theToleranceIsTheCandidateQuerys() {
        #expect(OverlapScoring.isCandidate(entry("a"), entry("b", start: "2028-03-30", end: "2028-12-31"), configuration: configuration))
        #expect(!OverlapScoring.isCandidate(entry("a"), entry("b", start: "2028-03-31", end: "2028-12-31"), configuration: configuration))
        #expect(!OverlapScoring.isCandidate(entry("a", start: "2029-04-01", end: "2029-12-31"), entry("b", start: "2028-01-01", end: "2028-12-31"), configuration: configuration))
        var none = configuration
        none.toleranceDays = 0
        #expect(OverlapScoring.isCandidate(entry("a"), entry("b", start: "2027-12-31", end: "2028-12-31"), configuration: none))
        #expect(!OverlapScoring.isCandidate(entry("a"), entry("b", start: "2028-01-01", end: "2028-12-31"), configuration: none))
    }

    @Test func neitherASharedCategoryNorALocationIsNoCandidate() {
        let other = entry("b", sectors: ["12250"], locations: ["Monrovia"])
        #expect(!OverlapScoring.isCandidate(entry("a"), other, configuration: configuration))
        let sameCategory = entry("c", sectors: ["15210"], locations: [])
        #expect(OverlapScoring.isCandidate(entry("a"), sameCategory, configuration: configuration))
        let sameLocation = entry("d", sectors: ["12250"], locations: ["gitega"])
        #expect(OverlapScoring.isCandidate(entry("a"), sameLocation, configuration: configuration))
    }

    @Test func theSameAgencyWithTheSameIdentifierIsADuplicate() {
        let mine = entry("a", external: ["XM-DAC-41114-BDI-1"])
        #expect(OverlapScoring.isDuplicate(mine, entry("b", external: ["XM-DAC-41114-BDI-1"])))
        #expect(!OverlapScoring.isDuplicate(mine, entry("c", agency: "unicef", external: ["XM-DAC-41114-BDI-1"])))
        #expect(!OverlapScoring.isDuplicate(mine, entry("d", external: ["XM-DAC-41114-BDI-2"])))
    }

    @Test func aCloseDuplicateScoresHighAndSaysWhy() {
        let a = entry("a", agencies: ["undp", "unicef"])
        let b = entry("b", agency: "unicef", locations: ["Gitega", "Ngozi"], agencies: ["unicef", "undp"])
        let (score, components) = OverlapScoring.score(a, b, textSimilarity: 0.8, configuration: configuration)
        #expect(score > 0.9)
        #expect(OverlapScoring.reasons(components) == [
            "sector 1.00: same sector 15220",
            "period 1.00: periods share 365 days (100% of the shorter)",
            "location 1.00: shared locations: gitega",
            "text 0.80: titles and descriptions 80% alike",
            "participants 1.00: shared agencies: undp, unicef",
        ])
    }

    /// Over random entries: symmetric, reasons too, within [0, 1], five reasons every time.
    @Test func scoresAreSymmetricAndBounded() {
        var random = SystemRandomNumberGenerator()
        let sectors = ["15220", "15210", "15110", "12250", "12220", "72040"]
        let places = ["Gitega", "Ngozi", "Monrovia", "Bo", "Kenema"]
        let agencies = ["undp", "unicef", "wfp", "who"]
        func any() -> PortfolioEntry {
            let start = Int.random(in: 0...900, using: &random)
            let startDate = Date(timeIntervalSince1970: 1_767_225_600 + Double(start) * 86_400)
            let endDate = startDate.addingTimeInterval(Double(Int.random(in: 0...800, using: &random)) * 86_400)
            return PortfolioEntry(
                ref: UUID().uuidString, agency: agencies.randomElement(using: &random)!,
                agencies: Set(agencies.shuffled(using: &random).prefix(Int.random(in: 1...3, using: &random))), country: "BDI",
                sectors: Set(sectors.shuffled(using: &random).prefix(Int.random(in: 0...3, using: &random))),
                locations: Set(places.shuffled(using: &random).prefix(Int.random(in: 0...3, using: &random))),
                period: Period(start: CalendarDate(startDate), end: CalendarDate(endDate)))
        }
        for _ in 0..<2000 {
            let (a, b) = (any(), any())
            let text = Double.random(in: 0...1, using: &random)
            let (ab, reasons) = OverlapScoring.score(a, b, textSimilarity: text, configuration: configuration)
            let (ba, reversed) = OverlapScoring.score(b, a, textSimilarity: text, configuration: configuration)
            #expect(abs(ab - ba) < 1e-12)
            // Both sides of a pair, and an import scoring from the activity's side, store the same reasons.
            #expect(OverlapScoring.reasons(reasons) == OverlapScoring.reasons(reversed))
            #expect((0...1).contains(ab))
            #expect(reasons.count == 5)
            #expect(OverlapScoring.isCandidate(a, b, configuration: configuration) == OverlapScoring.isCandidate(b, a, configuration: configuration))
        }
    }

    @Test func codesOfOtherVocabulariesMatchOnlyTheSameVocabulary() {
        let ntee = entry("a", sectors: ["5:E99"], locations: [])
        #expect(OverlapScoring.isCandidate(ntee, entry("b", sectors: ["5:E99"], locations: []), configuration: configuration))
        #expect(!OverlapScoring.isCandidate(ntee, entry("c", sectors: ["99:E99"], locations: []), configuration: configuration))
        #expect(!OverlapScoring.isCandidate(ntee, entry("d", sectors: ["12250"], locations: []), configuration: configuration))
        let (_, components) = OverlapScoring.score(ntee, entry("b", sectors: ["5:E99"], locations: []), textSimilarity: 0, configuration: configuration)
        #expect(components.first?.reason == "same sector E99 (vocabulary 5)")
    }

    @Test func theShippedConfigurationLoads() throws {
        let text = try String(contentsOf: Fixtures.root.appendingPathComponent("Config/overlap.yaml"), encoding: .utf8)
        let loaded = try OverlapConfiguration.load(yaml: text, file: "overlap.yaml")
        #expect(loaded == OverlapConfiguration())
        #expect(throws: ConfigError.self) { try OverlapConfiguration.load(yaml: "toleranceDays: 90\nthreshold: 2\nweights: {sector: 1, period: 0, location: 0, text: 0, participants: 0}", file: "x") }
    }
}

@Suite struct InternetTimeTests {
    @Test func instantsFormatAsFoundationFormatsThem() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var random = SystemRandomNumberGenerator()
        let samples = [0, 951_782_400.5, 1_798_761_599.999, -86_400.25, 4_102_444_800.001, 1_764_415_037.148]
            + (0..<500).map { _ in Double.random(in: -2_000_000_000...4_000_000_000, using: &random).rounded(.down) / 1000 * 1000 + Double(Int.random(in: 0...999, using: &random)) / 1000 }
        for seconds in samples {
            let date = Date(timeIntervalSince1970: seconds)
            #expect(InternetTime.string(date) == formatter.string(from: date), "\(seconds)")
        }
    }
}

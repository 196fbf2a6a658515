import Foundation
import Yams

/// How overlap is scored: weights, the period tolerance and the threshold (`Config/overlap.yaml`).
public struct OverlapConfiguration: Sendable, Equatable {
    public struct Weights: Sendable, Equatable, Decodable {
        public var sector: Double
        public var period: Double
        public var location: Double
        public var text: Double
        public var participants: Double

        public init(sector: Double, period: Double, location: Double, text: Double, participants: Double) {
            self.sector = sector
            self.period = period
            self.location = location
            self.text = text
            self.participants = participants
        }

        public var total: Double { sector + period + location + text + participants }
    }

    public var toleranceDays: Int
    public var threshold: Double
    public var weights: Weights

    public init(toleranceDays: Int = 90, threshold: Double = 0.5, weights: Weights = Weights(sector: 0.3, period: 0.2, location: 0.15, text: 0.25, participants: 0.1)) {
        self.toleranceDays = toleranceDays
        self.threshold = threshold
        self.weights = weights
    }

    public static func load(yaml text: String, file: String) throws -> OverlapConfiguration {
        struct Document: Decodable {
            let toleranceDays: Int
            let threshold: Double
            let weights: Weights
        }
        let document: Document
        do {
            document = try YAMLDecoder().decode(Document.self, from: text)
        } catch {
            throw ConfigError(file: file, line: nil, message: "not an overlap configuration (toleranceDays, threshold, weights): \(error)")
        }
        let weights = document.weights
        guard [weights.sector, weights.period, weights.location, weights.text, weights.participants].allSatisfy({ $0 >= 0 }), weights.total > 0 else {
            throw ConfigError(file: file, line: nil, message: "weights must be zero or more, and not all zero")
        }
        guard (0...1).contains(document.threshold) else {
            throw ConfigError(file: file, line: nil, message: "threshold must be between 0 and 1")
        }
        guard (0...3650).contains(document.toleranceDays) else {
            throw ConfigError(file: file, line: nil, message: "toleranceDays must be between 0 and 3650")
        }
        return OverlapConfiguration(toleranceDays: document.toleranceDays, threshold: document.threshold, weights: weights)
    }
}

/// What screening compares: a task or activity as the portfolio holds it.
public struct PortfolioEntry: Sendable, Hashable {
    public var ref: String
    public var agency: String
    public var agencies: Set<String>
    public var country: String
    public var sectors: Set<String>
    public var locations: Set<String>
    public var period: Period
    public var externalIDs: Set<String>

    public init(
        ref: String, agency: String, agencies: Set<String>, country: String, sectors: Set<String>, locations: Set<String>,
        period: Period, externalIDs: Set<String> = []
    ) {
        self.ref = ref
        self.agency = agency
        self.agencies = agencies
        self.country = country
        self.sectors = sectors
        self.locations = Set(locations.map { $0.lowercased() })
        self.period = period
        self.externalIDs = externalIDs
    }

    /// 3-digit DAC categories of 5-digit codes; any other code (a 3-digit
    /// category, or `VOCABULARY:CODE` of another vocabulary) is its own category.
    public var categories: Set<String> { Set(sectors.map(Self.category)) }

    public static func category(of sector: String) -> String {
        sector.count == 5 && sector.allSatisfy(\.isNumber) ? String(sector.prefix(3)) : sector
    }
}

/// One component of a score, with why.
public struct OverlapComponent: Sendable, Hashable {
    public var name: String
    public var score: Double
    public var reason: String
}

/// Pure overlap scoring: symmetric, in [0, 1], and every score says why.
public enum OverlapScoring {
    /// Whether `candidate` is a candidate for `subject` at all: same country,
    /// periods that overlap or are fewer than the tolerance's days apart, a
    /// shared category or location. The SQL query asks the same (a period
    /// that meets the subject's widened by the tolerance at each end); this
    /// is its definition, for tests and for scoring single pairs.
    public static func isCandidate(_ subject: PortfolioEntry, _ candidate: PortfolioEntry, configuration: OverlapConfiguration) -> Bool {
        subject.ref != candidate.ref && subject.country == candidate.country
            && (overlapDays(subject.period, candidate.period) > 0 || gapDays(subject.period, candidate.period) < configuration.toleranceDays)
            && (!subject.categories.isDisjoint(with: candidate.categories) || !subject.locations.isDisjoint(with: candidate.locations))
    }

    /// The same agency reporting the same external identifier: a duplicate, updated in place, never an overlap.
    public static func isDuplicate(_ subject: PortfolioEntry, _ candidate: PortfolioEntry) -> Bool {
        subject.agency == candidate.agency && !subject.externalIDs.isDisjoint(with: candidate.externalIDs)
    }

    /// The score and its components. `textSimilarity` (0 to 1) comes from the
    /// database's trigram similarity of the two titles and descriptions.
    public static func score(
        _ subject: PortfolioEntry, _ candidate: PortfolioEntry, textSimilarity: Double, configuration: OverlapConfiguration
    ) -> (score: Double, components: [OverlapComponent]) {
        var components: [OverlapComponent] = []
        // Sectors: a shared code, else a shared category.
        let sharedCodes = subject.sectors.intersection(candidate.sectors).filter { $0.count == 5 || $0.contains(":") }.sorted()
        let sharedCategories = subject.categories.intersection(candidate.categories).filter { !$0.contains(":") }.sorted()
        if !sharedCodes.isEmpty {
            let named = sharedCodes.map { $0.contains(":") ? "\($0.split(separator: ":")[1]) (vocabulary \($0.split(separator: ":")[0]))" : $0 }
            components.append(OverlapComponent(name: "sector", score: 1, reason: "same sector \(named.joined(separator: ", "))"))
        } else if !sharedCategories.isEmpty {
            components.append(OverlapComponent(name: "sector", score: 0.6, reason: "same sector category \(sharedCategories.joined(separator: ", "))"))
        } else {
            components.append(OverlapComponent(name: "sector", score: 0, reason: "no sector in common"))
        }
        // Period: days in common over the shorter period.
        let common = overlapDays(subject.period, candidate.period)
        let shorter = min(length(subject.period), length(candidate.period))
        let periodScore = shorter > 0 ? min(1, Double(common) / Double(shorter)) : 0
        components.append(OverlapComponent(
            name: "period", score: periodScore,
            reason: common > 0 ? "periods share \(common) days (\(percent(periodScore)) of the shorter)" : "periods \(gapDays(subject.period, candidate.period)) days apart, within the tolerance"))
        // Locations.
        let sharedLocations = subject.locations.intersection(candidate.locations).sorted()
        let fewer = min(subject.locations.count, candidate.locations.count)
        let locationScore = fewer > 0 ? Double(sharedLocations.count) / Double(fewer) : 0
        components.append(OverlapComponent(
            name: "location", score: locationScore,
            reason: sharedLocations.isEmpty ? "no location in common" : "shared locations: \(sharedLocations.joined(separator: ", "))"))
        // Text.
        let text = min(1, max(0, textSimilarity))
        components.append(OverlapComponent(name: "text", score: text, reason: "titles and descriptions \(percent(text)) alike"))
        // Participants.
        let sharedAgencies = subject.agencies.intersection(candidate.agencies).sorted()
        let allAgencies = subject.agencies.union(candidate.agencies)
        let participantScore = allAgencies.isEmpty ? 0 : Double(sharedAgencies.count) / Double(allAgencies.count)
        components.append(OverlapComponent(
            name: "participants", score: participantScore,
            reason: sharedAgencies.isEmpty ? "no agency in common" : "shared agencies: \(sharedAgencies.joined(separator: ", "))"))

        let weights = configuration.weights
        let weighted = components.reduce(0.0) { total, component in
            let weight: Double =
                switch component.name {
                case "sector": weights.sector
                case "period": weights.period
                case "location": weights.location
                case "text": weights.text
                default: weights.participants
                }
            return total + weight * component.score
        }
        return (min(1, max(0, weighted / weights.total)), components)
    }

    /// The reasons stored with an overlap: each component, its score, what matched.
    public static func reasons(_ components: [OverlapComponent]) -> [String] {
        components.map { "\($0.name) \(String(format: "%.2f", $0.score)): \($0.reason)" }
    }

    static func length(_ period: Period) -> Int { period.end.daysSinceEpoch - period.start.daysSinceEpoch + 1 }

    static func overlapDays(_ a: Period, _ b: Period) -> Int {
        max(0, min(a.end.daysSinceEpoch, b.end.daysSinceEpoch) - max(a.start.daysSinceEpoch, b.start.daysSinceEpoch) + 1)
    }

    /// Days between two periods that do not meet; 0 when they do.
    static func gapDays(_ a: Period, _ b: Period) -> Int {
        max(0, max(a.start.daysSinceEpoch, b.start.daysSinceEpoch) - min(a.end.daysSinceEpoch, b.end.daysSinceEpoch) - 1)
    }

    static func percent(_ value: Double) -> String { "\(Int((value * 100).rounded()))%" }
}

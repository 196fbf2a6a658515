import Foundation
import Postgres

/// How an imported activity's budget divides among its countries and its
/// sectors in the who-does-what-where report, as the publisher states it,
/// so that no amount is counted twice or in the wrong place.
///
/// IATI gives each recipient country a percentage of the activity (what is
/// left goes to its regions), and each sector vocabulary describes the whole
/// activity again, its percentages summing to 100 within the vocabulary. So
/// the report takes one vocabulary per activity, the one pbc's tasks use
/// when the activity has it: DAC 5-digit codes, else DAC 3-digit categories,
/// else the first other vocabulary the activity names.
struct BudgetShares: Codable, Equatable {
    struct Share: Codable, Equatable {
        /// A country code as the activity gives it; a sector as pbc keeps it
        /// (`15220`, `151`, or `VOCABULARY:CODE`).
        var code: String
        /// The part of the budget, in [0, 1].
        var share: Decimal
    }
    var countries: [Share]
    var sectors: [Share]

    /// A code as the source gives it, with its percentage if any.
    struct Stated: Equatable {
        var code: String
        var percentage: String?
    }

    /// A sector's vocabulary as the report tells them apart: the two DAC
    /// ones, which it prefers in this order, and the others by IATI code.
    enum Vocabulary: Hashable {
        case dac
        case dacCategory
        case other(String)
    }

    /// `sectors` are in the order the source names them. `withRegions`: the
    /// activity names recipient regions too, which may take part of the budget.
    init(countries: [Stated], withRegions: Bool, sectors: [(vocabulary: Vocabulary, sector: Stated)]) {
        self.countries = Self.divide(countries, whole: withRegions ? 100 : nil)
        let vocabulary = [Vocabulary.dac, .dacCategory].first { preferred in sectors.contains { $0.vocabulary == preferred } }
            ?? sectors.first?.vocabulary
        self.sectors = Self.divide(sectors.filter { $0.vocabulary == vocabulary }.map(\.sector), whole: nil)
    }

    /// By the percentages when every code has one and they sum above 0,
    /// else in equal parts; a code named twice is one code with both parts.
    /// The percentages are of `whole` when they may leave part of the budget
    /// elsewhere (scaled down when they add up to more, a publisher's slip),
    /// else of their own sum, so that 33.33 three times is the whole.
    private static func divide(_ stated: [Stated], whole: Decimal?) -> [Share] {
        var order: [String] = []
        var percentages: [String: Decimal] = [:]
        var allStated = true
        for item in stated {
            if percentages[item.code] == nil {
                order.append(item.code)
                percentages[item.code] = 0
            }
            if let text = item.percentage, let value = Self.decimal(text), value >= 0 {
                percentages[item.code]! += value
            } else {
                allStated = false
            }
        }
        guard !order.isEmpty else { return [] }
        let sum = percentages.values.reduce(0, +)
        guard allStated, sum > 0 else {
            return order.map { Share(code: $0, share: 1 / Decimal(order.count)) }
        }
        let divisor = whole.map { max(sum, $0) } ?? sum
        return order.map { Share(code: $0, share: percentages[$0]! / divisor) }
    }

    /// An xsd:decimal, as IATI writes amounts and percentages (`1500`,
    /// `12.50`, `.5`, `+3`, `-2`), and nothing else (not `12abc`, which
    /// Foundation's parser reads as 12).
    static func decimal(_ text: String) -> Decimal? {
        var body = Substring(text)
        var sign = ""
        if let first = body.first, first == "+" || first == "-" {
            sign = first == "-" ? "-" : ""
            body = body.dropFirst()
        }
        let parts = body.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.contains(where: { !$0.isEmpty }), parts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }) else { return nil }
        let whole = parts[0].isEmpty ? "0" : String(parts[0])
        let fraction = parts.count == 2 && !parts[1].isEmpty ? "." + parts[1] : ""
        return PostgresNumeric(sign + whole + fraction)?.decimal
    }
}

import Foundation
import Yams

/// Conversion to one base currency, for guards that cap amounts (the IRF's USD 3M).
public struct ExchangeRates: Sendable, Equatable {
    public let base: String
    /// Units of `base` for one unit of each currency.
    public let rates: [String: Decimal]

    public init(base: String, rates: [String: Decimal]) {
        self.base = base
        self.rates = rates.merging([base: 1]) { current, _ in current }
    }

    /// `amount` in `currency`, expressed in `target`; nil when either rate is unknown.
    public func convert(_ amount: Decimal, from currency: String, to target: String) -> Decimal? {
        guard let from = rates[currency], let to = rates[target], to != 0 else { return nil }
        return amount * from / to
    }

    /// Reads `Config/rates.yaml`: `base: USD` and `rates: {EUR: "1.08", ...}`.
    public static func load(yaml text: String, file: String) throws -> ExchangeRates {
        struct Document: Decodable {
            let base: String
            let rates: [String: String]
        }
        let document: Document
        do {
            document = try YAMLDecoder().decode(Document.self, from: text)
        } catch {
            throw ConfigError(file: file, line: nil, message: "not a rates file (base: CODE, rates: {CODE: \"rate\"}): \(error)")
        }
        var rates: [String: Decimal] = [:]
        for (currency, text) in document.rates {
            guard currency.count == 3, currency.allSatisfy({ $0.isUppercase }),
                let rate = Decimal(string: text, locale: Locale(identifier: "en_US_POSIX")), rate > 0
            else {
                throw ConfigError(file: file, line: nil, message: "rate for \(currency) must be a positive decimal under a three-letter code")
            }
            rates[currency] = rate
        }
        return ExchangeRates(base: document.base, rates: rates)
    }
}

/// A problem in a configuration file, with where it is.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var message: String

    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    /// A configuration file's YAML as nodes, for readers that report lines;
    /// nil for an empty file.
    static func compose(yaml text: String, file: String) throws -> Node? {
        do {
            return try Yams.compose(yaml: text)
        } catch {
            throw ConfigError(file: file, line: nil, message: "not YAML: \(error)")
        }
    }

    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

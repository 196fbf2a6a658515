import Foundation

/// An exact decimal, as PostgreSQL's `numeric` holds it: kept as its
/// canonical text, so no digit is ever lost to floating point.
public struct PostgresNumeric: Hashable, Sendable, CustomStringConvertible, PostgresEncodable, PostgresDecodable {
    /// The decimal text: an optional minus sign, digits, an optional fraction.
    public let text: String

    /// `nil` unless `text` is a plain decimal such as `-1500000.25`.
    public init?(_ text: String) {
        guard Self.isPlainDecimal(text) else { return nil }
        self.text = text
    }

    public init(_ value: Int) { self.text = String(value) }

    /// Foundation's `Decimal` holds 38 significant digits; larger values need `init?(_: String)`.
    public init(_ value: Decimal) { self.text = value.description }

    /// The value as a Foundation `Decimal`, `nil` when it has more digits than `Decimal` holds.
    public var decimal: Decimal? {
        let digits = text.filter(\.isNumber).drop(while: { $0 == "0" })
        guard digits.count <= 38 else { return nil }
        return Decimal(string: text, locale: Locale(identifier: "en_US_POSIX"))
    }

    public var description: String { text }

    public static var postgresType: PostgresType { .numeric }
    public var postgresText: String { text }
    public init(postgresText text: String, type: PostgresType) throws(DecodingFailure) {
        guard type == .numeric || type.isInteger else { throw .type(type, into: PostgresNumeric.self) }
        guard Self.isPlainDecimal(text) else {
            // NaN and the infinities are valid numerics but not amounts.
            throw DecodingFailure("not a finite decimal: \(text)")
        }
        self.text = text
    }

    private static func isPlainDecimal(_ text: String) -> Bool {
        var rest = Substring(text)
        if rest.first == "-" { rest = rest.dropFirst() }
        let parts = rest.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2 else { return false }
        return parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }
    }
}

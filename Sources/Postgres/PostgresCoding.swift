import Foundation

/// A Swift value that can be sent as a bound parameter, in PostgreSQL's text format.
public protocol PostgresEncodable: Sendable {
    static var postgresType: PostgresType { get }
    var postgresText: String { get }
}

/// A Swift value that can be read from a result column in PostgreSQL's text format.
public protocol PostgresDecodable: Sendable {
    /// Builds the value from the column's text; throws `DecodingFailure` when the
    /// column's type does not fit or the text does not parse.
    init(postgresText text: String, type: PostgresType) throws(DecodingFailure)
}

/// Why one value could not be decoded; `PostgresRow` adds the column name.
public struct DecodingFailure: Error, Sendable {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }

    static func type(_ type: PostgresType, into swiftType: Any.Type) -> DecodingFailure {
        DecodingFailure("a \(type) column cannot be decoded as \(swiftType)")
    }
}

extension String: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .text }
    public var postgresText: String { self }
    /// Any column reads as its text form.
    public init(postgresText text: String, type: PostgresType) { self = text }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .bool }
    public var postgresText: String { self ? "t" : "f" }
    public init(postgresText text: String, type: PostgresType) throws(DecodingFailure) {
        guard type == .bool else { throw .type(type, into: Bool.self) }
        switch text {
        case "t": self = true
        case "f": self = false
        default: throw DecodingFailure("not a boolean: \(text)")
        }
    }
}

/// Integers share one decoder: any integer column, range-checked.
public protocol PostgresInteger: FixedWidthInteger, PostgresEncodable, PostgresDecodable {}

extension PostgresInteger {
    public var postgresText: String { String(self) }
    public init(postgresText text: String, type: PostgresType) throws(DecodingFailure) {
        guard type.isInteger else { throw .type(type, into: Self.self) }
        guard let value = Self(text) else {
            throw DecodingFailure("\(text) does not fit in \(Self.self)")
        }
        self = value
    }
}

extension Int: PostgresInteger { public static var postgresType: PostgresType { .int8 } }
extension Int64: PostgresInteger { public static var postgresType: PostgresType { .int8 } }
extension Int32: PostgresInteger { public static var postgresType: PostgresType { .int4 } }
extension Int16: PostgresInteger { public static var postgresType: PostgresType { .int2 } }

extension Double: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .float8 }
    public var postgresText: String {
        if isNaN { return "NaN" }
        if isInfinite { return self < 0 ? "-Infinity" : "Infinity" }
        return "\(self)"
    }
    public init(postgresText text: String, type: PostgresType) throws(DecodingFailure) {
        guard type == .float8 || type == .float4 || type.isInteger else {
            throw .type(type, into: Double.self)
        }
        guard let value = Double(text) else { throw DecodingFailure("not a number: \(text)") }
        self = value
    }
}

extension UUID: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .uuid }
    public var postgresText: String { uuidString.lowercased() }
    public init(postgresText text: String, type: PostgresType) throws(DecodingFailure) {
        guard type == .uuid || type.isText else { throw .type(type, into: UUID.self) }
        guard let value = UUID(uuidString: text) else { throw DecodingFailure("not a UUID: \(text)") }
        self = value
    }
}

/// `Date` is an instant: it is sent as `timestamptz` in UTC and read from
/// `timestamptz` whatever offset the session's time zone gives it.
extension Date: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .timestamptz }
    public var postgresText: String { Timestamp.format(self) }
    public init(postgresText text: String, type: PostgresType) throws(DecodingFailure) {
        guard type == .timestamptz || type == .timestamp else { throw .type(type, into: Date.self) }
        guard let value = Timestamp.parse(text) else {
            throw DecodingFailure("not a timestamp: \(text)")
        }
        self = value
    }
}

/// A `jsonb` value, kept as its JSON text; `decode(_:)` reads it as a `Decodable`.
public struct PostgresJSONB: PostgresEncodable, PostgresDecodable, Hashable {
    public var text: String

    public init(text: String) { self.text = text }

    public init<Value: Encodable>(encoding value: Value, encoder: JSONEncoder = JSONEncoder()) throws {
        self.text = String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    public func decode<Value: Decodable>(_ type: Value.Type, decoder: JSONDecoder = JSONDecoder()) throws -> Value {
        try decoder.decode(type, from: Data(text.utf8))
    }

    public static var postgresType: PostgresType { .jsonb }
    public var postgresText: String { text }
    public init(postgresText text: String, type: PostgresType) throws(DecodingFailure) {
        guard type == .jsonb || type == .json else { throw .type(type, into: PostgresJSONB.self) }
        self.text = text
    }
}

extension Array: PostgresEncodable where Element: PostgresArrayElement {
    public static var postgresType: PostgresType { Element.postgresArrayType }
    public var postgresText: String { ArrayLiteral.format(map(\.postgresText)) }
}

extension Array: PostgresDecodable where Element: PostgresArrayElement {
    public init(postgresText text: String, type: PostgresType) throws(DecodingFailure) {
        guard Element.acceptsArrayType(type) else { throw .type(type, into: [Element].self) }
        guard let items = ArrayLiteral.parse(text) else {
            throw DecodingFailure("not a one-dimensional array: \(text)")
        }
        var result: [Element] = []
        result.reserveCapacity(items.count)
        for item in items {
            guard let item else { throw DecodingFailure("the array holds a NULL element") }
            result.append(try Element(postgresText: item, type: Element.postgresType))
        }
        self = result
    }
}

/// An element type of the one-dimensional arrays pbc reads and writes.
public protocol PostgresArrayElement: PostgresEncodable, PostgresDecodable {
    static var postgresArrayType: PostgresType { get }
    static func acceptsArrayType(_ type: PostgresType) -> Bool
}

extension String: PostgresArrayElement {
    public static var postgresArrayType: PostgresType { .textArray }
    public static func acceptsArrayType(_ type: PostgresType) -> Bool {
        type == .textArray || type == .varcharArray
    }
}

extension Int: PostgresArrayElement {
    public static var postgresArrayType: PostgresType { .int8Array }
    public static func acceptsArrayType(_ type: PostgresType) -> Bool {
        type == .int8Array || type == .int4Array || type == .int2Array
    }
}

extension Int32: PostgresArrayElement {
    public static var postgresArrayType: PostgresType { .int4Array }
    public static func acceptsArrayType(_ type: PostgresType) -> Bool {
        type == .int4Array || type == .int2Array
    }
}

/// A `text[]` whose elements may be NULL: columns of rows passed as arrays
/// to `unnest`, and cast to their types there.
public struct PostgresNullableTextArray: PostgresEncodable {
    public var items: [String?]
    public init(_ items: [String?]) { self.items = items }
    public static var postgresType: PostgresType { .textArray }
    public var postgresText: String { ArrayLiteral.format(items) }
}

/// PostgreSQL's text form of one-dimensional arrays: `{a,"b c",NULL}`.
///
/// Both work on UTF-8 bytes: the literal's punctuation is ASCII, which no
/// byte of a multi-byte character can be, and reading characters one by one
/// costs Unicode segmentation that a screening's candidate rows and a scan's
/// millions of reasons do not need.
enum ArrayLiteral {
    static func format(_ items: [String?]) -> String {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (index, item) in items.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            guard let item else {
                out.append(contentsOf: "NULL".utf8)
                continue
            }
            out.append(UInt8(ascii: "\""))
            for byte in item.utf8 {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
                out.append(byte)
            }
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    /// The items, `nil` for a NULL element; `nil` overall when the text is not
    /// a one-dimensional array literal.
    static func parse(_ text: String) -> [String?]? {
        var text = text
        return text.withUTF8 { parse(bytes: $0) }
    }

    private static func parse(bytes: UnsafeBufferPointer<UInt8>) -> [String?]? {
        let (open, close, quote, backslash, comma) = (UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: ","))
        guard bytes.count >= 2, bytes.first == open, bytes.last == close else { return nil }
        var items: [String?] = []
        var index = 1
        let end = bytes.count - 1
        if index == end { return items }
        var item: [UInt8] = []
        while true {
            guard index < end else { return nil }
            item.removeAll(keepingCapacity: true)
            if bytes[index] == open { return nil }  // nested: more than one dimension
            if bytes[index] == quote {
                index += 1
                while true {
                    guard index < end else { return nil }
                    if bytes[index] == quote { break }
                    if bytes[index] == backslash {
                        index += 1
                        guard index < end else { return nil }
                    }
                    item.append(bytes[index])
                    index += 1
                }
                items.append(String(decoding: item, as: UTF8.self))
                index += 1
            } else {
                while index < end, bytes[index] != comma {
                    item.append(bytes[index])
                    index += 1
                }
                let text = String(decoding: item, as: UTF8.self)
                items.append(text == "NULL" ? nil : text)
            }
            if index == end { return items }
            guard bytes[index] == comma else { return nil }
            index += 1
        }
    }
}

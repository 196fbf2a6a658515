import Foundation
import JSONRPC

/// A method's named parameters, decoded strictly: an unknown name is refused
/// (so a typo never passes silently), and a missing or mistyped one is a
/// -32602 that names the parameter and says why.
protocol MethodParams: Decodable {
    static var names: Set<String> { get }
}

enum ParamsDecoder {
    static func decode<P: MethodParams>(_ type: P.Type, from params: JSONValue?) throws -> P {
        let object: [String: JSONValue]
        switch params {
        case nil: object = [:]
        case .object(let value)?: object = value
        default: throw invalid("params must be an object of named parameters", parameter: nil)
        }
        if let unknown = object.keys.sorted().first(where: { !P.names.contains($0) }) {
            throw invalid("unknown parameter \(unknown) (known: \(P.names.sorted().joined(separator: ", ")))", parameter: unknown)
        }
        do {
            let data = try JSONEncoder().encode(JSONValue.object(object))
            return try JSONDecoder().decode(P.self, from: data)
        } catch let error as DecodingError {
            // A whole number too large for an integer reaches Foundation as a
            // double, which it reports as JSON it cannot read, at no parameter.
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty, let name = hugeWholeNumber(in: .object(object)) {
                throw invalid("parameter \(name) is too large for an integer", parameter: name)
            }
            throw describe(error)
        }
    }

    /// The path of the first whole number beyond a 64-bit integer's range, if any.
    private static func hugeWholeNumber(in value: JSONValue, at path: String = "") -> String? {
        switch value {
        case .double(let number) where number.rounded() == number && abs(number) >= 0x1p63:
            return path
        case .object(let object):
            return object.keys.sorted().lazy.compactMap { hugeWholeNumber(in: object[$0]!, at: path.isEmpty ? $0 : "\(path).\($0)") }.first
        case .array(let array):
            return array.indices.lazy.compactMap { hugeWholeNumber(in: array[$0], at: "\(path)[\($0)]") }.first
        default:
            return nil
        }
    }

    static func invalid(_ message: String, parameter: String?) -> RPCError {
        RPCError(code: .invalidParams, message: message, data: parameter.map { .object(["parameter": .string($0)]) })
    }

    private static func path(_ codingPath: [CodingKey], _ last: CodingKey? = nil) -> String {
        let keys = codingPath + (last.map { [$0] } ?? [])
        return keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
            .replacingOccurrences(of: ".[", with: "[")
    }

    private static func describe(_ error: DecodingError) -> RPCError {
        switch error {
        case .keyNotFound(let key, let context):
            let name = path(context.codingPath, key)
            return invalid("missing parameter \(name)", parameter: name)
        case .typeMismatch(let type, let context):
            let name = path(context.codingPath)
            return invalid("parameter \(name) must be \(describe(type))", parameter: name)
        case .valueNotFound(let type, let context):
            let name = path(context.codingPath)
            return invalid("parameter \(name) must be \(describe(type)), not null", parameter: name)
        case .dataCorrupted(let context):
            let name = path(context.codingPath)
            guard !name.isEmpty else { return invalid("invalid parameters: \(context.debugDescription)", parameter: nil) }
            // Foundation's own words for a UUID name the type, not what to send.
            if context.debugDescription.contains("UUID") {
                return invalid("parameter \(name) must be an id (a UUID such as 7d4e1f0a-0000-4000-8000-000000000001)", parameter: name)
            }
            return invalid("parameter \(name): \(context.debugDescription)", parameter: name)
        @unknown default:
            return invalid("invalid parameters", parameter: nil)
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "an integer"
        case is Double.Type: "a number"
        case is Bool.Type: "true or false"
        case is [Any].Type: "an array"
        default: String(describing: type).hasPrefix("Array") ? "an array" : "an object"
        }
    }
}

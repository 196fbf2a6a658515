import Foundation

/// A request id: JSON-RPC allows strings and numbers (and null, for errors about unreadable requests).
public enum RequestID: Sendable, Hashable, Codable, CustomStringConvertible {
    case number(Int64)
    case string(String)

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int64.self) {
            self = .number(number)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public var description: String {
        switch self {
        case .number(let number): "\(number)"
        case .string(let string): "\"\(string)\""
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .number(let number): try container.encode(number)
        case .string(let string): try container.encode(string)
        }
    }
}

/// A request or a notification (no `id`, so no response).
public struct Request: Sendable, Equatable {
    public var id: RequestID?
    public var method: String
    public var params: JSONValue?

    public init(id: RequestID?, method: String, params: JSONValue? = nil) {
        self.id = id
        self.method = method
        self.params = params
    }

    public var isNotification: Bool { id == nil }

    /// Reads one request object, or says which JSON-RPC rule it breaks.
    public init(parsing value: JSONValue) throws(RPCError) {
        guard case .object(let object) = value else {
            throw RPCError(code: .invalidRequest, message: "a request must be a JSON object")
        }
        guard object["jsonrpc"] == .string("2.0") else {
            throw RPCError(code: .invalidRequest, message: "\"jsonrpc\" must be \"2.0\"")
        }
        guard case .string(let method) = object["method"] else {
            throw RPCError(code: .invalidRequest, message: "\"method\" must be a string")
        }
        switch object["id"] {
        case nil: id = nil
        case .integer(let number): id = .number(number)
        case .string(let string): id = .string(string)
        default: throw RPCError(code: .invalidRequest, message: "\"id\" must be a string or an integer")
        }
        switch object["params"] {
        case nil, .object?, .array?: params = object["params"]
        default: throw RPCError(code: .invalidRequest, message: "\"params\" must be an object or an array")
        }
        self.method = method
        if let unknown = object.keys.first(where: { !["jsonrpc", "id", "method", "params"].contains($0) }) {
            throw RPCError(code: .invalidRequest, message: "unknown member \"\(unknown)\"")
        }
    }
}

/// A response: the request's id with a result or an error.
public struct Response: Sendable, Equatable, Encodable {
    public var id: RequestID?
    public var outcome: Outcome

    public enum Outcome: Sendable, Equatable {
        case result(JSONValue)
        case error(RPCError)
    }

    public init(id: RequestID?, result: JSONValue) {
        self.id = id
        self.outcome = .result(result)
    }

    public init(id: RequestID?, error: RPCError) {
        self.id = id
        self.outcome = .error(error)
    }

    enum CodingKeys: String, CodingKey { case jsonrpc, id, result, error }

    /// The response as a JSON value, for `JSONValue.write(into:)`.
    public var json: JSONValue {
        var members: [String: JSONValue] = ["jsonrpc": .string("2.0")]
        switch id {
        case .number(let number)?: members["id"] = .integer(number)
        case .string(let string)?: members["id"] = .string(string)
        case nil: members["id"] = .null
        }
        switch outcome {
        case .result(let result): members["result"] = result
        case .error(let error):
            var object: [String: JSONValue] = ["code": .integer(Int64(error.code.rawValue)), "message": .string(error.message)]
            if let data = error.data { object["data"] = data }
            members["error"] = .object(object)
        }
        return .object(members)
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode("2.0", forKey: .jsonrpc)
        // An error about a request whose id could not be read carries a null id.
        if let id { try container.encode(id, forKey: .id) } else { try container.encodeNil(forKey: .id) }
        switch outcome {
        case .result(let result): try container.encode(result, forKey: .result)
        case .error(let error): try container.encode(error, forKey: .error)
        }
    }
}

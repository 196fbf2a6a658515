/// A JSON-RPC error object. Codes are an extensible struct, so that the
/// standard codes and pbc's own live side by side.
public struct RPCError: Error, Sendable, Equatable, Encodable {
    public struct Code: RawRepresentable, Hashable, Sendable, Encodable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }

        public static let parseError = Code(rawValue: -32700)
        public static let invalidRequest = Code(rawValue: -32600)
        public static let methodNotFound = Code(rawValue: -32601)
        public static let invalidParams = Code(rawValue: -32602)
        public static let internalError = Code(rawValue: -32603)
        public static let unavailable = Code(rawValue: -32000)
        public static let unauthenticated = Code(rawValue: -32001)
        public static let forbidden = Code(rawValue: -32003)
        public static let notFound = Code(rawValue: -32004)
        public static let conflict = Code(rawValue: -32009)
        public static let actionNotAllowed = Code(rawValue: -32010)
        public static let validationFailed = Code(rawValue: -32022)
        public static let rateLimited = Code(rawValue: -32029)
        public static let historyGone = Code(rawValue: -32041)
        /// An event subscriber fell too far behind; the connection closes after this.
        public static let subscriberTooSlow = Code(rawValue: -32042)

        public func encode(to encoder: Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(rawValue)
        }
    }

    public var code: Code
    public var message: String
    public var data: JSONValue?

    public init(code: Code, message: String, data: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }
}

import Foundation
import NIOCore

/// Turns one line into the line to send back (nil for notifications),
/// following JSON-RPC 2.0: single requests and batches, parse errors with a
/// null id, invalid requests, unknown methods.
public struct Dispatcher: Sendable {
    public typealias Handler = @Sendable (Request) async -> Response.Outcome

    public let maxBatchSize: Int
    private let handle: Handler

    public init(maxBatchSize: Int = 100, handler: @escaping Handler) {
        self.maxBatchSize = maxBatchSize
        self.handle = handler
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// The response line for `line`, without its newline; nil when nothing is owed.
    public func respond(to line: ByteBuffer) async -> ByteBuffer? {
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: Data(line.readableBytesView))
        } catch {
            return Self.encode(Response(id: nil, error: RPCError(code: .parseError, message: Self.parseFailure(error))))
        }
        if case .array(let items) = value {
            guard !items.isEmpty else {
                return Self.encode(Response(id: nil, error: RPCError(code: .invalidRequest, message: "an empty batch is not a request")))
            }
            guard items.count <= maxBatchSize else {
                return Self.encode(
                    Response(id: nil, error: RPCError(code: .invalidRequest, message: "a batch holds at most \(maxBatchSize) requests")))
            }
            var responses: [Response] = []
            for item in items {
                if let response = await respond(toValue: item) { responses.append(response) }
            }
            return responses.isEmpty ? nil : Self.encode(responses)
        }
        return await respond(toValue: value).flatMap(Self.encode)
    }

    private func respond(toValue value: JSONValue) async -> Response? {
        let request: Request
        do {
            request = try Request(parsing: value)
        } catch {
            // The id of an invalid request is echoed when it can be read.
            let id: RequestID? =
                switch value["id"] {
                case .integer(let number)?: .number(number)
                case .string(let string)?: .string(string)
                default: nil
                }
            return Response(id: id, error: error)
        }
        let outcome = await handle(request)
        return request.isNotification ? nil : Response(id: request.id, outcome: outcome)
    }

    /// Why a line is not JSON, in a few words (Foundation's messages are long and vary).
    static func parseFailure(_ error: Error) -> String {
        let text = String(describing: error)
        if text.contains("not representable") { return "the line is not valid JSON: a number is out of range" }
        if text.contains("Unicode") || text.contains("UTF8") || text.contains("UTF-8") { return "the line is not valid UTF-8" }
        if text.contains("depth") || text.contains("nested") { return "the line is not valid JSON: nested too deeply" }
        return "the line is not valid JSON"
    }

    public static func encode<Value: Encodable>(_ value: Value) -> ByteBuffer? {
        guard let data = try? encoder.encode(value) else { return nil }
        return ByteBuffer(bytes: data)
    }
}

extension Response {
    public init(id: RequestID?, outcome: Outcome) {
        self.id = id
        self.outcome = outcome
    }
}

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

    /// The response line for `line`, without its newline; nil when nothing is owed.
    public func respond(to line: ByteBuffer) async -> ByteBuffer? {
        let value: JSONValue
        do {
            value = try JSONValue.parse(line)
        } catch {
            return Self.encode(Response(id: nil, error: RPCError(code: .parseError, message: error.description)))
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

    public static func encode(_ response: Response) -> ByteBuffer? { encode(response.json) }

    public static func encode(_ responses: [Response]) -> ByteBuffer? { encode(.array(responses.map(\.json))) }

    public static func encode(_ value: JSONValue) -> ByteBuffer? {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(256)
        value.write(into: &buffer)
        return buffer
    }
}

extension Response {
    public init(id: RequestID?, outcome: Outcome) {
        self.id = id
        self.outcome = outcome
    }
}

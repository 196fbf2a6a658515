import Foundation
import JSONRPC
import NIOCore
import Testing

@Suite struct DispatcherTests {
    let dispatcher = Dispatcher(maxBatchSize: 3) { request in
        request.method == "echo" ? .result(request.params ?? .null) : .error(RPCError(code: .methodNotFound, message: "no"))
    }

    func respond(_ line: String) async throws -> JSONValue? {
        guard let buffer = await dispatcher.respond(to: ByteBuffer(string: line)) else { return nil }
        return try JSONDecoder().decode(JSONValue.self, from: Data(buffer.readableBytesView))
    }

    @Test func requestsNotificationsAndIds() async throws {
        let numbered = try await respond(#"{"jsonrpc":"2.0","id":1,"method":"echo","params":{"a":[1,"b",null]}}"#)
        #expect(numbered?["id"] == .integer(1))
        #expect(numbered?["result"]?["a"] == .array([.integer(1), .string("b"), .null]))
        let named = try await respond(#"{"jsonrpc":"2.0","id":"req-1","method":"echo"}"#)
        #expect(named?["id"] == .string("req-1"))
        #expect(try await respond(#"{"jsonrpc":"2.0","method":"echo"}"#) == nil)
    }

    @Test func invalidRequestsSayWhy() async throws {
        let cases: [(String, Int64)] = [
            (#"{"jsonrpc":"2.0","id":1,"method":"echo""#, -32700),
            (#"not json"#, -32700),
            (#"42"#, -32600),
            (#"{"id":1,"method":"echo"}"#, -32600),
            (#"{"jsonrpc":"2.0","id":1,"method":7}"#, -32600),
            (#"{"jsonrpc":"2.0","id":{"x":1},"method":"echo"}"#, -32600),
            (#"{"jsonrpc":"2.0","id":1,"method":"echo","params":"text"}"#, -32600),
            (#"{"jsonrpc":"2.0","id":1,"method":"echo","extra":true}"#, -32600),
            (#"[]"#, -32600),
            (#"[1,2,3,4]"#, -32600),
            (#"{"jsonrpc":"2.0","id":1,"method":"missing"}"#, -32601),
        ]
        for (line, code) in cases {
            let response = try await respond(line)
            #expect(response?["error"]?["code"] == .integer(code), "\(line)")
            #expect(response?["jsonrpc"] == .string("2.0"))
        }
        // A parse error's id is null; an invalid request's readable id is echoed.
        #expect(try await respond("{")?["id"] == .null)
        #expect(try await respond(#"{"id":9,"method":"echo"}"#)?["id"] == .integer(9))
    }

    @Test func batchesAnswerEachRequestAndSkipNotifications() async throws {
        let response = try await respond(
            #"[{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]},{"jsonrpc":"2.0","method":"echo"},"bad"]"#)
        guard case .array(let items) = response else {
            Issue.record("expected an array, got \(String(describing: response))")
            return
        }
        #expect(items.count == 2)
        #expect(items[0]["result"] == .array([.integer(1)]))
        #expect(items[1]["error"]?["code"] == .integer(-32600))
        #expect(try await respond(#"[{"jsonrpc":"2.0","method":"echo"}]"#) == nil)
    }
}

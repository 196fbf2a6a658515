import Foundation
import JSONRPC
import NIOCore
import Testing

@Suite struct JSONTextTests {
    @Test func valuesParseAsFoundationReadsThem() throws {
        let plain = #"{"a":[1,-2,3.5,true,false,null],"b":{"c":"d"},"e":"","f":9223372036854775807,"g":-9223372036854775808}"#
        #expect(try JSONValue.parse(plain) == (try JSONDecoder().decode(JSONValue.self, from: Data(plain.utf8))))
        // A number with a fraction or an exponent is a double, even when it is whole.
        let text = #"{"a":[1,-2,3.5,-0.25e2,1E3,true,false,null],"f":9223372036854775807}"#
        let value = try JSONValue.parse(text)
        #expect(value["f"] == .integer(.max))
        #expect(value["a"] == .array([.integer(1), .integer(-2), .double(3.5), .double(-25), .double(1000), .bool(true), .bool(false), .null]))
        // Beyond 64 bits an integer is a double, for parameters to refuse.
        #expect(try JSONValue.parse("99999999999999999999999") == .double(1e23))
    }

    @Test func stringsDecodeEveryEscape() throws {
        #expect(try JSONValue.parse(#""a\"b\\c\/d\b\f\n\r\t""#) == .string("a\"b\\c/d\u{8}\u{c}\n\r\t"))
        #expect(try JSONValue.parse(#""\u00e9t\u00E9 \ud83d\ude00 Ségou""#) == .string("été 😀 Ségou"))
        #expect(try JSONValue.parse("  [ 1 , \"x\" ]\r\n") == .array([.integer(1), .string("x")]))
    }

    @Test(arguments: [
        ("", "it ends where a value should be"), ("{", "a member name must be a string"), ("[1,]", "unexpected character"),
        ("{\"a\" 1}", "expected ':'"), ("{\"a\":1,}", "a member name must be a string"), ("01", "cannot start with 0"),
        ("1.", "a fraction needs digits"), ("1e", "an exponent needs digits"), ("-", "a number needs digits"), ("tru", "unexpected end"),
        ("nul", "unexpected end"), ("\"abc", "not closed"), ("\"a\u{1}b\"", "a control character"), ("\"\\x\"", "an unknown escape"),
        ("\"\\u12\"", "four hex digits"), ("\"\\ud800\"", "a lone surrogate"), ("\"\\udc00\"", "a lone surrogate"), ("1 2", "text after the value"),
        ("1e400", "out of range"), ("'a'", "unexpected character"), ("NaN", "unexpected character"),
    ])
    func badTextIsRefusedWithTheReason(_ text: String, _ reason: String) {
        do {
            _ = try JSONValue.parse(text)
            Issue.record("\(text) parsed")
        } catch {
            #expect(error.description.contains(reason), "\(text): \(error.description)")
        }
    }

    @Test func invalidUTF8AndDeepNestingAreRefused() {
        var buffer = ByteBuffer()
        buffer.writeBytes([0x22, 0xC3, 0x28, 0x22])
        #expect((try? JSONValue.parse(buffer)) == nil)
        do { _ = try JSONValue.parse(buffer) } catch { #expect(error.description == "the line is not valid UTF-8") }
        let deep = String(repeating: "[", count: 300) + String(repeating: "]", count: 300)
        do {
            _ = try JSONValue.parse(deep)
            Issue.record("300 levels parsed")
        } catch { #expect(error.description == "the line is not valid JSON: nested too deeply") }
        let fine = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect((try? JSONValue.parse(fine)) != nil)
    }

    @Test func writtenTextParsesBackToTheSameValue() throws {
        let value = JSONValue.object([
            "text": .string("quote \" backslash \\ newline \n tab \t bell \u{7} slash / é 😀"), "n": .integer(-42), "x": .double(0.1),
            "list": .array([.null, .bool(true), .object([:]), .array([])]), "big": .double(1e-7),
        ])
        let text = value.text
        #expect(try JSONValue.parse(text) == value)
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) == value)
        #expect(JSONValue.object(["b": .integer(1), "a": .integer(2)]).text == #"{"a":2,"b":1}"#)  // keys sorted
        #expect(JSONValue.string("a/b").text == #""a/b""#)
    }
}

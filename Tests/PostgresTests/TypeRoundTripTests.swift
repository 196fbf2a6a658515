import Foundation
import Postgres
import Testing
import TestSupport

/// Every supported type goes to the server as a bound parameter and comes back unchanged.
@Suite struct TypeRoundTripTests {
    let pool: PostgresPool

    init() async throws {
        pool = PostgresPool(configuration: .init(target: try await TestDatabase.create("types"), maxConnections: 2))
    }

    func echo<Value: PostgresEncodable & PostgresDecodable>(_ value: Value) async throws -> Value {
        try await pool.query("SELECT \(value) AS v").first!.decode(Value.self, at: 0)
    }

    func echoOptional<Value: PostgresEncodable & PostgresDecodable>(_ value: Value?) async throws -> Value? {
        try await pool.query("SELECT \(value) AS v").first!.decode(Value?.self, at: 0)
    }

    @Test func text() async throws {
        #expect(try await echo("") == "")
        let unicode = "Côte d’Ivoire — Burundi 🇧🇮, ἀρχή, 日本語, \u{200D}zwj, tab\tand\nnewline, quote' \"double\" \\back"
        #expect(try await echo(unicode) == unicode)
        let large = String(repeating: "peacebuilding ", count: 200_000)  // 2.8 MB
        #expect(try await echo(large) == large)
        #expect(try await echoOptional(String?.none) == nil)
        #expect(try await echoOptional(String?.some("x")) == "x")
        let injection = "'); DROP TABLE pbc_schema_migrations; --"
        #expect(try await echo(injection) == injection)
    }

    @Test func textWithNULIsRefusedNotTruncated() async throws {
        let error = await #expect(throws: PostgresError.self) { _ = try await echo("before\u{0}after") }
        #expect(error?.description.contains("NUL") == true)
    }

    @Test func integers() async throws {
        for value in [Int.min, -1, 0, 1, Int.max] { #expect(try await echo(value) == value) }
        for value in [Int32.min, 0, Int32.max] { #expect(try await echo(value) == value) }
        for value in [Int16.min, 0, Int16.max] { #expect(try await echo(value) == value) }
        #expect(try await echoOptional(Int?.none) == nil)
        // A value that does not fit is an error, never a wrapped number.
        let error = await #expect(throws: PostgresError.self) {
            _ = try await pool.query("SELECT 40000::int4").first!.decode(Int16.self, at: 0)
        }
        #expect(error?.code == .decoding)
    }

    @Test func booleansAndDoubles() async throws {
        #expect(try await echo(true) == true)
        #expect(try await echo(false) == false)
        for value in [0.0, -1.5, 3.141592653589793, 1e-300, Double.greatestFiniteMagnitude] {
            #expect(try await echo(value) == value)
        }
        #expect(try await echo(Double.infinity) == .infinity)
    }

    @Test func numericKeepsEveryDigit() async throws {
        for text in ["0", "-1500000.25", "1500000.00", "12345678901234567890123456789012345678901234567890.000000000000000000001", "-0.000001"] {
            let value = try #require(PostgresNumeric(text))
            #expect(try await echo(value) == value)
        }
        // Arithmetic on the server is exact too.
        let sum = try await pool.query("SELECT \(PostgresNumeric("0.1")!) + \(PostgresNumeric("0.2")!)").first!
            .decode(PostgresNumeric.self, at: 0)
        #expect(sum.text == "0.3")
        #expect(PostgresNumeric("1e5") == nil)
        #expect(PostgresNumeric("12.") == nil)
        #expect(PostgresNumeric("1500000.25")?.decimal == Decimal(string: "1500000.25"))
    }

    @Test func uuids() async throws {
        let id = UUID()
        #expect(try await echo(id) == id)
        let generated = try await pool.query("SELECT gen_random_uuid()").first!.decode(UUID.self, at: 0)
        #expect(generated != id)
    }

    @Test func dates() async throws {
        for text in ["2026-01-01", "2024-02-29", "0001-01-01", "9999-12-31"] {
            let date = try #require(PostgresDate(iso: text))
            #expect(try await echo(date) == date)
        }
        #expect(PostgresDate(iso: "2026-02-29") == nil)
        #expect(PostgresDate(iso: "2026-13-01") == nil)
        let server = try await pool.query("SELECT DATE '2026-11-29' + 3").first!.decode(PostgresDate.self, at: 0)
        #expect(server.iso == "2026-12-02")
    }

    @Test func timestampsAreInstantsWhateverTheSessionZone() async throws {
        let instant = Date(timeIntervalSince1970: 1_795_000_000.123456)
        let back = try await echo(instant)
        #expect(abs(back.timeIntervalSince(instant)) < 0.000_001)
        // The same instant read in a session whose zone is +05:30, and a literal with an offset.
        let rows = try await pool.withConnection { connection in
            try await connection.execute(unsafeSQL: "SET TimeZone TO 'Asia/Kolkata'")
            defer { Task { try? await connection.execute(unsafeSQL: "SET TimeZone TO 'UTC'") } }
            return try await connection.query(
                "SELECT \(instant)::timestamptz, TIMESTAMPTZ '2026-03-01 12:00:00+05:30', \(instant)::timestamptz::text")
        }
        let row = try #require(rows.first)
        #expect(abs(try row.decode(Date.self, at: 0).timeIntervalSince(instant)) < 0.000_001)
        #expect(try row.decode(Date.self, at: 1) == Date(timeIntervalSince1970: 1_772_346_600))
        #expect(try row.decode(String.self, at: 2).hasSuffix("+05:30"))
    }

    @Test func jsonb() async throws {
        struct Budget: Codable, Equatable { let amount: String; let currency: String }
        let value = try PostgresJSONB(encoding: Budget(amount: "1500000.00", currency: "USD"))
        let back = try await echo(value)
        #expect(try back.decode(Budget.self) == Budget(amount: "1500000.00", currency: "USD"))
        let field = try await pool.query("SELECT \(value) ->> 'currency'").first!.decode(String.self, at: 0)
        #expect(field == "USD")
    }

    @Test func arrays() async throws {
        let texts = ["15220", "", "NULL", "with,comma", "with \"quotes\"", "back\\slash", "{braces}", "Côte d’Ivoire",
            "Cote\u{301}", "🇸🇱 \"é\\", "  spaced  "]
        #expect(try await echo(texts) == texts)
        #expect(try await echo([String]()) == [])
        #expect(try await echo([15220, 15210, -1, Int.max]) == [15220, 15210, -1, Int.max])
        let fromServer = try await pool.query("SELECT ARRAY[1,2,3]::int4[]").first!.decode([Int].self, at: 0)
        #expect(fromServer == [1, 2, 3])
        let withNull = await #expect(throws: PostgresError.self) {
            _ = try await pool.query("SELECT ARRAY['a', NULL]").first!.decode([String].self, at: 0)
        }
        #expect(withNull?.code == .decoding)
    }

    @Test func decodingIntoTheWrongTypeIsAnErrorNamingTheColumn() async throws {
        let row = try #require(try await pool.query("SELECT 1::int4 AS n, NULL::text AS t").first)
        let wrong = #expect(throws: PostgresError.self) { _ = try row.decode(Bool.self, "n") }
        #expect(wrong?.description.contains("n") == true)
        let null = #expect(throws: PostgresError.self) { _ = try row.decode(String.self, "t") }
        #expect(null?.code == .decoding)
        #expect(try row.decode(String?.self, "t") == nil)
        #expect(throws: PostgresError.self) { _ = try row.decode(Int.self, "missing") }
    }
}

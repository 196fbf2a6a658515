/// The rows a statement returned, copied out of libpq's result.
public struct PostgresRows: Sendable, Sequence {
    public struct Column: Sendable, Hashable {
        public let name: String
        public let type: PostgresType
    }

    public let columns: [Column]
    /// The values of every row, row after row; `nil` is SQL NULL.
    let values: [String?]
    /// Rows a command touched (`UPDATE 3` gives 3), or the rows returned.
    public let affectedRows: Int

    init(columns: [Column], values: [String?], affectedRows: Int) {
        self.columns = columns
        self.values = values
        self.affectedRows = affectedRows
    }

    public var count: Int { columns.isEmpty ? 0 : values.count / columns.count }
    public var isEmpty: Bool { count == 0 }

    public subscript(row: Int) -> PostgresRow { PostgresRow(rows: self, index: row) }

    public var first: PostgresRow? { isEmpty ? nil : self[0] }

    public func makeIterator() -> AnyIterator<PostgresRow> {
        var next = 0
        return AnyIterator {
            guard next < count else { return nil }
            defer { next += 1 }
            return self[next]
        }
    }
}

/// One row; values are read by position or by column name into a `PostgresDecodable` type.
public struct PostgresRow: Sendable {
    let rows: PostgresRows
    let index: Int

    public func decode<Value: PostgresDecodable>(_ type: Value.Type, at column: Int) throws -> Value {
        guard let value = try decode(Value?.self, at: column) else {
            throw PostgresError(
                .decoding, message: "column \(rows.columns[column].name) is NULL; decode it as \(Value.self)?")
        }
        return value
    }

    public func decode<Value: PostgresDecodable>(_ type: Value?.Type, at column: Int) throws -> Value? {
        guard rows.columns.indices.contains(column) else {
            throw PostgresError(.decoding, message: "no column \(column): the row has \(rows.columns.count)")
        }
        guard let text = rows.values[index * rows.columns.count + column] else { return nil }
        do {
            return try Value(postgresText: text, type: rows.columns[column].type)
        } catch {
            throw PostgresError(.decoding, message: "column \(rows.columns[column].name): \(error.reason)")
        }
    }

    public func decode<Value: PostgresDecodable>(_ type: Value.Type, _ column: String) throws -> Value {
        try decode(type, at: position(of: column))
    }

    public func decode<Value: PostgresDecodable>(_ type: Value?.Type, _ column: String) throws -> Value? {
        try decode(type, at: position(of: column))
    }

    private func position(of name: String) throws -> Int {
        guard let position = rows.columns.firstIndex(where: { $0.name == name }) else {
            throw PostgresError(.decoding, message: "no column named \(name)")
        }
        return position
    }
}

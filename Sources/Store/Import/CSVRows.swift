import Foundation

/// The rows of a CSV file as RFC 4180 writes them (comma-separated; a field
/// that holds a comma, a quote or a line break is quoted with `"`, and a
/// quote inside it is written twice), read as a stream in constant memory.
///
/// Written here rather than taken from CSV.swift, which read these files
/// before: it accepts every byte sequence as some rows. A quote left open
/// swallowed the rest of the file into one field, imported as one activity
/// with a title of thousands of lines, and text after a closing quote was
/// kept as if quoted. Either way the rows after it are read wrong, so here
/// both stop the file with the line where it went wrong.
struct CSVRows {
    struct Row {
        /// The line the row begins on (a quoted field may span lines).
        var line: Int
        var fields: [String]
    }

    struct Malformed: Error {
        var line: Int
        var message: String
    }

    /// A longer field is a quote left open far more likely than a description.
    static let maxFieldBytes = 1 << 20

    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var position = 0
    private var atEnd = false
    private var started = false
    private var line = 1

    init(reading handle: FileHandle) {
        self.handle = handle
    }

    /// The next row; nil at the end of the file. Blank lines are not rows.
    mutating func next() throws -> Row? {
        var byte = try read()
        while let b = byte, b == Self.cr || b == Self.lf {
            try endLine(b)
            byte = try read()
        }
        guard byte != nil else { return nil }
        let start = line
        var fields: [String] = []
        while true {
            while let b = byte, b == Self.space || b == Self.tab { byte = try read() }
            var bytes: [UInt8] = []
            if byte == Self.quote {
                let opened = line
                while true {
                    guard let b = try read() else {
                        throw Malformed(line: opened, message: "the quoted field that begins on this line never ends (a quote is missing)")
                    }
                    if b == Self.quote {
                        guard try peek() == Self.quote else { break }
                        _ = try read()
                    } else if b == Self.lf {
                        line += 1
                    } else if b == Self.cr, try peek() != Self.lf {
                        line += 1
                    }
                    bytes.append(b)
                    guard bytes.count <= Self.maxFieldBytes else {
                        throw Malformed(line: opened, message: "the quoted field that begins on this line is over 1 MiB (a quote is missing)")
                    }
                }
                byte = try read()
                while let b = byte, b == Self.space || b == Self.tab { byte = try read() }
                if let b = byte, b != Self.comma, b != Self.cr, b != Self.lf {
                    throw Malformed(
                        line: line,
                        message: "text after the closing quote of field \(fields.count + 1) (a quote inside a quoted field is written twice)")
                }
                fields.append(try text(bytes))
            } else {
                while let b = byte, b != Self.comma, b != Self.cr, b != Self.lf {
                    bytes.append(b)
                    guard bytes.count <= Self.maxFieldBytes else { throw Malformed(line: line, message: "a field over 1 MiB") }
                    byte = try read()
                }
                fields.append(try text(bytes).trimmingCharacters(in: .whitespaces))
            }
            guard let b = byte else { return Row(line: start, fields: fields) }
            if b == Self.comma {
                byte = try read()
                continue
            }
            try endLine(b)
            return Row(line: start, fields: fields)
        }
    }

    private func text(_ bytes: [UInt8]) throws -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw Malformed(line: line, message: "not UTF-8 text") }
        return text
    }

    /// After a line break `b`: CR LF is one break.
    private mutating func endLine(_ b: UInt8) throws {
        line += 1
        if b == Self.cr, try peek() == Self.lf { _ = try read() }
    }

    private mutating func read() throws -> UInt8? {
        guard try fill() else { return nil }
        defer { position += 1 }
        return buffer[position]
    }

    private mutating func peek() throws -> UInt8? {
        guard try fill() else { return nil }
        return buffer[position]
    }

    /// Makes sure a byte is buffered; false at the end of the file.
    private mutating func fill() throws -> Bool {
        if position < buffer.count { return true }
        guard !atEnd, let data = try handle.read(upToCount: 1 << 16), !data.isEmpty else {
            atEnd = true
            return false
        }
        buffer = Array(data)
        position = 0
        if !started {
            started = true
            // The byte-order mark spreadsheet programs put before UTF-8 text.
            if buffer.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
            if position == buffer.count { return try fill() }
        }
        return true
    }

    private static let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n")
    private static let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t")
}

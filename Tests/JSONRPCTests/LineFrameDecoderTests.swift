import JSONRPC
import NIOCore
import NIOEmbedded
import Testing

@Suite struct LineFrameDecoderTests {
    func channel(limit: Int = 16) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLineBytes: limit)))
        return channel
    }

    func lines(_ channel: EmbeddedChannel) throws -> [String] {
        var lines: [String] = []
        while let frame = try channel.readInbound(as: Frame.self) {
            switch frame {
            case .line(let buffer): lines.append(String(buffer: buffer))
            case .tooLong: lines.append("<too long>")
            }
        }
        return lines
    }

    @Test func splitsOnNewlinesAcceptsCRLFAndSkipsBlankLines() throws {
        let channel = try channel()
        try channel.writeInbound(ByteBuffer(string: "one\r\ntwo\n\n  \r\nthr"))
        #expect(try lines(channel) == ["one", "two"])
        try channel.writeInbound(ByteBuffer(string: "ee\n"))
        #expect(try lines(channel) == ["three"])
    }

    @Test func aLineArrivingAByteAtATimeIsOneLine() throws {
        let channel = try channel()
        for byte in "{\"a\":1}\n".utf8 { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
        #expect(try lines(channel) == ["{\"a\":1}"])
    }

    @Test func theLimitIsEnforcedBeforeTheNewlineArrives() throws {
        let channel = try channel(limit: 16)
        try channel.writeInbound(ByteBuffer(string: "exactly-16-bytes\n"))
        #expect(try lines(channel) == ["exactly-16-bytes"])
        // 17 bytes and no newline yet: reported at once, nothing more buffered.
        try channel.writeInbound(ByteBuffer(string: "seventeen-bytes!!"))
        #expect(try lines(channel) == [])
        try channel.writeInbound(ByteBuffer(string: "x"))
        #expect(try lines(channel) == ["<too long>"])
        // Everything after is dropped: the connection is closing.
        try channel.writeInbound(ByteBuffer(string: "\nlate\n"))
        #expect(try lines(channel) == [])
    }

    @Test func aLongLineInOneReadIsTooLong() throws {
        let channel = try channel(limit: 8)
        try channel.writeInbound(ByteBuffer(string: "short\n" + String(repeating: "y", count: 20) + "\nnever\n"))
        #expect(try lines(channel) == ["short", "<too long>"])
    }

    @Test func theLastLineWithoutANewlineCountsAtEOF() throws {
        let channel = try channel()
        try channel.writeInbound(ByteBuffer(string: "first\nlast"))
        #expect(try lines(channel) == ["first"])
        _ = try channel.finish()
        #expect(try lines(channel) == ["last"])
    }
}

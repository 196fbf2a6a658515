import NIOCore

/// One line of input, or the news that a line grew past the limit.
public enum Frame: Sendable, Equatable {
    case line(ByteBuffer)
    case tooLong
}

/// Splits newline-delimited input into lines without the `\n` (or `\r\n`),
/// skipping blank lines. The limit is enforced while reading: once more than
/// `maxLineBytes` arrive with no newline, it emits `.tooLong` and drops
/// everything after, so no more than the limit is ever buffered.
public struct LineFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame

    public let maxLineBytes: Int
    private var scanned = 0
    private var overflowed = false

    public init(maxLineBytes: Int) {
        self.maxLineBytes = maxLineBytes
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if overflowed {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        let view = buffer.readableBytesView
        if let newline = view.dropFirst(scanned).firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - view.startIndex
            scanned = 0
            var line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            if line.readableBytesView.last == UInt8(ascii: "\r") {
                line.moveWriterIndex(to: line.writerIndex - 1)
            }
            if line.readableBytesView.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }) {
                guard line.readableBytes <= maxLineBytes else { return overflow(context: context, buffer: &buffer) }
                context.fireChannelRead(wrapInboundOut(.line(line)))
            }
            return .continue
        }
        scanned = view.count
        if view.count > maxLineBytes + 1 {  // +1: a trailing \r is not part of the line
            return overflow(context: context, buffer: &buffer)
        }
        return .needMoreData
    }

    private mutating func overflow(context: ChannelHandlerContext, buffer: inout ByteBuffer) -> DecodingState {
        overflowed = true
        buffer.moveReaderIndex(to: buffer.writerIndex)
        context.fireChannelRead(wrapInboundOut(.tooLong))
        return .needMoreData
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A last line with no newline still counts.
        while try decode(context: context, buffer: &buffer) == .continue {}
        if !overflowed, buffer.readableBytes > 0 {
            buffer.writeInteger(UInt8(ascii: "\n"))
            while try decode(context: context, buffer: &buffer) == .continue {}
        }
        return .needMoreData
    }
}

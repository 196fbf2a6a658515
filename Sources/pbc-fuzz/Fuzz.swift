import Foundation
import JSONRPC
import NIOCore
import NIOEmbedded
import Server

/// One input, as a client's bytes: framed into lines (with a small line
/// limit), each line parsed as JSON-RPC, each request's parameters decoded
/// as its method would. Nothing may crash, and what the JSON writer writes
/// must parse back to the same value.
///
/// Built with `bench/fuzz` (libFuzzer, `-sanitize=fuzzer,address`); built
/// normally, it replays inputs given as files or directories, which is how
/// `FuzzRegressionTests` keeps every crash found as a test.
func fuzz(_ bytes: UnsafeRawBufferPointer) {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(LineFrameDecoder(maxLineBytes: 4096)))
    var buffer = channel.allocator.buffer(capacity: bytes.count)
    buffer.writeBytes(bytes)
    _ = try? channel.writeInbound(buffer)
    // A last line without its newline counts when the client closes its side.
    channel.pipeline.fireChannelInactive()
    while let frame = try? channel.readInbound(as: Frame.self) {
        if case .line(let line) = frame { handle(line) }
    }
    _ = try? channel.finish(acceptAlreadyClosed: true)
}

func handle(_ line: ByteBuffer) {
    guard let value = try? JSONValue.parse(line) else { return }
    guard let again = try? JSONValue.parse(value.text), again == value else {
        fatalError("the JSON writer and parser disagree on \(value)")
    }
    let items: [JSONValue] = if case .array(let items) = value { items } else { [value] }
    for item in items {
        guard let request = try? Request(parsing: item) else { continue }
        _ = try? Methods.decodeParams(method: request.method, params: request.params)
    }
}

#if FUZZING
/// The entry libFuzzer's own `main` calls, when the linker takes that one.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzz(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// libFuzzer's driver, run from this program's own `main` (SwiftPM names the
/// entry point of an executable target, so libFuzzer's `main` is not used).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@main
struct Fuzz {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(runFuzzerDriver(&argc, &argv) { data, size in
            fuzz(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        })
    }
}
#else
@main
struct Replay {
    static func main() throws {
        var files: [URL] = []
        for argument in CommandLine.arguments.dropFirst() {
            let url = URL(fileURLWithPath: argument)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("pbc-fuzz: no such file \(argument)\n".utf8))
                exit(2)
            }
            if isDirectory.boolValue {
                files += try FileManager.default.contentsOfDirectory(at: url, includingPropertiesForKeys: nil).sorted { $0.path < $1.path }
            } else {
                files.append(url)
            }
        }
        for file in files {
            let data = try Data(contentsOf: file)
            data.withUnsafeBytes { fuzz($0) }
        }
        print("replayed \(files.count) inputs")
    }
}
#endif

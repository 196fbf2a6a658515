import Foundation
import JSONRPC
import NIOSSL
import Subprocess
import Testing
import TestSupport

#if canImport(System)
import System
#else
import SystemPackage
#endif

@Suite struct TLSTests {
    /// A self-signed certificate for localhost and 127.0.0.1, made with openssl.
    static func certificate() async throws -> (certificate: String, key: String) {
        let directory = Scratch.directory.appendingPathComponent("pbc-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        let result = try await Subprocess.run(
            .name("openssl"),
            arguments: ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            output: .discarded, error: .string(limit: 1 << 16))
        guard case .exited(0) = result.terminationStatus else { throw TLSSetupFailed(message: result.standardError) }
        return (certificate, key)
    }

    struct TLSSetupFailed: Error { let message: String? }

    @Test func aSessionOverTLS() async throws {
        let (certificate, key) = try await Self.certificate()
        let server = try await ServerHarness.start("tls") {
            $0.tlsCertificate = certificate
            $0.tlsKey = key
        }
        var trusting = TLSConfiguration.makeClientConfiguration()
        trusting.trustRoots = .file(certificate)
        try await server.withSession("coordinator", tls: trusting) { client in
            let ping = try await client.call("ping")
            #expect(ping?["result"]?["pong"] == .bool(true))
            let workflows = try await client.call("workflow.list")
            #expect(workflows?["result"]?["items"] != nil)
        }
        // A client that does not trust the certificate is refused by its own TLS.
        await #expect(throws: (any Error).self) {
            try await server.withSession("coordinator", tls: .makeClientConfiguration()) { _ in }
        }
        // Plain text to a TLS listener gets no JSON-RPC answer.
        try await LineClient.withConnection(port: server.port) { client in
            try await client.send(raw: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"# + "\n")
            let answer = try? await client.receive()
            #expect(answer == nil)
        }
        // The pbc client, trusting the certificate.
        let listed = try await Subprocess.run(
            .path(FilePath(PBCBinary.path)), arguments: ["tasks", "--server", "localhost:\(server.port)", "--tls-ca", certificate],
            environment: .inherit.updating(["PBC_TOKEN": server.tokens["coordinator"]!, "PBC_SERVER": nil]),
            output: .string(limit: 1 << 16), error: .string(limit: 1 << 16))
        #expect(listed.terminationStatus == .exited(0), "\(listed.standardError)")
        #expect(listed.standardOutput == "no tasks\n", "\(listed.standardOutput)")  // served over TLS: the server has none yet
        await server.stop()
    }

    @Test func aCertificateWithoutAKeyIsRefusedAtStart() async throws {
        let error = await #expect(throws: ConfigurationError.self) {
            _ = try await ConfigurationLoader.load(file: nil, environment: ["PBC_SERVER_TLS_CERTIFICATE": "/tmp/cert.pem"])
        }
        #expect(error?.description == "TLS needs both a certificate (--tls-cert) and a private key (--tls-key)")
    }
}

import Server

import Foundation
import JSONRPC
import Logging
import Postgres

/// The methods the server answers, and the one place where errors become JSON-RPC errors.
public struct Methods: Sendable {
    let pool: PostgresPool
    let logger: Logger

    public init(pool: PostgresPool, logger: Logger) {
        self.pool = pool
        self.logger = logger
    }

    func handle(_ request: Request) async -> Response.Outcome {
        let started = ContinuousClock.now
        let outcome: Response.Outcome
        do {
            outcome = .result(try await call(request))
        } catch let error as RPCError {
            outcome = .error(error)
        } catch let error as PostgresError where error.isUnavailable {
            outcome = .error(RPCError(code: .unavailable, message: "the database cannot be reached; retry", data: .object(["retryAfterMs": .integer(1000)])))
        } catch {
            logger.error("request failed", metadata: ["rpc.method": "\(request.method)", "error": "\(String(reflecting: error))"])
            outcome = .error(RPCError(code: .internalError, message: "internal error"))
        }
        var metadata: Logger.Metadata = [
            "rpc.method": "\(request.method)", "rpc.duration_ms": "\((ContinuousClock.now - started).milliseconds)",
        ]
        if let id = request.id { metadata["rpc.id"] = "\(id)" }
        if case .error(let error) = outcome { metadata["rpc.code"] = "\(error.code.rawValue)" }
        logger.info("request", metadata: metadata)
        return outcome
    }

    private func call(_ request: Request) async throws -> JSONValue {
        switch request.method {
        case "ping":
            return .object(["pong": .bool(true)])
        default:
            throw RPCError(code: .methodNotFound, message: "no method named \(request.method)")
        }
    }
}

extension Duration {
    var milliseconds: String {
        let (seconds, attoseconds) = components
        return String(format: "%.2f", Double(seconds) * 1000 + Double(attoseconds) / 1e15)
    }
}

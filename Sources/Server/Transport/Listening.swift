import Foundation
import NIOCore

/// Binding a listening socket, with the failures a person starting pbc can
/// act on said in their words rather than the socket call's.
enum Listening {
    static func bind<Listener>(
        host: String, port: Int, what: String, option: String, _ bind: () async throws -> Listener
    ) async throws -> Listener {
        do {
            return try await bind()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw ConfigurationError(
                "cannot serve \(what) on \(host):\(port): the address is in use (another pbc serve, or another program); choose another with \(option)")
        } catch let error as IOError where error.errnoCode == EACCES {
            throw ConfigurationError("cannot serve \(what) on \(host):\(port): permission denied (ports below 1024 need privileges); choose another with \(option)")
        } catch let error as IOError where error.errnoCode == EADDRNOTAVAIL {
            throw ConfigurationError("cannot serve \(what) on \(host):\(port): no interface of this machine has that address; choose another with --host")
        }
    }
}

import Foundation
import Store
import Synchronization

/// What one connection has established: who it is (after `session.hello`)
/// and when it last spoke.
final class Session: Sendable {
    private struct State {
        var principal: Principal?
        var protocolVersion: Int?
        var closeAfterReply = false
        var lastActivity = ContinuousClock.now
    }

    private let state = Mutex(State())
    let opened = ContinuousClock.now
    /// The connection's event streams (`event.subscribe`).
    let streams = EventStreams()

    var principal: Principal? { state.withLock { $0.principal } }

    func open(as principal: Principal, protocolVersion: Int) {
        state.withLock {
            $0.principal = principal
            $0.protocolVersion = protocolVersion
        }
    }

    /// The connection closes once the current reply is written.
    func closeAfterReply() { state.withLock { $0.closeAfterReply = true } }
    var shouldClose: Bool { state.withLock { $0.closeAfterReply } }

    func touch() { state.withLock { $0.lastActivity = .now } }
    var idleFor: Duration { ContinuousClock.now - state.withLock { $0.lastActivity } }
}

/// A token bucket per principal, shared by all of the principal's connections.
final class RateLimiter: Sendable {
    let perSecond: Double
    let burst: Double
    private let buckets = Mutex<[UUID: (tokens: Double, at: ContinuousClock.Instant)]>([:])

    init(perSecond: Double, burst: Int) {
        self.perSecond = perSecond
        self.burst = Double(burst)
    }

    /// Nil when the request may go ahead; otherwise how long to wait, in milliseconds.
    func admit(_ principal: UUID) -> Int? {
        let now = ContinuousClock.now
        return buckets.withLock { buckets in
            var bucket = buckets[principal] ?? (burst, now)
            let elapsed = now - bucket.at
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(burst, bucket.tokens + seconds * perSecond)
            bucket.at = now
            defer { buckets[principal] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return max(1, Int(((1 - bucket.tokens) / perSecond * 1000).rounded(.up)))
        }
    }
}

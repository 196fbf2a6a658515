import Foundation
import Logging
import Postgres
import ServiceLifecycle
import Store
import Synchronization

/// Knows the newest committed event `seq` on this instance and wakes the
/// streams waiting for more. LISTEN/NOTIFY on `pbc_events` is the wake-up
/// from every instance; a poll of the events table every `pollInterval`, and
/// on every (re)connection of the listener, recovers a missed notification.
final class EventHub: Service, Sendable {
    private struct State {
        var newest = 0
        var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())
    private let pool: PostgresPool
    private let tasks: TaskStore
    private let pollInterval: Duration
    private let logger: Logger

    init(pool: PostgresPool, tasks: TaskStore, pollInterval: Duration = .seconds(1), logger: Logger) {
        self.pool = pool
        self.tasks = tasks
        self.pollInterval = pollInterval
        self.logger = logger
    }

    var newest: Int { state.withLock { $0.newest } }

    /// Records that events up to `seq` are committed, and wakes every waiter if that is news.
    func publish(_ seq: Int) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard seq > state.newest else { return [] }
            state.newest = seq
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once an event after `seq` is committed, or when the task is cancelled.
    func waitForEvents(after seq: Int) async {
        let id = UUID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if state.newest > seq || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.listen() }
                group.addTask { await self.poll() }
                await group.waitForAll()
            }
        }
        // Streams end with their connections; wake any still waiting.
        let waiters = state.withLock { state in
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    private func listen() async {
        let listener = PostgresListener(
            target: pool.configuration.target, channels: [TaskStore.eventChannel], threadPool: pool.threadPool, logger: logger)
        for await event in listener.events() {
            switch event {
            case .listening:
                await refresh()
            case .notification(let notification):
                if let seq = Int(notification.payload) { publish(seq) }
            }
        }
    }

    private func poll() async {
        while !Task.isCancelled {
            await refresh()
            do { try await Task.sleep(for: pollInterval) } catch { return }
        }
    }

    private func refresh() async {
        do {
            publish(try await tasks.newestEventSeq())
        } catch {
            logger.debug("cannot read the newest event seq", metadata: ["error": "\(error)"])
        }
    }
}

/// Sweeps for expired leases, SLA breaches and reminders every `interval`.
/// Every instance runs one; the database lets one sweep at a time.
struct Sweeper: Service {
    let tasks: TaskStore
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    if let report = try await tasks.sweep(), !report.isEmpty {
                        logger.info(
                            "sweep",
                            metadata: [
                                "leases_expired": "\(report.leasesExpired.count)", "breached": "\(report.breached.count)",
                                "reminded": "\(report.reminded.count)",
                            ])
                    }
                } catch where Task.isCancelled {
                    return  // pbc is stopping: the sweep's query was cancelled, which is no failure
                } catch {
                    logger.warning("sweep failed; trying again next time", metadata: ["error": "\(error)"])
                }
                do { try await Task.sleep(for: interval) } catch { return }
            }
        }
    }
}

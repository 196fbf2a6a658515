import Metrics
import Postgres
import Prometheus
import Synchronization

/// What the server counts, in a Prometheus registry of its own (no global
/// bootstrap, so several servers can live in one process, as in tests).
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory

    /// Methods get their own label; anything else is "other", so that a
    /// client cannot grow the registry by inventing names.
    static let knownMethods: Set<String> = [
        "ping", "session.hello", "agency.list", "country.list", "sector.list", "workflow.list", "workflow.get", "task.create",
        "task.submit", "task.get", "task.list", "task.act", "task.update", "task.history", "task.comment", "activity.get", "overlap.check", "overlap.list",
        "overlap.resolve", "report.whoWhatWhere", "queue.list", "queue.tasks", "queue.claim", "task.assign", "task.release",
        "task.renew", "event.subscribe", "event.unsubscribe",
    ]

    /// The counters and timers made so far, so that a request only looks one up.
    private let instruments = Mutex<(counters: [String: Metrics.Counter], timers: [String: Metrics.Timer])>(([:], [:]))

    init() {
        factory = PrometheusMetricsFactory(registry: registry)
    }

    func request(method: String, code: Int?, duration: Duration) {
        let name = Self.knownMethods.contains(method) ? method : "other"
        let outcome = code.map(String.init) ?? "ok"
        let (counter, timer) = instruments.withLock { instruments in
            let key = name + " " + outcome
            let counter = instruments.counters[key] ?? {
                let made = Metrics.Counter(label: "pbc_requests_total", dimensions: [("method", name), ("code", outcome)], factory: factory)
                instruments.counters[key] = made
                return made
            }()
            let timer = instruments.timers[name] ?? {
                let made = Metrics.Timer(label: "pbc_request_duration_seconds", dimensions: [("method", name)], factory: factory)
                instruments.timers[name] = made
                return made
            }()
            return (counter, timer)
        }
        counter.increment()
        timer.recordNanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    /// Gauges read at scrape time.
    func record(connections: Int, pool: PostgresPool.Usage) {
        Gauge(label: "pbc_connections_open", factory: factory).record(connections)
        Gauge(label: "pbc_db_pool_connections", dimensions: [("state", "open")], factory: factory).record(pool.open)
        Gauge(label: "pbc_db_pool_connections", dimensions: [("state", "idle")], factory: factory).record(pool.idle)
        Gauge(label: "pbc_db_pool_waiters", factory: factory).record(pool.waiting)
    }
}

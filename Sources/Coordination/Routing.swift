import Foundation
import Yams

/// Refines the queue a state names by the task's country, sector or priority
/// (`pbso-review` becomes `pbso-review-BDI` for Burundi). Read from
/// `Config/routing.yaml`; the first rule that matches wins.
public struct Routing: Sendable, Hashable {
    public struct Rule: Sendable, Hashable {
        /// The queue the workflow's state names.
        public var from: String
        public var country: String?
        /// A 5-digit DAC code, or a 3-digit category that covers its codes.
        public var sector: String?
        public var priority: Priority?
        /// The queue the task goes to instead.
        public var to: String
        public var line: Int

        func matches(_ queue: String, _ task: TaskRecord) -> Bool {
            guard queue == from else { return false }
            if let country, task.country != country { return false }
            if let sector, !task.sectors.contains(where: { $0 == sector || (sector.count == 3 && $0.hasPrefix(sector)) }) { return false }
            if let priority, task.priority != priority { return false }
            return true
        }
    }

    public var rules: [Rule]

    public init(rules: [Rule] = []) { self.rules = rules }

    /// The queue a task waits in when its state names `queue`.
    public func route(_ queue: String?, for task: TaskRecord) -> String? {
        guard let queue else { return nil }
        return rules.first { $0.matches(queue, task) }?.to ?? queue
    }

    /// Every queue a rule sends tasks to, with the queue it refines.
    public var refinements: [(queue: String, refines: String)] { rules.map { ($0.to, $0.from) } }

    /// Reads `routes:`, a list of `{from, to}` with any of `country`, `sector` and `priority`.
    public static func load(yaml text: String, file: String) throws -> Routing {
        guard let root = try ConfigError.compose(yaml: text, file: file) else { return Routing() }
        guard let mapping = root.mapping, Set(mapping.keys.compactMap(\.string)).isSubset(of: ["routes"]) else {
            throw ConfigError(file: file, line: root.mark?.line, message: "a routing file has one key, routes: a list of rules")
        }
        var rules: [Rule] = []
        for node in mapping["routes"]?.sequence.map(Array.init) ?? [] {
            let line = node.mark?.line ?? 0
            guard let rule = node.mapping else {
                throw ConfigError(file: file, line: line, message: "a route is a mapping: {from, to, country, sector, priority}")
            }
            let unknown = Set(rule.keys.compactMap(\.string)).subtracting(["from", "to", "country", "sector", "priority"])
            if let key = unknown.sorted().first {
                throw ConfigError(file: file, line: line, message: "unknown key \(key) in a route (keys: from, to, country, sector, priority)")
            }
            let queue = #"^[A-Za-z0-9][A-Za-z0-9-]*$"#
            guard let from = rule["from"]?.string, from.range(of: queue, options: .regularExpression) != nil,
                let to = rule["to"]?.string, to.range(of: queue, options: .regularExpression) != nil
            else {
                throw ConfigError(file: file, line: line, message: "a route needs from and to, both queue names (letters, digits and dashes)")
            }
            let country = rule["country"]?.string
            if let country, country.range(of: "^[A-Z]{3}$", options: .regularExpression) == nil {
                throw ConfigError(file: file, line: line, message: "country \(country) must be an ISO 3166-1 alpha-3 code")
            }
            let sector = rule["sector"]?.string
            if let sector, sector.range(of: "^([0-9]{3}|[0-9]{5})$", options: .regularExpression) == nil {
                throw ConfigError(file: file, line: line, message: "sector \(sector) must be a 5-digit DAC code or a 3-digit category")
            }
            var priority: Priority?
            if let text = rule["priority"]?.string {
                guard let parsed = Priority(rawValue: text) else {
                    throw ConfigError(file: file, line: line, message: "priority \(text) is not one of low, normal, high, urgent")
                }
                priority = parsed
            }
            if country == nil, sector == nil, priority == nil {
                throw ConfigError(file: file, line: line, message: "a route from \(from) needs a country, sector or priority to match on")
            }
            if from == to {
                throw ConfigError(file: file, line: line, message: "a route from \(from) to itself changes nothing")
            }
            rules.append(Rule(from: from, country: country, sector: sector, priority: priority, to: to, line: line))
        }
        return Routing(rules: rules)
    }
}

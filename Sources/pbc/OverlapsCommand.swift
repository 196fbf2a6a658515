import ArgumentParser
import Coordination
import Foundation
import JSONRPC
import Server
import Store

struct OverlapsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overlaps", abstract: "Overlaps across the portfolio.", subcommands: [Scan.self])

    struct Scan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Screen the whole portfolio against itself (for imported data) and report the clusters of overlapping entries.")

        @OptionGroup var options: ServerOptions
        @Option(help: "Only this country (ISO alpha-3 or alpha-2).") var country: String?
        @Flag(help: "Print JSON for scripts.") var json = false

        func run() async throws {
            let (country, json) = (country, json)
            let clusters = try await withPreparedPool(options) { pool, application in
                try await PortfolioScan(pool: pool, configuration: try application.loadOverlapConfiguration()).scan(country: country)
            }
            if json { return try ClientOptions.printJSON(Self.json(clusters)) }
            if clusters.isEmpty {
                print("no overlaps found")
                return
            }
            for (index, cluster) in clusters.enumerated() {
                print("cluster \(index + 1): \(cluster.country), \(cluster.members.count) entries, \(cluster.pairs.count) overlaps")
                for member in cluster.members {
                    print("  \(member.ref)  [\(member.agency)] \(member.title)")
                }
                for pair in cluster.pairs {
                    print("  \(pair.first) ~ \(pair.second)  score \(String(format: "%.2f", pair.score))")
                    for reason in pair.reasons { print("      \(reason)") }
                }
                print("")
            }
        }

        static func json(_ clusters: [PortfolioScan.Cluster]) -> JSONValue {
            .object(["clusters": .array(clusters.map { cluster in
                .object([
                    "country": .string(cluster.country),
                    "members": .array(cluster.members.map {
                        .object(["ref": .string($0.ref), "title": .string($0.title), "agency": .string($0.agency), "kind": .string($0.kind)])
                    }),
                    "overlaps": .array(cluster.pairs.map {
                        .object(["a": .string($0.first), "b": .string($0.second), "score": .double($0.score), "reasons": .array($0.reasons.map(JSONValue.string))])
                    }),
                ])
            })])
        }
    }
}

import ArgumentParser
import Coordination
import Foundation
import Server
import Store

struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin", abstract: "Manage agencies, principals and API tokens (directly in the database).",
        subcommands: [AgencyCommand.self, PrincipalCommand.self, TokenCommand.self, QueueMembershipCommand.self])
}

/// Opens the database as `serve` would (migrated, reference data loaded) and runs `body`.
func withAdminStore(_ options: ServerOptions, _ body: @escaping @Sendable (AdminStore) async throws -> Void) async throws {
    try await withPreparedPool(options) { pool, _ in try await body(AdminStore(pool: pool)) }
}

extension AgencyKind: ExpressibleByArgument {}
extension Role: ExpressibleByArgument {}

struct AgencyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agency", abstract: "Agencies.", subcommands: [Add.self, List.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add an agency.")
        @OptionGroup var options: ServerOptions
        @Option(help: "Slug, such as gac-canada.") var id: String
        @Option(help: "Full name.") var name: String
        @Option(help: "One of: \(AgencyKind.allCases.map(\.rawValue).joined(separator: ", ")).") var kind: AgencyKind
        @Option(help: "IATI organisation identifier, such as XM-DAC-41114.") var iati: String?

        func run() async throws {
            let (id, name, kind, iati) = (id, name, kind, iati)
            try await withAdminStore(options) { store in
                try await store.addAgency(id: id, name: name, kind: kind, iatiRef: iati)
                print("added agency \(id)")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List agencies.")
        @OptionGroup var options: ServerOptions

        func run() async throws {
            try await withAdminStore(options) { store in
                let rows = try await store.agencies().map { [$0.id, $0.kind, $0.iatiRef ?? "", $0.name] }
                print(table(["ID", "KIND", "IATI", "NAME"], rows), terminator: "")
            }
        }
    }
}

struct PrincipalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "principal", abstract: "People and systems.", subcommands: [Add.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a principal.")
        @OptionGroup var options: ServerOptions
        @Option(help: "A unique name, such as 'amina.diallo@undp.org'.") var name: String
        @Option(help: "One of: \(Role.allCases.map(\.rawValue).joined(separator: ", ")).") var role: Role
        @Option(help: "The principal's agency (required for liaisons).") var agency: String?
        @Option(name: .customLong("queue"), help: "A queue they work; repeat for more.") var queues: [String] = []

        func run() async throws {
            let (name, role, agency, queues) = (name, role, agency, queues)
            try await withPreparedPool(options) { pool, application in
                if !queues.isEmpty { try await application.syncQueues(pool) }
                let store = AdminStore(pool: pool)
                let principal = try await store.addPrincipal(name: name, role: role, agency: agency)
                print("added \(role.rawValue) \(name) (id \(principal.id.uuidString.lowercased()))")
                for queue in queues {
                    try await store.addQueueMember(queue: queue, principal: name)
                    print("\(name) works queue \(queue)")
                }
            }
        }
    }
}

struct QueueMembershipCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue", abstract: "Who works which queue.", subcommands: [AddMember.self, RemoveMember.self, List.self])

    struct AddMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a principal a member of a queue (and of the queues routing refines from it).")
        @OptionGroup var options: ServerOptions
        @Argument(help: "The queue.") var queue: String
        @Argument(help: "The principal's name.") var principal: String

        func run() async throws {
            let (queue, principal) = (queue, principal)
            try await withPreparedPool(options) { pool, application in
                try await application.syncQueues(pool)
                try await AdminStore(pool: pool).addQueueMember(queue: queue, principal: principal)
                print("\(principal) works queue \(queue)")
            }
        }
    }

    struct RemoveMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End a membership; tasks the principal holds stay held until reassigned.")
        @OptionGroup var options: ServerOptions
        @Argument(help: "The queue.") var queue: String
        @Argument(help: "The principal's name.") var principal: String

        func run() async throws {
            let (queue, principal) = (queue, principal)
            try await withAdminStore(options) { store in
                try await store.removeQueueMember(queue: queue, principal: principal)
                print("\(principal) no longer works queue \(queue)")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Queues and their members.")
        @OptionGroup var options: ServerOptions

        func run() async throws {
            try await withPreparedPool(options) { pool, application in
                try await application.syncQueues(pool)
                let rows = try await AdminStore(pool: pool).queueMembers().map { [$0.queue, $0.members.joined(separator: ", ")] }
                print(table(["QUEUE", "MEMBERS"], rows), terminator: "")
            }
        }
    }
}

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "token", abstract: "API tokens.", subcommands: [Create.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a token; it is printed once and stored only as a hash.")
        @OptionGroup var options: ServerOptions
        @Option(help: "The principal's name.") var principal: String
        @Option(name: .customLong("expires-in-days"), help: "Days until the token expires (default: never).") var expiresInDays: Int?

        func validate() throws {
            if let expiresInDays, expiresInDays < 1 { throw ValidationError("--expires-in-days must be at least 1") }
        }

        func run() async throws {
            let principal = principal
            let expiresAt = expiresInDays.map { Date().addingTimeInterval(TimeInterval($0) * 86_400) }
            try await withAdminStore(options) { store in
                let (id, token) = try await store.createToken(for: principal, expiresAt: expiresAt)
                print(token)
                FileHandle.standardError.write(Data("token id \(id.uuidString.lowercased()) for \(principal); this is the only time it is shown\n".utf8))
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token, named by its id or by the token itself.")
        @OptionGroup var options: ServerOptions
        @Argument(help: "The token's id, or the token.") var token: String

        func run() async throws {
            let token = token
            try await withAdminStore(options) { store in
                try await store.revokeToken(token)
                print("revoked")
            }
        }
    }
}

/// Columns padded to their widest cell, for people reading a terminal.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
        row.enumerated().map { column, cell in
            column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }.joined(separator: "\n") + "\n"
}

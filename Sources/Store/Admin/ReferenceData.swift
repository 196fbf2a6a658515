import Coordination
import Foundation
import Postgres
import Yams

/// Agencies, countries (with PBC configurations) and sector codes from
/// `Config/`, loaded at every start: inserted or updated, never duplicated.
public struct ReferenceData: Sendable {
    public struct Agency: Sendable, Codable, Hashable {
        public var id: String
        public var name: String
        public var kind: AgencyKind
        public var iati: String?
    }

    public struct Country: Sendable, Codable, Hashable {
        public var code: String
        public var alpha2: String
        public var name: String
        public var pbc: Configuration?

        public struct Configuration: Sendable, Codable, Hashable {
            public var chair: String?
            public var pbfEligibility: String?
            public var pbfEligibleUntil: String?
        }
    }

    public struct Sector: Sendable, Codable, Hashable {
        public var code: String
        public var name: String
    }

    public var agencies: [Agency]
    public var countries: [Country]
    public var sectors: [Sector]

    /// Reads `agencies.yaml`, `countries.yaml` and `sectors.yaml` from `directory`.
    public static func load(from directory: URL) throws -> ReferenceData {
        func read<Document: Decodable>(_ name: String, as type: Document.Type) throws -> Document {
            let url = directory.appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: url.path) else {
                throw ConfigError(file: url.path, line: nil, message: "cannot read the file")
            }
            let text = String(decoding: data, as: UTF8.self)
            do {
                return try YAMLDecoder().decode(Document.self, from: text)
            } catch {
                throw ConfigError(file: url.path, line: nil, message: "\(error)")
            }
        }
        struct Agencies: Decodable { let agencies: [Agency] }
        struct Countries: Decodable { let countries: [Country] }
        struct Sectors: Decodable { let sectors: [Sector] }
        return ReferenceData(
            agencies: try read("agencies.yaml", as: Agencies.self).agencies,
            countries: try read("countries.yaml", as: Countries.self).countries,
            sectors: try read("sectors.yaml", as: Sectors.self).sectors)
    }

    /// Inserts what is new and updates what changed, in one transaction.
    /// Rows already as the files say are left untouched (`EXCEPT`), so a
    /// sync of unchanged files, at every server start and every import,
    /// writes and locks nothing: rewriting every agency and country row
    /// locked them against the foreign-key checks of submissions running
    /// meanwhile, and the two deadlocked over the order of the rows.
    public func sync(on connection: PostgresConnection) async throws {
        try await connection.withTransaction { connection in
            // unnest takes no NULLs in a text array here: an empty string stands for "none".
            try await connection.query("""
                INSERT INTO agencies (id, name, kind, iati_ref)
                SELECT id, name, kind, NULLIF(iati_ref, '')
                FROM unnest(\(agencies.map(\.id)), \(agencies.map(\.name)), \(agencies.map(\.kind.rawValue)), \(agencies.map { $0.iati ?? "" }))
                    AS a(id, name, kind, iati_ref)
                EXCEPT SELECT id, name, kind, iati_ref FROM agencies
                ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, iati_ref = EXCLUDED.iati_ref
                """)
            try await connection.query("""
                INSERT INTO countries (code, alpha2, name)
                SELECT * FROM unnest(\(countries.map(\.code)), \(countries.map(\.alpha2)), \(countries.map(\.name)))
                EXCEPT SELECT code, alpha2, name FROM countries
                ON CONFLICT (code) DO UPDATE SET alpha2 = EXCLUDED.alpha2, name = EXCLUDED.name
                """)
            let configured = countries.filter { $0.pbc != nil }
            try await connection.query("""
                INSERT INTO pbc_configurations (country, chair, pbf_eligibility, pbf_eligible_until)
                SELECT c, NULLIF(chair, ''), NULLIF(eligibility, ''), NULLIF(until, '')::date
                FROM unnest(\(configured.map(\.code)), \(configured.map { $0.pbc?.chair ?? "" }),
                            \(configured.map { $0.pbc?.pbfEligibility ?? "" }), \(configured.map { $0.pbc?.pbfEligibleUntil ?? "" }))
                    AS p(c, chair, eligibility, until)
                EXCEPT SELECT country, chair, pbf_eligibility, pbf_eligible_until FROM pbc_configurations
                ON CONFLICT (country) DO UPDATE SET chair = EXCLUDED.chair, pbf_eligibility = EXCLUDED.pbf_eligibility,
                    pbf_eligible_until = EXCLUDED.pbf_eligible_until
                """)
            try await connection.query("""
                INSERT INTO sectors (code, name)
                SELECT * FROM unnest(\(sectors.map(\.code)), \(sectors.map(\.name)))
                EXCEPT SELECT code, name FROM sectors
                ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name
                """)
        }
    }
}

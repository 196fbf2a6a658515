import Coordination
import Foundation
import Postgres

/// An imported activity as its publisher reported it, with the periods
/// screening meets it over: what a coordinator reads to decide an overlap
/// with it.
public struct ImportedActivity: Sendable, Hashable {
    public struct Share: Sendable, Hashable, Codable {
        public var code: String
        public var percentage: String?
    }
    public struct Party: Sendable, Hashable, Codable {
        public var ref: String?
        public var name: String?
        public var role: String
    }
    public struct Budget: Sendable, Hashable, Codable {
        public var currency: String
        public var amount: String
    }
    /// Where and when screening meets it: one row per country pbc knows.
    public struct Screened: Sendable, Hashable, Codable {
        public var country: String
        public var start: String
        public var end: String
        /// False once it is cancelled (IATI status 5): no candidate.
        public var active: Bool
    }

    public var identifier: String
    public var publisher: String
    public var publisherName: String
    public var title: String
    public var description: String
    /// IATI activity status code, 1 to 6.
    public var status: String?
    public var countries: [Share]
    public var regions: [Share]
    public var sectors: [String]
    /// Sectors of other vocabularies, `VOCABULARY:CODE`.
    public var otherSectors: [String]
    public var locations: [String]
    public var participants: [Party]
    /// The period it states; either end may be missing.
    public var start: String?
    public var end: String?
    public var screened: [Screened]
    public var budgets: [Budget]
    public var genderMarker: Int?
    /// The file it last came from, and when.
    public var source: String
    public var updatedAt: Date
}

extension TaskStore {
    /// The imported activities reported under `identifier`: usually one, but
    /// two publishers may report the same identifier. Activities are published
    /// data, which every principal may read.
    public func activities(identifier: String, as principal: Principal) async throws -> [ImportedActivity] {
        let rows = try await transaction(as: principal) { connection in
            try await connection.query("""
                SELECT a.identifier, a.reporting_agency, g.name, a.title, a.description, a.status, a.countries, a.regions,
                       a.sectors, a.other_sectors, a.locations, a.participants, a.period_start::text AS start,
                       a.period_end::text AS finish, a.budgets, a.gender_marker, a.source, a.updated_at,
                       coalesce((SELECT jsonb_agg(jsonb_build_object('country', p.country, 'start', lower(p.period),
                                                             'end', upper(p.period) - 1, 'active', p.active) ORDER BY p.country)
                                 FROM portfolio p WHERE p.activity_id = a.id), '[]') AS screened
                FROM activities a JOIN agencies g ON g.id = a.reporting_agency
                WHERE a.identifier = \(identifier)
                ORDER BY a.reporting_agency
                """)
        }
        return try rows.map { row in
            ImportedActivity(
                identifier: try row.decode(String.self, "identifier"), publisher: try row.decode(String.self, "reporting_agency"),
                publisherName: try row.decode(String.self, "name"), title: try row.decode(String.self, "title"),
                description: try row.decode(String.self, "description"), status: try row.decode(String?.self, "status"),
                countries: try row.decode(PostgresJSONB.self, "countries").decode([ImportedActivity.Share].self),
                regions: try row.decode(PostgresJSONB.self, "regions").decode([ImportedActivity.Share].self),
                sectors: try row.decode([String].self, "sectors"),
                otherSectors: try row.decode(PostgresJSONB.self, "other_sectors").decode([String].self),
                locations: try row.decode([String].self, "locations"),
                participants: try row.decode(PostgresJSONB.self, "participants").decode([ImportedActivity.Party].self),
                start: try row.decode(String?.self, "start"), end: try row.decode(String?.self, "finish"),
                screened: try row.decode(PostgresJSONB.self, "screened").decode([ImportedActivity.Screened].self),
                budgets: try row.decode(PostgresJSONB.self, "budgets").decode([ImportedActivity.Budget].self),
                genderMarker: try row.decode(Int?.self, "gender_marker"), source: try row.decode(String.self, "source"),
                updatedAt: try row.decode(Date.self, "updated_at"))
        }
    }
}

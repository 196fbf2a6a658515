import Coordination
import Foundation
import Postgres

/// One line of "who does what where".
public struct WhoWhatWhereRow: Sendable, Hashable {
    public var country: String
    public var sector: String
    public var agency: String
    /// The agency's name: an imported publisher's id is made from its IATI
    /// identifier ("us-ein-300108263"), which says little to a reader.
    public var agencyName: String
    /// Tasks and activities counted.
    public var entries: Int
    /// Budget by currency, as decimal text with two decimals.
    public var budgets: [String: String]
}

/// What the report counts; nil means any.
public struct ReportFilter: Sendable, Hashable {
    public var country: String?
    /// Entries whose period overlaps [from, to].
    public var from: CalendarDate?
    public var to: CalendarDate?
    /// A task state, or an IATI activity status code.
    public var status: String?

    public init(country: String? = nil, from: CalendarDate? = nil, to: CalendarDate? = nil, status: String? = nil) {
        self.country = country
        self.from = from
        self.to = to
        self.status = status
    }
}

extension TaskStore {
    /// Counts and budgets by country, sector and agency over the portfolio:
    /// tasks (those the caller may see) and imported activities. A task's
    /// budget is split equally among its sectors; an activity's as its
    /// publisher divides it among countries and sectors (`BudgetShares`), so
    /// that no amount is counted twice.
    public func whoWhatWhere(_ filter: ReportFilter, as principal: Principal) async throws -> [WhoWhatWhereRow] {
        if let status = filter.status, !ActivityImporter.activityStatuses.contains(status), !workflows.all.contains(where: { $0.state(status) != nil }) {
            // Else a misspelt state counts nothing, and an empty report reads as "nobody is there".
            throw StoreError.validation([FieldError("status", "\(status) is neither a state of a workflow nor an IATI activity status code (1 to 6)")])
        }
        let restricted = principal.role == .liaison
        let own = restricted ? principal.agency : nil
        let from = filter.from.map { PostgresDate(iso: $0.iso)! }
        let to = filter.to.map { PostgresDate(iso: $0.iso)! }
        // Programs only: a report, a request or a case does nothing of its own there.
        let programs = workflows.all.filter(\.describesPrograms)
        let rows = try await transaction(as: principal) { connection in
            let country = try await checkFilterNames(country: filter.country, on: connection)
            return try await connection.query("""
                -- One row per entry, country, sector and currency, with its part of
                -- the budget: a program's (those the caller may see) in equal parts
                -- among its sectors.
                WITH split AS (
                    SELECT t.id, t.country, coalesce(s.sector, 'none') AS sector, t.lead_agency AS agency, t.budget_currency AS currency,
                           t.budget_amount / greatest(cardinality(t.sectors), 1) AS share, t.state AS status, t.period_start AS start,
                           t.period_end AS finish
                    FROM tasks t
                    LEFT JOIN LATERAL unnest(CASE WHEN cardinality(t.sectors) = 0 THEN ARRAY[NULL::text] ELSE t.sectors END) AS s(sector) ON true
                    WHERE t.country IS NOT NULL
                      AND (t.workflow, t.workflow_version) IN (SELECT * FROM unnest(\(programs.map(\.name)), \(programs.map(\.version))))
                      AND (NOT \(restricted) OR t.lead_agency = \(own)
                           OR t.id = ANY (ARRAY(SELECT p.task_id FROM task_participants p WHERE p.agency = \(own))))
                    UNION ALL
                    -- An activity's, each of its currencies, as its publisher divides
                    -- it (BudgetShares.swift); over the period it states, or, where it
                    -- states no end or start, the one its reported dates show, as
                    -- screening takes it (docs/import.md).
                    SELECT a.id, c.code, coalesce(s.value ->> 'code', 'none'), a.reporting_agency, b.value ->> 'currency',
                           (b.value ->> 'amount')::numeric * (rc.value ->> 'share')::numeric * coalesce((s.value ->> 'share')::numeric, 1),
                           a.status, coalesce(a.period_start, sp.start), coalesce(a.period_end, sp.finish)
                    FROM activities a
                    LEFT JOIN LATERAL (SELECT min(lower(p.period)) AS start, max(upper(p.period)) - 1 AS finish
                                       FROM portfolio p WHERE p.activity_id = a.id) AS sp ON true
                    JOIN LATERAL jsonb_array_elements(a.budget_shares -> 'countries') AS rc(value) ON true
                    JOIN countries c ON c.alpha2 = rc.value ->> 'code' OR c.code = rc.value ->> 'code'
                    LEFT JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_array_length(a.budget_shares -> 'sectors') = 0 THEN '[null]'
                                                                ELSE a.budget_shares -> 'sectors' END) AS s(value) ON true
                    LEFT JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_array_length(a.budgets) = 0 THEN '[null]'
                                                                ELSE a.budgets END) AS b(value) ON true
                ),
                filtered AS (
                    SELECT * FROM split
                    WHERE (\(country)::text IS NULL OR country = \(country))
                      AND (\(filter.status)::text IS NULL OR status = \(filter.status))
                      AND (\(from)::date IS NULL OR finish IS NULL OR finish >= \(from))
                      AND (\(to)::date IS NULL OR start IS NULL OR start <= \(to))
                )
                SELECT f.country, f.sector, f.agency, min(a.name) AS agency_name, count(DISTINCT f.id) AS entries, f.currency,
                       round(sum(f.share), 2)::text AS budget, GROUPING(f.currency) = 1 AS total
                FROM filtered f JOIN agencies a ON a.id = f.agency
                GROUP BY GROUPING SETS ((f.country, f.sector, f.agency, f.currency), (f.country, f.sector, f.agency))
                ORDER BY f.country, f.sector, f.agency, GROUPING(f.currency) DESC, f.currency
                """)
        }
        var result: [WhoWhatWhereRow] = []
        for row in rows {
            let key = (try row.decode(String.self, "country"), try row.decode(String.self, "sector"), try row.decode(String.self, "agency"))
            if try row.decode(Bool.self, "total") == false {
                if let currency = try row.decode(String?.self, "currency"), let budget = try row.decode(String?.self, "budget"), var last = result.last,
                    (last.country, last.sector, last.agency) == key
                {
                    last.budgets[currency] = budget
                    result[result.count - 1] = last
                }
            } else {
                // The grouping set without currency: the count of entries, whatever their currency.
                result.append(WhoWhatWhereRow(
                    country: key.0, sector: key.1, agency: key.2, agencyName: try row.decode(String.self, "agency_name"),
                    entries: try row.decode(Int.self, "entries"), budgets: [:]))
            }
        }
        return result
    }
}

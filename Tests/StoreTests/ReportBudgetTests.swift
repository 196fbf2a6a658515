import Coordination
import Foundation
import Postgres
@testable import Store
import Testing
import TestSupport

/// The who-does-what-where report divides an imported activity's budget as
/// its publisher does: by recipient-country percentages, and by the sector
/// percentages of one vocabulary; a revised budget replaces the original;
/// budgets in several currencies are each counted in their own.
@Suite struct ReportBudgetTests {
    /// Three activities whose budgets IATI divides in ways an equal split gets wrong.
    static let activities = """
        <iati-activities version="2.03">
         <iati-activity default-currency="USD">
          <iati-identifier>XM-TEST-SPLIT</iati-identifier>
          <reporting-org ref="XM-TEST" type="10"><narrative>Test publisher</narrative></reporting-org>
          <title><narrative>Cholera response</narrative></title>
          <activity-status code="2"/>
          <activity-date iso-date="2015-01-01" type="2"/>
          <activity-date iso-date="2016-12-31" type="3"/>
          <recipient-country code="LR" percentage="60"/>
          <recipient-country code="SL" percentage="40"/>
          <sector vocabulary="1" code="12250" percentage="70"/>
          <sector vocabulary="1" code="12220" percentage="30"/>
          <sector vocabulary="99" code="HEALTH" percentage="100"/>
          <budget type="1"><period-start iso-date="2015-01-01"/><period-end iso-date="2015-12-31"/><value>1000</value></budget>
          <budget type="2"><period-start iso-date="2015-01-01"/><period-end iso-date="2015-12-31"/><value>1200</value></budget>
          <budget type="1"><period-start iso-date="2016-01-01"/><period-end iso-date="2016-12-31"/><value>800</value></budget>
         </iati-activity>
         <iati-activity>
          <iati-identifier>XM-TEST-REGION</iati-identifier>
          <reporting-org ref="XM-TEST" type="10"><narrative>Test publisher</narrative></reporting-org>
          <title><narrative>Regional governance programme</narrative></title>
          <activity-date iso-date="2015-01-01" type="1"/>
          <activity-date iso-date="2015-12-31" type="3"/>
          <recipient-country code="LR" percentage="25"/>
          <recipient-region code="298" vocabulary="1" percentage="75"/>
          <sector vocabulary="2" code="151" percentage="50"/>
          <sector vocabulary="2" code="152" percentage="50"/>
          <budget type="1"><period-start iso-date="2015-01-01"/><period-end iso-date="2015-12-31"/><value currency="EUR">1000</value></budget>
          <budget type="1"><period-start iso-date="2015-07-01"/><period-end iso-date="2015-12-31"/><value currency="usd">400</value></budget>
         </iati-activity>
         <iati-activity default-currency="USD">
          <iati-identifier>XM-TEST-NTEE</iati-identifier>
          <reporting-org ref="XM-TEST" type="10"><narrative>Test publisher</narrative></reporting-org>
          <title><narrative>Community health workers</narrative></title>
          <activity-date iso-date="2015-01-01" type="2"/>
          <activity-date iso-date="2015-12-31" type="4"/>
          <recipient-country code="GN"/>
          <recipient-country code="ML"/>
          <sector vocabulary="5" code="E99" percentage="25"/>
          <sector vocabulary="5" code="P30" percentage="75"/>
          <sector vocabulary="10" code="9" percentage="100"/>
          <budget type="1"><period-start iso-date="2015-01-01"/><period-end iso-date="2015-12-31"/><value>.5</value></budget>
          <budget type="1"><period-start iso-date="2015-01-01"/><period-end iso-date="2015-12-31"/><value>399.5</value></budget>
         </iati-activity>
         <iati-activity default-currency="USD">
          <iati-identifier>XM-TEST-TRANSACTIONS</iati-identifier>
          <reporting-org ref="XM-TEST" type="10"><narrative>Test publisher</narrative></reporting-org>
          <title><narrative>Food assistance</narrative></title>
          <activity-date iso-date="2015-01-01" type="1"/>
          <activity-date iso-date="2015-12-31" type="3"/>
          <budget type="1"><period-start iso-date="2015-01-01"/><period-end iso-date="2015-12-31"/><value>600</value></budget>
          <transaction><transaction-type code="2"/><value>400</value>
           <sector vocabulary="1" code="72040"/><recipient-country code="GN"/></transaction>
          <transaction><transaction-type code="3"/><value>150</value>
           <sector vocabulary="1" code="72040"/><recipient-country code="SL"/></transaction>
          <transaction><transaction-type code="3"/><value>50</value>
           <sector vocabulary="1" code="72040"/><recipient-country code="GN"/></transaction>
         </iati-activity>
        </iati-activities>
        """

    func imported(_ name: String) async throws -> Harness {
        let h = try await Harness(name)
        let file = Scratch.directory.appendingPathComponent("pbc-budgets-\(UUID().uuidString).xml")
        try Self.activities.write(to: file, atomically: true, encoding: .utf8)
        let summary = try await h.importer.importIATI(files: [file.path])
        #expect(summary.imported == 4, "\(summary)")
        return h
    }

    /// The report's rows as `COUNTRY SECTOR amount currency`, for the test publisher's activities.
    func rows(_ h: Harness) async throws -> [String] {
        let agency = try await h.pool.query("SELECT reporting_agency FROM activities WHERE identifier = 'XM-TEST-SPLIT'").first!.decode(String.self, at: 0)
        return try await h.tasks.whoWhatWhere(ReportFilter(), as: h.coordinator).filter { $0.agency == agency }.flatMap { row in
            row.budgets.keys.sorted().map { "\(row.country) \(row.sector) \(row.budgets[$0]!) \($0)" }
        }
    }

    @Test func anActivitysBudgetIsDividedAsItsPublisherDividesIt() async throws {
        let h = try await imported("report_budget_shares")
        #expect(try await rows(h) == [
            // XM-TEST-NTEE: no country percentages, so halves; NTEE (vocabulary 5) named first, 25 and 75;
            // budgets of .5 and 399.5.
            // XM-TEST-TRANSACTIONS: its countries and sector on its transactions, each once, in equal parts.
            "GIN 5:E99 50.00 USD", "GIN 5:P30 150.00 USD", "GIN 72040 300.00 USD",
            // XM-TEST-SPLIT: 60% Liberia, DAC codes 70 and 30 (the other vocabulary describes the same
            // budget again); the revised 2015 budget (1200) replaces the original (1000), with 800 for 2016.
            // XM-TEST-REGION: a quarter in Liberia (the rest in a region), DAC categories (vocabulary 2) 50 and 50;
            // 1000 EUR and 400 USD.
            "LBR 12220 360.00 USD", "LBR 12250 840.00 USD", "LBR 151 125.00 EUR", "LBR 151 50.00 USD", "LBR 152 125.00 EUR",
            "LBR 152 50.00 USD",
            "MLI 5:E99 50.00 USD", "MLI 5:P30 150.00 USD",
            "SLE 12220 240.00 USD", "SLE 12250 560.00 USD", "SLE 72040 300.00 USD",
        ])
        // An activity in two currencies is one entry of its rows, not one per currency.
        let region = try await h.tasks.whoWhatWhere(ReportFilter(country: "LBR"), as: h.coordinator).filter { $0.sector == "151" }
        #expect(region.map(\.entries) == [1])
        let stored = try await h.pool.query("""
            SELECT a.identifier, b ->> 'currency', b ->> 'amount'
            FROM activities a, jsonb_array_elements(a.budgets) WITH ORDINALITY AS e(b, n)
            WHERE a.identifier IN ('XM-TEST-SPLIT', 'XM-TEST-REGION') ORDER BY a.identifier, e.n
            """).map { "\(try $0.decode(String.self, at: 0)) \(try $0.decode(String.self, at: 1)) \(try $0.decode(String.self, at: 2))" }
        #expect(stored == ["XM-TEST-REGION EUR 1000.00", "XM-TEST-REGION USD 400.00", "XM-TEST-SPLIT USD 2000.00"])
    }

    /// Activities imported before sql/0016 kept their countries' percentages
    /// but not their sectors': the migration divides their budgets by the
    /// first, and in equal parts within the report's vocabulary. Its filling
    /// statement runs here on activities whose shares it has to work out.
    @Test func theMigrationWorksOutTheSharesOfActivitiesImportedBefore() async throws {
        let h = try await imported("report_budget_migration")
        try await h.pool.query("UPDATE activities SET budget_shares = '{}'")
        let migration = try String(
            contentsOf: TestDatabase.migrationsDirectory.appendingPathComponent("0016_budgets_split_as_published.sql"), encoding: .utf8)
        let filling = try #require(migration.range(of: "WITH countries AS"))
        try await h.pool.withConnection { try await $0.execute(unsafeSQL: String(migration[filling.lowerBound...])) }
        #expect(try await rows(h) == [
            "GIN 5:E99 100.00 USD", "GIN 5:P30 100.00 USD", "GIN 72040 300.00 USD",
            "LBR 12220 600.00 USD", "LBR 12250 600.00 USD", "LBR 151 125.00 EUR", "LBR 151 50.00 USD", "LBR 152 125.00 EUR",
            "LBR 152 50.00 USD",
            "MLI 5:E99 100.00 USD", "MLI 5:P30 100.00 USD",
            "SLE 12220 400.00 USD", "SLE 12250 400.00 USD", "SLE 72040 300.00 USD",
        ])
    }

    /// Before sql/0020 an activity kept one budget, in the first currency it
    /// named; the migration keeps that one as the activity's budgets.
    @Test func theMigrationKeepsTheBudgetAnActivityHad() async throws {
        let target = try await TestDatabase.createEmpty("report_budget_0020")
        let migrations = try StagedMigrations(splittingAt: "0020_activity_budgets_in_every_currency.sql")
        let connection = try await TestDatabase.connect(target)
        try await migrations.applyBefore(on: connection)
        try await connection.execute(unsafeSQL: """
            INSERT INTO agencies (id, name, kind) VALUES ('xm-test', 'Test publisher', 'external');
            INSERT INTO activities (identifier, reporting_agency, title, budget_amount, budget_currency, content_hash, source)
            VALUES ('XM-1', 'xm-test', 'With a budget', 1500.5, 'EUR', 'h1', ''), ('XM-2', 'xm-test', 'Without', NULL, NULL, 'h2', '');
            """)
        try await migrations.applyRest(on: connection)
        let budgets = try await connection.query("SELECT identifier, budgets::text FROM activities ORDER BY identifier")
            .map { "\(try $0.decode(String.self, at: 0)) \(try $0.decode(String.self, at: 1))" }
        #expect(budgets == [#"XM-1 [{"amount": "1500.50", "currency": "EUR"}]"#, "XM-2 []"])
        // As the columns it replaces were, each budget is a currency code and an amount to the cent.
        for malformed in [#"[{"currency": "usd", "amount": "1.00"}]"#, #"[{"currency": "USD", "amount": "-1.00"}]"#,
                          #"[{"currency": "USD", "amount": 1}]"#, #"[{"amount": "1.00"}]"#] {
            let refused = await #expect(throws: PostgresError.self) {
                try await connection.query("UPDATE activities SET budgets = \(malformed)::jsonb WHERE identifier = 'XM-1'")
            }
            #expect(refused?.message.contains("activity_budgets_well_formed") == true, "\(malformed)")
        }
        await connection.close()
    }

    /// A sum is kept to the cent and written as tasks' amounts are.
    @Test func aBudgetIsASumToTheCent() {
        func amount(_ text: String) -> String { MappedActivity.Budget(currency: "USD", total: Decimal(string: text)!).amount }
        #expect(amount("1234.565") == "1234.57")
        #expect(amount("0.5") == "0.50")
        #expect(amount("2000") == "2000.00")
        #expect(amount("0") == "0.00")
        #expect(amount("123456789012345678.994") == "123456789012345678.99")
    }

    @Test func percentagesDivideOnlyWhenEveryCodeHasOne() {
        typealias Stated = BudgetShares.Stated
        func shares(_ list: [BudgetShares.Share]) -> [String] { list.map { "\($0.code) \($0.share)" } }
        // A percentage missing or unreadable: equal parts.
        let unstated = BudgetShares(countries: [Stated(code: "LR", percentage: "70"), Stated(code: "SL", percentage: "70%")], withRegions: false, sectors: [])
        #expect(shares(unstated.countries) == ["LR 0.5", "SL 0.5"])
        // Countries adding up to more than the whole are scaled down to it; with regions, less than the whole stays less.
        let over = BudgetShares(countries: [Stated(code: "LR", percentage: "90"), Stated(code: "SL", percentage: "60")], withRegions: true, sectors: [])
        #expect(shares(over.countries) == ["LR 0.6", "SL 0.4"])
        let under = BudgetShares(countries: [Stated(code: "LR", percentage: "30")], withRegions: true, sectors: [])
        #expect(shares(under.countries) == ["LR 0.3"])
        // A vocabulary's percentages are of their own sum; a code named twice is one code.
        let thirds = BudgetShares(
            countries: [], withRegions: false,
            sectors: [(.dac, Stated(code: "15220", percentage: "33.33")), (.dac, Stated(code: "15110", percentage: "33.33")),
                      (.dac, Stated(code: "15220", percentage: "33.34")), (.dacCategory, Stated(code: "151", percentage: "100"))])
        #expect(shares(thirds.sectors) == ["15220 0.6667", "15110 0.3333"])
        // All zero: equal parts, not nothing.
        let zero = BudgetShares(countries: [], withRegions: false, sectors: [(.other("99"), Stated(code: "99:A", percentage: "0")), (.other("99"), Stated(code: "99:B", percentage: "0"))])
        #expect(shares(zero.sectors) == ["99:A 0.5", "99:B 0.5"])
    }

    @Test func amountsAndPercentagesAreReadAsXMLSchemaDecimals() {
        #expect(BudgetShares.decimal(".5") == Decimal(string: "0.5"))
        #expect(BudgetShares.decimal("+3") == 3)
        #expect(BudgetShares.decimal("-.75") == Decimal(string: "-0.75"))
        #expect(BudgetShares.decimal("12.") == 12)
        for bad in ["", ".", "12abc", "1.2.3", "1e3", " 5", "٣", "+"] {
            #expect(BudgetShares.decimal(bad) == nil, "\(bad)")
        }
    }
}

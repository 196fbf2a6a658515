import Coordination
import Foundation
import Synchronization
#if canImport(FoundationXML)
import FoundationXML
#endif

/// One activity as an IATI file states it (2.01 to 2.03), before mapping.
public struct IATIActivity: Sendable, Hashable {
    public struct Narrative: Sendable, Hashable {
        public var language: String?
        public var text: String
    }
    public struct Organisation: Sendable, Hashable {
        public var ref: String?
        public var role: String?
        public var names: [Narrative] = []
    }
    public struct Coded: Sendable, Hashable {
        public var code: String
        public var vocabulary: String?
        public var percentage: String?
    }
    public struct Budget: Sendable, Hashable {
        public var amount: String
        public var currency: String?
        /// 1 original, 2 revised (IATI BudgetType): a revised budget replaces the original of its period.
        public var type: String?
        public var start: String?
        public var end: String?
    }

    public var line: Int
    public var version: String?
    public var defaultLanguage: String?
    public var defaultCurrency: String?
    public var identifier: String?
    public var reportingOrg: Organisation?
    public var titles: [Narrative] = []
    public var descriptions: [(type: String?, narrative: Narrative)] = []
    public var participants: [Organisation] = []
    public var status: String?
    public var dates: [String: String] = [:]
    public var countries: [Coded] = []
    public var regions: [Coded] = []
    public var sectors: [Coded] = []
    /// Those its transactions name. IATI lets a publisher state countries
    /// and regions, and sectors, on every transaction instead of on the
    /// activity (USAID does), one of each per transaction.
    public var transactionCountries: [Coded] = []
    public var transactionRegions: [Coded] = []
    public var transactionSectors: [Coded] = []
    public var locations: [String] = []
    public var budgets: [Budget] = []
    public var genderSignificance: String?
    /// Its transactions' dates (`transaction-date`), those that are dates:
    /// with its budgets' periods and `lastUpdated`, what shows when it ran
    /// if it states no end or no start.
    public var transactionDates: [CalendarDate] = []
    /// The day its record was last updated (`last-updated-datetime`).
    public var lastUpdated: String?
    /// The identifiers of its parent, children and siblings (IATI
    /// `related-activity` types 1, 2 and 3): parts of one programme.
    public var related: [String] = []

    public static func == (lhs: IATIActivity, rhs: IATIActivity) -> Bool { lhs.line == rhs.line && lhs.identifier == rhs.identifier }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(line)
        hasher.combine(identifier)
    }
}

/// Why a file could not be read at all.
public struct IATIFileError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// Reads IATI activity XML as a stream: one activity at a time, handed over
/// through a small bounded buffer, so memory stays flat whatever the file's size.
public enum IATIReader {
    /// The activities of `path`, in file order. Fails with the line and column
    /// of the first error when the file is not well-formed XML, and refuses IATI 1.x files.
    public static func activities(in path: String, progress: (@Sendable (Double) -> Void)? = nil) -> Activities {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: IATIActivity.self, bufferingPolicy: .unbounded)
        let slots = DispatchSemaphore(value: 32)
        let state = ReaderState()
        continuation.onTermination = { _ in
            state.cancel()
            slots.signal()
        }
        let thread = Thread {
            guard let input = InputStream(fileAtPath: path) else {
                continuation.finish(throwing: IATIFileError(description: "\(path): cannot read the file"))
                return
            }
            let totalLines = countLines(path)
            let parser = XMLParser(stream: input)
            let delegate = ParserDelegate(path: path) { activity, line in
                if state.isCancelled { return false }
                slots.wait()  // at most 32 activities wait for the consumer
                if state.isCancelled { return false }
                continuation.yield(activity)
                if let progress, totalLines > 0 { progress(min(1, Double(line) / Double(totalLines))) }
                return true
            }
            parser.delegate = delegate
            parser.shouldProcessNamespaces = false
            let finished = parser.parse()
            if let refusal = delegate.refusal {
                continuation.finish(throwing: refusal)
            } else if !finished, !state.isCancelled {
                let (line, column) = delegate.errorPosition ?? (parser.lineNumber, parser.columnNumber)
                let code = (parser.parserError as NSError?)?.code ?? 0
                continuation.finish(
                    throwing: IATIFileError(description: "\(path):\(line):\(column): not well-formed XML (\(describe(code)))"))
            } else {
                progress?(1)
                continuation.finish()
            }
        }
        thread.stackSize = 1 << 22
        thread.start()
        return Activities(stream: stream, slots: slots)
    }

    /// The activities; each one taken frees a place for the parser.
    public struct Activities: AsyncSequence {
        let stream: AsyncThrowingStream<IATIActivity, Error>
        let slots: DispatchSemaphore

        public struct AsyncIterator: AsyncIteratorProtocol {
            var base: AsyncThrowingStream<IATIActivity, Error>.AsyncIterator
            let slots: DispatchSemaphore

            public mutating func next() async throws -> IATIActivity? {
                let activity = try await base.next()
                slots.signal()
                return activity
            }
        }

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(base: stream.makeAsyncIterator(), slots: slots)
        }
    }

    /// libxml2's error numbers, in words.
    static func describe(_ code: Int) -> String {
        switch code {
        case 76: "an end tag that does not match its start tag"
        case 77: "an element that is not closed"
        case 5: "the file ends too early"
        case 4, 9: "text that is not allowed where it stands"
        case 23, 26: "an undefined entity or a stray &"
        case 38, 39, 40, 41: "an attribute that is malformed"
        case 65: "a name that is not valid"
        default: "XML error \(code)"
        }
    }

    /// Lines in the file, for the progress bar; read in blocks, not kept.
    static func countLines(_ path: String) -> Int {
        guard let handle = FileHandle(forReadingAtPath: path) else { return 0 }
        defer { try? handle.close() }
        var lines = 0
        while let block = try? handle.read(upToCount: 1 << 20), !block.isEmpty {
            lines += block.reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
        }
        return max(lines, 1)
    }

    /// Set by the consumer when it stops; read by the parser thread.
    final class ReaderState: Sendable {
        private let cancelled = Atomic<Bool>(false)
        var isCancelled: Bool { cancelled.load(ordering: .acquiring) }
        func cancel() { cancelled.store(true, ordering: .releasing) }
    }

    /// Builds activities from SAX events. Only the elements pbc maps are read;
    /// sectors and dates of transactions are not the activity's own.
    final class ParserDelegate: NSObject, XMLParserDelegate {
        let path: String
        /// Returns false to stop the parse.
        let deliver: (IATIActivity, Int) -> Bool
        var refusal: IATIFileError?
        /// Where the first error was met.
        var errorPosition: (Int, Int)?
        private var fileVersion: String?
        private var stack: [String] = []
        private var current: IATIActivity?
        private var text = ""
        private var narrativeLanguage: String?
        private var organisation: IATIActivity.Organisation?
        private var descriptionType: String?
        /// The budget being read: its type and period come before its value.
        private var budget: IATIActivity.Budget?

        init(path: String, deliver: @escaping (IATIActivity, Int) -> Bool) {
            self.path = path
            self.deliver = deliver
        }

        private var parent: String? { stack.count >= 2 ? stack[stack.count - 2] : nil }

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            stack.append(name)
            text = ""
            switch name {
            case "iati-activities":
                fileVersion = attributes["version"]
                if let version = fileVersion, version.hasPrefix("1.") {
                    refusal = IATIFileError(description: "\(path): IATI version \(version) is not supported; pbc reads 2.01 to 2.03 (convert the file with the IATI 1.x to 2.x tools)")
                    parser.abortParsing()
                }
            case "iati-activity":
                current = IATIActivity(line: parser.lineNumber)
                current?.version = attributes["version"] ?? fileVersion
                current?.defaultLanguage = attributes["xml:lang"]
                current?.defaultCurrency = attributes["default-currency"]
                current?.lastUpdated = attributes["last-updated-datetime"]
            case "reporting-org" where parent == "iati-activity", "participating-org" where parent == "iati-activity":
                organisation = IATIActivity.Organisation(ref: attributes["ref"].flatMap { $0.isEmpty ? nil : $0 }, role: attributes["role"])
            case "narrative":
                narrativeLanguage = attributes["xml:lang"]
            case "description" where parent == "iati-activity":
                descriptionType = attributes["type"]
            case "activity-status" where parent == "iati-activity":
                current?.status = attributes["code"]
            case "activity-date" where parent == "iati-activity":
                if let type = attributes["type"], let date = attributes["iso-date"] { current?.dates[type] = date }
            case "recipient-country" where parent == "iati-activity":
                if let code = attributes["code"] { current?.countries.append(.init(code: code, percentage: attributes["percentage"])) }
            case "recipient-region" where parent == "iati-activity":
                if let code = attributes["code"] {
                    current?.regions.append(.init(code: code, vocabulary: attributes["vocabulary"], percentage: attributes["percentage"]))
                }
            case "sector" where parent == "iati-activity":
                if let code = attributes["code"] {
                    current?.sectors.append(.init(code: code, vocabulary: attributes["vocabulary"], percentage: attributes["percentage"]))
                }
            case "recipient-country" where parent == "transaction":
                if let code = attributes["code"] { current?.transactionCountries.append(.init(code: code)) }
            case "recipient-region" where parent == "transaction":
                if let code = attributes["code"] { current?.transactionRegions.append(.init(code: code, vocabulary: attributes["vocabulary"])) }
            case "sector" where parent == "transaction":
                if let code = attributes["code"] { current?.transactionSectors.append(.init(code: code, vocabulary: attributes["vocabulary"])) }
            case "related-activity" where parent == "iati-activity":
                if let ref = attributes["ref"], !ref.isEmpty, ["1", "2", "3"].contains(attributes["type"] ?? "") { current?.related.append(ref) }
            case "transaction-date" where parent == "transaction":
                if let date = attributes["iso-date"].flatMap({ CalendarDate(iso: String($0.prefix(10))) }) {
                    current?.transactionDates.append(date)
                }
            case "budget" where parent == "iati-activity":
                budget = IATIActivity.Budget(amount: "", type: attributes["type"])
            case "period-start" where parent == "budget":
                budget?.start = attributes["iso-date"]
            case "period-end" where parent == "budget":
                budget?.end = attributes["iso-date"]
            case "value" where parent == "budget":
                budget?.currency = attributes["currency"]
            case "policy-marker" where parent == "iati-activity":
                // Vocabulary 1 (OECD DAC CRS), code 1: gender equality.
                if (attributes["vocabulary"] ?? "1") == "1", attributes["code"] == "1" { current?.genderSignificance = attributes["significance"] }
            default:
                break
            }
        }

        func parser(_ parser: XMLParser, parseErrorOccurred parseError: any Error) {
            if errorPosition == nil { errorPosition = (parser.lineNumber, parser.columnNumber) }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            text += string
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            let parentName = parent
            let grandparent = stack.count >= 3 ? stack[stack.count - 3] : nil
            switch name {
            case "iati-identifier" where parentName == "iati-activity":
                current?.identifier = value.isEmpty ? nil : value
            case "narrative":
                let narrative = IATIActivity.Narrative(language: narrativeLanguage ?? current?.defaultLanguage, text: value)
                if !value.isEmpty {
                    switch (parentName, grandparent) {
                    case ("title", "iati-activity"): current?.titles.append(narrative)
                    case ("description", "iati-activity"): current?.descriptions.append((descriptionType, narrative))
                    case ("reporting-org", "iati-activity"), ("participating-org", "iati-activity"): organisation?.names.append(narrative)
                    case ("name", "location"): current?.locations.append(value)
                    default: break
                    }
                }
            case "reporting-org" where parentName == "iati-activity":
                current?.reportingOrg = organisation
                organisation = nil
            case "participating-org" where parentName == "iati-activity":
                if let organisation { current?.participants.append(organisation) }
                organisation = nil
            case "value" where parentName == "budget":
                budget?.amount = value
            case "budget" where parentName == "iati-activity":
                if let budget, !budget.amount.isEmpty { current?.budgets.append(budget) }
                budget = nil
            case "iati-activity":
                if let activity = current, !deliver(activity, parser.lineNumber) { parser.abortParsing() }
                current = nil
            default:
                break
            }
            stack.removeLast()
            text = ""
        }
    }
}

import Foundation

/// A closed set of names read from text (requests, configuration files): a
/// name it does not hold is refused with the names it does, where
/// Foundation's message named only the Swift type.
public protocol NameSet: RawRepresentable, CaseIterable, Decodable where RawValue == String {}

extension NameSet {
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let name = try container.decode(String.self)
        guard let value = Self(rawValue: name) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "\(name) is not one of \(Self.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = value
    }
}

/// What a principal may do, broadly; workflows say which roles may take each action.
public enum Role: String, Sendable, Codable, CaseIterable, Hashable, NameSet {
    case liaison, coordinator, approver, observer, admin, system

    /// The role with its article, for messages: "an observer", "a liaison".
    public var withArticle: String { (["a", "e", "i", "o", "u"].contains(rawValue.prefix(1)) ? "an " : "a ") + rawValue }
}

public enum AgencyKind: String, Sendable, Codable, CaseIterable, NameSet {
    case unEntity = "un_entity"
    case bilateral
    case regionalOrganization = "regional_organization"
    case ifi, ngo, government, secretariat, external
}

public enum Priority: String, Sendable, Codable, CaseIterable, Comparable, NameSet {
    case low, normal, high, urgent

    public var rank: Int { Self.allCases.firstIndex(of: self)! }
    /// One step more urgent; `urgent` stays.
    public var raised: Priority { Self.allCases[min(rank + 1, Self.allCases.count - 1)] }
    public static func < (lhs: Priority, rhs: Priority) -> Bool { lhs.rank < rhs.rank }
}

/// An agency's part in a task, as IATI names them.
public enum ParticipantRole: String, Sendable, Codable, CaseIterable, NameSet {
    case funding, implementing, accountable
}

/// Agency ids are lowercase (`undp`), and people type them as they write
/// the name (`UNDP`): every agency id a caller gives goes through this, so
/// that "UNDP" means undp wherever it is given.
public enum AgencyID {
    public static func normalized(_ typed: String) -> String { typed.lowercased() }
}

public struct Participant: Sendable, Codable, Hashable {
    public var agency: String
    public var role: ParticipantRole
    public init(agency: String, role: ParticipantRole) {
        self.agency = agency
        self.role = role
    }

    enum CodingKeys: String, CodingKey { case agency, role }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.agency = AgencyID.normalized(try container.decode(String.self, forKey: .agency))
        self.role = try container.decode(ParticipantRole.self, forKey: .role)
    }
}

/// A calendar day, `YYYY-MM-DD`.
public struct CalendarDate: Sendable, Codable, Hashable, Comparable, CustomStringConvertible {
    public let year: Int, month: Int, day: Int

    public init?(iso text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
            (1...9999).contains(year), (1...12).contains(month), (1...Self.daysIn(month: month, year: year)).contains(day)
        else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    public var iso: String {
        func padded(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return digits.count < width ? String(repeating: "0", count: width - digits.count) + digits : digits
        }
        return padded(year, 4) + "-" + padded(month, 2) + "-" + padded(day, 2)
    }
    public var description: String { iso }

    /// Days since 1970-01-01 (proleptic Gregorian).
    public var daysSinceEpoch: Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1
        return era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
    }

    /// The instant this day ends, UTC: a thing due on this day is late after it.
    public var endOfDayUTC: Date { Date(timeIntervalSince1970: TimeInterval((daysSinceEpoch + 1) * 86_400)) }

    /// The UTC day of an instant.
    public init(_ date: Date) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day], from: date)
        self.year = parts.year!
        self.month = parts.month!
        self.day = parts.day!
    }

    public static func < (lhs: CalendarDate, rhs: CalendarDate) -> Bool { lhs.daysSinceEpoch < rhs.daysSinceEpoch }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let date = CalendarDate(iso: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a YYYY-MM-DD date: \(text)"))
        }
        self = date
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(iso)
    }
}

public struct Period: Sendable, Codable, Hashable {
    public var start: CalendarDate
    public var end: CalendarDate
    public init(start: CalendarDate, end: CalendarDate) {
        self.start = start
        self.end = end
    }
}

/// An amount of money: a decimal kept as text (never floating point) and an ISO 4217 code.
public struct Money: Sendable, Codable, Hashable {
    public var amount: String
    public var currency: String

    public init(amount: String, currency: String) {
        self.amount = amount
        self.currency = currency
    }

    public var decimal: Decimal? { Decimal(string: amount, locale: Locale(identifier: "en_US_POSIX")) }
}

/// A workflow-specific field value.
public enum FieldValue: Sendable, Codable, Hashable, CustomStringConvertible {
    case string(String)
    case number(Double)
    case bool(Bool)

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        }
    }

    public var number: Double? {
        switch self {
        case .number(let value): value
        case .string(let value): Double(value)
        case .bool: nil
        }
    }

    public var description: String {
        switch self {
        case .string(let value): value
        case .number(let value): value.rounded() == value ? String(Int(value)) : String(value)
        case .bool(let value): String(value)
        }
    }
}

/// Who is acting.
public struct Actor: Sendable, Hashable {
    public var principal: String
    public var role: Role
    /// The principal's agency; liaisons always have one.
    public var agency: String?

    public init(principal: String, role: Role, agency: String?) {
        self.principal = principal
        self.role = role
        self.agency = agency
    }

    public static let system = Actor(principal: "system", role: .system, agency: nil)
}

/// A task: the unit that moves through a workflow. The store adds its
/// bookkeeping (id, ref, version, queue, timestamps); the engine reads this.
public struct TaskRecord: Sendable, Hashable, Codable {
    public var state: String
    public var title: String
    public var description: String
    public var leadAgency: String
    public var participants: [Participant]
    public var country: String?
    public var locations: [String]
    /// OECD DAC CRS purpose codes, 5 digits.
    public var sectors: [String]
    public var period: Period?
    public var budget: Money?
    public var fields: [String: FieldValue]
    public var priority: Priority
    public var externalRefs: [String: String]

    public init(
        state: String, title: String = "", description: String = "", leadAgency: String, participants: [Participant] = [],
        country: String? = nil, locations: [String] = [], sectors: [String] = [], period: Period? = nil, budget: Money? = nil,
        fields: [String: FieldValue] = [:], priority: Priority = .normal, externalRefs: [String: String] = [:]
    ) {
        self.state = state
        self.title = title
        self.description = description
        self.leadAgency = leadAgency
        self.participants = participants
        self.country = country
        self.locations = locations
        self.sectors = sectors
        self.period = period
        self.budget = budget
        self.fields = fields
        self.priority = priority
        self.externalRefs = externalRefs
    }

    /// The lead agency and every participating agency.
    public var agencies: Set<String> { Set([leadAgency] + participants.map(\.agency)) }
}

/// Free text a caller adds beside a task's title and description: a
/// comment, a workflow field's value. Bounded, since it is kept for good in
/// the audit trail and sent to every subscriber: enough for the reasons of
/// a decision or a reference, not for a document.
public enum FreeText {
    public static let maximumLength = 10_000

    /// Why `text` is refused as `field`, or nil.
    public static func refusal(_ text: String, field: String) -> FieldError? {
        text.count > maximumLength ? FieldError(field, "must be at most \(maximumLength) characters") : nil
    }
}

/// A bad value in a request: which field, and why.
/// One bad input: the field (a dotted path for nested ones) and why.
public struct FieldError: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    public var field: String
    public var reason: String
    public init(_ field: String, _ reason: String) {
        self.field = field
        self.reason = reason
    }
    public var description: String { "\(field): \(reason)" }
}

extension TaskRecord {
    public static let maximumSectors = 100
    public static let maximumLocations = 1_000
    public static let maximumParticipants = 100
    public static let maximumTitleLength = 500
    public static let maximumExternalRefs = 100

    /// Every problem with the task's own values, not just the first. What
    /// needs the database (does the agency or sector exist?) the store checks.
    public func validationErrors() -> [FieldError] {
        var errors: [FieldError] = []
        let trimmed = title.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty { errors.append(FieldError("title", "must not be empty")) }
        if title.count > Self.maximumTitleLength { errors.append(FieldError("title", "must be at most \(Self.maximumTitleLength) characters")) }
        if description.count > 20_000 { errors.append(FieldError("description", "must be at most 20000 characters")) }
        if let country, country.range(of: "^[A-Z]{2,3}$", options: .regularExpression) == nil {
            errors.append(FieldError("country", "must be an ISO 3166-1 alpha-3 (or alpha-2) code such as BDI"))
        }
        for (index, sector) in sectors.enumerated() where sector.range(of: "^[0-9]{5}$", options: .regularExpression) == nil {
            errors.append(FieldError("sectors[\(index)]", "must be a 5-digit OECD DAC CRS purpose code such as 15220"))
        }
        if Set(sectors).count != sectors.count { errors.append(FieldError("sectors", "must not repeat a code")) }
        // Each sector and location is a screening key with rows of its own; a
        // list longer than any program's is a mistake, not a program.
        if sectors.count > Self.maximumSectors { errors.append(FieldError("sectors", "must be at most \(Self.maximumSectors) codes")) }
        if locations.count > Self.maximumLocations {
            errors.append(FieldError("locations", "must be at most \(Self.maximumLocations) places"))
        }
        if participants.count > Self.maximumParticipants {
            errors.append(FieldError("participants", "must be at most \(Self.maximumParticipants) agencies"))
        }
        // Each names an activity the task is (an IATI identifier, say), which screening keeps with its entry.
        if externalRefs.count > Self.maximumExternalRefs {
            errors.append(FieldError("externalRefs", "must be at most \(Self.maximumExternalRefs) references"))
        }
        for (system, ref) in externalRefs.sorted(by: { $0.key < $1.key }) {
            if system.trimmingCharacters(in: .whitespaces).isEmpty || system.count > 200 {
                errors.append(FieldError("externalRefs", "names must be 1 to 200 characters"))
            }
            if ref.trimmingCharacters(in: .whitespaces).isEmpty || ref.count > 200 {
                errors.append(FieldError("externalRefs.\(system.prefix(60))", "must be 1 to 200 characters"))
            }
        }
        for (index, location) in locations.enumerated() {
            if location.trimmingCharacters(in: .whitespaces).isEmpty { errors.append(FieldError("locations[\(index)]", "must not be empty")) }
            if location.count > 200 { errors.append(FieldError("locations[\(index)]", "must be at most 200 characters")) }
        }
        if let period, period.end < period.start {
            errors.append(FieldError("period", "end \(period.end) is before start \(period.start)"))
        }
        if let budget {
            if budget.amount.range(of: "^[0-9]{1,18}(\\.[0-9]{1,2})?$", options: .regularExpression) == nil {
                errors.append(FieldError("budget.amount", "must be a non-negative decimal with at most 2 decimals, as a string: \"1500000.00\""))
            }
            if budget.currency.range(of: "^[A-Z]{3}$", options: .regularExpression) == nil {
                errors.append(FieldError("budget.currency", "must be an ISO 4217 code such as USD"))
            }
        }
        var seen: Set<Participant> = []
        for (index, participant) in participants.enumerated() where !seen.insert(participant).inserted {
            errors.append(FieldError("participants[\(index)]", "repeats \(participant.agency) as \(participant.role.rawValue)"))
        }
        return errors
    }
}

/// Instants as the protocol and event data carry them: RFC 3339 in UTC with
/// milliseconds, `2026-11-29T11:37:17.148Z`. Formatted by hand: building an
/// ISO8601DateFormatter costs more than the rest of a task's answer.
public enum InternetTime {
    public static func string(_ date: Date) -> String {
        let totalMilliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded())
        var days = totalMilliseconds / 86_400_000
        var milliseconds = totalMilliseconds % 86_400_000
        if milliseconds < 0 {
            milliseconds += 86_400_000
            days -= 1
        }
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        var text = ""
        text.reserveCapacity(24)
        func append(_ value: Int64, width: Int) {
            let digits = String(value)
            if digits.count < width { text += String(repeating: "0", count: width - digits.count) }
            text += digits
        }
        append(year, width: 4)
        text += "-"
        append(month, width: 2)
        text += "-"
        append(day, width: 2)
        text += "T"
        append(milliseconds / 3_600_000, width: 2)
        text += ":"
        append(milliseconds / 60_000 % 60, width: 2)
        text += ":"
        append(milliseconds / 1000 % 60, width: 2)
        text += "."
        append(milliseconds % 1000, width: 3)
        text += "Z"
        return text
    }
}

extension Sequence where Element == UInt8 {
    /// Lowercase hexadecimal, two digits a byte (digests, token hashes).
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        for byte in self {
            bytes.append(digits[Int(byte >> 4)])
            bytes.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

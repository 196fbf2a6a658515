import Coordination

/// Why the store refused a request. Protocol handlers turn these into
/// JSON-RPC errors in one place.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public static let notFound = Code("not found")
        /// A stale expectedVersion, an idempotency key reused with other content, a name taken.
        public static let conflict = Code("conflict")
        /// The workflow refused the action.
        public static let refused = Code("refused")
        public static let validation = Code("validation failed")
        public static let forbidden = Code("forbidden")
        /// A replay asked for events older than the retention window.
        public static let historyGone = Code("history gone")
        public var description: String { name }
    }

    public var code: Code
    public var message: String
    /// With `.conflict` on a task: its version now.
    public var currentVersion: Int?
    /// With `.refused`: the engine's reason, the state, and what the actor may do instead.
    public var refusal: Refusal?
    public var state: String?
    public var allowedActions: [String]
    /// With `.validation`: every bad field.
    public var fieldErrors: [FieldError]

    public init(
        _ code: Code, _ message: String, currentVersion: Int? = nil, refusal: Refusal? = nil, state: String? = nil,
        allowedActions: [String] = [], fieldErrors: [FieldError] = []
    ) {
        self.code = code
        self.message = message
        self.currentVersion = currentVersion
        self.refusal = refusal
        self.state = state
        self.allowedActions = allowedActions
        self.fieldErrors = fieldErrors
    }

    public static func validation(_ errors: [FieldError]) -> StoreError {
        StoreError(.validation, errors.map(\.description).joined(separator: "; "), fieldErrors: errors)
    }

    public var description: String { message }
}

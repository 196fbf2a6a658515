import Synchronization

/// A flag one task turns on and others read: a screening armed to wait, a
/// loop told to stop.
public final class Switch: Sendable {
    private let on = Atomic<Bool>(false)

    public init() {}

    public var isOn: Bool { on.load(ordering: .sequentiallyConsistent) }

    public func turnOn() { on.store(true, ordering: .sequentiallyConsistent) }
}

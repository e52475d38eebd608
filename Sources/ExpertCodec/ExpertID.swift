import Dispatch

/// An integer type rows can be handed over in or decoded into: the numpy dtypes engines use
/// (`|u1 <u2 <i4 <i8` and the other fixed-width integers).
public protocol ExpertID: FixedWidthInteger & Sendable {}

extension UInt8: ExpertID {}
extension Int8: ExpertID {}
extension UInt16: ExpertID {}
extension Int16: ExpertID {}
extension UInt32: ExpertID {}
extension Int32: ExpertID {}
extension UInt64: ExpertID {}
extension Int64: ExpertID {}

/// Generic code over id buffers that must run specialized for the concrete id type: hot loops
/// over `T` are slow when the compiler cannot see `T` (calls from another module).
/// ``Swift/UnsafeBufferPointer/withConcreteIDType(_:)`` calls it with the concrete type.
/// It neither throws nor returns: a body keeps its outcome itself (a class with a stored
/// result). Errors and generic results passed back through the inlined dispatch were
/// miscompiled in release builds of Swift 6.3 (garbage `Result.failure` values).
public protocol ConcreteIDBody: AnyObject {
    func callAsFunction<U: ExpertID>(_ ids: UnsafeBufferPointer<U>)
}

/// As ``ConcreteIDBody``, for output buffers.
public protocol ConcreteMutableIDBody: AnyObject {
    func callAsFunction<U: ExpertID>(_ ids: UnsafeMutableBufferPointer<U>)
}

/// Work over one id type that must run specialized for it: ``withConcreteIDType(_:_:)`` calls
/// it with the concrete type.
public protocol ConcreteIDTypeBody {
    func callAsFunction<U: ExpertID>(_ type: U.Type)
}

/// Calls `body` with `T` as the concrete integer type it is. Inlined, so that each branch calls
/// `body` with a type the optimizer knows and specializes for. Metatype equality (a pointer
/// compare), not `is` casts (a runtime call each): this runs once per call of every public
/// entry point, a decode step's append included.
@inlinable @inline(__always)
public func withConcreteIDType<T: ExpertID, Body: ConcreteIDTypeBody>(_: T.Type, _ body: Body) {
    if T.self == UInt8.self {
        body(UInt8.self)
    } else if T.self == Int8.self {
        body(Int8.self)
    } else if T.self == UInt16.self {
        body(UInt16.self)
    } else if T.self == Int16.self {
        body(Int16.self)
    } else if T.self == UInt32.self {
        body(UInt32.self)
    } else if T.self == Int32.self {
        body(Int32.self)
    } else if T.self == UInt64.self {
        body(UInt64.self)
    } else {
        body(Int64.self)
    }
}

/// A buffer's memory handed to a ``ConcreteIDBody`` as the concrete type.
@usableFromInline
struct ConcreteInput<Body: ConcreteIDBody>: ConcreteIDTypeBody {
    @usableFromInline let start: UnsafeRawPointer?, count: Int, body: Body

    @inlinable
    init(start: UnsafeRawPointer?, count: Int, body: Body) {
        self.start = start
        self.count = count
        self.body = body
    }

    @inlinable @inline(__always)
    func callAsFunction<U: ExpertID>(_: U.Type) {
        body(UnsafeBufferPointer<U>(start: start?.assumingMemoryBound(to: U.self), count: count))
    }
}

/// A buffer's memory handed to a ``ConcreteMutableIDBody`` as the concrete type.
@usableFromInline
struct ConcreteOutput<Body: ConcreteMutableIDBody>: ConcreteIDTypeBody {
    @usableFromInline let start: UnsafeMutableRawPointer?, count: Int, body: Body

    @inlinable
    init(start: UnsafeMutableRawPointer?, count: Int, body: Body) {
        self.start = start
        self.count = count
        self.body = body
    }

    @inlinable @inline(__always)
    func callAsFunction<U: ExpertID>(_: U.Type) {
        body(UnsafeMutableBufferPointer<U>(start: start?.assumingMemoryBound(to: U.self), count: count))
    }
}

extension UnsafeBufferPointer where Element: ExpertID {
    /// Calls `body` with this buffer typed as its concrete integer type
    /// (``withConcreteIDType(_:_:)``).
    @inlinable @inline(__always)
    public func withConcreteIDType<Body: ConcreteIDBody>(_ body: Body) {
        ExpertCodec.withConcreteIDType(Element.self, ConcreteInput(start: UnsafeRawPointer(baseAddress), count: count, body: body))
    }
}

extension UnsafeMutableBufferPointer where Element: ExpertID {
    /// As ``Swift/UnsafeBufferPointer/withConcreteIDType(_:)``, for output buffers.
    @inlinable @inline(__always)
    public func withConcreteIDType<Body: ConcreteMutableIDBody>(_ body: Body) {
        ExpertCodec.withConcreteIDType(Element.self, ConcreteOutput(start: UnsafeMutableRawPointer(baseAddress), count: count, body: body))
    }
}

/// The largest id of `ids` read as unsigned, so that a negative id counts as huge: one pass
/// that vectorizes, split over `threads` threads for large buffers. An id is valid for a
/// schema exactly when this is below its expert count.
public func largestUnsignedID<T: ExpertID>(_ ids: UnsafeBufferPointer<T>, threads: Int = 1) -> UInt64 {
    let body = LargestUnsigned(threads: threads)
    ids.withConcreteIDType(body)
    return body.result
}

/// `largestUnsignedID` for the concrete id type.
private final class LargestUnsigned: ConcreteIDBody {
    let threads: Int
    var result: UInt64 = 0

    init(threads: Int) { self.threads = threads }

    func callAsFunction<U: ExpertID>(_ ids: UnsafeBufferPointer<U>) {
        let parts = ids.count >= 1 << 20 ? max(1, min(threads, 16)) : 1
        guard parts > 1 else {
            result = largestBitPattern(ids)
            return
        }
        let work = ParallelMaximum(ids, parts: parts)
        DispatchQueue.concurrentPerform(iterations: parts) { work.run(part: $0) }
        result = work.result
    }
}

/// Each part's maximum in its own slot: nothing is written by two threads.
private final class ParallelMaximum<T: ExpertID>: @unchecked Sendable {
    let ids: UnsafeBufferPointer<T>, parts: Int
    private let maxima: UnsafeMutableBufferPointer<UInt64>

    init(_ ids: UnsafeBufferPointer<T>, parts: Int) {
        self.ids = ids
        self.parts = parts
        maxima = .allocate(capacity: parts)
        maxima.initialize(repeating: 0)
    }

    deinit { maxima.deallocate() }

    var result: UInt64 { maxima.max() ?? 0 }

    func run(part: Int) {
        let range = ids.count * part / parts..<ids.count * (part + 1) / parts
        maxima[part] = largestBitPattern(UnsafeBufferPointer(rebasing: ids[range]))
    }
}

/// The largest id read as an unsigned integer of its own width (lanes as wide as the data, so
/// the loop vectorizes well); a negative id, above `T.max` that way, reads as `UInt64.max`.
@inlinable
func largestBitPattern<T: ExpertID>(_ ids: UnsafeBufferPointer<T>) -> UInt64 {
    var largest: T.Magnitude = 0
    for id in ids { largest = max(largest, T.Magnitude(truncatingIfNeeded: id)) }
    return T.isSigned && largest > T.Magnitude(T.max) ? UInt64.max : UInt64(largest)
}

/// Whether every id of a small batch (one decode step's rows) is in `0..<limit`. Inlinable, so
/// that it runs specialized in the caller, where ``largestUnsignedID(_:threads:)``'s dispatch to
/// the concrete type would cost more than the scan. The ids' bit patterns are ORed first: each
/// id is at most their OR, so one pass of vector ORs settles it whenever the OR is below
/// `limit` (always, for valid ids and a power-of-two expert count); else the largest id does.
@inlinable
public func idsAreBelow<T: ExpertID>(_ ids: UnsafeBufferPointer<T>, _ limit: Int) -> Bool {
    var union: T.Magnitude = 0
    for id in ids { union |= T.Magnitude(truncatingIfNeeded: id) }
    let bound = UInt64(limit)
    if !(T.isSigned && union > T.Magnitude(T.max)) && UInt64(union) < bound { return true }
    return largestBitPattern(ids) < bound
}

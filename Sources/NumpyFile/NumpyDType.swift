/// The element types NumpyFile reads and writes: numpy's fixed-width integers, stored
/// little-endian (one-byte types have no byte order). Each maps to one Swift integer type.
public enum NumpyDType: String, CaseIterable, Sendable {
    case uint8, int8, uint16, int16, uint32, int32, uint64, int64

    /// numpy's name for the type, as in `np.dtype('uint16')`.
    public var name: String { rawValue }

    /// Bytes per element.
    public var itemSize: Int {
        switch self {
        case .uint8, .int8: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32: return 4
        case .uint64, .int64: return 8
        }
    }

    public var isSigned: Bool {
        switch self {
        case .int8, .int16, .int32, .int64: return true
        case .uint8, .uint16, .uint32, .uint64: return false
        }
    }

    /// The `descr` string numpy writes into a header: `|u1`, `|i1`, `<u2`, ... `<i8`.
    public var descr: String {
        (itemSize == 1 ? "|" : "<") + (isSigned ? "i" : "u") + String(itemSize)
    }

    /// The Swift type whose values this dtype stores. A generic function can take it
    /// directly (the existential metatype is opened):
    /// `func sum<T: FixedWidthInteger>(_: T.Type) ...; sum(dtype.integerType)`.
    public var integerType: any FixedWidthInteger.Type {
        switch self {
        case .uint8: return UInt8.self
        case .int8: return Int8.self
        case .uint16: return UInt16.self
        case .int16: return Int16.self
        case .uint32: return UInt32.self
        case .int32: return Int32.self
        case .uint64: return UInt64.self
        case .int64: return Int64.self
        }
    }

    /// The dtype storing values of `type`, or nil for `Int`, `UInt` and non-standard widths
    /// (their size is platform-dependent or has no numpy equivalent).
    public init?<T: FixedWidthInteger>(integerType type: T.Type) {
        switch type {
        case is UInt8.Type: self = .uint8
        case is Int8.Type: self = .int8
        case is UInt16.Type: self = .uint16
        case is Int16.Type: self = .int16
        case is UInt32.Type: self = .uint32
        case is Int32.Type: self = .int32
        case is UInt64.Type: self = .uint64
        case is Int64.Type: self = .int64
        default: return nil
        }
    }

    /// Calls `visitor.visit(T.self)` with the Swift integer type of this dtype: one generic
    /// code path for all eight types, where the caller needs more constraints than
    /// `integerType` offers.
    public func accept<V: NumpyIntegerVisitor>(_ visitor: V) throws -> V.Result {
        switch self {
        case .uint8: return try visitor.visit(UInt8.self)
        case .int8: return try visitor.visit(Int8.self)
        case .uint16: return try visitor.visit(UInt16.self)
        case .int16: return try visitor.visit(Int16.self)
        case .uint32: return try visitor.visit(UInt32.self)
        case .int32: return try visitor.visit(Int32.self)
        case .uint64: return try visitor.visit(UInt64.self)
        case .int64: return try visitor.visit(Int64.self)
        }
    }

    /// The dtype of a header's `descr`, or nil when it is not one this library supports.
    public init?(descr: String) {
        guard let dtype = try? NumpyDType(descr: descr, path: "") else { return nil }
        self = dtype
    }

    /// Parses a header's `descr`, explaining a refusal: `<f4` is a float, `>i4` big-endian.
    ///
    /// One-byte types accept any byte-order character (or none), as numpy itself writes `|u1`
    /// but accepts `u1`. Wider types accept what numpy reads as little-endian on a
    /// little-endian machine (the only kind this library runs on): `<`, and `=`, `|` or none,
    /// which numpy reads as the reading machine's order. `>` is big-endian and refused.
    init(descr: String, path: String) throws(NumpyError) {
        func refuse(_ reason: String) -> NumpyError {
            .unsupportedDType(path: path, descr: "'\(descr)'", reason: reason)
        }
        var rest = Substring(descr)
        var byteOrder: Character?
        if let first = rest.first, "<>|=".contains(first) {
            byteOrder = first
            rest = rest.dropFirst()
        }
        guard let kind = rest.first else { throw refuse("not a dtype") }
        let sizeText = rest.dropFirst()
        let allDigits = !sizeText.isEmpty && sizeText.allSatisfy { $0.isASCII && $0.isNumber }
        let size = allDigits ? Int(sizeText).flatMap { $0 > 0 ? $0 : nil } : nil
        let bits = size.flatMap { $0 <= 64 ? String($0 * 8) : nil } ?? ""  // no overflow on "f999..."
        let signed: Bool
        switch kind {
        case "u": signed = false
        case "i": signed = true
        case "f": throw refuse("float\(bits) is not an integer type; \(Self.supportedList)")
        case "c": throw refuse("complex\(bits) is not an integer type; \(Self.supportedList)")
        case "b", "?": throw refuse("bool is not an integer type; \(Self.supportedList)")
        case "O": throw refuse("object arrays are not supported; \(Self.supportedList)")
        case "S", "a", "U": throw refuse("string arrays are not supported; \(Self.supportedList)")
        case "V": throw refuse("raw void arrays are not supported; \(Self.supportedList)")
        case "M", "m": throw refuse("datetime arrays are not supported; \(Self.supportedList)")
        default: throw refuse("not a dtype this library understands; \(Self.supportedList)")
        }
        guard let size else { throw refuse("not a dtype this library understands; \(Self.supportedList)") }
        guard let dtype = Self.allCases.first(where: { $0.itemSize == size && $0.isSigned == signed }) else {
            throw refuse("\(size)-byte \(signed ? "signed" : "unsigned") integers are not supported; \(Self.supportedList)")
        }
        if size > 1 {
            if byteOrder == ">" {
                throw refuse("big-endian \(dtype.name) is not supported; convert with a.astype('\(dtype.descr)')")
            }
        }
        self = dtype
    }

    static var supportedList: String {
        "supported: " + allCases.map(\.descr).joined(separator: " ")
    }
}

/// A generic operation over the eight integer types, run by `NumpyDType.accept(_:)` with the
/// type matching a dtype known only at run time.
public protocol NumpyIntegerVisitor {
    associatedtype Result
    func visit<T: FixedWidthInteger & Sendable>(_ type: T.Type) throws -> Result
}

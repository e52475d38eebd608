/// What a `.npy` header says about the array, plus the sizes derived from it. Every size is
/// computed with overflow checks when the header is made, so code using it can multiply
/// freely: `rowCount * rowByteCount == dataByteCount` always holds.
public struct NumpyHeader: Equatable, Sendable {
    public let dtype: NumpyDType
    /// Dimensions in C (row-major) order; `[]` for a scalar.
    public let shape: [Int]
    /// Format version of the file read, or of the file being written (1.0 unless the header
    /// does not fit in 64 KiB, then 2.0).
    public let majorVersion: UInt8
    public let minorVersion: UInt8
    /// Byte offset of the first data byte: magic, version, length field and padded header.
    public let dataOffset: Int
    /// The product of `shape`.
    public let elementCount: Int
    /// `elementCount * dtype.itemSize`: the exact length of the data.
    public let dataByteCount: Int
    /// Rows are slices along the first axis, the unit of chunked reading: `shape[0]` rows of
    /// `product(shape[1...])` elements. A scalar counts as one row of one element.
    public let rowCount: Int
    public let rowByteCount: Int

    /// The header a writer produces for `dtype` and `shape`.
    public init(dtype: NumpyDType, shape: [Int]) throws {
        let encoded = try HeaderEncoder.encode(dtype: dtype, shape: shape, path: "<header>")
        self = encoded.header
    }

    /// `path` only names the array in errors.
    init(dtype: NumpyDType, shape: [Int], majorVersion: UInt8, dataOffset: Int, path: String) throws(NumpyError) {
        let layout = try ArrayLayout(shape: shape, itemSize: dtype.itemSize, path: path)
        self.dtype = dtype
        self.shape = shape
        self.majorVersion = majorVersion
        self.minorVersion = 0
        self.dataOffset = dataOffset
        self.elementCount = layout.elementCount
        self.dataByteCount = layout.dataByteCount
        self.rowCount = layout.rowCount
        self.rowByteCount = layout.rowByteCount
    }

    /// How many whole rows fit in `maxBytes` (at least 1, at most `rowCount` unless the
    /// array has no rows): a chunk size for `NumpyReader.forEachChunk` bounding memory.
    public func rowsPerChunk(maxBytes: Int) -> Int {
        guard rowByteCount > 0 else { return max(rowCount, 1) }
        return min(max(maxBytes / rowByteCount, 1), max(rowCount, 1))
    }

    /// The shape as Python writes a tuple: `(3, 4)`, `(5,)`, `()`.
    public var shapeDescription: String { Self.pythonTuple(shape) }

    static func pythonTuple(_ shape: [Int]) -> String {
        let inner = shape.map(String.init).joined(separator: ", ")
        return shape.count == 1 ? "(\(inner),)" : "(\(inner))"
    }
}

/// Element, row and byte counts of a shape, refusing negative dimensions and any product that
/// overflows `Int` (a hostile header could otherwise make every later size wrap).
struct ArrayLayout {
    let elementCount: Int
    let rowCount: Int
    let rowByteCount: Int
    let dataByteCount: Int

    init(shape: [Int], itemSize: Int, path: String) throws(NumpyError) {
        for (axis, dimension) in shape.enumerated() where dimension < 0 {
            throw .invalidField(path: path, field: "shape", reason: "has negative dimension \(dimension) at axis \(axis)")
        }
        // The product of the non-zero dimensions bounds every size below, including the row
        // size of an array with zero rows, so checking it once covers them all.
        var bound = itemSize
        for dimension in shape where dimension != 0 {
            let (product, overflow) = bound.multipliedReportingOverflow(by: dimension)
            if overflow {
                throw .invalidField(
                    path: path, field: "shape",
                    reason: "\(NumpyHeader.pythonTuple(shape)) is too large: its size in bytes overflows a 64-bit integer")
            }
            bound = product
        }
        let rowElements = shape.dropFirst().reduce(1, *)
        elementCount = shape.reduce(1, *)
        rowCount = shape.first ?? 1
        rowByteCount = rowElements * itemSize
        dataByteCount = elementCount * itemSize
    }
}

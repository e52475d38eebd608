import Foundation
import NumpyFile
import Testing

@Suite("Writer then reader, byte for byte")
struct RoundTripTests {
    static let shapes: [[Int]] = [[7], [0], [1], [5, 3], [4, 0], [13, 4, 2], [0, 24, 2], []]

    @Test("every dtype and shape round-trips, whole and in chunks", arguments: NumpyDType.allCases)
    func roundTrip(dtype: NumpyDType) throws {
        let directory = TemporaryDirectory()
        for shape in Self.shapes {
            let count = shape.reduce(1, *) * dtype.itemSize
            let bytes = pattern(count)
            let path = directory.file("a.npy")
            try writeArray(path, dtype: dtype, shape: shape, bytes: bytes, piece: 7, overwrite: true)

            let reader = try NumpyReader(path: path)
            #expect(reader.isMemoryMapped)
            #expect(reader.dtype == dtype)
            #expect(reader.shape == shape)
            #expect(reader.header.dataByteCount == count)
            #expect(reader.header.dataOffset % 64 == 0)
            #expect(reader.header.majorVersion == 1)
            try reader.withData { #expect(Array($0) == bytes, "shape \(shape)") }
            // 1, 3, 4 and 5 rows do not divide 13; 1000 exceeds every row count.
            for rows in [1, 3, 4, 5, 1000] {
                #expect(try readChunks(reader, rowsPerChunk: rows) == bytes, "shape \(shape), \(rows) rows per chunk")
            }
            #expect(try readAll(path).count == reader.header.dataOffset + count)
        }
    }

    @Test("the header is byte-identical to numpy's for (3, 24, 1) uint16")
    func exactHeader() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("h.npy")
        try writeArray(path, dtype: .uint16, shape: [3, 24, 1], bytes: pattern(144))
        let dict = "{'descr': '<u2', 'fortran_order': False, 'shape': (3, 24, 1), }"
        let expected = [0x93] + Array("NUMPY".utf8) + [1, 0, 118, 0] + Array(dict.utf8)
            + Array(repeating: UInt8(ascii: " "), count: 54) + [UInt8(ascii: "\n")]
        let file = try readAll(path)
        #expect(Array(file.prefix(128)) == expected)
        #expect(Array(file.dropFirst(128)) == pattern(144))
    }

    @Test("1-D shapes are written (N,) and one-byte types |u1")
    func oneDimensionalHeader() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("v.npy")
        try writeArray(path, dtype: .uint8, shape: [5], bytes: pattern(5))
        let text = String(decoding: try readAll(path).prefix(128), as: UTF8.self)
        #expect(text.contains("{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }"))
    }

    @Test("typed writes and typed chunk views agree")
    func typedAccess() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("t.npy")
        let values: [Int32] = (0..<(11 * 3)).map { Int32($0) * -1_000_003 }
        let writer = try NumpyWriter(path: path, dtype: .int32, shape: [11, 3])
        try writer.write(Array(values[..<10]))
        try writer.write(Array(values[10...]))
        try writer.commit()

        let reader = try NumpyReader(path: path)
        var seen: [Int32] = []
        try reader.forEachChunk(as: Int32.self, rowsPerChunk: 4) { chunk, _ in seen += chunk }
        #expect(seen == values)
        try reader.withData(as: Int32.self) { #expect(Array($0) == values) }

        let mismatch = numpyError { try reader.withData(as: UInt32.self) { _ in } }
        #expect(mismatch == .typeMismatch(path: path, dtype: .int32, requested: "UInt32"))
    }

    @Test("a header too long for version 1.0 falls back to 2.0")
    func version2Fallback() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("wide.npy")
        let shape = [2] + Array(repeating: 1, count: 23_000)  // "1, " x 23000 > 65535 bytes
        try writeArray(path, dtype: .int16, shape: shape, bytes: pattern(4))
        let reader = try NumpyReader(path: path)
        #expect(reader.header.majorVersion == 2)
        #expect(reader.header.dataOffset % 64 == 0)
        #expect(reader.shape == shape)
        try reader.withData { #expect(Array($0) == pattern(4)) }
    }

    @Test("rowsPerChunk(maxBytes:) bounds chunks and stays at least one row")
    func rowsPerChunk() throws {
        let header = try NumpyHeader(dtype: .uint16, shape: [1000, 24, 2])
        #expect(header.rowByteCount == 96)
        #expect(header.rowsPerChunk(maxBytes: 960) == 10)
        #expect(header.rowsPerChunk(maxBytes: 10) == 1)
        #expect(header.rowsPerChunk(maxBytes: 1 << 30) == 1000)
        #expect(numpyError { _ = try NumpyHeader(dtype: .uint8, shape: [-1]) } != nil)
    }

    @Test("a zero chunk size is refused")
    func zeroChunkSize() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("z.npy")
        try writeArray(path, dtype: .uint8, shape: [3], bytes: pattern(3))
        let reader = try NumpyReader(path: path)
        let error = numpyError { try reader.forEachChunk(rowsPerChunk: 0) { _, _ in } }
        guard case .invalidUse = error else { Issue.record("got \(String(describing: error))"); return }
    }
}

@Suite("NumpyDType")
struct DTypeTests {
    @Test("properties of the eight integer types")
    func properties() {
        let table: [(NumpyDType, String, String, Int, Bool)] = [
            (.uint8, "|u1", "uint8", 1, false), (.int8, "|i1", "int8", 1, true),
            (.uint16, "<u2", "uint16", 2, false), (.int16, "<i2", "int16", 2, true),
            (.uint32, "<u4", "uint32", 4, false), (.int32, "<i4", "int32", 4, true),
            (.uint64, "<u8", "uint64", 8, false), (.int64, "<i8", "int64", 8, true),
        ]
        for (dtype, descr, name, size, signed) in table {
            #expect(dtype.descr == descr)
            #expect(dtype.name == name)
            #expect(dtype.itemSize == size)
            #expect(dtype.isSigned == signed)
            #expect(NumpyDType(descr: descr) == dtype)
            #expect(dtype.integerType.bitWidth == size * 8)
            #expect(dtype.integerType.isSigned == signed)
            #expect(NumpyDType(integerType: dtype.integerType) == dtype)
        }
    }

    @Test("accepted and refused descr spellings")
    func spellings() {
        #expect(NumpyDType(descr: "u1") == .uint8)
        #expect(NumpyDType(descr: "i1") == .int8)
        #expect(NumpyDType(descr: "<u1") == .uint8)
        #expect(NumpyDType(descr: ">u2") == nil)
        // numpy reads these as the reading machine's order: little-endian here.
        #expect(NumpyDType(descr: "=u2") == .uint16)
        #expect(NumpyDType(descr: "u2") == .uint16)
        #expect(NumpyDType(descr: "|i8") == .int64)
        #expect(NumpyDType(descr: ">i8") == nil)
        #expect(NumpyDType(descr: "<f4") == nil)
        #expect(NumpyDType(descr: "<u3") == nil)
        #expect(NumpyDType(descr: "<u+4") == nil)
        #expect(NumpyDType(descr: "<u0") == nil)
        #expect(NumpyDType(descr: "") == nil)
        #expect(NumpyDType(integerType: Int.self) == nil)
    }

    struct BitWidth: NumpyIntegerVisitor {
        func visit<T: FixedWidthInteger & Sendable>(_ type: T.Type) -> String { "\(T.self) \(T.bitWidth)" }
    }

    @Test("the visitor sees the matching Swift type")
    func visitor() throws {
        #expect(try NumpyDType.uint16.accept(BitWidth()) == "UInt16 16")
        #expect(try NumpyDType.int64.accept(BitWidth()) == "Int64 64")
    }
}

import FuzzSupport
import NumpyFile
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

let npyPath = scratchPath("input.npy")

/// Input: a `.npy` file. It is read memory-mapped (whole and in chunks, as its own dtype) and
/// streamed from a descriptor in chunks of at most 64 KiB. Any error is fine; a trap, an
/// overflow, a memory error or data of the wrong length is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNpyReader(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    writeScratch(npyPath, data, size)
    defer { removeScratch(npyPath) }
    if let reader = try? NumpyReader(path: npyPath) {
        let header = reader.header
        _ = try? reader.withData { bytes in precondition(bytes.count == header.dataByteCount) }
        _ = try? header.dtype.accept(ChunkReader(reader: reader))
    }
    let fd = open(npyPath, O_RDONLY)
    precondition(fd >= 0)
    defer { close(fd) }
    if let reader = try? NumpyReader(fileDescriptor: fd, path: "<fuzz>") {
        _ = try? ChunkReader(reader: reader).visit(UInt8.self)
    }
    return 0
}

/// Reads every chunk as `T` (the dtype's type, or bytes for a stream), checking each chunk's
/// rows and length.
struct ChunkReader: NumpyIntegerVisitor {
    let reader: NumpyReader

    func visit<T: FixedWidthInteger & Sendable>(_ type: T.Type) throws {
        let header = reader.header
        let rows = header.rowsPerChunk(maxBytes: 1 << 16)
        var next = 0
        let check = { (count: Int, range: Range<Int>) in
            precondition(range.lowerBound == next && range.count <= rows && count == range.count * header.rowByteCount)
            next = range.upperBound
        }
        if T.self == UInt8.self && reader.dtype.itemSize != 1 {
            try reader.forEachChunk(rowsPerChunk: rows) { bytes, range in check(bytes.count, range) }
        } else {
            try reader.forEachChunk(as: T.self, rowsPerChunk: rows) { values, range in
                check(values.count * MemoryLayout<T>.size, range)
            }
        }
        precondition(next == header.rowCount, "read \(next) of \(header.rowCount) rows")
    }
}

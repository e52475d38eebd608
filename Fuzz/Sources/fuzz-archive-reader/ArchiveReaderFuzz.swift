import Archive
import FuzzSupport

let archivePath = scratchPath("input.moe")
let salvagedPath = scratchPath("salvaged.moe")

/// Input: an archive file, read as it is and, when its header or record checksums do not match,
/// again with them made to match (so that mutations reach the log replay; see
/// `fixArchiveChecksums`). Any error is fine; a trap, an overflow, a memory error or a broken
/// promise is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzArchiveReader(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var file = Array(UnsafeBufferPointer(start: data, count: size))
    exercise(file)
    if fixArchiveChecksums(&file) { exercise(file) }
    return 0
}

/// Opens the archive, reads every row block by block and rows at both ends, verifies every
/// block, then scans it with `Salvage.scan` and copies the recoverable rows into a new archive,
/// which must open with exactly those rows and verify.
func exercise(_ file: [UInt8]) {
    writeScratch(archivePath, file)
    defer { removeScratch(archivePath) }
    if let reader = try? ArchiveReader(path: archivePath) {
        var rowsRead = 0
        let complete: Void? = try? reader.forEachBlock(as: UInt16.self) { range, ids in
            precondition(range.lowerBound == rowsRead && ids.count == range.count * reader.schema.idsPerRow)
            rowsRead = range.upperBound
        }
        if complete != nil { precondition(rowsRead == reader.count, "forEachBlock read \(rowsRead) of \(reader.count) rows") }
        if reader.count > 0 {
            _ = try? reader.row(at: 0, as: Int32.self)
            _ = try? reader.rows(max(0, reader.count - 3)..<reader.count, as: UInt32.self)
        }
        _ = reader.verify()
        _ = try? reader.refresh()
    }
    if let report = try? Salvage.scan(archivePath) {
        removeScratch(salvagedPath)
        defer { removeScratch(salvagedPath) }
        if let copied = try? Salvage.write(report, to: salvagedPath) {
            precondition(copied == report.recoverable, "salvage copied \(copied) of \(report.recoverable) rows")
            let salvaged = try? ArchiveReader(path: salvagedPath)
            precondition(salvaged?.count == copied, "the salvaged archive does not open with its \(copied) rows")
            precondition(salvaged?.verify().isEmpty == true, "the salvaged archive does not verify")
        }
    }
}

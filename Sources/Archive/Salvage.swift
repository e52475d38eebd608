import ExpertCodec

/// What survives of a damaged archive: found record by record without trusting the log as a
/// whole, each block checked whole (record checksum, frame checksums, payload, every id).
public struct SalvageReport: Sendable {
    public let path: String
    public let schema: Schema
    public let metadata: [String: String]
    public let blockRows: Int
    /// The damaged archive's codec: the salvaged copy is written with it.
    public var codec: BlockCodec = .fast
    /// The intact blocks the log still holds (truncations applied), ordered by position.
    public let blocks: [BlockInfo]
    /// Byte ranges that belong to no intact record: what was lost.
    public let damaged: [Range<Int>]
    /// Rows `0..<recoverable` are held by intact blocks without a hole: what ``Salvage/write``
    /// copies into a new archive.
    public let recoverable: Int
    /// Positions below the last intact row that no intact block holds.
    public let lostRows: [Range<Int>]
}

/// The salvage path: scan a damaged archive and copy what is intact into a new one.
public enum Salvage {
    /// Scans `path`. Only a damaged archive header (the schema) makes salvage impossible.
    public static func scan(_ path: String) throws -> SalvageReport {
        let file = try SegmentFile(path: path, mode: .read)
        let mapping = try Mapping(file: file, count: try file.size())
        let bytes = mapping.bytes
        let (header, headerEnd) = try ArchiveHeader.parse(bytes, path: path)
        let decoder = BlockDecoder(schema: header.schema)
        var live: [BlockInfo] = [], damaged: [Range<Int>] = []
        var offset = headerEnd
        while offset < bytes.count {
            if case .record(let record) = RecordHeader.parse(bytes, at: offset),
               bytes.count - offset - RecordHeader.frameBytes >= record.frameLength {
                let frameOffset = offset + RecordHeader.frameBytes
                switch record.kind {
                case .rows:
                    let block = BlockInfo(position: record.position, rows: record.rows, storedRows: record.rows,
                                          recordOffset: offset, frameOffset: frameOffset, frameLength: record.frameLength)
                    if intact(block, in: bytes, decoder) {
                        // The log only appends at its end: a block for earlier positions means
                        // the rows from there were truncated (its truncate record may be lost).
                        cut(&live, at: block.position)
                        live.append(block)
                    } else {
                        damaged.append(offset..<frameOffset + record.frameLength)
                    }
                case .truncate:
                    cut(&live, at: record.position)
                case .commit:
                    break
                }
                offset = frameOffset + record.frameLength
                continue
            }
            // Not a record here: the damage runs to the next intact record frame.
            var next = offset + 1
            while next + RecordHeader.frameBytes <= bytes.count {
                if case .record = RecordHeader.parse(bytes, at: next) { break }
                next += 1
            }
            if next + RecordHeader.frameBytes > bytes.count { next = bytes.count }
            damaged.append(offset..<next)
            offset = next
        }
        live.sort { $0.position < $1.position }
        var covered = 0, firstHole: Int?, lost: [Range<Int>] = []
        for block in live {
            if block.position > covered {
                lost.append(covered..<block.position)
                firstHole = firstHole ?? covered
            }
            covered = max(covered, block.position + block.rows)
        }
        let recoverable = firstHole ?? covered
        return SalvageReport(path: path, schema: header.schema, metadata: header.metadata, blockRows: header.blockRows,
                             codec: header.codec, blocks: live, damaged: merge(damaged), recoverable: recoverable,
                             lostRows: lost)
    }

    /// Copies rows `0..<report.recoverable` into a new archive at `destination` (same schema,
    /// metadata and block size); returns how many rows it holds.
    @discardableResult
    public static func write(_ report: SalvageReport, to destination: String, overwrite: Bool = false) throws -> Int {
        let file = try SegmentFile(path: report.path, mode: .read)
        let source = BlockSource(path: report.path, schema: report.schema, mapping: try Mapping(file: file, count: try file.size()))
        let writer = try ArchiveWriter.create(at: destination, schema: report.schema, metadata: report.metadata,
                                              blockRows: report.blockRows, codec: report.codec, overwrite: overwrite)
        var index = SegmentIndex(headerEnd: 0)
        for block in report.blocks where block.position < report.recoverable {
            let record = RecordHeader(kind: .rows, frameLength: block.frameLength, position: index.count,
                                      rows: block.storedRows, syncedLength: 0)
            index.apply(record, at: block.recordOffset)
            if block.rows < block.storedRows {
                index.apply(RecordHeader(kind: .truncate, frameLength: 0, position: block.position + block.rows,
                                         rows: 0, syncedLength: 0), at: block.frameOffset + block.frameLength)
            }
        }
        var rows = [UInt16](repeating: 0, count: report.blockRows * report.schema.idsPerRow)
        var position = 0
        while position < report.recoverable {
            let end = min(report.recoverable, position + report.blockRows)
            try rows.withUnsafeMutableBufferPointer { out in try source.read(position..<end, from: index, into: out.baseAddress!) }
            try writer.append(Array(rows[..<((end - position) * report.schema.idsPerRow)]), at: position)
            position = end
        }
        try writer.close()
        return report.recoverable
    }

    /// Drops the rows at `position` and after: blocks from there, the tail of one across it.
    private static func cut(_ blocks: inout [BlockInfo], at position: Int) {
        blocks.removeAll { $0.position >= position }
        for i in blocks.indices where blocks[i].position + blocks[i].rows > position {
            blocks[i].rows = position - blocks[i].position
        }
    }

    private static func intact(_ block: BlockInfo, in bytes: UnsafeRawBufferPointer, _ decoder: BlockDecoder) -> Bool {
        let frame = UnsafeRawBufferPointer(rebasing: bytes[block.frameOffset..<block.frameOffset + block.frameLength])
        guard (try? decoder.open(frame, expectedRows: block.storedRows)) != nil else { return false }
        var ids = [UInt16](repeating: 0, count: block.storedRows * decoder.schema.idsPerRow)
        return (try? ids.withUnsafeMutableBufferPointer { try decoder.decodeRows(0..<block.storedRows, into: $0) }) != nil
    }

    /// Adjacent or overlapping ranges joined.
    private static func merge(_ ranges: [Range<Int>]) -> [Range<Int>] {
        var merged: [Range<Int>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = merged.last, range.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        return merged
    }
}

import ExpertCodec
import SystemFile

/// What survives of a damaged archive: the log as readers replay it, each block checked whole
/// (record checksum, frame checksums, payload, every id), and what follows damage.
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
    /// Rows the archive held that are not recoverable: past a hole, or possibly rolled back
    /// by a truncation lost with the damage; minus those intact blocks found past the damage hold.
    public let lostRows: [Range<Int>]
    /// Bytes after the log that nothing vouches for (a torn write): not part of the archive,
    /// not damage, ignored as readers ignore them.
    public var ignoredTail: (offset: Int, bytes: Int)? = nil
}

/// The salvage path: scan a damaged archive and copy what is intact into a new one.
///
/// The log is replayed as readers replay it (the same scanner), leniently: it stops at the
/// first record that does not fit without failing. If nothing vouches for the bytes there, they
/// are a torn tail, not part of the archive, and salvage ignores them as readers do. If
/// something does (the commit anchor ends past them, or a later intact record claims them
/// synced), they were damaged: what follows is read for evidence of what the lost bytes held.
/// A later rows, truncate or commit record, or an anchor, that names fewer rows than the
/// replayed log means a truncation was lost with the damage, and the rows from there are not
/// the stored ones: they are not copied.
public enum Salvage {
    /// Scans `path`. Only a damaged archive header (the schema) makes salvage impossible.
    public static func scan(_ path: String) throws -> SalvageReport {
        let file = try SegmentFile(path: path, mode: .read)
        try file.holdReaderLock()
        let head = try SegmentScanner.readHead(file, path: path)
        let mapping = try Mapping(file: file, count: try file.size())
        let bytes = mapping.bytes
        let scanner = SegmentScanner(path: path, schema: head.header.schema, blockRows: head.header.blockRows, lenient: true)
        let replay = try scanner.scan(bytes, logStart: head.logStart)
        let source = BlockSource(path: path, schema: head.header.schema, mapping: mapping)
        var damaged: [Range<Int>] = []
        var holes: [Int] = []
        // Every block whole, live or dropped: a damaged live block is a hole in the rows.
        for block in replay.index.blocks where (try? source.check(block)) == nil {
            damaged.append(block.recordOffset..<block.frameOffset + block.frameLength)
            holes.append(block.position)
        }
        for block in replay.index.discarded where (try? source.check(block)) == nil {
            damaged.append(block.recordOffset..<block.frameOffset + block.frameLength)
        }
        var count = replay.index.count
        var later: [BlockInfo] = []
        var tail: (offset: Int, bytes: Int)?
        var known = count
        if let stop = replay.tail?.offset {
            let anchorEnd = head.anchor?.anchor.logEnd ?? 0
            if stop >= anchorEnd, scanner.isZero(bytes, from: stop) {
                // Slack: nothing after the log.
            } else if stop >= anchorEnd, SegmentScanner.vouchingRecord(in: bytes, after: stop) == nil {
                tail = (stop, bytes.count - stop)
            } else {
                let evidence = laterRecords(in: bytes, after: stop, schema: head.header.schema, source: source)
                later = evidence.blocks
                damaged.append(stop..<evidence.damagedEnd)
                // Both anchors, when intact: the older one may be a truncation's commit.
                let anchors = (0..<2).compactMap { slot -> CommitAnchor? in
                    guard head.header.hasAnchors,
                          case .success(let anchor) = CommitAnchor.parse(bytes, at: head.anchorOffset(slot), logStart: head.logStart),
                          anchor.logEnd > stop else { return nil }
                    return anchor
                }
                let bounds = evidence.rowCounts + anchors.map(\.rows)
                // What the archive held last, as far as what survives shows: the newest anchor's
                // rows and anything later; the replayed count only when nothing else is known.
                let last = (anchors.max { $0.sequence < $1.sequence }.map { [$0.rows] } ?? []) + evidence.rowCounts
                    + later.map { $0.position + $0.rows }
                known = last.max() ?? count
                count = min(count, bounds.min() ?? count)
            }
        }
        // Intact blocks: the log's own below its trusted count (a block across it keeps the
        // rows before it), then those found past the damage.
        var intact: [BlockInfo] = replay.index.blocks.compactMap { block in
            guard !holes.contains(block.position), block.position < count else { return nil }
            var kept = block
            kept.rows = min(block.rows, count - block.position)
            return kept
        }
        intact += later.filter { $0.position >= count }
        intact.sort { $0.position < $1.position }
        var lost: [Range<Int>] = []
        var position = 0
        for block in intact where block.position + block.rows > position {
            if block.position > position { lost.append(position..<block.position) }
            position = block.position + block.rows
        }
        if known > position { lost.append(position..<known) }
        let recoverable = lost.first?.lowerBound ?? position
        let kept = intact
        return SalvageReport(path: path, schema: head.header.schema, metadata: head.header.metadata, blockRows: head.header.blockRows,
                             codec: head.header.codec, blocks: kept, damaged: merge(damaged), recoverable: recoverable,
                             lostRows: lost, ignoredTail: tail)
    }

    /// The intact records found after damage at `offset`: their blocks (checked whole), the row
    /// counts they name, and where the damaged bytes end (the first intact record).
    private static func laterRecords(in bytes: UnsafeRawBufferPointer, after offset: Int, schema: Schema,
                                     source: BlockSource) -> (blocks: [BlockInfo], rowCounts: [Int], damagedEnd: Int) {
        var blocks: [BlockInfo] = [], counts: [Int] = []
        var damagedEnd: Int?
        var candidate = offset + 1
        while candidate + RecordHeader.frameBytes <= bytes.count {
            guard case .record(let record) = RecordHeader.parse(bytes, at: candidate),
                  bytes.count - candidate - RecordHeader.frameBytes >= record.frameLength else {
                candidate += 1
                continue
            }
            damagedEnd = damagedEnd ?? candidate
            switch record.kind {
            case .rows:
                let block = BlockInfo(position: record.position, rows: record.rows, storedRows: record.rows, recordOffset: candidate,
                                      frameOffset: candidate + RecordHeader.frameBytes, frameLength: record.frameLength)
                if (try? source.check(block)) != nil {
                    // A truncation to below a later block's position may be lost too: it keeps
                    // the rows from that position only if they are its own.
                    blocks.removeAll { $0.position >= block.position }
                    blocks.append(block)
                }
                counts.append(record.position)
            case .truncate, .commit:
                blocks.removeAll { $0.position >= record.position }
                counts.append(record.position)
            }
            candidate += RecordHeader.frameBytes + record.frameLength
        }
        return (blocks, counts, damagedEnd ?? bytes.count)
    }

    /// Copies rows `0..<report.recoverable` into a new archive at `destination` (same schema,
    /// metadata, block size and codec); returns how many rows it holds. The copy is written
    /// under a temporary name and renamed into place when complete: a failed or interrupted
    /// salvage leaves no partial archive (and an existing file as it was).
    @discardableResult
    public static func write(_ report: SalvageReport, to destination: String, overwrite: Bool = false) throws -> Int {
        let file = try SegmentFile(path: report.path, mode: .read)
        try file.holdReaderLock()
        let source = BlockSource(path: report.path, schema: report.schema, mapping: try Mapping(file: file, count: try file.size()))
        if !overwrite, FileSystem.exists(destination, followingLinks: true) { throw ArchiveError.exists(path: destination) }
        let temporary = SegmentFile.temporaryName(beside: destination)
        do {
            // The copy keeps the keys as stored: a writer before FORMAT.md 1.1 may have written keys
            // that are not in NFC, which `create` refuses from callers.
            let writer = try ArchiveWriter.create(at: temporary, schema: report.schema, metadata: report.metadata,
                                                  blockRows: report.blockRows, codec: report.codec, faults: nil)
            var index = SegmentIndex(logStart: 0)
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
            try archiveCall { () throws(SystemCallError) in try FileSystem.rename(temporary, to: destination) }
            try SegmentFile.syncDirectory(of: destination)
        } catch {
            FileSystem.remove(temporary)
            throw error
        }
        return report.recoverable
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

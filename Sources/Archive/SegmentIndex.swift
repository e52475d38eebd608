import ExpertCodec

/// Where one block of rows lives in the file.
public struct BlockInfo: Sendable, Equatable {
    /// Absolute position of the block's first row.
    public let position: Int
    /// Rows of the block still in the archive (fewer than stored after a truncation into it).
    public internal(set) var rows: Int
    /// Rows the block frame holds.
    public let storedRows: Int
    /// Byte offset of the record frame that precedes the block frame.
    public let recordOffset: Int
    public let frameOffset: Int
    public let frameLength: Int
}

/// The replayed log: live blocks ordered by position, and where the log ends.
struct SegmentIndex {
    private(set) var blocks: [BlockInfo] = []
    /// Blocks whose rows a truncation discarded: no read reaches them, but `verify()` still
    /// checks them, so that damage anywhere in the file is found.
    private(set) var discarded: [BlockInfo] = []
    private(set) var count = 0
    /// Byte offset just past the last valid record: where the next record goes.
    private(set) var end: Int
    /// The largest synced length any record claims: bytes the writer knew durable.
    private(set) var syncedLength: Int

    init(headerEnd: Int) {
        end = headerEnd
        syncedLength = headerEnd
    }

    /// Why `record` cannot follow the log so far, or nil when it can.
    func refusal(of record: RecordHeader) -> String? {
        switch record.kind {
        case .rows where record.position != count:
            return "block for position \(record.position), but the archive holds \(count) rows"
        case .truncate where record.position > count:
            return "truncation to \(record.position) rows, but the archive holds \(count)"
        case .commit where record.position != count:
            return "commit of \(record.position) rows, but the archive holds \(count)"
        default:
            return nil
        }
    }

    /// Applies a record the caller has checked with `refusal(of:)`.
    mutating func apply(_ record: RecordHeader, at offset: Int) {
        switch record.kind {
        case .rows:
            let frameOffset = offset + RecordHeader.frameBytes
            blocks.append(BlockInfo(position: record.position, rows: record.rows, storedRows: record.rows,
                                    recordOffset: offset, frameOffset: frameOffset, frameLength: record.frameLength))
            count += record.rows
        case .truncate:
            truncate(to: record.position)
        case .commit:
            break
        }
        end = offset + RecordHeader.frameBytes + record.frameLength
        syncedLength = max(syncedLength, record.syncedLength)
    }

    private mutating func truncate(to rows: Int) {
        while let last = blocks.last, last.position >= rows { discarded.append(blocks.removeLast()) }
        if let last = blocks.indices.last { blocks[last].rows = min(blocks[last].rows, rows - blocks[last].position) }
        count = rows
    }

    /// The index of the block holding row `position` (binary search; `position < count`).
    func block(containing position: Int) -> Int {
        var low = 0, high = blocks.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if blocks[mid].position <= position { low = mid } else { high = mid - 1 }
        }
        return low
    }
}

/// Replays the records of a segment file and decides where its valid log ends.
///
/// A record that cannot be read stops the replay. It is a torn tail, to be ignored (readers) or
/// cut (the writer), unless a later intact record says the writer had already synced the bytes
/// at that offset: then it is damage in durable data, and opening fails naming the offset.
/// Blocks past the synced length were never known durable and may hold garbled bytes, so their
/// frames are checked whole before they count.
struct SegmentScanner {
    let path: String
    let schema: Schema
    /// The header's block rows: no rows record holds more (nothing is sized from a larger claim).
    let blockRows: Int
    /// Called with the bytes the replay has passed, every few MiB: a mapping drops them from
    /// resident memory (the kernel maps pages around each record header it faults in).
    var releaseBehind: ((Range<Int>) -> Void)? = nil

    struct Outcome {
        var index: SegmentIndex
        /// Where the valid log ends if bytes follow it that are not part of it, and why.
        var tail: (offset: Int, reason: String)?
    }

    /// A whole file opened: mapped, its header parsed and its log replayed.
    struct Replay {
        let mapping: Mapping
        let header: ArchiveHeader
        let headerEnd: Int
        let outcome: Outcome
    }

    /// Maps `file` and replays it from its header, dropping the pages it passes from resident memory.
    static func replay(_ file: borrowing SegmentFile, path: String) throws -> Replay {
        let mapping = try Mapping(file: file, count: try file.size())
        let (header, headerEnd) = try ArchiveHeader.parse(mapping.bytes, path: path)
        let outcome = try SegmentScanner(path: path, schema: header.schema, blockRows: header.blockRows, releaseBehind: mapping.release)
            .scan(mapping.bytes, headerEnd: headerEnd)
        return Replay(mapping: mapping, header: header, headerEnd: headerEnd, outcome: outcome)
    }

    func scan(_ file: UnsafeRawBufferPointer, headerEnd: Int, continuing previous: SegmentIndex? = nil) throws -> Outcome {
        let first = try replayHeaders(file, from: previous ?? SegmentIndex(headerEnd: headerEnd))
        // Only now is the synced length known: the records after it may hold garbled frames.
        let synced = first.index.syncedLength
        let decoder = BlockDecoder(schema: schema)
        // Blocks a later truncation dropped count too: a garbled one means the records after it
        // may not have reached the disk in order either.
        func isUnvouched(_ block: BlockInfo) -> Bool { block.recordOffset >= synced && block.recordOffset >= (previous?.end ?? 0) }
        let unvouched = (first.index.blocks.filter(isUnvouched) + first.index.discarded.filter(isUnvouched))
            .sorted { $0.recordOffset < $1.recordOffset }
        for block in unvouched {
            let frame = UnsafeRawBufferPointer(rebasing: file[block.frameOffset..<block.frameOffset + block.frameLength])
            do {
                try decoder.open(frame, expectedRows: block.storedRows)
            } catch {
                // Nothing claims these bytes synced (all claims are <= synced <= here): a torn tail.
                let limited = UnsafeRawBufferPointer(rebasing: file[..<block.recordOffset])
                var outcome = try replayHeaders(limited, from: previous ?? SegmentIndex(headerEnd: headerEnd))
                outcome.tail = (block.recordOffset, "block frame damaged: \(error)")
                return outcome
            }
        }
        return first
    }

    /// Replays record headers (checksums, lengths, positions) up to the first that does not fit.
    private func replayHeaders(_ file: UnsafeRawBufferPointer, from start: SegmentIndex) throws -> Outcome {
        var index = start
        var offset = index.end, released = offset
        defer { releaseBehind?(released..<offset) }
        while offset < file.count {
            if offset - released >= 8 << 20 {
                releaseBehind?(released..<offset)
                released = offset
            }
            let stop: String
            switch RecordHeader.parse(file, at: offset) {
            case .incomplete:
                stop = "record cut short"
            case .invalid(let why):
                stop = why
            case .record(let record):
                if file.count - offset - RecordHeader.frameBytes < record.frameLength {
                    stop = "block frame cut short"
                } else if record.rows > blockRows {
                    stop = "block of \(record.rows) rows, more than the archive's \(blockRows) rows per block"
                } else if let refusal = index.refusal(of: record) {
                    stop = refusal
                } else {
                    index.apply(record, at: offset)
                    offset = index.end
                    continue
                }
            }
            try checkIsTail(file, at: offset, reason: stop)
            return Outcome(index: index, tail: (offset, stop))
        }
        return Outcome(index: index, tail: nil)
    }

    /// Throws when an intact record after `offset` proves the bytes there had been synced.
    private func checkIsTail(_ file: UnsafeRawBufferPointer, at offset: Int, reason: String) throws {
        var candidate = offset + 1
        let magic = SegmentFormat.recordMagic
        while candidate + RecordHeader.frameBytes <= file.count {
            if file.loadLE(UInt32.self, at: candidate) == magic,
               case .record(let later) = RecordHeader.parse(file, at: candidate), later.syncedLength > offset {
                throw ArchiveError.corrupt(path: path, offset: offset, reason: "\(reason); the record at byte \(candidate) shows this data had been synced")
            }
            candidate += 1
        }
    }
}

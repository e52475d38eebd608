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
    /// The largest synced length any record (or the commit anchor) claims: bytes the writer knew durable.
    private(set) var syncedLength: Int
    /// The stored CRC of the last record applied (0 before any): a commit anchor names it.
    private(set) var lastRecordCRC: UInt32 = 0
    /// Rows and truncate records applied: changes whenever the rows do.
    private(set) var rowChanges = 0

    init(logStart: Int) {
        end = logStart
        syncedLength = logStart
    }

    /// Bytes up to `length` are vouched for by something outside the records (a commit anchor).
    mutating func vouch(upTo length: Int) {
        syncedLength = max(syncedLength, length)
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
        if record.kind != .commit { rowChanges += 1 }
        end = offset + RecordHeader.frameBytes + record.frameLength
        syncedLength = max(syncedLength, record.syncedLength)
        lastRecordCRC = record.crc
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

/// Replays the records of a segment file and decides where its valid log ends (spec 2.5).
///
/// Invariants the replay relies on, each kept by the writer (spec 2.7):
/// 1. Records are only appended; the file is never rewritten before the log end, except the
///    older commit anchor, in place (version 2).
/// 2. A record's synced length and a commit anchor's log end claim only bytes an `fsync` had
///    made durable before the record or anchor was written.
/// 3. The file is cut (or zeroed) only past the current anchor's log end.
///
/// Steps, as the spec numbers them:
/// - step 1: apply records from the log start while they are intact and chain;
/// - step 2: at the first that does not, decide: damage if the commit anchor's log end lies
///   beyond it, or a later intact record vouches for it; otherwise a torn tail (all zeros:
///   slack, not even a tail);
/// - step 3: blocks past everything vouched for are checked whole before they count.
struct SegmentScanner {
    let path: String
    let schema: Schema
    /// The header's block rows: no rows record holds more (nothing is sized from a larger claim).
    let blockRows: Int
    /// The current commit anchor (version 2), and its offset, for messages.
    var anchor: (anchor: CommitAnchor, offset: Int)? = nil
    /// Stop at the first record that does not fit without deciding between damage and a torn
    /// tail (salvage decides with more evidence).
    var lenient = false
    /// Called with the bytes the replay has passed, every few MiB: a mapping drops them from
    /// resident memory (the kernel maps pages around each record header it faults in).
    var releaseBehind: ((Range<Int>) -> Void)? = nil

    struct Outcome {
        var index: SegmentIndex
        /// Where the valid log ends if bytes follow it that are not part of it, and why.
        /// Zero bytes after the log (slack a writer left while readers had the file open) are
        /// not a tail.
        var tail: (offset: Int, reason: String)?
    }

    /// A whole file opened: mapped, its head read and its log replayed.
    struct Replay {
        let mapping: Mapping
        let head: Head
        let outcome: Outcome
    }

    /// Reads the head, maps `file` and replays its log, dropping the pages it passes from
    /// resident memory.
    static func replay(_ file: borrowing SegmentFile, path: String) throws -> Replay {
        let head = try readHead(file, path: path)
        return try replay(head: head, mapping: try Mapping(file: file, count: try file.size()), path: path)
    }

    /// Replays the archive held in `memory` (a caller-owned buffer, read in place: see
    /// ``ArchiveReader/init(borrowing:name:)``); `path` names it in messages.
    static func replay(memory: UnsafeRawBufferPointer, path: String) throws -> Replay {
        let frame = UnsafeRawBufferPointer(rebasing: memory[..<min(memory.count, SegmentFormat.skippableHeaderBytes)])
        let head = try parseHead(Array(memory[..<min(memory.count, headBytes(frame))]), path: path)
        return try replay(head: head, mapping: Mapping(borrowing: memory), path: path)
    }

    private static func replay(head: Head, mapping: Mapping, path: String) throws -> Replay {
        let scanner = SegmentScanner(path: path, schema: head.header.schema, blockRows: head.header.blockRows,
                                     anchor: head.anchor.map { ($0.anchor, head.anchorOffset($0.slot)) },
                                     releaseBehind: mapping.releaseBehind)
        let outcome = try scanner.scan(mapping.bytes, logStart: head.logStart)
        return Replay(mapping: mapping, head: head, outcome: outcome)
    }

    /// What precedes the log: the header and, from version 2 on, the current commit anchor.
    struct Head {
        let header: ArchiveHeader
        let headerEnd: Int
        /// The current commit anchor and its slot (0 or 1); nil in version 1 or when both are damaged.
        let anchor: (anchor: CommitAnchor, slot: Int)?
        /// What is wrong with each anchor that is not intact (version 2 only).
        let anchorDamage: [AnchorDamage]
        /// The bytes the head was parsed from, as read (the anchors as they were then): at least
        /// `logStart` of them.
        let bytes: [UInt8]

        var logStart: Int { headerEnd + (header.hasAnchors ? CommitAnchor.pairBytes : 0) }
        func anchorOffset(_ slot: Int) -> Int { headerEnd + slot * CommitAnchor.frameBytes }
    }

    /// Reads the head with `pread`, before the file's size is taken: a newer anchor never
    /// claims bytes past a size read after it.
    static func readHead(_ file: borrowing SegmentFile, path: String) throws -> Head {
        let frame = try file.read(count: SegmentFormat.skippableHeaderBytes, at: 0)
        let bytes = try frame.withUnsafeBytes { try file.read(count: headBytes($0), at: 0) }
        return try parseHead(bytes, path: path)
    }

    /// How many bytes to read for the head, from the header's first 8 bytes: the header and
    /// the commit anchors' room. The size field is checked by `parse`; reading past a bogus one
    /// only gets fewer bytes.
    private static func headBytes(_ frame: UnsafeRawBufferPointer) -> Int {
        let size = frame.count == 8 ? Int(frame.loadLE(UInt32.self, at: 4)) : 0
        return SegmentFormat.skippableHeaderBytes + min(size, SegmentFormat.maxHeaderBytes) + CommitAnchor.pairBytes
    }

    private static func parseHead(_ raw: [UInt8], path: String) throws -> Head {
        try raw.withUnsafeBytes { bytes in
            let (header, headerEnd) = try ArchiveHeader.parse(bytes, path: path)
            guard header.hasAnchors else { return Head(header: header, headerEnd: headerEnd, anchor: nil, anchorDamage: [], bytes: raw) }
            guard bytes.count >= headerEnd + CommitAnchor.pairBytes else {
                throw ArchiveError.corrupt(path: path, offset: bytes.count, reason: "the file ends inside its commit anchors")
            }
            let anchors = CommitAnchor.current(in: bytes, at: headerEnd)
            return Head(header: header, headerEnd: headerEnd, anchor: anchors.current, anchorDamage: anchors.damage, bytes: raw)
        }
    }

    func scan(_ file: UnsafeRawBufferPointer, logStart: Int, continuing previous: SegmentIndex? = nil) throws -> Outcome {
        let first = try replayHeaders(file, from: previous ?? start(logStart))
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
                var outcome = try replayHeaders(limited, from: previous ?? start(logStart))
                outcome.tail = (block.recordOffset, "block frame damaged: \(error)")
                return outcome
            }
        }
        return first
    }

    /// An empty log at `logStart`, with what the commit anchor vouches for.
    private func start(_ logStart: Int) -> SegmentIndex {
        var index = SegmentIndex(logStart: logStart)
        if let anchor { index.vouch(upTo: anchor.anchor.logEnd) }
        return index
    }

    /// Replays record headers (checksums, lengths, positions) up to the first that does not fit.
    private func replayHeaders(_ file: UnsafeRawBufferPointer, from start: SegmentIndex) throws -> Outcome {
        var index = start
        var offset = index.end, released = offset
        defer { releaseBehind?(released..<offset) }
        if !lenient { try checkAnchor(index, from: offset, to: offset) }
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
                    if !lenient { try checkAnchor(index, from: offset, to: index.end) }
                    offset = index.end
                    continue
                }
            }
            if lenient { return Outcome(index: index, tail: (offset, stop)) }
            if let anchor, offset < anchor.anchor.logEnd {
                throw ArchiveError.corrupt(path: path, offset: offset, reason: "\(stop); the commit anchor at byte \(anchor.offset) shows the log reached byte \(anchor.anchor.logEnd) with \(anchor.anchor.rows) rows")
            }
            if isZero(file, from: offset) { return Outcome(index: index, tail: nil) }
            if let later = Self.vouchingRecord(in: file, after: offset) {
                throw ArchiveError.corrupt(path: path, offset: offset, reason: "\(stop); the record at byte \(later) shows this data had been synced")
            }
            return Outcome(index: index, tail: (offset, stop))
        }
        // A replay limited to a block's record (step 3) is never short of the anchor: the block
        // lies past everything vouched for.
        if let anchor, offset < anchor.anchor.logEnd, !lenient {
            throw ArchiveError.corrupt(path: path, offset: offset, reason: "the file ends at byte \(file.count); the commit anchor at byte \(anchor.offset) shows the log reached byte \(anchor.anchor.logEnd) with \(anchor.anchor.rows) rows")
        }
        return Outcome(index: index, tail: nil)
    }

    /// The log, having gone from byte `from` to `to` with one record, must hold at the commit
    /// anchor's end what the anchor says, and no record may span that end: otherwise the log
    /// there is not the one the anchor vouched for.
    private func checkAnchor(_ index: SegmentIndex, from: Int, to: Int) throws {
        guard let (anchor, anchorOffset) = anchor else { return }
        if to == anchor.logEnd, index.count != anchor.rows || index.lastRecordCRC != anchor.lastRecordCRC {
            throw ArchiveError.corrupt(path: path, offset: from, reason: "the log holds \(index.count) rows at byte \(to), but the commit anchor at byte \(anchorOffset) vouches for \(anchor.rows) rows ending there with another record")
        }
        if from < anchor.logEnd, to > anchor.logEnd {
            throw ArchiveError.corrupt(path: path, offset: from, reason: "the record at byte \(from) runs past byte \(anchor.logEnd), where the commit anchor at byte \(anchorOffset) says the log reached \(anchor.rows) rows")
        }
    }

    /// Whether every byte from `offset` to the end is zero.
    func isZero(_ file: UnsafeRawBufferPointer, from offset: Int) -> Bool {
        var i = offset
        while i + 8 <= file.count {
            if file.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
            i += 8
        }
        while i < file.count {
            if file[i] != 0 { return false }
            i += 1
        }
        return true
    }

    /// The offset of an intact record after `offset` that proves the bytes at `offset` had
    /// been synced (it claims a synced length past them), if any. Every byte offset is tried:
    /// record boundaries past damage are unknown.
    static func vouchingRecord(in file: UnsafeRawBufferPointer, after offset: Int) -> Int? {
        var candidate = offset + 1
        let magic = SegmentFormat.recordMagic
        while candidate + RecordHeader.frameBytes <= file.count {
            if file.loadLE(UInt32.self, at: candidate) == magic,
               case .record(let later) = RecordHeader.parse(file, at: candidate), later.syncedLength > offset {
                return candidate
            }
            candidate += 1
        }
        return nil
    }
}

import Dispatch
import ExpertCodec

/// What one `append` did.
public struct AppendResult: Sendable, Equatable {
    /// Rows stored from the batch: its uncovered tail.
    public let appended: Int
    /// Rows of the batch already stored, dropped (the stored ones are kept).
    public let skipped: Int
    /// Of the skipped rows, how many differ from the stored ones (only when asked for).
    public let differing: Int?

    public init(appended: Int, skipped: Int, differing: Int?) {
        self.appended = appended
        self.skipped = skipped
        self.differing = differing
    }
}

/// The one writer of an archive (an advisory lock refuses a second, in any process).
///
/// Rows are indexed by absolute position. `append(_:at:)` follows the rules of routed-expert
/// replay: a batch that would leave a gap is refused; rows already stored are kept (first
/// writer wins) and only the uncovered tail is appended; `truncate(to:)` is the only way rows
/// are discarded. Rows are buffered and written a block at a time: `flush()` makes them
/// visible to readers, `sync()` durable, `close()` does both. Not thread-safe.
public final class ArchiveWriter {
    public let path: String
    public let schema: Schema
    public let metadata: [String: String]
    public let blockRows: Int
    /// The block layout this archive's blocks are written in.
    public let codec: BlockCodec
    /// Bytes after the log found when the archive was opened (a torn write of a crashed
    /// writer), and why they are not part of it. They are discarded before the first write
    /// (cut, or zeroed while readers have the file open); a call that writes nothing leaves
    /// the file as it was.
    public let recoveredTail: (offset: Int, bytes: Int, reason: String)?
    /// The archive format version this writer writes (that of the file it opened).
    public var formatVersion: Int { Int(header.version) }

    private let file: SegmentFile
    private let header: ArchiveHeader
    /// File offset of the commit anchor pair (version 2).
    private let anchorsOffset: Int?
    /// What the writer knows of its file; see ``FileState``.
    private var state: FileState
    private var isClosed = false
    /// Set when an fsync failed: the writer refuses every further call.
    private var syncFailure: ArchiveError?
    private let encoder: BlockEncoder
    /// One encoder per extra thread of ``encodingThreads``, made when first needed.
    private var encoders: [BlockEncoder] = []
    /// Threads that encode the whole blocks of one large `append` (a prefill, an import) in
    /// parallel; 1 keeps all work on the caller's thread. Small appends always use one.
    public var encodingThreads = 1
    /// Threads a read of many flushed blocks is split between, as ``ArchiveReader/decodingThreads``.
    public var decodingThreads = 1 {
        didSet { decodingThreads = max(1, decodingThreads) }
    }
    private let source: BlockSource
    /// Rows not yet written, token-major; ids of MoE layers are checked, dense ones kept as
    /// they came (the encoder skips them, reads give the dense fill). One block's worth,
    /// allocated once: a one-row append copies into it without an array's bookkeeping.
    private let pending: UnsafeMutableBufferPointer<UInt16>
    private var pendingRows = 0

    /// Creates an archive. Fails if `path` exists, unless `overwrite`.
    /// `codec` is the block layout every block is written in (readers read both).
    /// Metadata keys must be in Unicode NFC (FORMAT.md 2.3): readers compare key bytes.
    public static func create(at path: String, schema: Schema, metadata: [String: String] = [:],
                              blockRows: Int? = nil, codec: BlockCodec = .fast,
                              overwrite: Bool = false) throws -> ArchiveWriter {
        try ArchiveHeader.requireNFCKeys(metadata)
        return try create(at: path, schema: schema, metadata: metadata, blockRows: blockRows, codec: codec,
                          overwrite: overwrite, faults: nil)
    }

    /// `create`, with every write, fsync and truncation of the file passed through `faults` first.
    @_spi(Faults)
    public static func create(at path: String, schema: Schema, metadata: [String: String] = [:],
                              blockRows: Int? = nil, codec: BlockCodec = .fast, overwrite: Bool = false,
                              faults: (any FileFaults)?) throws -> ArchiveWriter {
        let rows = blockRows ?? BlockEncoder.defaultBlockRows(for: schema, codec: codec)
        guard (1...schema.maxBlockRows).contains(rows) else {
            throw ArchiveError.invalidArgument("block rows must be in 1...\(schema.maxBlockRows), got \(rows)")
        }
        let header = ArchiveHeader(schema: schema, blockRows: rows, metadata: metadata, codec: codec).encoded()
        guard metadata.count <= SegmentFormat.maxMetadataEntries,
              header.count - SegmentFormat.skippableHeaderBytes <= SegmentFormat.maxHeaderBytes else {
            throw ArchiveError.invalidArgument("metadata too large: at most \(SegmentFormat.maxMetadataEntries) entries and \(SegmentFormat.maxHeaderBytes) bytes")
        }
        let initial = CommitAnchor(sequence: 0, logEnd: header.count + CommitAnchor.pairBytes, rows: 0, lastRecordCRC: 0)
        let head = header + initial.encoded() + initial.encoded()
        let file = try SegmentFile.createLocked(path: path, overwrite: overwrite, faults: faults) { file in
            try file.write(head, at: 0)
            try file.sync()
        }
        let mapping = try Mapping(file: file, count: head.count)
        return ArchiveWriter(path: path, file: file,
                             header: ArchiveHeader(schema: schema, blockRows: rows, metadata: metadata, codec: codec),
                             headerEnd: header.count, anchor: (initial, 0),
                             index: SegmentIndex(logStart: head.count), mapping: mapping, recoveredTail: nil)
    }

    /// Whether another writer, in any process, has the archive at `path` open: a file about to
    /// be replaced must not be, or its rows would go to the replaced file.
    public static func isWriterActive(at path: String) -> Bool {
        SegmentFile.isWriterActive(at: path)
    }

    /// Opens an existing archive to append, resuming at its row count. A torn last record
    /// (a crash during a write) is cut off; damage in synced data fails with its offset.
    public static func open(at path: String) throws -> ArchiveWriter {
        try open(at: path, faults: nil)
    }

    /// `open`, with every write, fsync and truncation of the file passed through `faults` first.
    @_spi(Faults)
    public static func open(at path: String, faults: (any FileFaults)?) throws -> ArchiveWriter {
        let file = try SegmentFile(path: path, mode: .readWrite, faults: faults)
        try file.lockExclusive()
        let replay = try SegmentScanner.replay(file, path: path)
        let recovered = replay.outcome.tail.map { (offset: $0.offset, bytes: replay.mapping.bytes.count - $0.offset, reason: $0.reason) }
        // What an earlier writer left in the page cache becomes durable before new records
        // claim it is. The file's bytes stay as they are until something is written.
        try file.sync()
        let writer = ArchiveWriter(path: path, file: file, header: replay.head.header, headerEnd: replay.head.headerEnd,
                                   anchor: replay.head.anchor, index: replay.outcome.index, mapping: replay.mapping,
                                   recoveredTail: recovered)
        writer.state.fileLength = replay.mapping.bytes.count
        writer.state.pastEndIsZero = recovered == nil
        return writer
    }

    private init(path: String, file: consuming SegmentFile, header: ArchiveHeader, headerEnd: Int,
                 anchor: (anchor: CommitAnchor, slot: Int)?, index: SegmentIndex,
                 mapping: Mapping, recoveredTail: (offset: Int, bytes: Int, reason: String)?) {
        self.path = path
        self.file = file
        self.header = header
        schema = header.schema
        metadata = header.metadata
        blockRows = header.blockRows
        codec = header.codec
        anchorsOffset = header.hasAnchors ? headerEnd : nil
        state = FileState(index: index, durableLength: index.end, committed: true, fileLength: index.end,
                          pastEndIsZero: true, anchor: anchor)
        self.recoveredTail = recoveredTail
        encoder = BlockEncoder(schema: header.schema, codec: header.codec)
        source = BlockSource(path: path, schema: header.schema, mapping: mapping)
        pending = .allocate(capacity: header.blockRows * header.schema.idsPerRow)
        pending.initialize(repeating: 0)
    }

    deinit {
        try? close()
        pending.deallocate()
    }

    /// Rows in the archive, buffered ones included: the position the next row takes.
    public var count: Int { state.index.count + pendingRows }
    /// Rows written to the file (visible to readers).
    public var flushedCount: Int { state.index.count }
    public var blocks: [BlockInfo] { state.index.blocks }
    public var fileBytes: Int { state.index.end }

    // MARK: Appending

    /// Appends the batch `rows` (token-major, whole rows) whose first row is at `start`.
    /// - `start > count`: refused (a gap), nothing stored.
    /// - the first `count - start` rows are already stored: they are kept, the batch's are
    ///   dropped (with `compareOverlap`, the differing ones are counted); the rest is appended.
    /// Ids of the appended rows must be in `[0, experts)` on MoE layers; on any error nothing
    /// is stored and the file is as before the call.
    @discardableResult
    public func append<T: ExpertID>(_ rows: UnsafeBufferPointer<T>, at start: Int,
                                    compareOverlap: Bool = false) throws -> AppendResult {
        let call = ConcreteAppend(writer: self, start: start, compareOverlap: compareOverlap)
        rows.withConcreteIDType(call)
        guard let result = call.result else { throw ArchiveError.invalidArgument("append did not run") }
        return try result.get()
    }

    /// `append` for the concrete id type: its loops run specialized.
    private final class ConcreteAppend: ConcreteIDBody {
        let writer: ArchiveWriter, start: Int, compareOverlap: Bool
        /// Set by the call (nil until then: a default failure allocated an error every append).
        var result: Result<AppendResult, any Error>?

        init(writer: ArchiveWriter, start: Int, compareOverlap: Bool) {
            self.writer = writer
            self.start = start
            self.compareOverlap = compareOverlap
        }

        func callAsFunction<U: ExpertID>(_ ids: UnsafeBufferPointer<U>) {
            result = Result { try writer.appendConcrete(ids, at: start, compareOverlap: compareOverlap) }
        }
    }

    private func appendConcrete<T: ExpertID>(_ rows: UnsafeBufferPointer<T>, at start: Int,
                                             compareOverlap: Bool) throws -> AppendResult {
        try checkOpen()
        let perRow = schema.idsPerRow
        guard rows.count % perRow == 0 else {
            throw ArchiveError.invalidRows(path: path, position: start, reason: "\(rows.count) ids are not a whole number of \(perRow)-id rows")
        }
        guard start >= 0 else { throw ArchiveError.invalidArgument("\(path): batch start \(start) is negative") }
        guard start <= count else { throw ArchiveError.gap(path: path, start: start, count: count) }
        let batchRows = rows.count / perRow
        let skipped = min(batchRows, count - start)
        let differing = compareOverlap ? try countDiffering(rows, start: start, rows: skipped) : nil
        let appended = batchRows - skipped
        if appended > 0 {
            let tail = UnsafeBufferPointer(rebasing: rows[(skipped * perRow)...])
            // A batch that only fills the pending block (a decode step's) is checked as it is
            // copied into it; any other first, as it may be encoded straight from `rows`.
            let checkedOnCopy = schema.denseLayers.isEmpty && pendingRows + appended <= blockRows
            if !checkedOnCopy { try validate(tail, firstPosition: start + skipped) }
            try store(tail, rows: appended, checkedOnCopy: checkedOnCopy)
        }
        return AppendResult(appended: appended, skipped: skipped, differing: differing)
    }

    @discardableResult
    public func append<T: ExpertID>(_ rows: [T], at start: Int, compareOverlap: Bool = false) throws -> AppendResult {
        try rows.withUnsafeBufferPointer { try append($0, at: start, compareOverlap: compareOverlap) }
    }

    /// Appends at the current end.
    @discardableResult
    public func append<T: ExpertID>(_ rows: [T]) throws -> AppendResult { try append(rows, at: count) }

    private func validate<T: ExpertID>(_ rows: UnsafeBufferPointer<T>, firstPosition: Int) throws {
        // One unsigned maximum over the stored ids (negative ids wrap to huge values): a loop
        // that vectorizes; the slow scan below only runs to name the first bad id.
        var largest: UInt64 = 0
        if schema.denseLayers.isEmpty {
            // A decode step's batch is checked here; a prefill's on several threads.
            if rows.count < 1 << 16 {
                if idsAreBelow(rows, schema.experts) { return }
                largest = UInt64.max
            } else {
                largest = largestUnsignedID(rows, threads: encodingThreads)
            }
        } else {
            let perRow = schema.idsPerRow, topk = schema.topk
            for row in stride(from: 0, to: rows.count, by: perRow) {
                for layer in schema.moeLayers {
                    for i in (row + layer * topk)..<(row + (layer + 1) * topk) {
                        largest = max(largest, UInt64(truncatingIfNeeded: rows[i]))
                    }
                }
            }
        }
        guard largest >= UInt64(schema.experts) else { return }
        let perRow = schema.idsPerRow, topk = schema.topk, limit = UInt64(schema.experts)
        for t in 0..<(rows.count / perRow) {
            for layer in schema.moeLayers {
                for slot in 0..<topk {
                    let id = rows[t * perRow + layer * topk + slot]
                    if UInt64(truncatingIfNeeded: id) >= limit || id < 0 {
                        throw ArchiveError.invalidRows(path: path, position: firstPosition + t,
                                           reason: "expert id \(id) at layer \(layer), slot \(slot) is outside [0, \(schema.experts))")
                    }
                }
            }
        }
    }


    /// Buffers `rows` and writes every block they complete in one write; on failure the file
    /// is cut back and the buffer restored, so the call leaves no trace. With `checkedOnCopy`
    /// (no dense layers, and the rows fit in the pending block), the ids are checked as they
    /// are copied into it, before anything is encoded.
    private func store<T: ExpertID>(_ rows: UnsafeBufferPointer<T>, rows rowCount: Int, checkedOnCopy: Bool = false) throws {
        let perRow = schema.idsPerRow
        let savedRows = pendingRows
        // The buffered rows, copied only if this call is about to overwrite them (after it
        // encoded them into a block), so that a failure can put them back.
        var savedPending: [UInt16]? = nil
        var batch = RecordBatch(start: state.index.end, firstPosition: state.index.count, syncedLength: state.durableLength)
        var consumed = 0
        do throws {
            while consumed < rowCount {
                if pendingRows == 0 && rowCount - consumed >= blockRows {
                    // Whole blocks of a large batch are encoded straight from the caller's rows,
                    // on several threads when there are several blocks and threads.
                    let blocks = (rowCount - consumed) / blockRows
                    let start = consumed * perRow
                    for frame in try encodeBlocks(UnsafeBufferPointer(rebasing: rows[start..<(start + blocks * blockRows * perRow)]), count: blocks) {
                        batch.add(frame, rows: blockRows)
                    }
                    consumed += blocks * blockRows
                    continue
                }
                let take = min(blockRows - pendingRows, rowCount - consumed)
                if pendingRows < savedRows && savedPending == nil {
                    savedPending = Array(pending[0..<(savedRows * perRow)])
                }
                // Pointers and locals: the loop then narrows ids without a check or a property read each.
                let count = take * perRow, source = rows.baseAddress! + consumed * perRow
                let target = pending.baseAddress! + pendingRows * perRow
                if checkedOnCopy {
                    // Every id is at most the OR of all: below the expert count, all are valid
                    // (else the exact check names the first bad one, or passes).
                    var union: T.Magnitude = 0
                    for i in 0..<count {
                        target[i] = UInt16(truncatingIfNeeded: source[i])
                        union |= T.Magnitude(truncatingIfNeeded: source[i])
                    }
                    if (T.isSigned && union > T.Magnitude(T.max)) || UInt64(union) >= UInt64(schema.experts) {
                        try validate(UnsafeBufferPointer(start: source, count: count), firstPosition: state.index.count + pendingRows)
                    }
                } else {
                    for i in 0..<count { target[i] = UInt16(truncatingIfNeeded: source[i]) }
                }
                pendingRows += take
                consumed += take
                if pendingRows == blockRows {
                    batch.add(try encodePending(), rows: blockRows)
                    pendingRows = 0
                }
            }
            try write(batch)
        } catch {
            pendingRows = savedRows
            if let savedPending { _ = pending.update(fromContentsOf: savedPending) }
            throw error
        }
    }

    /// Encodes `count` whole blocks of `rows`, split between ``encodingThreads`` encoders.
    private func encodeBlocks<T: ExpertID>(_ rows: UnsafeBufferPointer<T>, count: Int) throws -> [[UInt8]] {
        let threads = min(encodingThreads, count)
        guard threads > 1 else {
            return try (0..<count).map { b in
                try encode(UnsafeBufferPointer(rebasing: rows[(b * blockRows * schema.idsPerRow)..<((b + 1) * blockRows * schema.idsPerRow)]))
            }
        }
        while encoders.count < threads { encoders.append(BlockEncoder(schema: schema, codec: codec)) }
        let work = ParallelEncoding(rows: rows, blockIDs: blockRows * schema.idsPerRow, count: count,
                                    threads: threads, encoders: Array(encoders[..<threads]))
        DispatchQueue.concurrentPerform(iterations: threads) { work.run(worker: $0) }
        if let failure = work.failures.compactMap({ $0 }).first {
            throw ArchiveError.invalidRows(path: path, position: state.index.count, reason: "\(failure)")
        }
        return work.frames
    }

    private func encodePending() throws -> [UInt8] {
        try encode(UnsafeBufferPointer(rebasing: pending[..<(pendingRows * schema.idsPerRow)]))
    }

    /// Ids were checked on append: a codec error here is a bug, reported, never stored.
    private func encode<T: ExpertID>(_ rows: UnsafeBufferPointer<T>) throws -> [UInt8] {
        do { return try encoder.encode(rows) } catch {
            throw ArchiveError.invalidRows(path: path, position: state.index.count, reason: "\(error)")
        }
    }

    /// Writes the records of `batch` and applies them. The first record's magic goes last, so
    /// that readers see the whole batch or none of it: until then the log stops at a record that
    /// is not there, and the batch's later records claim nothing past it (spec 2.7). If the write
    /// fails, what reached the file is discarded: the call leaves no trace.
    private func write(_ batch: RecordBatch) throws {
        guard !batch.bytes.isEmpty else { return }
        try clearPastEnd()
        let magic = 4, end = state.index.end
        do throws {
            try batch.bytes.withUnsafeBytes { bytes in
                try file.write(UnsafeRawBufferPointer(rebasing: bytes[magic...]), at: end + magic)
                try file.write(UnsafeRawBufferPointer(rebasing: bytes[..<magic]), at: end)
            }
        } catch {
            discardFailedWrite(upTo: end + batch.bytes.count)
            throw error
        }
        for (record, offset) in batch.records { state.index.apply(record, at: offset) }
        state.fileLength = max(state.fileLength, state.index.end)
        state.committed = false
    }

    /// After a failed write: whatever of it reached the file (up to the file's length, or
    /// `guess` when that cannot be read) is past the log now, and is discarded at once if it
    /// can be, else before the next write.
    private func discardFailedWrite(upTo guess: Int) {
        state.fileLength = max(state.fileLength, (try? file.size()) ?? guess)
        state.pastEndIsZero = false
        try? clearPastEnd()
    }

    /// Discards the bytes past the log before records are written over them: cut when no
    /// reader has the file open, else zeroed (a reader's mapping never loses a page). Either
    /// way fsynced first: stale records left there by a crash must not reappear after the
    /// next one, behind new records, and chain onto them.
    private func clearPastEnd() throws {
        guard state.fileLength > state.index.end else { return }
        if try file.cutIfUnread(to: state.index.end) {
            state.fileLength = state.index.end
        } else if state.pastEndIsZero {
            return
        } else {
            try file.zero(state.index.end..<state.fileLength)
        }
        try syncFile()
        state.pastEndIsZero = true
    }

    // MARK: Flush, sync, truncate, close

    /// Writes buffered rows as a (possibly short) block: readers see them.
    public func flush() throws {
        try checkOpen()
        guard pendingRows > 0 else { return }
        var batch = RecordBatch(start: state.index.end, firstPosition: state.index.count, syncedLength: state.durableLength)
        batch.add(try encodePending(), rows: pendingRows)
        try write(batch)
        pendingRows = 0
    }

    /// Flushes, then makes every row durable: after `sync()` returns, a crash loses none of
    /// them, and damage to them later is reported rather than taken for a torn write.
    public func sync() throws {
        try checkOpen()
        let before = checkpoint()
        try flush()
        do {
            try commit()
        } catch {
            // A failed write leaves the archive as before the call; a failed fsync stops the
            // writer (see syncFile), and reopening shows what reached the file.
            if syncFailure == nil { try? rollback(to: before) }
            throw error
        }
    }

    /// fsyncs, then appends a commit record that vouches for every byte before it (its synced
    /// length is its own offset) and fsyncs that too. Without it nothing would vouch for the
    /// last synced records, and damage to them would look like a torn tail.
    ///
    /// Version 2 also overwrites the older commit anchor, in the same fsync as the commit
    /// record: it claims the log up to the commit record (durable since the first fsync), so a
    /// crash that loses the commit record leaves an anchor that is still true.
    private func commit() throws {
        try syncFile()
        state.durableLength = state.index.end
        guard !state.committed else { return }
        let vouched = CommitAnchor(sequence: (state.anchor?.anchor.sequence ?? 0) + 1, logEnd: state.index.end, rows: state.index.count,
                                   lastRecordCRC: state.index.lastRecordCRC)
        var batch = RecordBatch(start: state.index.end, firstPosition: state.index.count, syncedLength: state.index.end)
        batch.add(marker: .commit, position: state.index.count)
        try write(batch)
        if let anchorsOffset {
            // The slot not holding the current anchor; both when neither is intact.
            let slots = state.anchor.map { [1 - $0.slot] } ?? [0, 1]
            for slot in slots { try file.write(vouched.encoded(), at: anchorsOffset + slot * CommitAnchor.frameBytes) }
            state.anchor = (vouched, slots[0])
        }
        try syncFile()
        state.durableLength = state.index.end
        state.committed = true
    }

    /// fsync, and after a failed one refuse to go on: Linux may drop the dirty pages of a failed
    /// fsync and report success on the next, so a later commit record would vouch for lost bytes.
    private func syncFile() throws {
        do {
            try file.sync()
        } catch {
            syncFailure = ArchiveError.wrapping(error, path: path)
            throw error
        }
    }

    /// Discards every row at position `rows` and after (a rollback). Durable when it returns;
    /// the next append continues at `rows`. On failure the archive is as before the call.
    public func truncate(to rows: Int) throws {
        try checkOpen()
        guard rows >= 0, rows <= count else {
            throw ArchiveError.invalidArgument("\(path): cannot truncate to \(rows) rows, the archive holds \(count)")
        }
        if rows >= state.index.count { // only buffered rows go: nothing on disk holds them
            pendingRows = rows - state.index.count
            return
        }
        let before = state.index, wasCommitted = state.committed
        var batch = RecordBatch(start: state.index.end, firstPosition: state.index.count, syncedLength: state.durableLength)
        batch.add(marker: .truncate, position: rows)
        try write(batch)
        do {
            try commit()
        } catch {
            state.index = before
            state.committed = wasCommitted
            state.durableLength = min(state.durableLength, before.end)
            if syncFailure == nil { discardFailedWrite(upTo: state.fileLength) }
            throw error
        }
        pendingRows = 0
    }

    /// Flushes, syncs and releases the lock. Further calls fail with ``ArchiveError/closed(path:)``.
    public func close() throws {
        guard !isClosed else { return }
        try sync()
        isClosed = true
        file.unlock()
    }

    /// The writer's state at one moment, to return to with ``rollback(to:)``.
    public struct Checkpoint {
        fileprivate let index: SegmentIndex
        fileprivate let pending: [UInt16]
        fileprivate let pendingRows: Int
        fileprivate let committed: Bool
    }

    /// Marks the current state so that a multi-call operation (a `pack --append` of a large
    /// input) can be undone whole if one of its calls fails.
    public func checkpoint() -> Checkpoint {
        Checkpoint(index: state.index, pending: Array(pending[0..<(pendingRows * schema.idsPerRow)]),
                   pendingRows: pendingRows, committed: state.committed)
    }

    /// Returns the archive to `checkpoint`. When no reader has the file open and no commit
    /// anchor vouches for bytes past the checkpoint, the file is cut back to its length then
    /// (every byte before it is untouched, as records are only appended) and made durable:
    /// the file is byte for byte as it was. Otherwise the rows appended since are discarded by
    /// a truncate record, as `truncate(to:)` does: readers see a truncation, never a page
    /// taken from under their mapping. That needs the rows of the checkpoint to be still
    /// stored (no truncation below them since); otherwise the call fails and changes nothing.
    public func rollback(to checkpoint: Checkpoint) throws {
        try checkOpen()
        if checkpoint.index.end >= (state.anchor?.anchor.logEnd ?? 0), try file.cutIfUnread(to: checkpoint.index.end) {
            // The index follows the file at once: a failed fsync below must not leave it naming
            // bytes that are gone.
            state.index = checkpoint.index
            state.fileLength = state.index.end
            state.pastEndIsZero = true
            state.durableLength = min(state.durableLength, state.index.end)
            state.committed = checkpoint.committed
            restorePending(checkpoint)
            source.forgetOpenBlock()
            if let mapping = try? Mapping(file: file, count: state.index.end) { source.remap(mapping) }
            try syncFile()
            return
        }
        let kept = checkpoint.index.blocks
        guard state.index.blocks.count >= kept.count,
              zip(kept, state.index.blocks).allSatisfy({ $0.frameOffset == $1.frameOffset && $1.rows >= $0.rows }) else {
            throw ArchiveError.invalidArgument("\(path): cannot roll back to \(checkpoint.index.count) rows while readers have the archive open: rows before that were truncated since the checkpoint")
        }
        if state.index.count > checkpoint.index.count {
            pendingRows = 0
            try truncate(to: checkpoint.index.count)
        }
        restorePending(checkpoint)
    }

    private func restorePending(_ checkpoint: Checkpoint) {
        pendingRows = checkpoint.pendingRows
        _ = pending.update(fromContentsOf: checkpoint.pending)
    }

    private func checkOpen() throws {
        if isClosed { throw ArchiveError.closed(path: path) }
        if let syncFailure {
            throw ArchiveError.invalidArgument("\(path): an earlier fsync failed (\(syncFailure)); reopen the archive to go on from what is durable")
        }
    }

    // MARK: Reading

    /// Decodes rows `range` (absolute positions, buffered rows included) into `out`.
    public func read<T: ExpertID>(_ range: Range<Int>, into out: UnsafeMutableBufferPointer<T>) throws {
        try read(range, layers: nil, into: out)
    }

    public func rows<T: ExpertID>(_ range: Range<Int>, as type: T.Type = T.self) throws -> [T] {
        try rows(range, layers: nil, as: type)
    }

    /// Decodes layers `layers` of rows `range` (buffered rows included) into `out`, as
    /// ``ArchiveReader/read(_:layers:into:)`` does.
    public func read<T: ExpertID>(_ range: Range<Int>, layers: Range<Int>, into out: UnsafeMutableBufferPointer<T>) throws {
        try read(range, layers: Optional(layers), into: out)
    }

    /// Layers `layers` of rows `range`, as ``read(_:layers:into:)`` writes them.
    public func rows<T: ExpertID>(_ range: Range<Int>, layers: Range<Int>, as type: T.Type = T.self) throws -> [T] {
        try rows(range, layers: Optional(layers), as: type)
    }

    /// Rows `range`, every layer (`nil`) or `layers`, token-major.
    private func rows<T: ExpertID>(_ range: Range<Int>, layers: Range<Int>?, as type: T.Type) throws -> [T] {
        // Checked before the size is computed: a range past the rows must not overflow it.
        try checkRead(range, layers: layers)
        var out = [T](repeating: 0, count: range.count * (layers?.count ?? schema.layers) * schema.topk)
        try out.withUnsafeMutableBufferPointer { try read(range, layers: layers, into: $0) }
        return out
    }

    private func checkRead(_ range: Range<Int>, layers: Range<Int>?) throws {
        if let layers, layers.lowerBound < 0 || layers.upperBound > schema.layers {
            throw ArchiveError.invalidArgument("\(path): layers \(layers) are outside the archive's 0..<\(schema.layers)")
        }
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw ArchiveError.outOfRange(path: path, requested: range, count: count)
        }
    }

    /// Reads flushed rows from the file and buffered ones from the pending block; `layers` nil
    /// reads whole rows (the decoder's whole-row path, with its one-row shortcut).
    private func read<T: ExpertID>(_ range: Range<Int>, layers: Range<Int>?, into out: UnsafeMutableBufferPointer<T>) throws {
        try checkRead(range, layers: layers)
        let topk = schema.topk, shown = layers ?? 0..<schema.layers, perRow = shown.count * topk
        guard out.count == range.count * perRow else {
            throw ArchiveError.invalidArgument("\(path): an output of \(out.count) ids cannot hold \(range.count) rows of \(perRow)")
        }
        guard T.max >= schema.experts - 1 else {
            throw ArchiveError.invalidArgument("\(path): \(T.self) cannot hold expert ids up to \(schema.experts - 1)")
        }
        guard let base = out.baseAddress, perRow > 0 else { return }
        let flushed = min(range.lowerBound, state.index.count)..<min(range.upperBound, state.index.count)
        if !flushed.isEmpty {
            if source.mapping.bytes.count < state.index.end { source.remap(try Mapping(file: file, count: state.index.end)) }
            try source.read(flushed, layers: layers, from: state.index, into: base, threads: decodingThreads)
        }
        let first = shown.lowerBound * topk
        for position in min(max(range.lowerBound, state.index.count), range.upperBound)..<range.upperBound {
            let row = base + (position - range.lowerBound) * perRow, buffered = (position - state.index.count) * schema.idsPerRow + first
            for i in 0..<perRow { row[i] = T(pending[buffered + i]) }
            for layer in schema.denseLayers where shown.contains(layer) {
                for slot in 0..<topk { row[(layer - shown.lowerBound) * topk + slot] = T(Schema.denseFill) }
            }
        }
    }

    /// Rows among the `rows` rows of `batch` (from `start`) that differ from the stored ones
    /// on a MoE layer.
    private func countDiffering<T: ExpertID>(_ batch: UnsafeBufferPointer<T>, start: Int, rows: Int) throws -> Int {
        guard rows > 0 else { return 0 }
        let stored = try self.rows(start..<start + rows, as: Int64.self)
        let perRow = schema.idsPerRow, topk = schema.topk
        var differing = 0
        for t in 0..<rows {
            let differs = schema.moeLayers.contains { layer in
                (0..<topk).contains { slot in
                    let i = t * perRow + layer * topk + slot
                    return Int64(truncatingIfNeeded: batch[i]) != stored[i] || (batch[i] < 0 && stored[i] >= 0)
                }
            }
            if differs { differing += 1 }
        }
        return differing
    }
}

/// What a writer knows of its file. The fields change together, and only as spec 2.7 says:
/// the log grows by whole records at `index.end`; `durableLength` is what an fsync that returned
/// made durable (what new records claim); `committed` is whether a commit record and anchor
/// vouch for the log's last record; bytes from `index.end` to `fileLength` are not part of the
/// log and are discarded (cut, or zeroed while readers have the file open) before records are
/// written over them.
private struct FileState {
    var index: SegmentIndex
    var durableLength: Int
    var committed: Bool
    var fileLength: Int
    /// Whether the bytes past the log are all zero (slack) or absent.
    var pastEndIsZero: Bool
    /// The current commit anchor and its slot (version 2).
    var anchor: (anchor: CommitAnchor, slot: Int)?
}

/// Records built in memory and written in one call.
private struct RecordBatch {
    let start: Int
    var nextPosition: Int
    let syncedLength: Int
    var bytes: [UInt8] = []
    var records: [(RecordHeader, Int)] = []

    init(start: Int, firstPosition: Int, syncedLength: Int) {
        self.start = start
        nextPosition = firstPosition
        self.syncedLength = syncedLength
    }

    mutating func add(_ frame: [UInt8], rows: Int) {
        var record = RecordHeader(kind: .rows, frameLength: frame.count, position: nextPosition, rows: rows,
                                  syncedLength: syncedLength)
        let offset = start + bytes.count
        record.crc = record.encoded(into: &bytes)
        records.append((record, offset))
        bytes += frame
        nextPosition += rows
    }

    mutating func add(marker kind: RecordHeader.Kind, position: Int) {
        var record = RecordHeader(kind: kind, frameLength: 0, position: position, rows: 0, syncedLength: syncedLength)
        let offset = start + bytes.count
        record.crc = record.encoded(into: &bytes)
        records.append((record, offset))
    }
}

/// The blocks of one batch split between threads: worker `w` encodes a contiguous run of them
/// with its own encoder and stores the frames at their own indices of preallocated storage, so
/// no memory is written by two threads and nothing is shared but read-only inputs.
private final class ParallelEncoding: @unchecked Sendable {
    let rows: UnsafeRawPointer, stride: Int, blockIDs: Int, count: Int, threads: Int
    let encoders: [BlockEncoder]
    let encode: (BlockEncoder, UnsafeRawPointer, Int) throws -> [UInt8]
    private let frameSlots: UnsafeMutableBufferPointer<[UInt8]>
    private let failureSlots: UnsafeMutableBufferPointer<(any Error)?>

    init<T: ExpertID>(rows: UnsafeBufferPointer<T>, blockIDs: Int, count: Int, threads: Int, encoders: [BlockEncoder]) {
        self.rows = UnsafeRawPointer(rows.baseAddress!)
        stride = MemoryLayout<T>.stride
        self.blockIDs = blockIDs
        self.count = count
        self.threads = threads
        self.encoders = encoders
        encode = { encoder, start, ids in
            try encoder.encode(UnsafeBufferPointer(start: start.assumingMemoryBound(to: T.self), count: ids))
        }
        frameSlots = .allocate(capacity: count)
        frameSlots.initialize(repeating: [])
        failureSlots = .allocate(capacity: threads)
        failureSlots.initialize(repeating: nil)
    }

    deinit {
        frameSlots.deinitialize().deallocate()
        failureSlots.deinitialize().deallocate()
    }

    var frames: [[UInt8]] { Array(frameSlots) }
    var failures: [(any Error)?] { Array(failureSlots) }

    func run(worker: Int) {
        let first = count * worker / threads, end = count * (worker + 1) / threads
        for block in first..<end {
            do {
                frameSlots[block] = try encode(encoders[worker], rows + block * blockIDs * stride, blockIDs)
            } catch {
                failureSlots[worker] = error
                return
            }
        }
    }
}

import ExpertCodec

/// Read-only access to an archive. Any number of readers, in any process, may read while one
/// writer appends: a reader sees a consistent prefix (the records whole when it opened or last
/// refreshed) and never takes the writer's lock. Not thread-safe: one per thread.
/// A reader over memory (``init(borrowing:name:)``) reads an archive's bytes held anywhere, in
/// place: a buffer received from another machine, an object store's shared memory.
public final class ArchiveReader {
    public let path: String
    public let schema: Schema
    public let metadata: [String: String]
    /// The rows per block the writer aims for.
    public let blockRows: Int
    /// The block layout the writer writes (blocks name their own layout; both are read).
    public let codec: BlockCodec

    /// The archive format version of the file (2 has commit anchors).
    public let formatVersion: Int

    /// Threads a read of many blocks is split between (``read(_:into:)``, ``read(_:layers:into:)``):
    /// each decodes a contiguous run of at least four blocks into its own part of the output,
    /// with a decoder of its own. 1 (the default): the calling thread alone. The reader is still
    /// used from one thread at a time; the threads are Dispatch's, for the length of a read.
    public var decodingThreads = 1 {
        didSet { decodingThreads = max(1, decodingThreads) }
    }

    /// Whether ``read(_:into:)`` and ``read(_:layers:into:)`` drop the pages of the blocks they
    /// have read from this process's resident memory (they stay in the page cache): what a
    /// reader streaming a large archive through a small buffer wants, so that the archive is not
    /// all counted as resident. Off by default: the archive's pages stay mapped, and reading
    /// them again costs no page faults (faulting them in again costs about a quarter of a
    /// one-layer read). ``forEachBlock(in:as:_:)`` and ``verify()`` always drop them.
    public var releasesPagesBehind = false

    /// The archive's file; nil for a reader over memory.
    private let file: SegmentFile?
    private let head: SegmentScanner.Head
    /// The head's bytes as of the open or last refresh (its commit anchors as they were then).
    private var headBytes: [UInt8]
    private var index: SegmentIndex
    private let source: BlockSource
    /// Bytes after the valid log that were ignored (a torn or in-progress write), and why.
    public private(set) var ignoredTail: (offset: Int, reason: String)?
    /// What is wrong with each commit anchor that is not intact (version 2). A writer's next
    /// commit rewrites a damaged one; with both damaged the log alone was trusted.
    private var anchorDamage: [AnchorDamage]
    /// The last bytes of the log as last replayed: if they change, a writer cut the log back
    /// (a rollback) and wrote anew, and `refresh()` replays it from the start.
    private var logFingerprint: [UInt8] = []

    public convenience init(path: String) throws {
        let file = try SegmentFile(path: path, mode: .read)
        // Before the size is read: from now on no writer shrinks the file under this mapping.
        try file.holdReaderLock()
        let replay = try SegmentScanner.replay(file, path: path)
        self.init(file: file, replay: replay, path: path)
    }

    /// A reader of the archive held in `bytes`: a whole archive file's bytes (or a prefix of
    /// them), read in place, never copied. The caller owns the memory: it must stay alive and
    /// unchanged while this reader lives. There is no file and no lock; `name` stands for the
    /// path in messages; ``refresh()`` finds nothing new. Damage and a torn tail are found and
    /// reported as for a file.
    public convenience init(borrowing bytes: UnsafeRawBufferPointer, name: String) throws {
        let replay = try SegmentScanner.replay(memory: bytes, path: name)
        self.init(file: nil, replay: replay, path: name)
    }

    private init(file: consuming SegmentFile?, replay: SegmentScanner.Replay, path: String) {
        self.path = path
        self.file = file
        head = replay.head
        headBytes = replay.head.bytes
        schema = replay.head.header.schema
        metadata = replay.head.header.metadata
        blockRows = replay.head.header.blockRows
        codec = replay.head.header.codec
        formatVersion = Int(replay.head.header.version)
        anchorDamage = replay.head.anchorDamage
        index = replay.outcome.index
        ignoredTail = replay.outcome.tail
        source = BlockSource(path: path, schema: replay.head.header.schema, mapping: replay.mapping)
        logFingerprint = Self.fingerprint(of: replay.mapping.bytes, end: index.end, logStart: head.logStart)
    }

    private static func fingerprint(of file: UnsafeRawBufferPointer, end: Int, logStart: Int) -> [UInt8] {
        Array(file[max(logStart, end - 64)..<end])
    }

    /// Rows in the archive as of the last open or refresh.
    public var count: Int { index.count }
    public var blocks: [BlockInfo] { index.blocks }
    /// Bytes of the file holding the valid log.
    public var fileBytes: Int { index.end }

    /// Sees what a writer flushed since; returns whether the rows changed. A truncation shows
    /// as a smaller count; a rollback that cut the file back (and whatever was written after
    /// it) is seen as well, by replaying the log anew.
    @discardableResult
    public func refresh() throws -> Bool {
        switch file {
        case .none: return false  // memory does not change
        case .some(let file): return try refresh(file)
        }
    }

    private func refresh(_ file: borrowing SegmentFile) throws -> Bool {
        // The anchor first, then the size (as at open).
        let current = try SegmentScanner.readHead(file, path: path)
        let size = try file.size()
        let mapping = size == source.mapping.bytes.count ? source.mapping : try Mapping(file: file, count: size)
        // The log this reader knows is gone or different (bytes past the file end are not read):
        // replay from the log start, so that no row of the old log is served.
        let rewritten = size < index.end || Self.fingerprint(of: mapping.bytes, end: index.end, logStart: head.logStart) != logFingerprint
        guard rewritten || size != source.mapping.bytes.count || current.anchor?.anchor != head.anchor?.anchor else { return false }
        let before = index.rowChanges
        let scanner = SegmentScanner(path: path, schema: schema, blockRows: blockRows,
                                     anchor: current.anchor.map { ($0.anchor, current.anchorOffset($0.slot)) },
                                     releaseBehind: mapping.releaseBehind)
        let outcome = try scanner.scan(mapping.bytes, logStart: head.logStart, continuing: rewritten ? nil : index)
        source.remap(mapping)
        index = outcome.index
        ignoredTail = outcome.tail
        anchorDamage = current.anchorDamage
        headBytes = current.bytes
        logFingerprint = Self.fingerprint(of: mapping.bytes, end: index.end, logStart: head.logStart)
        return rewritten || index.rowChanges != before
    }

    /// Copies the archive as this reader sees it (as of the open or last refresh) into `out`,
    /// ``fileBytes`` bytes: the head with the commit anchors read then, and the log through its
    /// last valid record. ``init(borrowing:name:)`` reads the copy as the same rows, wherever it
    /// travels. A writer appending meanwhile changes nothing of it: records before the log end
    /// are never rewritten, the anchors come from the head read at the refresh.
    public func copyArchive(into out: UnsafeMutableRawBufferPointer) throws {
        guard out.count >= index.end else {
            throw ArchiveError.invalidArgument("\(path): a buffer of \(out.count) bytes cannot hold the archive's \(index.end)")
        }
        let logStart = head.logStart
        out.copyBytes(from: headBytes[..<logStart])
        let log = UnsafeRawBufferPointer(rebasing: source.mapping.bytes[logStart..<index.end])
        UnsafeMutableRawBufferPointer(rebasing: out[logStart..<index.end]).copyMemory(from: log)
    }

    /// Decodes rows `range` (absolute positions) into `out`, `range.count * idsPerRow` ids.
    /// After a throw, what `out` holds is unspecified (it may have been written in part).
    public func read<T: ExpertID>(_ range: Range<Int>, into out: UnsafeMutableBufferPointer<T>) throws {
        try checkRead(range, out.count, T.self)
        guard let base = out.baseAddress else { return }
        try source.read(range, from: index, into: base, threads: decodingThreads, releasingBehind: releasesPagesBehind)
    }

    public func rows<T: ExpertID>(_ range: Range<Int>, as type: T.Type = T.self) throws -> [T] {
        // Checked before the size is computed: a range past the rows must not overflow it.
        try checkRange(range)
        var out = [T](repeating: 0, count: max(0, range.count) * schema.idsPerRow)
        try out.withUnsafeMutableBufferPointer { try read(range, into: $0) }
        return out
    }

    /// Decodes layers `layers` of rows `range` into `out`, `range.count * layers.count * topk`
    /// ids, token-major (row `t`'s layer `l` slot `s` at
    /// `((t - range.lowerBound) * layers.count + l - layers.lowerBound) * topk + s`). Only those
    /// layers' columns are decoded. What is checked: every data block checksum of each block
    /// read, and the structure of what is decoded (see ``BlockDecoder/decodeRows(_:layers:into:)``).
    /// After a throw, what `out` holds is unspecified (it may have been written in part).
    public func read<T: ExpertID>(_ range: Range<Int>, layers: Range<Int>, into out: UnsafeMutableBufferPointer<T>) throws {
        try checkLayers(layers)
        try checkRead(range, out.count, T.self, idsPerRow: layers.count * schema.topk)
        guard let base = out.baseAddress else { return }
        try source.read(range, layers: layers, from: index, into: base, threads: decodingThreads,
                        releasingBehind: releasesPagesBehind)
    }

    /// Layers `layers` of rows `range`, as ``read(_:layers:into:)`` writes them.
    public func rows<T: ExpertID>(_ range: Range<Int>, layers: Range<Int>, as type: T.Type = T.self) throws -> [T] {
        try checkLayers(layers)
        try checkRange(range)
        var out = [T](repeating: 0, count: max(0, range.count) * layers.count * schema.topk)
        try out.withUnsafeMutableBufferPointer { try read(range, layers: layers, into: $0) }
        return out
    }

    private func checkLayers(_ layers: Range<Int>) throws {
        guard layers.lowerBound >= 0, layers.upperBound <= schema.layers else {
            throw ArchiveError.invalidArgument("\(path): layers \(layers) are outside the archive's 0..<\(schema.layers)")
        }
    }

    public func row<T: ExpertID>(at position: Int, as type: T.Type = T.self) throws -> [T] {
        try rows(position..<position + 1, as: type)
    }

    /// Decodes rows `range` (all rows by default) block by block into one reusable buffer:
    /// `body` gets each piece's positions and ids (valid during the call). Memory: one block.
    public func forEachBlock<T: ExpertID>(in range: Range<Int>? = nil, as type: T.Type = T.self,
                                          _ body: (Range<Int>, UnsafeBufferPointer<T>) throws -> Void) throws {
        let range = range ?? 0..<count
        try checkRange(range)
        try checkRead(range, range.count * schema.idsPerRow, T.self)
        guard !range.isEmpty else { return }
        let largest = index.blocks.map(\.storedRows).max() ?? 0
        var buffer = [T](repeating: 0, count: largest * schema.idsPerRow)
        var position = range.lowerBound
        for block in index.blocks[index.block(containing: position)...] {
            let piece = position..<min(range.upperBound, block.position + block.rows)
            try buffer.withUnsafeMutableBufferPointer { out in
                try source.read(piece, from: index, into: out.baseAddress!, releasingBehind: true)
                try body(piece, UnsafeBufferPointer(rebasing: out[..<(piece.count * schema.idsPerRow)]))
            }
            position = piece.upperBound
            if position == range.upperBound { break }
        }
    }

    /// Checks every block whole: checksums, sizes, positions, every id. Stops at nothing:
    /// each damaged block is reported with its byte range and the rows it held.
    public func verify() -> [ArchiveError] {
        var problems: [ArchiveError] = []
        for block in index.blocks {
            do { try source.check(block) } catch { problems.append(ArchiveError.wrapping(error, path: path)) }
        }
        for block in index.discarded {
            do { try source.check(block) } catch {
                problems.append(.corrupt(path: path, offset: block.frameOffset,
                                         reason: "the block of discarded rows \(block.position)..<\(block.position + block.storedRows) is damaged: \(error)"))
            }
        }
        for damage in anchorDamage {
            let consequence = anchorDamage.count == 2 ? "the log was read by its records alone" : "the other commit anchor is intact and was used"
            problems.append(.corrupt(path: path, offset: damage.offset, reason: "\(damage.reason); \(consequence)"))
        }
        if let tail = ignoredTail {
            problems.append(.corrupt(path: path, offset: tail.offset, reason: "\(tail.reason) (torn tail, \(source.mapping.bytes.count - tail.offset) bytes not part of the archive)"))
        }
        return problems
    }

    private func checkRange(_ range: Range<Int>) throws {
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw ArchiveError.outOfRange(path: path, requested: range, count: count)
        }
    }

    private func checkRead<T: ExpertID>(_ range: Range<Int>, _ ids: Int, _: T.Type, idsPerRow: Int? = nil) throws {
        try checkRange(range)
        let idsPerRow = idsPerRow ?? schema.idsPerRow
        guard ids == range.count * idsPerRow else {
            throw ArchiveError.invalidArgument("\(path): an output of \(ids) ids cannot hold \(range.count) rows of \(idsPerRow)")
        }
        guard T.self.max >= schema.experts - 1 else {
            throw ArchiveError.invalidArgument("\(path): \(T.self) cannot hold expert ids up to \(schema.experts - 1)")
        }
    }
}

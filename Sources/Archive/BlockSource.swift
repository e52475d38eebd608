import Dispatch
import ExpertCodec

/// Decodes rows straight from the file's mapping, keeping the last block it opened so that
/// reading row after row of one block decompresses it once. A read of many blocks may be split
/// between threads, each decoding a contiguous run of blocks with a decoder of its own.
final class BlockSource {
    let path: String
    private let decoder: BlockDecoder
    /// The decoders of a parallel read's other threads, made when first needed.
    private var helpers: [BlockDecoder] = []
    /// A thread of a parallel read gets at least this many blocks: fewer do not repay the
    /// hand-off (a block is 64 KiB of ids or more, tens of microseconds of decoding).
    static let blocksPerThread = 4
    private(set) var mapping: Mapping
    /// Frame offset of the block open in `decoder`.
    private var openFrame: Int?
    /// File range of the block open in `decoder`, record included.
    private var openEnd: (start: Int, end: Int)?

    init(path: String, schema: Schema, mapping: Mapping) {
        self.path = path
        decoder = BlockDecoder(schema: schema)
        self.mapping = mapping
    }

    func remap(_ newMapping: Mapping) {
        mapping = newMapping
        forgetOpenBlock()
    }

    /// Forgets the open block: after a rollback, another block may come at its offset.
    func forgetOpenBlock() {
        openFrame = nil
        openEnd = nil
    }

    /// Decodes rows `range` (absolute positions, all in `index`) into `out`, token-major: every
    /// layer, or with `layers` those layers only (``BlockDecoder/decodeRows(_:layers:into:)``).
    /// With `threads` > 1, a range of at least `threads * blocksPerThread` blocks is split into
    /// that many runs of whole blocks, decoded at once into their own parts of `out`. With
    /// `releasingBehind`, the pages of each block read are dropped from this process's resident
    /// memory once it is done (``Mapping/releaseBehind(_:)``).
    func read<T: ExpertID>(_ range: Range<Int>, layers: Range<Int>? = nil, from index: SegmentIndex,
                           into out: UnsafeMutablePointer<T>, threads: Int = 1, releasingBehind: Bool = false) throws {
        guard !range.isEmpty else { return }
        let blocks = index.block(containing: range.lowerBound)...index.block(containing: range.upperBound - 1)
        let parts = min(threads, blocks.count / Self.blocksPerThread)
        guard parts > 1 else {
            try readRun(range, layers: layers, from: index, into: out, releasingBehind: releasingBehind)
            return
        }
        while helpers.count < parts - 1 { helpers.append(BlockDecoder(schema: decoder.schema)) }
        // The open block is this thread's decoder's: a parallel read leaves it in another state.
        forgetOpenBlock()
        let perRow = (layers ?? 0..<decoder.schema.layers).count * decoder.schema.topk
        let runs = (0..<parts).map { part -> ParallelRead<T>.Run in
            let first = blocks.lowerBound + blocks.count * part / parts
            let last = blocks.lowerBound + blocks.count * (part + 1) / parts - 1
            let start = max(range.lowerBound, index.blocks[first].position)
            let end = min(range.upperBound, index.blocks[last].position + index.blocks[last].rows)
            return .init(rows: start..<end, blocks: first...last, out: out + (start - range.lowerBound) * perRow)
        }
        let work = ParallelRead(source: self, decoders: [decoder] + helpers[..<(parts - 1)], runs: runs,
                                blocks: index.blocks, layers: layers, releasingBehind: releasingBehind)
        DispatchQueue.concurrentPerform(iterations: parts) { work.run(part: $0) }
        // The damage nearest the range's start is the one reported, as a read on one thread would.
        if let failure = work.failures.compactMap({ $0 }).first { throw failure }
    }

    /// `read` on this thread: the blocks in order through the decoder's open block.
    private func readRun<T: ExpertID>(_ range: Range<Int>, layers: Range<Int>?, from index: SegmentIndex,
                                      into out: UnsafeMutablePointer<T>, releasingBehind: Bool) throws {
        let asked = layers
        let layers = layers ?? 0..<decoder.schema.layers
        let perRow = layers.count * decoder.schema.topk
        var position = range.lowerBound
        var blockIndex = index.block(containing: position)
        let firstBlock = blockIndex
        defer { decoder.forgetChecksums() }
        while position < range.upperBound {
            let block = index.blocks[blockIndex]
            if range.count > 1 {
                computeChecksums(at: blockIndex - firstBlock, of: index.blocks[blockIndex...], before: range.upperBound, with: decoder)
            }
            let end = min(range.upperBound, block.position + block.rows)
            // A one-row read decodes its row while the block is checked.
            try open(block, decodingRow: range.count == 1 ? position - block.position : nil, layers: asked,
                     releasingBehind: releasingBehind)
            let slice = UnsafeMutableBufferPointer(start: out + (position - range.lowerBound) * perRow, count: (end - position) * perRow)
            do {
                try decoder.decodeRows((position - block.position)..<(end - block.position), layers: layers, into: slice)
            } catch {
                throw damage(block, error)
            }
            position = end
            blockIndex += 1
        }
    }

    /// Decodes rows `rows` of `blocks` (a run of a parallel read) with `decoder`, opening each
    /// block anew, into `out`; with `releasingBehind`, drops each block's pages once it is done.
    fileprivate func decodeRun<T: ExpertID>(_ rows: Range<Int>, of blocks: ArraySlice<BlockInfo>, layers asked: Range<Int>?,
                                            with decoder: BlockDecoder, into out: UnsafeMutablePointer<T>,
                                            releasingBehind: Bool) throws {
        let layers = asked ?? 0..<decoder.schema.layers
        let perRow = layers.count * decoder.schema.topk
        var position = rows.lowerBound
        defer { decoder.forgetChecksums() }
        for (i, block) in zip(blocks.indices, blocks) {
            computeChecksums(at: i - blocks.startIndex, of: blocks[i...], with: decoder)
            let end = min(rows.upperBound, block.position + block.rows)
            let slice = UnsafeMutableBufferPointer(start: out + (position - rows.lowerBound) * perRow, count: (end - position) * perRow)
            do {
                try decoder.open(try frame(of: block), expectedRows: block.storedRows, contentChecksum: false, layers: asked)
                try decoder.decodeRows((position - block.position)..<(end - block.position), layers: layers, into: slice)
            } catch let error as ArchiveError {
                throw error
            } catch {
                throw Self.corruption(of: block, error, path: path)
            }
            if releasingBehind { mapping.releaseBehind(block.recordOffset..<block.frameOffset + block.frameLength) }
            position = end
        }
    }

    /// At every ``BlockDecoder/checksumBatch``-th block of a read (`offset` from its first),
    /// has `decoder` check the frames of that many `upcoming` blocks side by side: when there
    /// are that many starting before row `end`, all inside the mapping.
    private func computeChecksums(at offset: Int, of upcoming: ArraySlice<BlockInfo>, before end: Int = .max,
                                  with decoder: BlockDecoder) {
        guard offset % BlockDecoder.checksumBatch == 0 else { return }
        let blocks = upcoming.prefix(BlockDecoder.checksumBatch)
        guard blocks.count == BlockDecoder.checksumBatch, blocks.last!.position < end else { return }
        let frames = blocks.compactMap { try? frame(of: $0) }
        if frames.count == BlockDecoder.checksumBatch { decoder.computeChecksums(of: frames) }
    }

    /// The bytes of `block`'s frame in the mapping.
    private func frame(of block: BlockInfo) throws -> UnsafeRawBufferPointer {
        guard block.frameOffset + block.frameLength <= mapping.bytes.count else {
            throw ArchiveError.corrupt(path: path, offset: block.frameOffset, reason: "block frame lies past the mapped file")
        }
        return UnsafeRawBufferPointer(rebasing: mapping.bytes[block.frameOffset..<block.frameOffset + block.frameLength])
    }

    /// Opens `block` in the decoder. Reads skip the frame's content checksum: every data
    /// block's checksum is verified, and those cover every byte (spec 1.4, Appendix A.2). With
    /// `layers`, only what reading them needs is checked and decoded (`BlockDecoder.open`).
    /// With `releasingBehind`, the pages of the block open before are dropped when this one
    /// follows it in the file (reading front to back).
    private func open(_ block: BlockInfo, contentChecksum: Bool = false, decodingRow: Int? = nil, layers: Range<Int>? = nil,
                      releasingBehind: Bool) throws {
        guard openFrame != block.frameOffset || contentChecksum else { return }
        if releasingBehind, let previous = openEnd, previous.end == block.recordOffset {
            mapping.releaseBehind(previous.start..<previous.end) // reading front to back
        }
        openFrame = nil
        openEnd = nil
        let frame = try frame(of: block)
        do {
            try decoder.open(frame, expectedRows: block.storedRows, contentChecksum: contentChecksum, decodingRow: decodingRow, layers: layers)
        } catch {
            throw damage(block, error)
        }
        openFrame = block.frameOffset
        openEnd = (block.recordOffset, block.frameOffset + block.frameLength)
    }

    /// Checks one block whole (checksums, structure, every id): for `verify`.
    func check(_ block: BlockInfo) throws {
        try open(block, contentChecksum: true, releasingBehind: true)
        let ids = decoder.schema.idsPerRow * block.storedRows
        var scratch = [UInt16](repeating: 0, count: ids)
        do {
            try scratch.withUnsafeMutableBufferPointer { try decoder.decodeRows(0..<block.storedRows, into: $0) }
        } catch {
            throw damage(block, error)
        }
    }

    private func damage(_ block: BlockInfo, _ error: any Error) -> ArchiveError {
        forgetOpenBlock()
        return Self.corruption(of: block, error, path: path)
    }

    /// `error` of the codec, on `block`, as the archive reports it: at the frame's offset, or
    /// at the damaged byte when the codec names one outside the payload.
    private static func corruption(of block: BlockInfo, _ error: any Error, path: String) -> ArchiveError {
        let offset: Int
        if case .corruptBlock(_, let at, let inPayload)? = error as? CodecError, !inPayload {
            offset = block.frameOffset + at
        } else {
            offset = block.frameOffset
        }
        return .corrupt(path: path, offset: offset,
                        reason: "block of rows \(block.position)..<\(block.position + block.storedRows): \(error)")
    }
}

/// The runs of blocks of one parallel read: run `p` is decoded by decoder `p` into its own part
/// of the output, so no memory is written by two threads; the source's mapping and the index's
/// blocks are only read while the threads run.
private final class ParallelRead<T: ExpertID>: @unchecked Sendable {
    struct Run {
        let rows: Range<Int>
        let blocks: ClosedRange<Int>
        let out: UnsafeMutablePointer<T>
    }

    private let source: BlockSource
    private let decoders: [BlockDecoder]
    private let runs: [Run]
    private let blocks: [BlockInfo]
    private let layers: Range<Int>?
    private let releasingBehind: Bool
    private let failureSlots: UnsafeMutableBufferPointer<(any Error)?>

    init(source: BlockSource, decoders: [BlockDecoder], runs: [Run], blocks: [BlockInfo], layers: Range<Int>?,
         releasingBehind: Bool) {
        precondition(decoders.count == runs.count, "one decoder per run")
        self.source = source
        self.decoders = decoders
        self.runs = runs
        self.blocks = blocks
        self.layers = layers
        self.releasingBehind = releasingBehind
        failureSlots = .allocate(capacity: runs.count)
        failureSlots.initialize(repeating: nil)
    }

    deinit {
        failureSlots.deinitialize().deallocate()
    }

    /// Each run's first failure, in the order of the runs.
    var failures: [(any Error)?] { Array(failureSlots) }

    func run(part: Int) {
        let run = runs[part]
        do {
            try source.decodeRun(run.rows, of: blocks[run.blocks], layers: layers, with: decoders[part], into: run.out,
                                 releasingBehind: releasingBehind)
        } catch {
            failureSlots[part] = error
        }
    }
}

import ExpertCodec

/// Decodes rows straight from the file's mapping, keeping the last block it opened so that
/// reading row after row of one block decompresses it once.
final class BlockSource {
    let path: String
    private let decoder: BlockDecoder
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
    func read<T: ExpertID>(_ range: Range<Int>, layers: Range<Int>? = nil, from index: SegmentIndex,
                           into out: UnsafeMutablePointer<T>) throws {
        guard !range.isEmpty else { return }
        let asked = layers
        let layers = layers ?? 0..<decoder.schema.layers
        let perRow = layers.count * decoder.schema.topk
        var position = range.lowerBound
        var blockIndex = index.block(containing: position)
        while position < range.upperBound {
            let block = index.blocks[blockIndex]
            let end = min(range.upperBound, block.position + block.rows)
            // A one-row read decodes its row while the block is checked.
            try open(block, decodingRow: range.count == 1 ? position - block.position : nil, layers: asked)
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

    /// Opens `block` in the decoder. Reads skip the frame's content checksum: every data
    /// block's checksum is verified, and those cover every byte (spec 1.4, Appendix A.2). With
    /// `layers`, only what reading them needs is checked and decoded (`BlockDecoder.open`).
    private func open(_ block: BlockInfo, contentChecksum: Bool = false, decodingRow: Int? = nil, layers: Range<Int>? = nil) throws {
        guard openFrame != block.frameOffset || contentChecksum else { return }
        if let previous = openEnd, previous.end == block.recordOffset {
            mapping.release(previous.start..<previous.end) // reading front to back
        }
        openFrame = nil
        openEnd = nil
        guard block.frameOffset + block.frameLength <= mapping.bytes.count else {
            throw ArchiveError.corrupt(path: path, offset: block.frameOffset, reason: "block frame lies past the mapped file")
        }
        let frame = UnsafeRawBufferPointer(rebasing: mapping.bytes[block.frameOffset..<block.frameOffset + block.frameLength])
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
        try open(block, contentChecksum: true)
        let ids = decoder.schema.idsPerRow * block.storedRows
        var scratch = [UInt16](repeating: 0, count: ids)
        do {
            try scratch.withUnsafeMutableBufferPointer { try decoder.decodeRows(0..<block.storedRows, into: $0) }
        } catch {
            throw damage(block, error)
        }
    }

    private func damage(_ block: BlockInfo, _ error: any Error) -> ArchiveError {
        openFrame = nil
        openEnd = nil
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

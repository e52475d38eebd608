/// Encodes blocks of rows into LZ4 frames. Reuses its scratch memory from block to block:
/// it allocates per block (the returned frame), never per row. Not thread-safe: one per thread.
public final class BlockEncoder {
    public let schema: Schema
    /// The payload layout this encoder writes.
    public let codec: BlockCodec
    private lazy var compact = CompactEncoder(schema: schema)
    /// For each stored column, its index inside a row (dense layers skipped).
    private let sourceIndex: [Int]
    private lazy var byteGather = ByteGather(schema: schema)
    private lazy var wordGather = WordGather(schema: schema)
    private let columns = Scratch(), candidates = Scratch(), flags = Scratch(), payload = Scratch()
    private let frames = LZ4FrameWriter()
    /// The payload's runs worth compressing or not, from the last `encodePayload`.
    private var segments: [PayloadSegment] = []

    /// Fixed-width bytes a block aims for by default: small enough that reading one row
    /// (decompressing and checking its block) stays in the tens of microseconds, large enough
    /// for the per-block framing to cost well under 1%.
    public static let defaultBlockBytes = 64 * 1024

    /// Fixed-width bytes a compact block aims for by default: four times the fast codec's.
    /// Its frequency tables cost less per row in larger blocks (deepseek: ratio 6.40 at 560
    /// rows, 6.47 at 2240) and its per-block work is amortised; a read decodes a whole block.
    public static let defaultCompactBlockBytes = 256 * 1024

    /// Rows per block for `schema` at ``defaultBlockBytes``: a multiple of 8 in 64...65536.
    public static func defaultBlockRows(for schema: Schema) -> Int {
        let rowBits = schema.storedIDsPerRow * schema.bitWidth
        return min(65536, max(64, defaultBlockBytes * 8 / rowBits)) & ~7
    }

    /// Rows per block for `schema` and `codec`: ``defaultBlockBytes`` (fast) or
    /// ``defaultCompactBlockBytes`` (compact) of fixed-width ids, a multiple of 8 in 64...65536.
    public static func defaultBlockRows(for schema: Schema, codec: BlockCodec) -> Int {
        let rowBits = schema.storedIDsPerRow * schema.bitWidth
        let bytes = codec == .fast ? defaultBlockBytes : defaultCompactBlockBytes
        return min(65536, max(64, bytes * 8 / rowBits)) & ~7
    }

    public init(schema: Schema, codec: BlockCodec = .fast) {
        self.schema = schema
        self.codec = codec
        sourceIndex = schema.storedIndices
    }

    /// Encodes `rows` (token-major `[tokens][layers][topk]`, a whole number of rows) as one frame.
    /// Every id of a MoE layer must be in `[0, experts)`; dense layers may hold anything.
    public func encode<T: ExpertID>(_ rows: UnsafeBufferPointer<T>) throws -> [UInt8] {
        let encoding = PayloadEncoding(encoder: self)
        rows.withConcreteIDType(encoding)
        guard let result = encoding.result else { throw CodecError.shapeMismatch("not encoded") }
        let (payloadStart, payloadCount) = try result.get()
        return frames.frame(UnsafeRawBufferPointer(start: payloadStart, count: payloadCount), segments: segments)
    }

    public func encode<T: ExpertID>(_ rows: [T]) throws -> [UInt8] {
        try rows.withUnsafeBufferPointer { try encode($0) }
    }

    /// The uncompressed payload of `rows`: what `lz4 -d` returns for the frame `encode` makes.
    func encodePayload<T: ExpertID>(_ rows: UnsafeBufferPointer<T>) throws -> (UnsafeRawPointer, Int) {
        let perRow = schema.idsPerRow
        guard rows.count % perRow == 0 else {
            throw CodecError.shapeMismatch("\(rows.count) ids are not a whole number of \(perRow)-id rows")
        }
        let count = rows.count / perRow
        guard count <= BlockFormat.maxRows(schema) else {
            throw CodecError.blockTooLarge(rows: count, limit: BlockFormat.maxIDs)
        }
        if codec == .compact {
            // rANS bytes are random to LZ4: the whole payload is stored.
            let (start, size) = try compact.encode(rows, count: count)
            segments.removeAll(keepingCapacity: true)
            segments.append(PayloadSegment(range: 0..<size, compress: false))
            return (start, size)
        }
        if schema.bitWidth <= 8 {
            return try encodePayload(rows, count: count, scalar: UInt8.self)
        } else {
            return try encodePayload(rows, count: count, scalar: UInt16.self)
        }
    }

    private func encodePayload<T: ExpertID, S: PlaneScalar>(
        _ rows: UnsafeBufferPointer<T>, count: Int, scalar: S.Type
    ) throws -> (UnsafeRawPointer, Int) {
        let columnCount = sourceIndex.count, width = schema.bitWidth
        let padded = (count + 7) & ~7
        let cols = columns.reserve(columnCount * padded, of: S.self)
        // Byte columns for ids of at most 8 bits, 16-bit columns above.
        let bytes = Self.retyped(cols, as: UInt8.self), words = Self.retyped(cols, as: UInt16.self)
        if let input = rows.baseAddress {
            let clean = S.self == UInt8.self
                ? byteGather.gather(input, count: count, padded: padded, width: width, into: bytes)
                : wordGather.gather(input, count: count, padded: padded, width: width, into: words)
            // The byte gather checks ids against 2^width; this completes the check when experts is
            // less. The word gather checks against experts itself.
            let below = schema.experts == 1 << width || S.self == UInt16.self
                || allBelow(schema.experts, UnsafePointer(bytes), total: columnCount * padded)
            if !clean || !below {
                try Self.reportFirstBadID(rows, count: count, schema: schema, sourceIndex: sourceIndex)
            }
        }

        let out = payload.reserve(BlockFormat.maxPayloadBytes(schema, rows: count)).assumingMemoryBound(to: UInt8.self)
        let raw = UnsafeMutableRawPointer(out)
        raw.storeLE(BlockFormat.layout, at: 0)
        raw.storeLE(UInt8(width), at: 1)
        raw.storeLE(UInt16(0), at: 2)
        raw.storeLE(UInt32(count), at: 4)
        raw.storeLE(UInt32(columnCount), at: 8)
        // Appended to as a local: on the property, every column's append paid two dynamic
        // exclusivity checks.
        var runs = segments
        segments = []
        defer { segments = runs }
        runs.removeAll(keepingCapacity: true)
        guard count > 0 else {
            runs.append(PayloadSegment(range: 0..<BlockFormat.headerBytes, compress: false))
            return (UnsafeRawPointer(out), BlockFormat.headerBytes)
        }

        // Constant columns first: their table sits between the codings and the bodies.
        let codings = out + BlockFormat.headerBytes
        var constantCount = 0
        for c in 0..<columnCount {
            let column = cols + c * padded
            let constant = Self.isConstant(column, count: count)
            codings[c] = constant ? ColumnCoding.constant.rawValue : ColumnCoding.plain.rawValue
            if constant {
                raw.storeLE(UInt16(column[0]), at: BlockFormat.headerBytes + columnCount + 2 * constantCount)
                constantCount += 1
            }
        }

        var cursor = BlockFormat.headerBytes + columnCount + 2 * constantCount
        runs.append(PayloadSegment(range: 0..<cursor, compress: true))
        let candidates = candidates.reserve(CandidateColumns.count(padded: padded, of: S.self), of: S.self)
        let flags = flags.reserve(padded / 8, of: UInt8.self)
        let byteWork = ByteColumnWork(count: count, padded: padded, width: width, experts: schema.experts,
                                      candidates: Self.retyped(candidates, as: UInt8.self), flags: flags)
        let wordWork = WordColumnWork(count: count, padded: padded, width: width, experts: schema.experts,
                                      candidates: Self.retyped(candidates, as: UInt16.self), flags: flags)
        var slot = 0
        for c in 0..<columnCount {
            defer { slot = slot + 1 == schema.topk ? 0 : slot + 1 }
            guard codings[c] != ColumnCoding.constant.rawValue else { continue }
            let (coding, written, cost) = S.self == UInt8.self
                ? byteWork.encode(bytes + c * padded, previousSlot: slot == 0 ? nil : bytes + (c - 1) * padded, to: out + cursor)
                : wordWork.encode(words + c * padded, previousSlot: slot == 0 ? nil : words + (c - 1) * padded, to: out + cursor)
            codings[c] = coding.rawValue
            // A body whose plane bytes are nearly all random is stored, not searched by LZ4.
            Self.addSegment(cursor..<cursor + written, compress: cost * 10 < written * 9, to: &runs)
            cursor += written
        }
        return (UnsafeRawPointer(out), cursor)
    }

    /// Whether the `count` ids of `column` are all equal, compared 8 bytes at a time.
    private static func isConstant<S: PlaneScalar>(_ column: UnsafePointer<S>, count: Int) -> Bool {
        let raw = UnsafeRawPointer(column), bytes = count &* MemoryLayout<S>.size
        // The first id in every lane of a word.
        let pattern = UInt64(column[0]) &* (MemoryLayout<S>.size == 1 ? 0x0101_0101_0101_0101 : 0x0001_0001_0001_0001)
        var at = 0
        while at &+ 8 <= bytes {
            if raw.loadUnaligned(fromByteOffset: at, as: UInt64.self) != pattern { return false }
            at &+= 8
        }
        for t in at / MemoryLayout<S>.size..<count where column[t] != column[0] { return false }
        return true
    }

    /// Extends the last segment when it is of the same kind or either is too small to be worth
    /// a block of its own (each block costs 8 bytes of framing).
    private static func addSegment(_ range: Range<Int>, compress: Bool, to segments: inout [PayloadSegment]) {
        let last = segments.count - 1
        if segments[last].compress == compress || range.count < 1024 || segments[last].range.count < 1024 {
            segments[last].range = segments[last].range.lowerBound..<range.upperBound
        } else {
            segments.append(PayloadSegment(range: range, compress: compress))
        }
    }

    /// The scratch `pointer` as the column type of the path taken (`S` is that type).
    @inline(__always)
    private static func retyped<S, U>(_ pointer: UnsafeMutablePointer<S>, as _: U.Type) -> UnsafeMutablePointer<U> {
        UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: U.self)
    }

    static func reportFirstBadID<T: ExpertID>(_ rows: UnsafeBufferPointer<T>, count: Int, schema: Schema,
                                              sourceIndex: [Int]) throws {
        for t in 0..<count {
            for index in sourceIndex {
                let id = rows[t * schema.idsPerRow + index]
                if id < 0 || UInt64(truncatingIfNeeded: id) >= UInt64(schema.experts) {
                    throw CodecError.idOutOfRange(token: t, layer: index / schema.topk, slot: index % schema.topk,
                                        value: Int64(truncatingIfNeeded: id), experts: schema.experts)
                }
            }
        }
    }
}

/// `encodePayload` for the concrete id type.
private final class PayloadEncoding: ConcreteIDBody {
    let encoder: BlockEncoder
    /// Set by the call (nil until then, so that no error is allocated for every block).
    var result: Result<(UnsafeRawPointer, Int), any Error>?
    init(encoder: BlockEncoder) { self.encoder = encoder }
    func callAsFunction<U: ExpertID>(_ ids: UnsafeBufferPointer<U>) {
        do { result = .success(try encoder.encodePayload(ids)) } catch { result = .failure(error) }
    }
}

/// Chooses and writes the coding of one non-constant column, using per-block scratch.
struct ColumnWork<S: PlaneScalar> {
    let count: Int, padded: Int, width: Int, experts: Int
    /// Three scratch columns: slot deltas, compacted ids, compacted slot deltas.
    let candidates: UnsafeMutablePointer<S>
    let flags: UnsafeMutablePointer<UInt8>

    /// Picks the coding LZ4 will shrink most (by `BitPlanes.estimatedCost`, ties to the simpler
    /// coding) and writes its body. Returns the coding, the bytes written and their estimated cost.
    func encode(_ ids: UnsafePointer<S>, previousSlot: UnsafePointer<S>?,
                to out: UnsafeMutablePointer<UInt8>) -> (ColumnCoding, Int, Int) {
        var best = ColumnCoding.plain
        var bestCost = BitPlanes.estimatedCost(ids, count: count, width: width)
        let deltas = candidates, compacted = candidates + padded, compactedDeltas = candidates + 2 * padded

        // Wrapping arithmetic throughout these loops: no overflow traps, so they vectorize.
        let modulus = S(truncatingIfNeeded: experts) // 0 when experts is 2^bitWidth of S: wraps by itself
        if let previousSlot {
            for t in 0..<count {
                let id = ids[t], base = previousSlot[t], wrapped = id &- base
                deltas[t] = id < base ? wrapped &+ modulus : wrapped
            }
            for t in count..<padded { deltas[t] = 0 }
            let cost = BitPlanes.estimatedCost(UnsafePointer(deltas), count: count, width: width)
            if cost < bestCost { (best, bestCost) = (.slotDelta, cost) }
        }

        let repeats = countRepeats(ids, count: count)
        // Flags cost up to a bit per row: only worth a look when repeats save more than that.
        var kept = count
        if repeats * width * 2 >= count {
            kept = compactRepeats(ids, previousSlot: previousSlot, deltas: deltas,
                                  into: compacted, compactedDeltas: compactedDeltas)
            let flagCost = nontrivialBytes(flags, BitPlanes.planeBytes(count))
            let cost = flagCost + BitPlanes.estimatedCost(UnsafePointer(compacted), count: kept, width: width)
            if cost < bestCost { (best, bestCost) = (.repeat, cost) }
            if previousSlot != nil {
                let cost = flagCost + BitPlanes.estimatedCost(UnsafePointer(compactedDeltas), count: kept, width: width)
                if cost < bestCost { (best, bestCost) = (.repeatSlotDelta, cost) }
            }
        }

        switch best {
        case .plain:
            return (best, BitPlanes.store(ids, count: count, width: width, to: out), bestCost)
        case .slotDelta:
            return (best, BitPlanes.store(UnsafePointer(deltas), count: count, width: width, to: out), bestCost)
        case .repeat, .repeatSlotDelta:
            let flagBytes = BitPlanes.planeBytes(count)
            out.update(from: flags, count: flagBytes)
            let values = best == .repeat ? compacted : compactedDeltas
            return (best, flagBytes + BitPlanes.store(UnsafePointer(values), count: kept, width: width, to: out + flagBytes), bestCost)
        case .constant:
            preconditionFailure("constant columns are chosen before ColumnWork")
        }
    }

    /// Fills `flags` (bit t: row t repeats row t-1) and the ids (and slot deltas) of the other
    /// rows, zero-padded to a multiple of 8. Returns how many rows were kept.
    private func compactRepeats(_ ids: UnsafePointer<S>, previousSlot: UnsafePointer<S>?,
                                deltas: UnsafePointer<S>, into compacted: UnsafeMutablePointer<S>,
                                compactedDeltas: UnsafeMutablePointer<S>) -> Int {
        var kept = 0
        for group in 0..<(padded >> 3) {
            var bits: UInt8 = 0
            for i in 0..<8 {
                let t = group &* 8 &+ i
                let repeated = t > 0 && t < count && ids[t] == ids[t &- 1]
                bits |= (repeated ? 1 : 0) << UInt8(i)
                compacted[kept] = ids[t]
                compactedDeltas[kept] = deltas[t]
                kept &+= repeated || t >= count ? 0 : 1
            }
            flags[group] = bits
        }
        for t in kept..<((kept + 7) & ~7) {
            compacted[t] = 0
            compactedDeltas[t] = 0
        }
        return kept
    }

    /// Bytes that are neither 0x00 nor 0xFF: what LZ4 cannot remove from a bitmap.
    private func nontrivialBytes(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> Int {
        var n = 0
        for i in 0..<count where bytes[i] != 0 && bytes[i] != 0xFF { n += 1 }
        return n
    }
}

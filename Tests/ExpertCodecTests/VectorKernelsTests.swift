import CVectorKernels
import Testing
import TraceSynth
@testable import ExpertCodec

/// The kernels of `CVectorKernels` for a whole column of ids of one width.
struct ColumnKernels<S: PlaneScalar>: Sendable {
    let load: @Sendable (UnsafePointer<UInt8>, Int, Int, UnsafeMutablePointer<S>) -> Int
    let decodeRepeats: @Sendable (UnsafePointer<UInt8>, UnsafePointer<UInt8>, Int, Int, Int, UnsafeMutablePointer<S>) -> Int
    let fill: @Sendable (UnsafePointer<UInt8>, Int, UnsafeMutablePointer<S>) -> Void
    let widths: [Int]
}

extension ColumnKernels where S == UInt8 {
    static let bytes = ColumnKernels(load: { Int(ek_load_planes_u8($0, $1, $2, $3)) },
                                     decodeRepeats: { Int(ek_decode_repeats_u8($0, $1, $2, $3, $4, $5)) },
                                     fill: { ek_fill_flagged_u8($0, $1, $2) }, widths: [1, 3, 7, 8])
}

extension ColumnKernels where S == UInt16 {
    static let shorts = ColumnKernels(load: { Int(ek_load_planes_u16($0, $1, $2, $3)) },
                                      decodeRepeats: { Int(ek_decode_repeats_u16($0, $1, $2, $3, $4, $5)) },
                                      fill: { ek_fill_flagged_u16($0, $1, $2) }, widths: [9, 12, 16])
}

/// The 64-row (byte) and 32-row (16-bit) kernels of `CVectorKernels` against the spec's
/// row-by-row decoding (1.5.5), on buffers of exactly the bytes they may touch (so that
/// AddressSanitizer sees any access past them), at every row count across their chunks.
@Suite(.enabled(if: VectorKernels.available, "this CPU has no AVX-512 VBMI2: the decoder uses the Swift kernels"))
struct VectorKernelsTests {
    /// Flags of `rows` rows (bit 0 clear): in runs, scattered, none or all.
    static func flags(_ random: inout SplitMix64, rows: Int) -> [UInt8] {
        var flags = [UInt8](repeating: 0, count: (rows + 7) / 8)
        let kind = random.next() % 4
        for t in 1..<max(rows, 1) {
            let set = switch kind {
            case 0: random.next() % 5 != 0
            case 1: random.next() % 2 == 0
            case 2: false
            default: true
            }
            if set { flags[t >> 3] |= 1 << UInt8(t & 7) }
        }
        return flags
    }

    static func unflagged(_ flags: [UInt8], rows: Int) -> Int {
        1 + (1..<max(rows, 1)).reduce(0) { $0 + 1 - RepeatFlags.flag($1, flags) }
    }

    /// `width` planes of `values` by the spec's definition (1.5.3): exactly their bytes.
    static func planes<S: PlaneScalar>(_ values: [S], width: Int) -> [UInt8] {
        let stride = (values.count + 7) / 8
        var planes = [UInt8](repeating: 0, count: width * stride)
        for (i, v) in values.enumerated() {
            for b in 0..<width where (v >> S(b)) & 1 == 1 { planes[b * stride + i / 8] |= 1 << UInt8(i % 8) }
        }
        return planes
    }

    static func values<S: PlaneScalar>(_ random: inout SplitMix64, _ count: Int, width: Int) -> [S] {
        (0..<count).map { _ in S(truncatingIfNeeded: random.next() & ((1 << UInt64(width)) - 1)) }
    }

    /// The rows of a repeat column decoded by the kernel, and its largest stored value.
    static func decode<S: PlaneScalar>(_ kernels: ColumnKernels<S>, _ flags: [UInt8], _ planes: [UInt8], width: Int, kept: Int,
                                       rows: Int) -> ([S], Int) {
        var out = [S](repeating: 0xAA, count: rows), largest = 0
        flags.withUnsafeBufferPointer { f in
            planes.withUnsafeBufferPointer { p in
                out.withUnsafeMutableBufferPointer {
                    largest = kernels.decodeRepeats(f.baseAddress!, p.baseAddress ?? f.baseAddress!, width, kept, rows, $0.baseAddress!)
                }
            }
        }
        return (out, largest)
    }

    static let rowCounts = Array(1...200) + [255, 256, 257, 383, 384, 1000]

    @Test func planesLoadAsSpecified() {
        var random = SplitMix64(seed: 40)
        func check<S: PlaneScalar>(_ kernels: ColumnKernels<S>) {
            for count in Self.rowCounts {
                for width in kernels.widths {
                    let values: [S] = Self.values(&random, count, width: width), planes = Self.planes(values, width: width)
                    var out = [S](repeating: 0xAA, count: count), largest = 0
                    planes.withUnsafeBufferPointer { p in
                        out.withUnsafeMutableBufferPointer { largest = kernels.load(p.baseAddress!, width, count, $0.baseAddress!) }
                    }
                    #expect(out == values, "\(count) values of \(width) bits")
                    #expect(largest == Int(values.max()!), "\(count) values of \(width) bits")
                }
            }
        }
        check(ColumnKernels.bytes)
        check(ColumnKernels.shorts)
    }

    @Test func repeatsDecodeRowByRow() {
        var random = SplitMix64(seed: 41)
        func check<S: PlaneScalar>(_ kernels: ColumnKernels<S>) {
            for rows in Self.rowCounts {
                for width in kernels.widths {
                    let flags = Self.flags(&random, rows: rows)
                    let values: [S] = Self.values(&random, Self.unflagged(flags, rows: rows), width: width)
                    let planes = Self.planes(values, width: width)
                    var expected = [S](), j = -1
                    for t in 0..<rows {
                        if t == 0 || RepeatFlags.flag(t, flags) == 0 { j += 1 }
                        expected.append(values[j])
                    }
                    let (out, largest) = Self.decode(kernels, flags, planes, width: width, kept: values.count, rows: rows)
                    #expect(out == expected, "\(rows) rows of \(width) bits, flags \(flags)")
                    #expect(largest == Int(values.max()!))
                    // Row 0 takes the first value whatever its flag bit.
                    var setFirst = flags
                    setFirst[0] |= 1
                    #expect(Self.decode(kernels, setFirst, planes, width: width, kept: values.count, rows: rows).0 == expected)
                }
            }
        }
        check(ColumnKernels.bytes)
        check(ColumnKernels.shorts)
    }

    /// Flags that disagree with `kept` read no plane byte past its values (AddressSanitizer
    /// checks the bounds): with fewer unflagged rows than values, every value still counts for
    /// the largest; with more, the rows past the values get 0.
    @Test func repeatsReadNoPlanePastKept() {
        var random = SplitMix64(seed: 42)
        func check<S: PlaneScalar>(_ kernels: ColumnKernels<S>) {
            let width = kernels.widths.last!
            for rows in [1, 7, 31, 32, 33, 63, 64, 65, 130, 192, 300] {
                let kept = (rows + 2) / 3
                let values: [S] = Self.values(&random, kept, width: width).map { $0 | 1 }
                let planes = Self.planes(values, width: width)
                // No row flagged: more unflagged rows than values.
                let (out, _) = Self.decode(kernels, [UInt8](repeating: 0, count: (rows + 7) / 8), planes, width: width, kept: kept, rows: rows)
                #expect(Array(out[0..<kept]) == values, "\(rows) rows")
                #expect(out[kept...].allSatisfy { $0 == 0 }, "\(rows) rows")
                // Every row flagged: one value used, the largest still found.
                let (_, largest) = Self.decode(kernels, [UInt8](repeating: 0xFF, count: (rows + 7) / 8), planes, width: width,
                                               kept: kept, rows: rows)
                #expect(largest == Int(values.max()!), "\(rows) rows")
            }
        }
        check(ColumnKernels.bytes)
        check(ColumnKernels.shorts)
    }

    @Test func fillMatchesRowByRow() {
        var random = SplitMix64(seed: 43)
        func check<S: PlaneScalar>(_ kernels: ColumnKernels<S>) {
            for rows in Self.rowCounts {
                let flags = Self.flags(&random, rows: rows)
                let ids = (0..<rows).map { _ in S(truncatingIfNeeded: random.next()) }
                var expected = ids
                for t in 1..<max(rows, 1) where RepeatFlags.flag(t, flags) == 1 { expected[t] = expected[t - 1] }
                for first in [flags, flags.enumerated().map { $0.offset == 0 ? $0.element | 1 : $0.element }] {
                    var out = ids
                    first.withUnsafeBufferPointer { f in
                        out.withUnsafeMutableBufferPointer { kernels.fill(f.baseAddress!, rows, $0.baseAddress!) }
                    }
                    #expect(out == expected, "\(rows) rows, flags \(first)")
                }
            }
        }
        check(ColumnKernels.bytes)
        check(ColumnKernels.shorts)
    }

    /// Eight buffers side by side hash as each alone, whatever their lengths (some end their
    /// stripes before others), on buffers of exactly their bytes.
    @Test func checksumsOfEightMatchXXH32() {
        var random = SplitMix64(seed: 44)
        for round in 0..<300 {
            let lengths = (0..<8).map { _ in round < 50 ? round : Int(random.next() % 3000) }
            let pointers = lengths.map { n in
                let p = UnsafeMutablePointer<UInt8>.allocate(capacity: max(n, 1))
                for i in 0..<n { (p + i).initialize(to: UInt8(truncatingIfNeeded: random.next())) }
                return p
            }
            defer { pointers.forEach { $0.deallocate() } }
            var data: [UnsafePointer<UInt8>?] = pointers.map { UnsafePointer($0) }
            var hashes = [UInt32](repeating: 0, count: 8)
            ek_xxh32_x8(&data, lengths, &hashes)
            for k in 0..<8 {
                #expect(hashes[k] == XXH32.hash(UnsafeRawBufferPointer(start: pointers[k], count: lengths[k])), "lengths \(lengths)")
            }
        }
    }

    /// A block checksum computed ahead is taken once, for the same bytes only; a batch with a
    /// frame that does not start like a block's leaves nothing behind.
    @Test func checksumsAheadAreTakenOnce() throws {
        var random = SplitMix64(seed: 45)
        let schema = try Schema(layers: 4, topk: 2, experts: 16)
        let frames = try (0..<DataBlockChecksums.batch).map { k in
            let bytes = try BlockEncoder(schema: schema).encode((0..<((40 + k) * 8)).map { _ in UInt8(random.next() % 16) })
            let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
            frame.copyBytes(from: bytes)
            return frame
        }
        defer { frames.forEach { $0.deallocate() } }
        /// The data block of `frame` and its stored checksum.
        func block(_ frame: UnsafeMutableRawBufferPointer) -> (UnsafeRawBufferPointer, UInt32) {
            let length = Int(UnsafeRawPointer(frame.baseAddress!).loadLE(UInt32.self, at: 15) & 0x7FFF_FFFF)
            return (UnsafeRawBufferPointer(rebasing: frame[19..<(19 + length)]), UnsafeRawPointer(frame.baseAddress!).loadLE(UInt32.self, at: 19 + length))
        }
        let checksums = DataBlockChecksums(sideBySide: true)
        checksums.compute(frames.map { UnsafeRawBufferPointer($0) })
        for frame in frames {
            let (data, stored) = block(frame)
            // Other bytes at the same address: computed, not taken.
            #expect(checksums.checksum(of: UnsafeRawBufferPointer(rebasing: data.dropLast())) == XXH32.hash(UnsafeRawBufferPointer(rebasing: data.dropLast())))
            #expect(checksums.checksum(of: data) == stored)
            // Taken once: the bytes changed now, their checksum is computed.
            frame[19] ^= 1
            #expect(checksums.checksum(of: data) == XXH32.hash(data))
            #expect(checksums.checksum(of: data) != stored)
            frame[19] ^= 1
        }
        let short = UnsafeRawBufferPointer(rebasing: frames[7][0..<18])
        checksums.compute(frames.dropLast().map { UnsafeRawBufferPointer($0) } + [short])
        let (data, stored) = block(frames[0])
        frames[0][19] ^= 1
        #expect(checksums.checksum(of: data) != stored, "nothing was computed for the batch")
        frames[0][19] ^= 1
    }
}

/// A decoder with ``VectorKernels`` and one without decode the same ids and refuse the same
/// payloads with the same error, on every shape of ids: whole blocks, layer ranges,
/// rows inside a block, and damaged payloads (checksums made right again).
@Suite(.enabled(if: VectorKernels.available, "this CPU has no AVX-512 VBMI2: the decoder uses the Swift kernels"))
struct VectorKernelsDecodeTests {
    static let shapes: [(layers: Int, topk: Int, experts: Int, rows: Int)] = [
        (48, 8, 128, 192), (4, 8, 128, 64), (26, 6, 64, 200), (3, 2, 256, 300), (5, 1, 2, 1000),
        (2, 3, 7, 65), (61, 8, 256, 13), (6, 4, 100, 129),
        // 16-bit ids.
        (61, 8, 384, 120), (3, 2, 5000, 100), (2, 4, 65536, 70), (4, 2, 300, 33),
    ]

    enum Outcome: Equatable {
        case rows([Int32])
        case error(String)
    }

    /// What `decoder` makes of `frame`: its rows, or the error's text.
    static func outcome(_ decoder: BlockDecoder, _ frame: [UInt8], layers: Range<Int>? = nil, rows: Range<Int>? = nil) -> Outcome {
        do {
            if layers == nil && rows == nil { return .rows(try decoder.decode(frame, as: Int32.self)) }
            let count = try frame.withUnsafeBytes { try decoder.open($0, contentChecksum: false, layers: layers) }
            let layers = layers ?? 0..<decoder.schema.layers, range = rows ?? 0..<count
            var out = [Int32](repeating: -1, count: range.count * layers.count * decoder.schema.topk)
            try out.withUnsafeMutableBufferPointer { try decoder.decodeRows(range, layers: layers, into: $0) }
            return .rows(out)
        } catch {
            return .error("\(error)")
        }
    }

    @Test(arguments: 0..<shapes.count)
    func sameIDsBothWays(shape: Int) throws {
        let (layers, topk, experts, count) = Self.shapes[shape]
        let schema = try Schema(layers: layers, topk: topk, experts: experts)
        var synth = TraceSynthesizer(schema: schema, seed: 90 + UInt64(shape))
        let rows = synth.rows(count, as: Int32.self)
        let frame = try BlockEncoder(schema: schema).encode(rows)
        let vector = BlockDecoder(schema: schema, vectorKernels: true), swift = BlockDecoder(schema: schema, vectorKernels: false)
        #expect(Self.outcome(vector, frame) == .rows(rows))
        #expect(Self.outcome(swift, frame) == .rows(rows))
        for range in [0..<layers, 0..<1, (layers - 1)..<layers, (layers / 2)..<layers, 0..<max(1, layers / 4)] {
            #expect(Self.outcome(vector, frame, layers: range) == Self.outcome(swift, frame, layers: range), "layers \(range)")
        }
        for range in [1..<count, 0..<(count - 1), (count / 3)..<(count / 3 + 1)] where !range.isEmpty {
            #expect(Self.outcome(vector, frame, rows: range) == Self.outcome(swift, frame, rows: range), "rows \(range)")
        }
    }

    @Test(arguments: [0, 3, 5, 7, 8, 11])
    func damagedPayloadsFailAlike(shape: Int) throws {
        let (layers, topk, experts, count) = Self.shapes[shape]
        let schema = try Schema(layers: layers, topk: topk, experts: experts)
        var synth = TraceSynthesizer(schema: schema, seed: 70 + UInt64(shape))
        let payload = try payloadOf(try BlockEncoder(schema: schema).encode(synth.rows(count, as: Int32.self)))
        let vector = BlockDecoder(schema: schema, vectorKernels: true), swift = BlockDecoder(schema: schema, vectorKernels: false)
        var random = SplitMix64(seed: 6)
        for i in 0..<min(payload.count, 200) {
            var damaged = payload
            let at = 12 + Int(random.next() % UInt64(payload.count - 12))
            damaged[at] = i % 2 == 0 ? damaged[at] ^ (1 << UInt8(random.next() % 8)) : UInt8(truncatingIfNeeded: random.next())
            let frame = try frameOf(damaged)
            #expect(Self.outcome(vector, frame) == Self.outcome(swift, frame), "byte \(at)")
            let range = (layers / 2)..<layers
            #expect(Self.outcome(vector, frame, layers: range) == Self.outcome(swift, frame, layers: range), "byte \(at), layers \(range)")
        }
        for length in stride(from: 12, to: payload.count, by: max(1, payload.count / 100)) {
            let frame = try frameOf(Array(payload[..<length]))
            #expect(Self.outcome(vector, frame, layers: (layers - 1)..<layers) == Self.outcome(swift, frame, layers: (layers - 1)..<layers),
                    "cut at \(length)")
        }
    }
}

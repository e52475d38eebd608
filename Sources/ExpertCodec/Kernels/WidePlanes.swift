// The word kernels (this file, ByteColumns.swift) read 8 ids as the bytes of a UInt64, row `i`
// in byte `i`: they assume a little-endian host, as every platform that runs inference is.
#if _endian(big)
#error("ExpertCodec's word kernels assume a little-endian host")
#endif

/// Bit-plane kernels on 64 ids of at most 8 bits at once (8 groups of 8 rows), written on SIMD
/// types so that each step is one vector operation on several groups (SSE2 or NEON registers)
/// instead of scalar ones on each: the two transposes of ``UInt8/loadPlanes(from:stride:width:into:)``
/// and ``UInt8/storePlanes(of:width:to:stride:)``, at about half the instructions.
enum WidePlanes {
    /// The 8x8 bit transpose of both lanes of one register (bit `j` of byte `i` becomes bit `i`
    /// of byte `j`): the 8 ids of a group in, its 8 plane bytes out, and back.
    @inline(__always)
    static func transposeBits(_ lanes: SIMD2<UInt64>) -> SIMD2<UInt64> {
        var x = lanes
        var t = (x ^ (x &>> 7)) & SIMD2(repeating: 0x00AA_00AA_00AA_00AA)
        x ^= t ^ (t &<< 7)
        t = (x ^ (x &>> 14)) & SIMD2(repeating: 0x0000_CCCC_0000_CCCC)
        x ^= t ^ (t &<< 14)
        t = (x ^ (x &>> 28)) & SIMD2(repeating: 0x0000_0000_F0F0_F0F0)
        x ^= t ^ (t &<< 28)
        return x
    }

    /// The 8x8 byte transpose of 8 words held two per register (words `2i` and `2i + 1` are the
    /// low and high halves of register `i`; so are the words out): byte `j` of word `i` becomes
    /// byte `i` of word `j`. Three rounds of interleaving lanes of 8, 16 then 32 bits, each a
    /// byte shuffle LLVM turns into SSE2 unpack instructions (NEON zips): about 40 instructions,
    /// where swaps of shifted and masked lanes compile to scalar ones on x86-64, twice that.
    @inline(__always)
    static func transposeBytes(_ a: SIMD16<UInt8>, _ b: SIMD16<UInt8>, _ c: SIMD16<UInt8>, _ d: SIMD16<UInt8>)
        -> (SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>) {
        // Byte j of both words of a register side by side: 16-bit lane j.
        @inline(__always) func pairs(_ x: SIMD16<UInt8>) -> SIMD8<UInt16> {
            unsafeBitCast(SIMD16(x[0], x[8], x[1], x[9], x[2], x[10], x[3], x[11],
                                 x[4], x[12], x[5], x[13], x[6], x[14], x[7], x[15]), to: SIMD8<UInt16>.self)
        }
        return transposePairs(pairs(a), pairs(b), pairs(c), pairs(d))
    }

    /// The 8x8 byte transpose of 8 words read from memory, word `i` the low 8 bytes of `load(i)`
    /// (its high 8 bytes are not used): each pair of words is interleaved by one unpack of two
    /// 16-byte loads. (Words already two per register need about 7 instructions a pair for
    /// that first round, ``transposeBytes(_:_:_:_:)``: SSE2 has no byte shuffle of one register.)
    @inline(__always)
    static func transposeLoadedBytes(_ load: (Int) -> SIMD16<UInt8>)
        -> (SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>) {
        transposePairs(Unpack.low8(load(0), load(1)), Unpack.low8(load(2), load(3)),
                       Unpack.low8(load(4), load(5)), Unpack.low8(load(6), load(7)))
    }

    /// The last two rounds of the byte transpose, from 16-bit lanes `j` holding byte `j` of
    /// words `2i` and `2i + 1` in register `i`.
    @inline(__always)
    static func transposePairs(_ p: SIMD8<UInt16>, _ q: SIMD8<UInt16>, _ r: SIMD8<UInt16>, _ s: SIMD8<UInt16>)
        -> (SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>) {
        // Byte j of all eight words: word j.
        @inline(__always) func words(_ x: SIMD2<UInt64>) -> SIMD16<UInt8> { unsafeBitCast(x, to: SIMD16<UInt8>.self) }
        // Byte j of four words: 32-bit lane j (bytes 0-3 of the words) or j - 4 (bytes 4-7).
        let low = (Unpack.low16(p, q), Unpack.low16(r, s)), high = (Unpack.high16(p, q), Unpack.high16(r, s))
        return (words(Unpack.low32(low.0, low.1)), words(Unpack.high32(low.0, low.1)),
                words(Unpack.low32(high.0, high.1)), words(Unpack.high32(high.0, high.1)))
    }

    /// Writes `width` planes of 64 ids (8 bytes of each plane, plane `b` at `planes + b * stride`).
    @inline(__always)
    static func store(_ ids: UnsafeRawPointer, width: Int, to planes: UnsafeMutableRawPointer, stride: Int) {
        @inline(__always) func ids16(_ i: Int) -> SIMD16<UInt8> { ids.loadUnaligned(fromByteOffset: 16 &* i, as: SIMD16<UInt8>.self) }
        store(ids16(0), ids16(1), ids16(2), ids16(3), width: width, to: planes, stride: stride)
    }

    /// Writes `width` (at most 8) planes of 64 ids of 8 bits, 16 in each register in order.
    @inline(__always)
    static func store(_ a: SIMD16<UInt8>, _ b: SIMD16<UInt8>, _ c: SIMD16<UInt8>, _ d: SIMD16<UInt8>,
                      width: Int, to planes: UnsafeMutableRawPointer, stride: Int) {
        @inline(__always) func bits(_ x: SIMD16<UInt8>) -> SIMD16<UInt8> {
            unsafeBitCast(transposeBits(unsafeBitCast(x, to: SIMD2<UInt64>.self)), to: SIMD16<UInt8>.self)
        }
        let words = transposeBytes(bits(a), bits(b), bits(c), bits(d))
        @inline(__always) func store(_ pair: SIMD16<UInt8>, _ b: Int) {
            let lanes = unsafeBitCast(pair, to: SIMD2<UInt64>.self)
            planes.storeBytes(of: lanes[0], toByteOffset: b &* stride, as: UInt64.self)
            if width > b &+ 1 { planes.storeBytes(of: lanes[1], toByteOffset: (b &+ 1) &* stride, as: UInt64.self) }
        }
        store(words.0, 0)
        if width > 2 { store(words.1, 2) }
        if width > 4 { store(words.2, 4) }
        if width > 6 { store(words.3, 6) }
    }

    /// Writes `width` (1...16) planes of 64 ids of 16 bits: planes 0-7 are those of their low
    /// bytes, planes 8-15 those of their high bytes.
    @inline(__always)
    static func storeShorts(_ ids: UnsafeRawPointer, width: Int, to planes: UnsafeMutableRawPointer, stride: Int) {
        @inline(__always) func bytes(_ i: Int, shift: UInt16) -> SIMD16<UInt8> {
            SIMD16<UInt8>(truncatingIfNeeded: ids.loadUnaligned(fromByteOffset: 32 &* i, as: SIMD16<UInt16>.self) &>> shift)
        }
        store(bytes(0, shift: 0), bytes(1, shift: 0), bytes(2, shift: 0), bytes(3, shift: 0),
              width: min(width, 8), to: planes, stride: stride)
        if width == 9 {
            storeNinthBits(ids, to: planes + 8 &* stride)
        } else if width > 8 {
            store(bytes(0, shift: 8), bytes(1, shift: 8), bytes(2, shift: 8), bytes(3, shift: 8),
                  width: width &- 8, to: planes + 8 &* stride, stride: stride)
        }
    }

    /// The ninth plane of 64 ids of 9 bits (257-512 experts: kimi-k2), the inverse of
    /// ``loadNinthBits(_:)``: each group's 8 high bytes (0 or 1) as a word, gathered into one
    /// byte by a multiply (byte `i` of the word lands on bit `56 + i`). About a third of the
    /// two transposes of a single plane.
    @inline(__always)
    static func storeNinthBits(_ ids: UnsafeRawPointer, to plane: UnsafeMutableRawPointer) {
        for i in 0..<4 {
            // Groups 2i and 2i + 1: their high bytes, narrowed (packuswb), as two words.
            let high = SIMD16<UInt8>(truncatingIfNeeded: ids.loadUnaligned(fromByteOffset: 32 &* i, as: SIMD16<UInt16>.self) &>> 8)
            let words = unsafeBitCast(high & SIMD16(repeating: 1), to: SIMD2<UInt64>.self)
            @inline(__always) func gathered(_ word: UInt64) -> UInt8 {
                UInt8(truncatingIfNeeded: (word &* 0x0102_0408_1020_4080) &>> 56)
            }
            plane.storeBytes(of: UInt16(gathered(words[0])) | UInt16(gathered(words[1])) &<< 8,
                             toByteOffset: 2 &* i, as: UInt16.self)
        }
    }

    /// Reads 64 ids from `width` planes (8 bytes of each, plane `b` at `planes + b * stride`).
    @inline(__always)
    static func load(_ planes: UnsafeRawPointer, width: Int, stride: Int, into ids: UnsafeMutableRawPointer) {
        ids.storeBytes(of: loadBytes(planes, width: width, stride: stride), as: SIMD8<UInt64>.self)
    }

    /// The 64 byte-wide ids of `width` planes (8 bytes of each), group `g`'s 8 ids in lane `g`:
    /// the plane words two per register through the unpack byte transpose, then each register's
    /// bit transpose (qwen3 decode: 3% fewer instructions than shift-and-mask swaps on all 8
    /// lanes of a `SIMD8<UInt64>`).
    @inline(__always)
    static func loadBytes(_ planes: UnsafeRawPointer, width: Int, stride: Int) -> SIMD8<UInt64> {
        let pairs = loadGroupPairs(planes, width: width, stride: stride)
        @inline(__always) func lanes(_ x: SIMD16<UInt8>) -> SIMD2<UInt64> { unsafeBitCast(x, to: SIMD2<UInt64>.self) }
        return SIMD8(lowHalf: SIMD4(lowHalf: lanes(pairs.0), highHalf: lanes(pairs.1)),
                     highHalf: SIMD4(lowHalf: lanes(pairs.2), highHalf: lanes(pairs.3)))
    }

    /// ``loadBytes(_:width:stride:)`` as it comes out of the transposes: groups `2i` and `2i + 1`
    /// in register `i`.
    @inline(__always)
    static func loadGroupPairs(_ planes: UnsafeRawPointer, width: Int, stride: Int)
        -> (SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>) {
        // Plane b's 8 bytes, and the 8 after them (the next plane's, or slack), for one unpack;
        // planes from `width` on are zero. (Planes first gathered into the words of a
        // `SIMD8<UInt64>` went through memory for narrow widths, and their pairs needed 7
        // instructions each to interleave.)
        @inline(__always) func plane(_ b: Int) -> SIMD16<UInt8> {
            b < width ? planes.loadUnaligned(fromByteOffset: b &* stride, as: SIMD16<UInt8>.self) : SIMD16()
        }
        @inline(__always) func ids(_ x: SIMD16<UInt8>) -> SIMD16<UInt8> {
            unsafeBitCast(transposeBits(unsafeBitCast(x, to: SIMD2<UInt64>.self)), to: SIMD16<UInt8>.self)
        }
        let groups = transposeLoadedBytes(plane)
        return (ids(groups.0), ids(groups.1), ids(groups.2), ids(groups.3))
    }

    /// Reads 64 ids of 9-16 bits (the inverse of ``storeShorts(_:width:to:stride:)``): the low 8
    /// planes and the high `width - 8` are each the planes of 64 byte-wide ids, and the two
    /// halves of every id are interleaved by SSE2 byte unpacks, two groups a register pair.
    @inline(__always)
    static func loadShorts(_ planes: UnsafeRawPointer, width: Int, stride: Int, into ids: UnsafeMutableRawPointer) {
        let high = width == 9 ? loadNinthBits(planes + 8 &* stride)
                              : loadGroupPairs(planes + 8 &* stride, width: max(width &- 8, 0), stride: stride)
        interleave(low: loadGroupPairs(planes, width: min(width, 8), stride: stride), high: high, into: ids)
    }

    /// ``loadGroupPairs(_:width:stride:)`` of one plane (the high bytes of 9-bit ids, 257-512
    /// experts: kimi-k2): each plane byte repeated over its group's 8 bytes by unpacks, then
    /// byte `i` keeps bit `i`, as 0 or 1. About 20 instructions where the two transposes of a
    /// single plane take over 100.
    @inline(__always)
    static func loadNinthBits(_ plane: UnsafeRawPointer) -> (SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>) {
        let bytes = unsafeBitCast(SIMD2<UInt64>(plane.loadUnaligned(as: UInt64.self), 0), to: SIMD16<UInt8>.self)
        // Lane g of `doubled` is byte g twice; 32-bit lane j of `quadrupled` is byte j (or j + 4) 4 times.
        let doubled = Unpack.low8(bytes, bytes)
        let quadrupled = (Unpack.low16(doubled, doubled), Unpack.high16(doubled, doubled))
        let bit = SIMD16<UInt8>(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128), one = SIMD16<UInt8>(repeating: 1)
        // Groups 2i and 2i + 1, each plane byte 8 times, down to bit `i` of byte `i`, then to 0 or 1
        // (a compare: `pointwiseMin` stayed a call).
        @inline(__always) func bits(_ x: SIMD2<UInt64>) -> SIMD16<UInt8> {
            unsafeBitCast(unsafeBitCast(x, to: SIMD16<UInt8>.self) & bit .== bit, to: SIMD16<UInt8>.self) & one
        }
        return (bits(Unpack.low32(quadrupled.0, quadrupled.0)), bits(Unpack.high32(quadrupled.0, quadrupled.0)),
                bits(Unpack.low32(quadrupled.1, quadrupled.1)), bits(Unpack.high32(quadrupled.1, quadrupled.1)))
    }

    /// Stores the 64 ids whose low and high bytes are in `low` and `high` (groups `2i` and
    /// `2i + 1` in register `i`). Not inlined: inlined, LLVM merged the unpacks into the shifts
    /// of the transposes before them and got about 150 blend instructions for the 8 unpacks
    /// (kimi decode: 38M of 279M instructions).
    @inline(never)
    static func interleave(low: (SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>),
                           high: (SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>),
                           into ids: UnsafeMutableRawPointer) {
        @inline(__always) func store(_ low: SIMD16<UInt8>, _ high: SIMD16<UInt8>, _ i: Int) {
            ids.storeBytes(of: Unpack.low8(low, high), toByteOffset: 32 &* i, as: SIMD8<UInt16>.self)
            ids.storeBytes(of: Unpack.high8(low, high), toByteOffset: 32 &* i &+ 16, as: SIMD8<UInt16>.self)
        }
        store(low.0, high.0, 0)
        store(low.1, high.1, 1)
        store(low.2, high.2, 2)
        store(low.3, high.3, 3)
    }
}

/// Interleaving the low or high halves of two registers, lane by lane: shuffles LLVM turns into
/// one SSE2 unpack instruction each (NEON zips), the steps of the lane transposes.
enum Unpack {
    /// 8-bit lanes 0-7 (8-15) of `x` and `y` alternating: 16-bit lane `j` is lane `j` of `x`
    /// and, above it, lane `j` of `y`.
    @inline(__always)
    static func low8(_ x: SIMD16<UInt8>, _ y: SIMD16<UInt8>) -> SIMD8<UInt16> {
        unsafeBitCast(SIMD16(x[0], y[0], x[1], y[1], x[2], y[2], x[3], y[3],
                             x[4], y[4], x[5], y[5], x[6], y[6], x[7], y[7]), to: SIMD8<UInt16>.self)
    }

    @inline(__always)
    static func high8(_ x: SIMD16<UInt8>, _ y: SIMD16<UInt8>) -> SIMD8<UInt16> {
        unsafeBitCast(SIMD16(x[8], y[8], x[9], y[9], x[10], y[10], x[11], y[11],
                             x[12], y[12], x[13], y[13], x[14], y[14], x[15], y[15]), to: SIMD8<UInt16>.self)
    }

    /// 16-bit lanes 0-3 (4-7) of `x` and `y` alternating: 32-bit lane `j` holds lane `j` of both.
    @inline(__always)
    static func low16(_ x: SIMD8<UInt16>, _ y: SIMD8<UInt16>) -> SIMD4<UInt32> {
        unsafeBitCast(SIMD8(x[0], y[0], x[1], y[1], x[2], y[2], x[3], y[3]), to: SIMD4<UInt32>.self)
    }

    @inline(__always)
    static func high16(_ x: SIMD8<UInt16>, _ y: SIMD8<UInt16>) -> SIMD4<UInt32> {
        unsafeBitCast(SIMD8(x[4], y[4], x[5], y[5], x[6], y[6], x[7], y[7]), to: SIMD4<UInt32>.self)
    }

    /// 32-bit lanes 0-1 (2-3) of `x` and `y` alternating.
    @inline(__always)
    static func low32(_ x: SIMD4<UInt32>, _ y: SIMD4<UInt32>) -> SIMD2<UInt64> {
        unsafeBitCast(SIMD4(x[0], y[0], x[1], y[1]), to: SIMD2<UInt64>.self)
    }

    @inline(__always)
    static func high32(_ x: SIMD4<UInt32>, _ y: SIMD4<UInt32>) -> SIMD2<UInt64> {
        unsafeBitCast(SIMD4(x[2], y[2], x[3], y[3]), to: SIMD2<UInt64>.self)
    }

    /// 64-bit lane 0 (1) of `x`, then of `y`.
    @inline(__always)
    static func low64(_ x: SIMD2<UInt64>, _ y: SIMD2<UInt64>) -> SIMD8<UInt16> {
        unsafeBitCast(SIMD2(x[0], y[0]), to: SIMD8<UInt16>.self)
    }

    @inline(__always)
    static func high64(_ x: SIMD2<UInt64>, _ y: SIMD2<UInt64>) -> SIMD8<UInt16> {
        unsafeBitCast(SIMD2(x[1], y[1]), to: SIMD8<UInt16>.self)
    }
}

/// The 8 lanes of `x` converted one by one (`truncatingIfNeeded`): LLVM makes SSE2 unpacks or
/// shuffles of it, where the standard library's `SIMD8(truncatingIfNeeded:)` can stay a call per
/// vector (it did once its specialization was shared: 17.9M of deepseek's 114.8M decode
/// instructions per block set, widening bytes to Int32 rows).
@inline(__always)
func convertLanes<From: FixedWidthInteger & SIMDScalar, To: FixedWidthInteger & SIMDScalar>(
    _ x: SIMD8<From>, to: To.Type
) -> SIMD8<To> {
    @inline(__always) func lane(_ i: Int) -> To { To(truncatingIfNeeded: x[i]) }
    return SIMD8(lane(0), lane(1), lane(2), lane(3), lane(4), lane(5), lane(6), lane(7))
}

// The word kernels (this file, ByteColumns.swift) read 8 ids as the bytes of a UInt64, row `i`
// in byte `i`: they assume a little-endian host, as every platform that runs inference is.
#if _endian(big)
#error("ExpertCodec's word kernels assume a little-endian host")
#endif

/// Bit-plane kernels on 64 ids of at most 8 bits at once (8 groups of 8 rows), written on
/// `SIMD8<UInt64>` so that each step is one vector operation on all 8 groups (SSE2 or NEON
/// registers, two lanes each) instead of eight scalar ones: the same two transposes as
/// ``UInt8/storePlanes64(of:width:to:stride:)``, at about half the instructions.
enum WidePlanes {
    /// The 8x8 bit transpose of every lane (bit `j` of byte `i` becomes bit `i` of byte `j`):
    /// the 8 ids of a group in, its 8 plane bytes out, and back.
    @inline(__always)
    static func transposeBits(_ lanes: SIMD8<UInt64>) -> SIMD8<UInt64> {
        var x = lanes
        var t = (x ^ (x &>> 7)) & 0x00AA_00AA_00AA_00AA
        x ^= t ^ (t &<< 7)
        t = (x ^ (x &>> 14)) & 0x0000_CCCC_0000_CCCC
        x ^= t ^ (t &<< 14)
        t = (x ^ (x &>> 28)) & 0x0000_0000_F0F0_F0F0
        x ^= t ^ (t &<< 28)
        return x
    }

    /// The 8x8 byte transpose of the lanes (byte `j` of lane `i` becomes byte `i` of lane `j`),
    /// as three rounds of swaps between lanes paired 1, 2 and 4 apart; each round regroups the
    /// lanes so that its pairs sit in the same position of two `SIMD4` halves.
    @inline(__always)
    static func transposeBytes(_ lanes: SIMD8<UInt64>) -> SIMD8<UInt64> {
        @inline(__always)
        func swap(_ a: inout SIMD4<UInt64>, _ b: inout SIMD4<UInt64>, _ shift: UInt64, _ mask: UInt64) {
            let t = ((a &>> shift) ^ b) & mask
            b ^= t
            a ^= t &<< shift
        }
        // Lanes 0 2 4 6 | 1 3 5 7: pairs one apart.
        var a = lanes.evenHalf, b = lanes.oddHalf
        swap(&a, &b, 8, 0x00FF_00FF_00FF_00FF)
        // Lanes 0 4 1 5 | 2 6 3 7: pairs two apart.
        var c = SIMD4(lowHalf: a.evenHalf, highHalf: b.evenHalf), d = SIMD4(lowHalf: a.oddHalf, highHalf: b.oddHalf)
        swap(&c, &d, 16, 0x0000_FFFF_0000_FFFF)
        // Lanes 0 1 2 3 | 4 5 6 7: pairs four apart.
        var e = SIMD4(lowHalf: c.evenHalf, highHalf: d.evenHalf), f = SIMD4(lowHalf: c.oddHalf, highHalf: d.oddHalf)
        swap(&e, &f, 32, 0x0000_0000_FFFF_FFFF)
        return SIMD8(lowHalf: e, highHalf: f)
    }

    /// Writes `width` planes of 64 ids (8 bytes of each plane, plane `b` at `planes + b * stride`).
    @inline(__always)
    static func store(_ ids: UnsafeRawPointer, width: Int, to planes: UnsafeMutableRawPointer, stride: Int) {
        let bytes = transposeBytes(transposeBits(ids.loadUnaligned(as: SIMD8<UInt64>.self)))
        for b in 0..<width { planes.storeBytes(of: bytes[b], toByteOffset: b &* stride, as: UInt64.self) }
    }

    /// Reads 64 ids from `width` planes (8 bytes of each, plane `b` at `planes + b * stride`).
    @inline(__always)
    static func load(_ planes: UnsafeRawPointer, width: Int, stride: Int, into ids: UnsafeMutableRawPointer) {
        var bytes = SIMD8<UInt64>()
        for b in 0..<width { bytes[b] = planes.loadUnaligned(fromByteOffset: b &* stride, as: UInt64.self) }
        ids.storeBytes(of: transposeBits(transposeBytes(bytes)), as: SIMD8<UInt64>.self)
    }
}

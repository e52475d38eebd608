/// Decoding ids of 9-16 bits 64 at a time: the low 8 planes and the high `width - 8` planes are
/// each the planes of 64 byte-wide ids (``WidePlanes``), and the two halves of every id are
/// interleaved in SSE2 lanes. The generic path did a scalar 8x8 transpose per group and plane
/// half, about three times the instructions.
extension UInt16 {
    @inline(__always)
    static func loadPlanes64(from planes: UnsafePointer<UInt8>, stride: Int, width: Int,
                             into values: UnsafeMutablePointer<UInt16>) {
        let raw = UnsafeRawPointer(planes)
        let low = WidePlanes.loadBytes(raw, width: Swift.min(width, 8), stride: stride)
        let high = WidePlanes.loadBytes(raw + 8 &* stride, width: Swift.max(width &- 8, 0), stride: stride)
        let out = UnsafeMutableRawPointer(values)
        // Group g: the 8 low bytes of its ids in low[g], the 8 high bytes in high[g].
        for g in 0..<8 {
            let ids = SIMD8<UInt16>(truncatingIfNeeded: bytes(low[g])) | SIMD8<UInt16>(truncatingIfNeeded: bytes(high[g])) &<< 8
            out.storeBytes(of: ids, toByteOffset: 16 &* g, as: SIMD8<UInt16>.self)
        }
    }

    @inline(__always)
    private static func bytes(_ word: UInt64) -> SIMD8<UInt8> { unsafeBitCast(word.littleEndian, to: SIMD8<UInt8>.self) }
}

extension WidePlanes {
    /// The 64 byte-wide ids of `width` planes (8 bytes of each), group `g`'s 8 ids in lane `g`.
    @inline(__always)
    static func loadBytes(_ planes: UnsafeRawPointer, width: Int, stride: Int) -> SIMD8<UInt64> {
        var bytes = SIMD8<UInt64>()
        for b in 0..<width { bytes[b] = planes.loadUnaligned(fromByteOffset: b &* stride, as: UInt64.self) }
        return transposeBits(transposeBytes(bytes))
    }
}

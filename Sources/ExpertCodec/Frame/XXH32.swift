/// xxHash32 with seed 0: the checksum of the LZ4 frame format (header, block and content
/// checksums). Debian's liblz4 does not export it, and the encoder writes frames itself.
enum XXH32 {
    private static let prime1: UInt32 = 0x9E37_79B1, prime2: UInt32 = 0x85EB_CA77
    private static let prime3: UInt32 = 0xC2B2_AE3D, prime4: UInt32 = 0x27D4_EB2F, prime5: UInt32 = 0x1656_67B1

    @inline(__always)
    private static func round(_ accumulator: UInt32, _ lane: UInt32) -> UInt32 {
        (accumulator &+ lane &* prime2).rotatedLeft(13) &* prime1
    }

    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        let count = bytes.count
        guard let base = bytes.baseAddress else { return avalanche(prime5) }
        var offset = 0
        var hash: UInt32
        if count >= 16 {
            var v1 = prime1 &+ prime2, v2 = prime2, v3: UInt32 = 0, v4 = 0 &- prime1
            let stripes = count &- 16
            while offset <= stripes {
                v1 = round(v1, base.loadLE(UInt32.self, at: offset))
                v2 = round(v2, base.loadLE(UInt32.self, at: offset &+ 4))
                v3 = round(v3, base.loadLE(UInt32.self, at: offset &+ 8))
                v4 = round(v4, base.loadLE(UInt32.self, at: offset &+ 12))
                offset &+= 16
            }
            hash = v1.rotatedLeft(1) &+ v2.rotatedLeft(7) &+ v3.rotatedLeft(12) &+ v4.rotatedLeft(18)
        } else {
            hash = prime5
        }
        hash = hash &+ UInt32(truncatingIfNeeded: count)
        while offset + 4 <= count {
            hash = (hash &+ base.loadLE(UInt32.self, at: offset) &* prime3).rotatedLeft(17) &* prime4
            offset += 4
        }
        while offset < count {
            hash = (hash &+ UInt32(base.load(fromByteOffset: offset, as: UInt8.self)) &* prime5).rotatedLeft(11) &* prime1
            offset += 1
        }
        return avalanche(hash)
    }

    @inline(__always)
    private static func avalanche(_ value: UInt32) -> UInt32 {
        var h = value
        h ^= h >> 15; h = h &* prime2
        h ^= h >> 13; h = h &* prime3
        h ^= h >> 16
        return h
    }
}

extension UInt32 {
    @inline(__always)
    // Masking shifts: LLVM makes one `rol` of them (Swift's `<<` checks for over-shifting).
    func rotatedLeft(_ count: UInt32) -> UInt32 { (self &<< count) | (self &>> (32 &- count)) }
}

/// Counting set bits in memory without the POPCNT instruction: it is not in the x86-64
/// baseline Swift compiles for, and the emulated `nonzeroBitCount` costs about 13 operations a
/// word. Here words are reduced to per-nibble counts, three words are added up before the
/// counts are folded into bytes, and one multiply sums the bytes.
enum BitCount {
    private static let pairs: UInt64 = 0x5555_5555_5555_5555, quads: UInt64 = 0x3333_3333_3333_3333
    private static let nibbles: UInt64 = 0x0F0F_0F0F_0F0F_0F0F, lowBits: UInt64 = 0x0101_0101_0101_0101

    /// Set bits among the first `bits` bits at `p` (bit `i` is bit `i % 8` of byte `i / 8`).
    /// Reads whole words: up to 7 bytes past the last byte holding those bits must be readable.
    @inline(__always)
    static func ones(_ p: UnsafeRawPointer, bits: Int) -> Int {
        var total = 0, offset = 0, left = bits
        while left >= 192 {
            total &+= sumOfNibbles(nibbleCounts(word(p, offset)) &+ nibbleCounts(word(p, offset &+ 8))
                                   &+ nibbleCounts(word(p, offset &+ 16)))
            offset &+= 24
            left &-= 192
        }
        // At most three words remain (the last masked): nibble counts of at most 12.
        var counts: UInt64 = 0
        while left >= 64 {
            counts &+= nibbleCounts(word(p, offset))
            offset &+= 8
            left &-= 64
        }
        if left > 0 { counts &+= nibbleCounts(word(p, offset) & ((1 &<< UInt64(left)) &- 1)) }
        return total &+ sumOfNibbles(counts)
    }

    @inline(__always)
    static func word(_ p: UnsafeRawPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// Each nibble of the result: the set bits of that nibble of `word` (0...4).
    @inline(__always)
    static func nibbleCounts(_ word: UInt64) -> UInt64 {
        let x = word &- ((word &>> 1) & pairs)
        return (x & quads) &+ ((x &>> 2) & quads)
    }

    /// The sum of the 16 nibbles of `counts`, each at most 15 (bytes then hold at most 30, and
    /// the eight bytes at most 240: the multiply's top byte does not overflow).
    @inline(__always)
    static func sumOfNibbles(_ counts: UInt64) -> Int {
        Int((((counts & nibbles) &+ ((counts &>> 4) & nibbles)) &* lowBits) &>> 56)
    }
}

/// Counts the set bits of bitmaps of one length, and those of their first `mark` bits, in one
/// pass, the masks worked out once: the flag bitmaps of a block all have its row count, and a
/// one-row read needs both counts of each. Bitmaps of up to 192 bits (blocks of up to 192
/// rows, the wide schemas') are counted without a branch, reading three words: at least 24
/// bytes must be readable from a bitmap's start. Longer ones read whole words, as
/// ``BitCount/ones(_:bits:)``.
struct PrefixBitCounter {
    private let bits: Int, mark: Int
    /// For bitmaps of up to 192 bits, word `i`'s bits that count: lane 0 below `bits`, lane 1
    /// below `mark`. Both counts run side by side in SSE2 lanes.
    private let word0: SIMD2<UInt64>, word1: SIMD2<UInt64>, word2: SIMD2<UInt64>

    init(bits: Int, mark: Int) {
        self.bits = bits
        self.mark = mark
        /// The bits of word `i` below bit `n` of the bitmap.
        func mask(_ i: Int, below n: Int) -> UInt64 {
            n >= 64 * (i + 1) ? ~0 : n <= 64 * i ? 0 : (1 << UInt64(n - 64 * i)) - 1
        }
        word0 = SIMD2(mask(0, below: bits), mask(0, below: mark))
        word1 = SIMD2(mask(1, below: bits), mask(1, below: mark))
        word2 = SIMD2(mask(2, below: bits), mask(2, below: mark))
    }

    /// Set bits among the first `bits` bits at `p`, and among the first `mark`.
    @inline(__always)
    func count(_ p: UnsafeRawPointer) -> (all: Int, marked: Int) {
        guard bits <= 192 else { return (BitCount.ones(p, bits: bits), BitCount.ones(p, bits: mark)) }
        let pairs = SIMD2<UInt64>(repeating: 0x5555_5555_5555_5555), quads = SIMD2<UInt64>(repeating: 0x3333_3333_3333_3333)
        let nibbles = SIMD2<UInt64>(repeating: 0x0F0F_0F0F_0F0F_0F0F)
        @inline(__always) func nibbleCounts(_ offset: Int, _ mask: SIMD2<UInt64>) -> SIMD2<UInt64> {
            let w = SIMD2(repeating: BitCount.word(p, offset)) & mask
            let x = w &- ((w &>> 1) & pairs)
            return (x & quads) &+ ((x &>> 2) & quads)
        }
        // Nibbles of at most 12, bytes of at most 24, then the bytes summed by shifts.
        var c = nibbleCounts(0, word0) &+ nibbleCounts(8, word1) &+ nibbleCounts(16, word2)
        c = (c & nibbles) &+ ((c &>> 4) & nibbles)
        c = c &+ (c &>> 8)
        c = c &+ (c &>> 16)
        c = c &+ (c &>> 32)
        return (Int(truncatingIfNeeded: c[0] & 0xFF), Int(truncatingIfNeeded: c[1] & 0xFF))
    }
}

/// Bit-plane packing of one column of ids: plane `b` holds bit `b` of every id, one bit per
/// token, least significant first (token `i` is bit `i % 8` of byte `i / 8`). Runs and skewed
/// high bits become runs of `0x00`/`0xFF` bytes, which is what LZ4 can remove.
///
/// Ids live in a scratch column of `PlaneScalar` (UInt8 up to 8 bits, UInt16 up to 16), padded
/// with zeros to a multiple of 8 so that every kernel works on whole groups of 8 tokens.
protocol PlaneScalar: FixedWidthInteger & UnsignedInteger & Sendable {
    /// Bits `0..<width` of the 8 ids at `values`, as `width` plane bytes, byte `b` at `planes[b * stride]`.
    static func storePlanes(of values: UnsafePointer<Self>, width: Int,
                            to planes: UnsafeMutablePointer<UInt8>, stride: Int)
    /// The inverse of `storePlanes`: 8 ids from `width` plane bytes.
    static func loadPlanes(from planes: UnsafePointer<UInt8>, stride: Int, width: Int,
                           into values: UnsafeMutablePointer<Self>)
    /// The OR and the AND of 8 ids: a plane byte is trivial (0x00 or 0xFF) where they agree.
    static func orAnd(of values: UnsafePointer<Self>) -> (or: UInt64, and: UInt64)

    /// `storePlanes` for 64 ids (8 groups): plane `b`'s 8 bytes at `planes[b * stride]`.
    static func storePlanes64(of values: UnsafePointer<Self>, width: Int,
                              to planes: UnsafeMutablePointer<UInt8>, stride: Int)
    /// `loadPlanes` for 64 ids (8 groups).
    static func loadPlanes64(from planes: UnsafePointer<UInt8>, stride: Int, width: Int,
                             into values: UnsafeMutablePointer<Self>)
    /// From how many groups on `storePlanes64` costs less than `storePlanes` group by group.
    static var groupsWorthAWholeStore: Int { get }
    /// The same for `loadPlanes64` and `loadPlanes`.
    static var groupsWorthAWholeLoad: Int { get }
}

extension PlaneScalar {
    static var groupsWorthAWholeStore: Int { 8 }
    static var groupsWorthAWholeLoad: Int { 8 }

    static func storePlanes64(of values: UnsafePointer<Self>, width: Int,
                              to planes: UnsafeMutablePointer<UInt8>, stride: Int) {
        for group in 0..<8 { storePlanes(of: values + 8 * group, width: width, to: planes + group, stride: stride) }
    }

    static func loadPlanes64(from planes: UnsafePointer<UInt8>, stride: Int, width: Int,
                             into values: UnsafeMutablePointer<Self>) {
        for group in 0..<8 { loadPlanes(from: planes + group, stride: stride, width: width, into: values + 8 * group) }
    }
}

/// Transposes an 8x8 bit matrix held as 8 bytes (bit `j` of byte `i` becomes bit `i` of byte `j`).
@inline(__always)
func transpose8x8(_ matrix: UInt64) -> UInt64 {
    var x = matrix
    var t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA
    x ^= t ^ (t << 7)
    t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC
    x ^= t ^ (t << 14)
    t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0
    x ^= t ^ (t << 28)
    return x
}

extension UInt8: PlaneScalar {
    /// Fewest instructions on the qwen3 and deepseek columns (callgrind, 2 to 7 tried).
    static var groupsWorthAWholeStore: Int { 3 }
    static var groupsWorthAWholeLoad: Int { 3 }

    @inline(__always)
    static func storePlanes(of values: UnsafePointer<UInt8>, width: Int,
                            to planes: UnsafeMutablePointer<UInt8>, stride: Int) {
        var bits = transpose8x8(UnsafeRawPointer(values).loadUnaligned(as: UInt64.self).littleEndian), plane = planes
        for _ in 0..<width {
            plane.pointee = UInt8(truncatingIfNeeded: bits)
            bits >>= 8
            plane += stride
        }
    }

    @inline(__always)
    static func loadPlanes(from planes: UnsafePointer<UInt8>, stride: Int, width: Int,
                           into values: UnsafeMutablePointer<UInt8>) {
        // Wrapping arithmetic and a moving pointer: checked `b * stride` and `<< (8 * b)` made
        // this loop several times longer.
        var bits: UInt64 = 0, plane = planes, shift: UInt64 = 0
        for _ in 0..<width {
            bits |= UInt64(plane.pointee) &<< shift
            plane += stride
            shift &+= 8
        }
        UnsafeMutableRawPointer(values).storeBytes(of: transpose8x8(bits).littleEndian, as: UInt64.self)
    }

    /// 8 groups at once (``WidePlanes``): a bit transpose per group gives each group's plane
    /// bytes in one word; a byte transpose across the 8 words gives each plane's 8 bytes in one word.
    @inline(__always)
    static func storePlanes64(of values: UnsafePointer<UInt8>, width: Int,
                              to planes: UnsafeMutablePointer<UInt8>, stride: Int) {
        WidePlanes.store(UnsafeRawPointer(values), width: width, to: UnsafeMutableRawPointer(planes), stride: stride)
    }

    @inline(__always)
    static func loadPlanes64(from planes: UnsafePointer<UInt8>, stride: Int, width: Int,
                             into values: UnsafeMutablePointer<UInt8>) {
        WidePlanes.load(UnsafeRawPointer(planes), width: width, stride: stride, into: UnsafeMutableRawPointer(values))
    }

    @inline(__always)
    static func orAnd(of values: UnsafePointer<UInt8>) -> (or: UInt64, and: UInt64) {
        let x = UnsafeRawPointer(values).loadUnaligned(as: UInt64.self)
        var o = x | (x >> 32), a = x & (x >> 32)
        o |= o >> 16; a &= a >> 16
        o |= o >> 8; a &= a >> 8
        return (o & 0xFF, a & 0xFF)
    }
}

/// 4 UInt16 lanes -> their low bytes packed into the low 32 bits.
@inline(__always)
private func packLowBytes(_ lanes: UInt64) -> UInt64 {
    var x = lanes & 0x00FF_00FF_00FF_00FF
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF
    return (x | (x >> 16)) & 0xFFFF_FFFF
}

/// The inverse of `packLowBytes`: 4 bytes in the low 32 bits -> 4 UInt16 lanes.
@inline(__always)
private func spreadBytes(_ packed: UInt64) -> UInt64 {
    var x = packed & 0xFFFF_FFFF
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF
    return (x | (x << 8)) & 0x00FF_00FF_00FF_00FF
}

extension UInt16: PlaneScalar {
    /// Fewest instructions on the kimi-k2 columns (callgrind, 2 and 3 tried).
    static var groupsWorthAWholeStore: Int { 2 }
    static var groupsWorthAWholeLoad: Int { 2 }

    /// 8 groups at once (``WidePlanes/storeShorts(_:width:to:stride:)``).
    @inline(__always)
    static func storePlanes64(of values: UnsafePointer<UInt16>, width: Int,
                              to planes: UnsafeMutablePointer<UInt8>, stride: Int) {
        WidePlanes.storeShorts(UnsafeRawPointer(values), width: width, to: UnsafeMutableRawPointer(planes), stride: stride)
    }

    /// 8 groups at once (``WidePlanes/loadShorts(_:width:stride:into:)``).
    @inline(__always)
    static func loadPlanes64(from planes: UnsafePointer<UInt8>, stride: Int, width: Int,
                             into values: UnsafeMutablePointer<UInt16>) {
        WidePlanes.loadShorts(UnsafeRawPointer(planes), width: width, stride: stride, into: UnsafeMutableRawPointer(values))
    }

    @inline(__always)
    static func storePlanes(of values: UnsafePointer<UInt16>, width: Int,
                            to planes: UnsafeMutablePointer<UInt8>, stride: Int) {
        let raw = UnsafeRawPointer(values)
        let a = raw.loadUnaligned(as: UInt64.self).littleEndian
        let b = raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
        let low = transpose8x8(packLowBytes(a) | packLowBytes(b) << 32)
        let high = transpose8x8(packLowBytes(a >> 8) | packLowBytes(b >> 8) << 32)
        for p in 0..<Swift.min(width, 8) { planes[p * stride] = UInt8(truncatingIfNeeded: low >> (8 * p)) }
        for p in 8..<Swift.max(width, 8) { planes[p * stride] = UInt8(truncatingIfNeeded: high >> (8 * (p - 8))) }
    }

    @inline(__always)
    static func loadPlanes(from planes: UnsafePointer<UInt8>, stride: Int, width: Int,
                           into values: UnsafeMutablePointer<UInt16>) {
        var low: UInt64 = 0, high: UInt64 = 0
        for p in 0..<Swift.min(width, 8) { low |= UInt64(planes[p * stride]) << (8 * p) }
        for p in 8..<Swift.max(width, 8) { high |= UInt64(planes[p * stride]) << (8 * (p - 8)) }
        low = transpose8x8(low)
        high = transpose8x8(high)
        let raw = UnsafeMutableRawPointer(values)
        raw.storeBytes(of: (spreadBytes(low) | spreadBytes(high) << 8).littleEndian, as: UInt64.self)
        raw.storeBytes(of: (spreadBytes(low >> 32) | spreadBytes(high >> 32) << 8).littleEndian,
                       toByteOffset: 8, as: UInt64.self)
    }

    @inline(__always)
    static func orAnd(of values: UnsafePointer<UInt16>) -> (or: UInt64, and: UInt64) {
        let raw = UnsafeRawPointer(values)
        let a = raw.loadUnaligned(as: UInt64.self), b = raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        var o = a | b, n = a & b
        o |= o >> 32; n &= n >> 32
        o |= o >> 16; n &= n >> 16
        return (o & 0xFFFF, n & 0xFFFF)
    }
}

/// Counts rows `t` in `1..<count` with `values[t] == values[t - 1]`, eight bytes at a time (a
/// compare per value compiles to a branch per value, mispredicted on routing data).
func countRepeats<S: PlaneScalar>(_ values: UnsafePointer<S>, count: Int) -> Int {
    guard count > 1 else { return 0 }
    let raw = UnsafeRawPointer(values), stride = MemoryLayout<S>.stride
    let low: UInt64 = stride == 1 ? 0x7F7F_7F7F_7F7F_7F7F : 0x7FFF_7FFF_7FFF_7FFF
    let lanes = 8 / stride
    var repeats = 0, t = 1
    // Lanes of `current ^ previous` that are zero are repeats; the high bit of each lane of
    // `~(((x & low) + low) | x | low)` is set exactly for the zero lanes.
    while t + lanes <= count {
        let x = raw.loadUnaligned(fromByteOffset: t &* stride, as: UInt64.self)
            ^ raw.loadUnaligned(fromByteOffset: (t &- 1) &* stride, as: UInt64.self)
        repeats &+= (~(((x & low) &+ low) | x | low)).nonzeroBitCount
        t &+= lanes
    }
    while t < count {
        repeats &+= values[t] == values[t &- 1] ? 1 : 0
        t &+= 1
    }
    return repeats
}

enum BitPlanes {
    /// Bytes of one plane of `count` ids.
    @inline(__always)
    static func planeBytes(_ count: Int) -> Int { (count + 7) >> 3 }

    /// Writes `width` planes of `count` ids (zero-padded to a multiple of 8) to `out`.
    /// Returns the bytes written: `width * planeBytes(count)`.
    static func store<S: PlaneScalar>(_ values: UnsafePointer<S>, count: Int, width: Int,
                                      to out: UnsafeMutablePointer<UInt8>) -> Int {
        let stride = planeBytes(count)
        var group = 0
        while group + 8 <= stride {
            S.storePlanes64(of: values + 8 * group, width: width, to: out + group, stride: stride)
            group += 8
        }
        // The groups left: as the last 8 groups of the column when that is cheaper (the groups
        // stored twice get the same bytes twice), else one at a time.
        if stride >= 8 && stride - group >= S.groupsWorthAWholeStore {
            S.storePlanes64(of: values + 8 * (stride - 8), width: width, to: out + stride - 8, stride: stride)
            return width * stride
        }
        while group < stride {
            S.storePlanes(of: values + 8 * group, width: width, to: out + group, stride: stride)
            group += 1
        }
        return width * stride
    }

    /// Readable bytes `load` needs after the last plane (8-bit planes are read 16 bytes at a
    /// time for 8), and ids of room after `8 * groups.upperBound` (also what ``ByteScatter``
    /// reads past the last column: 8 bytes).
    static let loadSlackBytes = 15, loadSlackIDs = 56

    /// Reads groups `groups` of `width` planes of `count` ids into `values[8 * group ...]`.
    ///
    /// The groups left after the last 8 are read as 8 too when that is cheaper: those reads may
    /// reach `loadSlackBytes` past the planes and write `loadSlackIDs` ids (garbage) past the
    /// groups, room the caller provides. A column's 64 ids cost about a third of 8 single groups.
    static func load<S: PlaneScalar>(_ planes: UnsafePointer<UInt8>, count: Int, width: Int,
                                     groups: Range<Int>, into values: UnsafeMutablePointer<S>) {
        let stride = planeBytes(count)
        var group = groups.lowerBound
        while group + 8 <= groups.upperBound {
            S.loadPlanes64(from: planes + group, stride: stride, width: width, into: values + 8 * group)
            group += 8
        }
        if groups.upperBound - group >= S.groupsWorthAWholeLoad {
            S.loadPlanes64(from: planes + group, stride: stride, width: width, into: values + 8 * group)
            return
        }
        while group < groups.upperBound {
            S.loadPlanes(from: planes + group, stride: stride, width: width, into: values + 8 * group)
            group += 1
        }
    }

    /// One id, read bit by bit: for point look-ups without decoding a group. `stride` is
    /// `planeBytes(count)` of the `count` ids the planes hold.
    @inline(__always)
    static func value(at index: Int, in planes: UnsafePointer<UInt8>, stride: Int, width: Int) -> Int {
        let bit = UInt64(index & 7)
        var plane = planes + (index >> 3)
        if width <= 8 {
            // The plane bytes side by side in a word (unrolled: a loop of `width` costs twice
            // as much), then bit `bit` of each gathered by one multiply (byte b's bit lands on
            // bit 56 + b, every product term on its own bit).
            var bytes: UInt64 = 0
            @inline(__always) func byte(_ p: Int) -> UInt64 { UInt64(plane[p &* stride]) &<< UInt64(8 &* p) }
            switch width {
            case 8: bytes |= byte(7); fallthrough
            case 7: bytes |= byte(6); fallthrough
            case 6: bytes |= byte(5); fallthrough
            case 5: bytes |= byte(4); fallthrough
            case 4: bytes |= byte(3); fallthrough
            case 3: bytes |= byte(2); fallthrough
            case 2: bytes |= byte(1); fallthrough
            default: bytes |= byte(0)
            }
            return Int((((bytes &>> bit) & 0x0101_0101_0101_0101) &* 0x0102_0408_1020_4080) &>> 56)
        }
        var v = 0
        for p in 0..<width {
            v |= Int((UInt64(plane.pointee) &>> bit) & 1) &<< p
            plane += stride
        }
        return v
    }

    /// What LZ4 will roughly keep of these planes: the plane bytes that are neither 0x00 nor 0xFF.
    static func estimatedCost<S: PlaneScalar>(_ values: UnsafePointer<S>, count: Int, width: Int) -> Int {
        let mask: UInt64 = width >= 64 ? ~0 : (1 << UInt64(width)) - 1
        var cost = 0
        for group in 0..<planeBytes(count) {
            let (or, and) = S.orAnd(of: values + 8 * group)
            cost &+= (or & ~and & mask).nonzeroBitCount
        }
        return cost
    }
}

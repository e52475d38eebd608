import Testing
import TraceSynth
@testable import ExpertCodec

@Suite struct BitPlanesTests {
    @Test func transposeMatchesTheDefinition() {
        var random = SplitMix64(seed: 7)
        for _ in 0..<1000 {
            let x = random.next()
            let y = transpose8x8(x)
            for i in 0..<8 {
                for j in 0..<8 {
                    #expect((x >> UInt64(8 * i + j)) & 1 == (y >> UInt64(8 * j + i)) & 1)
                }
            }
        }
    }

    /// The register byte transpose of ``WidePlanes``: byte `j` of word `i` becomes byte `i` of word `j`.
    @Test func registerByteTransposeMatchesTheDefinition() {
        var random = SplitMix64(seed: 8)
        for _ in 0..<100 {
            let words = (0..<8).map { _ in random.next() }
            func register(_ i: Int) -> SIMD16<UInt8> { unsafeBitCast(SIMD2(words[2 * i], words[2 * i + 1]), to: SIMD16<UInt8>.self) }
            let out = WidePlanes.transposeBytes(register(0), register(1), register(2), register(3))
            let transposed = [out.0, out.1, out.2, out.3].flatMap { pair in
                let lanes = unsafeBitCast(pair, to: SIMD2<UInt64>.self)
                return [lanes[0], lanes[1]]
            }
            for i in 0..<8 {
                for j in 0..<8 { #expect((words[i] >> UInt64(8 * j)) & 0xFF == (transposed[j] >> UInt64(8 * i)) & 0xFF) }
            }
        }
    }

    @Test(arguments: 1...16)
    func planesRoundTripAtEveryWidth(width: Int) {
        var random = SplitMix64(seed: UInt64(width))
        for count in [1, 7, 8, 9, 63, 64, 65, 1000] {
            let padded = (count + 7) & ~7
            let values = (0..<padded).map { $0 < count ? UInt16(truncatingIfNeeded: random.next()) & UInt16((1 << width) - 1) : 0 }
            var planes = [UInt8](repeating: 0xAA, count: width * BitPlanes.planeBytes(count))
            // The room `load` may read and write past the planes and the groups.
            var decoded = [UInt16](repeating: 0xFFFF, count: padded + BitPlanes.loadSlackIDs)
            let written = values.withUnsafeBufferPointer { v in
                planes.withUnsafeMutableBufferPointer { p in BitPlanes.store(v.baseAddress!, count: count, width: width, to: p.baseAddress!) }
            }
            #expect(written == planes.count)
            (planes + [UInt8](repeating: 0x55, count: BitPlanes.loadSlackBytes)).withUnsafeBufferPointer { p in
                decoded.withUnsafeMutableBufferPointer { d in
                    BitPlanes.load(p.baseAddress!, count: count, width: width, groups: 0..<BitPlanes.planeBytes(count), into: d.baseAddress!)
                }
                for i in 0..<count {
                    #expect(BitPlanes.value(at: i, in: p.baseAddress!, stride: BitPlanes.planeBytes(count), width: width) == Int(values[i]))
                }
            }
            #expect(Array(decoded[..<padded]) == values)
            if width <= 8 {
                let narrow = values.map { UInt8($0) }
                var narrowPlanes = [UInt8](repeating: 0, count: planes.count)
                _ = narrow.withUnsafeBufferPointer { v in
                    narrowPlanes.withUnsafeMutableBufferPointer { p in BitPlanes.store(v.baseAddress!, count: count, width: width, to: p.baseAddress!) }
                }
                #expect(narrowPlanes == planes, "UInt8 and UInt16 scratch give the same planes")
                var narrowDecoded = [UInt8](repeating: 0xFF, count: padded + BitPlanes.loadSlackIDs)
                (planes + [UInt8](repeating: 0x55, count: BitPlanes.loadSlackBytes)).withUnsafeBufferPointer { p in
                    narrowDecoded.withUnsafeMutableBufferPointer { d in
                        BitPlanes.load(p.baseAddress!, count: count, width: width, groups: 0..<BitPlanes.planeBytes(count), into: d.baseAddress!)
                    }
                }
                #expect(Array(narrowDecoded[..<padded]) == narrow, "UInt8 scratch loads the same ids")
            }
        }
    }

    /// The ninth bits of 9-bit ids (``WidePlanes/loadNinthBits(_:)``): byte `i` of group `g` is
    /// bit `i` of plane byte `g`, for every value of every plane byte.
    @Test func ninthBitsOfEveryPlaneByte() {
        for value in 0..<256 {
            let plane = (0..<8).map { UInt8((value + 37 * $0) & 0xFF) }
            let pairs = plane.withUnsafeBytes { WidePlanes.loadNinthBits($0.baseAddress!) }
            let registers = [pairs.0, pairs.1, pairs.2, pairs.3]
            for g in 0..<8 {
                for i in 0..<8 {
                    #expect(registers[g / 2][8 * (g % 2) + i] == (plane[g] >> UInt8(i)) & 1, "plane byte \(plane[g]), row \(i)")
                }
            }
        }
    }
}

@Suite struct XXH32Tests {
    /// The codec's xxHash32 against the reference values and an independent implementation.
    @Test func matchesTheReference() {
        #expect([UInt8]().withUnsafeBytes { XXH32.hash($0) } == 0x02CC_5D05)
        #expect(Array("abc".utf8).withUnsafeBytes { XXH32.hash($0) } == 0x32D1_53FF)
        var random = SplitMix64(seed: 4)
        for length in [1, 3, 4, 15, 16, 17, 31, 64, 1000, 65537] {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            #expect(bytes.withUnsafeBytes { XXH32.hash($0) } == xxh32(bytes), "length \(length)")
        }
    }
}

@Suite struct RepeatCountTests {
    @Test func countsEqualNeighboursInBothScalarTypes() {
        var random = SplitMix64(seed: 8)
        for count in [0, 1, 2, 7, 8, 9, 17, 100, 1001] {
            let wide = (0..<count + 8).map { _ in UInt16(random.next() % 3) }
            let narrow = wide.map { UInt8($0) }
            let expected = count < 2 ? 0 : (1..<count).filter { wide[$0] == wide[$0 - 1] }.count
            #expect(wide.withUnsafeBufferPointer { countRepeats($0.baseAddress!, count: count) } == expected)
            #expect(narrow.withUnsafeBufferPointer { countRepeats($0.baseAddress!, count: count) } == expected)
        }
    }
}

@Suite struct LargestIDTests {
    /// The largest id, serial and on threads; a negative id reads as huge in every type.
    @Test func largestUnsignedIDFindsTheMaximumAndNegatives() {
        var random = SplitMix64(seed: 11)
        for count in [0, 1, 1000, 1 << 20 | 3] {
            var ids = (0..<count).map { _ in Int32(random.next() % 5000) }
            let expected = UInt64(ids.max() ?? 0)
            for threads in [1, 2, 3] {
                #expect(ids.withUnsafeBufferPointer { largestUnsignedID($0, threads: threads) } == expected)
            }
            guard count > 0 else { continue }
            ids[count - 1] = -1
            #expect(ids.withUnsafeBufferPointer { largestUnsignedID($0, threads: 2) } == UInt64.max)
        }
        #expect([UInt8(255), 3].withUnsafeBufferPointer { largestUnsignedID($0) } == 255)
        #expect([Int8(-128), 3].withUnsafeBufferPointer { largestUnsignedID($0) } == UInt64.max)
        #expect([UInt64.max - 1].withUnsafeBufferPointer { largestUnsignedID($0) } == UInt64.max - 1)
        #expect([Int64(1 << 40)].withUnsafeBufferPointer { largestUnsignedID($0) } == 1 << 40)
    }

    /// The small-batch check of appends: by the ids' OR when it is below the limit, else by the
    /// largest id; negative ids and ids at the limit are out.
    @Test func idsAreBelowAgreesWithTheLargestID() {
        var random = SplitMix64(seed: 13)
        for limit in [2, 60, 64, 100, 128, 384, 65536] {
            for _ in 0..<200 {
                var ids = (0..<Int(random.next() % 40)).map { _ in Int32(random.next() % UInt64(limit)) }
                #expect(ids.withUnsafeBufferPointer { idsAreBelow($0, limit) }, "valid ids below \(limit)")
                guard !ids.isEmpty else { continue }
                let i = Int(random.next() % UInt64(ids.count))
                ids[i] = [Int32(limit), Int32(limit + 1), -1, Int32.min, Int32.max][Int(random.next() % 5)]
                #expect(!ids.withUnsafeBufferPointer { idsAreBelow($0, limit) }, "\(ids[i]) among ids below \(limit)")
            }
        }
        #expect([UInt8(255)].withUnsafeBufferPointer { idsAreBelow($0, 256) })
        #expect(![Int8(-1)].withUnsafeBufferPointer { idsAreBelow($0, 256) })
        #expect(![Int64(1 << 40)].withUnsafeBufferPointer { idsAreBelow($0, 65536) })
        #expect([UInt16(65535), 0].withUnsafeBufferPointer { idsAreBelow($0, 65536) })
    }
}

/// Set-bit counts without POPCNT, against counting bit by bit.
@Suite struct BitCountTests {
    @Test func bitCountMatchesTheDefinitionAtEveryLength() {
        var random = SplitMix64(seed: 11)
        // 8 bytes of slack past the longest count: `ones` reads whole words.
        for density in [0.0, 0.1, 0.5, 1.0] {
            let bytes = (0..<(64 + 8)).map { _ -> UInt8 in
                var byte: UInt8 = 0
                for bit in 0..<8 where Double(random.next() % 1000) < density * 1000 { byte |= 1 << bit }
                return byte
            }
            bytes.withUnsafeBytes { raw in
                for bits in 0...(64 * 8) {
                    let expected = (0..<bits).filter { bytes[$0 / 8] >> ($0 % 8) & 1 == 1 }.count
                    #expect(BitCount.ones(raw.baseAddress!, bits: bits) == expected, "\(bits) bits at density \(density)")
                }
            }
        }
    }

    @Test func prefixBitCounterMatchesTheDefinition() {
        var random = SplitMix64(seed: 12)
        let bytes = (0..<(40 + ColumnPlaces.slackBytes)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        bytes.withUnsafeBytes { raw in
            for bits in 0...(40 * 8) {
                for mark in Set([0, 1, bits / 3, bits / 2, bits - 1, bits].filter { 0 <= $0 && $0 <= bits }) {
                    let ones = { (n: Int) in (0..<n).filter { bytes[$0 / 8] >> ($0 % 8) & 1 == 1 }.count }
                    let counted = PrefixBitCounter(bits: bits, mark: mark).count(raw.baseAddress!)
                    #expect(counted.all == ones(bits) && counted.marked == ones(mark), "\(bits) bits, mark \(mark)")
                }
            }
        }
    }
}

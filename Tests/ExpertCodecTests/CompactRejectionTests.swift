import Testing
import TraceSynth
@testable import ExpertCodec

/// Builds compact payloads field by field (spec/FORMAT.md 1.10), valid or not.
struct CompactPayloadBuilder {
    var width: Int, rows: Int, columns: Int
    var kinds: [UInt8]
    var stream = BitWriter()
    var raw: [UInt8] = []
    var states: [UInt64]? = nil
    var ransBytes: [UInt8] = []

    init(_ schema: Schema, rows: Int, kinds: [UInt8]) {
        width = schema.bitWidth
        self.rows = rows
        columns = schema.storedIDsPerRow
        self.kinds = kinds
    }

    mutating func table(scale: Int, symbols: [Int], freqs: [Int], g: Int = 0) {
        stream.write(scale, bits: 4)
        stream.gamma(symbols.count)
        var previous = -1
        for s in symbols { stream.gamma(s - previous); previous = s }
        stream.write(g, bits: 4)
        for f in freqs { stream.expGolomb(f - 1, g) }
    }

    func bytes() -> [UInt8] {
        var s = stream
        s.finish()
        var out: [UInt8] = [2, UInt8(width), 0, 0]
        for v in [UInt32(rows), UInt32(columns)] { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        out += kinds
        withUnsafeBytes(of: UInt32(s.bytes.count).littleEndian) { out += $0 }
        out += s.bytes + raw
        if let states { for x in states { withUnsafeBytes(of: x.littleEndian) { out += $0 } } }
        return out + ransBytes
    }
}

@Suite struct CompactRejectionTests {
    let schema = try! Schema(layers: 2, topk: 2, experts: 6)   // w = 3, C = 4, E = 6
    let low = CompactFormat.stateLow

    private func decode(_ payload: [UInt8], _ schema: Schema? = nil) throws -> [Int64] {
        try BlockDecoder(schema: schema ?? self.schema).decode(try frameOf(payload), as: Int64.self)
    }

    private func expectRejected(_ payload: [UInt8], _ needle: String, _ schema: Schema? = nil,
                                sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let rows = try decode(payload, schema)
            Issue.record("accepted a hostile payload (\(needle)): \(rows)", sourceLocation: sourceLocation)
        } catch let error as CodecError {
            #expect("\(error)".contains(needle), "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }

    /// One coded column with a one-symbol table (every state stays at 2^31, no rANS word),
    /// three constant columns: the smallest hand-made valid payload.
    private func base(symbol: Int = 3, kind: UInt8 = 1) -> CompactPayloadBuilder {
        var b = CompactPayloadBuilder(schema, rows: 9, kinds: [kind, 0, 0, 0])
        b.stream.write(1, bits: 8)
        b.table(scale: 3, symbols: [symbol], freqs: [8])
        for v in [1, 2, 5] { b.stream.write(v, bits: 3) }
        b.states = [low, low, low, low]
        return b
    }

    @Test func handMadePayloadDecodes() throws {
        #expect(try decode(base().bytes()) == (0..<9).flatMap { _ in [3, 1, 2, 5] as [Int64] })
        // A reader that knows the row count refuses another before decoding anything (20 rows:
        // this hand-made 9-row payload, 32 bytes of states for 9 rows, is over the bound of 10).
        let frame = try frameOf(base().bytes())
        #expect(throws: CodecError.corruptBlock("block holds 9 rows, 20 expected", offset: 4, inPayload: true)) {
            try frame.withUnsafeBytes { try BlockDecoder(schema: schema).open($0, expectedRows: 20) }
        }
    }

    /// One table may serve an id column and a slot-delta column alike (the decoder keeps one
    /// decode table for both, the escape at 2E); a slot delta wraps at E, and a delta column's
    /// row 0 may not be the escape either.
    @Test func oneTableServesIDsAndSlotDeltas() throws {
        var b = CompactPayloadBuilder(schema, rows: 9, kinds: [1, 2, 0, 0])
        b.stream.write(1, bits: 8)
        b.table(scale: 3, symbols: [5], freqs: [8])
        for v in [2, 5] { b.stream.write(v, bits: 3) }
        b.states = [low, low, low, low]
        // Column 0: id 5; column 1: (5 + 5) mod 6 = 4.
        #expect(try decode(b.bytes()) == (0..<9).flatMap { _ in [5, 4, 2, 5] as [Int64] })
        b = CompactPayloadBuilder(schema, rows: 9, kinds: [0, 2, 0, 0])
        b.stream.write(1, bits: 8)
        b.table(scale: 3, symbols: [6], freqs: [8])
        for v in [1, 2, 5] { b.stream.write(v, bits: 3) }
        b.states = [low, low, low, low]
        expectRejected(b.bytes(), "row 0 of column 1 repeats")
    }

    @Test func tableErrorsAreRejected() {
        var b = base()
        b.stream = BitWriter(); b.stream.write(1, bits: 8)
        b.table(scale: 3, symbols: [3, 4], freqs: [4, 3]) // sums to 7, not 8
        for v in [1, 2, 5] { b.stream.write(v, bits: 3) }
        expectRejected(b.bytes(), "sum to 7")

        b.stream = BitWriter(); b.stream.write(1, bits: 8)
        b.table(scale: 3, symbols: [3, 4], freqs: [6, 3]) // exceeds the scale
        expectRejected(b.bytes(), "exceed the scale")

        b.stream = BitWriter(); b.stream.write(1, bits: 8)
        b.table(scale: 13, symbols: [3], freqs: [8192]) // scale above 12
        expectRejected(b.bytes(), "scale 13")

        b.stream = BitWriter(); b.stream.write(1, bits: 8)
        b.table(scale: 1, symbols: [0, 1, 2], freqs: [1, 1, 1]) // more symbols than 2^scale
        expectRejected(b.bytes(), "table of 3 symbols")

        b.stream = BitWriter(); b.stream.write(1, bits: 8)
        b.table(scale: 3, symbols: [7], freqs: [8]) // symbol outside the alphabet 0...6
        expectRejected(b.bytes(), "outside the alphabet")

        b.stream = BitWriter(); b.stream.write(1, bits: 8)
        b.table(scale: 3, symbols: [3], freqs: [8], g: 12) // exp-Golomb parameter too large
        expectRejected(b.bytes(), "parameter 12")

        b.stream = BitWriter(); b.stream.write(3, bits: 8)
        for _ in 0..<3 { b.table(scale: 3, symbols: [3], freqs: [8]) }
        b.stream.write(3, bits: 2) // table 3 of 3
        expectRejected(b.bytes(), "names table 3 of 3")

        b.stream = BitWriter(); b.stream.write(2, bits: 8)
        for _ in 0..<2 { b.table(scale: 3, symbols: [3], freqs: [8]) }
        b.stream.write(0, bits: 1); for v in [1, 2, 5] { b.stream.write(v, bits: 3) }
        expectRejected(b.bytes(), "a table no column uses")

        b.stream = BitWriter(); b.stream.write(0, bits: 8)
        expectRejected(b.bytes(), "0 tables for 1 table references")

        b = base()
        b.stream.write(1, bits: 1) // a set padding bit after the last constant
        expectRejected(b.bytes(), "padding bits are set")

        b = base()
        b.stream.write(0, bits: 8); b.stream.write(1, bits: 1) // a whole spare byte
        expectRejected(b.bytes(), "bits follow the last field")

        var cut = base().bytes()
        cut[16 + 4 - 4] = 1 // H = 1: the stream ends inside the table
        expectRejected(cut, "ends early")
    }

    @Test func rANSErrorsAreRejected() {
        var b = base()
        b.states = [low - 1, low, low, low]
        expectRejected(b.bytes(), "outside [2^31, 2^63)")
        b.states = [low, low, low, low << 32]
        expectRejected(b.bytes(), "outside [2^31, 2^63)")
        b.states = [low, low, low, low + 1]
        expectRejected(b.bytes(), "do not end at 2^31")
        b = base()
        b.ransBytes = [0]
        expectRejected(b.bytes(), "follow the rANS stream")
        b.ransBytes = [0, 0, 0, 0]
        expectRejected(b.bytes(), "4 bytes follow the rANS stream")
        // Three bytes of a word: a state that needs a word finds none whole.
        b = base()
        b.stream = BitWriter(); b.stream.write(1, bits: 8)
        b.table(scale: 1, symbols: [2, 3], freqs: [1, 1])
        for v in [1, 2, 5] { b.stream.write(v, bits: 3) }
        b.ransBytes = [0, 0, 0]
        expectRejected(b.bytes(), "ends early")
        b = base()
        b.states = nil
        expectRejected(b.bytes(), "inside the rANS states")
        // A two-symbol table: every symbol reads bytes, the stream has none.
        b = base()
        b.stream = BitWriter(); b.stream.write(1, bits: 8)
        b.table(scale: 1, symbols: [2, 3], freqs: [1, 1])
        for v in [1, 2, 5] { b.stream.write(v, bits: 3) }
        expectRejected(b.bytes(), "ends early")
        // Row 0 may not repeat the row above it.
        expectRejected(base(symbol: 6).bytes(), "row 0 of column 0 repeats")
    }

    @Test func structureErrorsAreRejected() throws {
        expectRejected(base(kind: 2).bytes(), "slot 0 and cannot be a slot delta")
        var b = base()
        b.kinds = [6, 0, 0, 0]
        expectRejected(b.bytes(), "unknown kind 6")
        b.kinds = [4, 0, 0, 0]
        expectRejected(b.bytes(), "slot 0 and cannot be a slot delta or split")
        b = base()
        b.kinds = [1, 0, 0]
        expectRejected(b.bytes(), "runs past the payload")
        b = base()
        b.rows = 1 << 30
        expectRejected(b.bytes(), "exceed the block limit")
        b = base()
        b.width = 4
        expectRejected(b.bytes(), "bit width 4")
        b = base()
        b.stream = BitWriter(); b.stream.write(1, bits: 8)
        b.table(scale: 3, symbols: [3], freqs: [8])
        for v in [1, 2, 6] { b.stream.write(v, bits: 3) }
        expectRejected(b.bytes(), "constant 6 of column 3")

        // Raw columns: a value >= E, set padding bits, a short section.
        var raw = CompactPayloadBuilder(schema, rows: 3, kinds: [3, 0, 0, 0])
        raw.stream.write(0, bits: 8)
        for v in [1, 2, 5] { raw.stream.write(v, bits: 3) }
        raw.raw = [0b10_001_000, 0] // rows 0, 1, 2 = 0, 1, 2: valid
        #expect(try decode(raw.bytes()) == [0, 1, 2, 5, 1, 1, 2, 5, 2, 1, 2, 5])
        raw.raw = [0b10_111_000, 0] // row 1 = 7
        expectRejected(raw.bytes(), "raw column 0 holds 7")
        raw.raw = [0b10_001_000, 0b10]
        expectRejected(raw.bytes(), "padding bits of raw column 0")
        raw.raw = [0b10_001_000]
        expectRejected(raw.bytes(), "inside raw column 0")

        // Coded kinds need E <= 2048.
        let wide = try Schema(layers: 1, topk: 1, experts: 4096)
        var big = CompactPayloadBuilder(wide, rows: 2, kinds: [1])
        big.stream.write(1, bits: 8)
        big.table(scale: 1, symbols: [3], freqs: [2])
        big.states = [low, low, low, low]
        expectRejected(big.bytes(), "4096 experts exceed 2048", wide)

        // An empty block is its header alone.
        var empty = CompactPayloadBuilder(schema, rows: 0, kinds: [])
        empty.stream = BitWriter()
        #expect(try decode(Array(empty.bytes()[..<12])) == [])
        expectRejected(Array(empty.bytes()[..<12]) + [0], "bytes after its header")
    }

    /// Every cut, every appended byte, and byte-wise damage anywhere in real compact payloads
    /// (checksums made right again): an error or rows whose every id is in range, never a trap.
    @Test(arguments: [(4, 8, 128), (26, 6, 64), (3, 2, 5000), (2, 3, 7)])
    func damagedPayloadsNeverTrap(shape: (Int, Int, Int)) throws {
        let schema = try Schema(layers: shape.0, topk: shape.1, experts: shape.2)
        var synth = TraceSynthesizer(schema: schema, seed: 77)
        let rows = synth.rows(40, as: Int64.self)
        let payload = try payloadOf(try BlockEncoder(schema: schema, codec: .compact).encode(rows))
        let decoder = BlockDecoder(schema: schema)
        for length in 0..<payload.count {
            #expect(throws: CodecError.self, "cut at \(length)") {
                try decoder.decode(try frameOf(Array(payload[..<length])), as: Int64.self)
            }
        }
        #expect(throws: CodecError.self) { try decoder.decode(try frameOf(payload + [0]), as: Int64.self) }
        var random = SplitMix64(seed: 5)
        for i in 0..<min(payload.count * 4, 4000) {
            var damaged = payload
            let at = i % payload.count
            damaged[at] = i < payload.count ? damaged[at] ^ 1 : UInt8(truncatingIfNeeded: random.next())
            if let decoded = try? decoder.decode(try frameOf(damaged), as: Int64.self) {
                #expect(decoded.count == rows.count)
                #expect(decoded.allSatisfy { (0..<Int64(schema.experts)).contains($0) })
            }
        }
        #expect(try decoder.decode(try frameOf(payload), as: Int64.self) == rows, "the decoder recovers after errors")
    }
}

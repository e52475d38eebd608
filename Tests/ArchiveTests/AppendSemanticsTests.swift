import Testing
import Archive
import TraceSynth

/// DOMAIN.md's reference scenarios (LMDeploy #4599): one layer, top-2, `rows(n)` = `[[2i, 2i+1]]`.
@Suite struct AppendSemanticsTests {
    let schema = try! Schema(layers: 1, topk: 2, experts: 64)

    func rows(_ n: Int) -> [Int32] { (0..<n).flatMap { [Int32(2 * $0), Int32(2 * $0 + 1)] } }

    func stored(_ writer: ArchiveWriter) throws -> [Int32] { try writer.rows(0..<writer.count, as: Int32.self) }

    @Test func evictThenRePrefill() throws {
        let dir = TemporaryDirectory()
        let writer = try ArchiveWriter.create(at: dir.file("a"), schema: schema, blockRows: 4)
        #expect(try writer.append(rows(3), at: 0) == AppendResult(appended: 3, skipped: 0, differing: nil))
        #expect(try writer.append(rows(3), at: 3).appended == 3)
        #expect(try writer.append(rows(7), at: 0, compareOverlap: true) == AppendResult(appended: 1, skipped: 6, differing: 3))
        #expect(try stored(writer) == rows(3) + rows(3) + [12, 13])
    }

    @Test func rePrefillThenClippedDecode() throws {
        let dir = TemporaryDirectory()
        let writer = try ArchiveWriter.create(at: dir.file("a"), schema: schema, blockRows: 2)
        try writer.append(rows(3), at: 0)
        try writer.append(rows(4), at: 0)
        try writer.append(Array(rows(3)[..<4]), at: 4)
        #expect(try stored(writer) == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3])
    }

    @Test func autoregressiveEvictLongerRePrefill() throws {
        let dir = TemporaryDirectory()
        let writer = try ArchiveWriter.create(at: dir.file("a"), schema: schema)
        try writer.append(rows(3), at: 0)
        try writer.append(rows(1), at: 3)
        try writer.append(rows(5), at: 0)
        #expect(try stored(writer) == [0, 1, 2, 3, 4, 5, 0, 1, 8, 9])
    }

    @Test func chunkedPrefillWithCoveredBatch() throws {
        let dir = TemporaryDirectory()
        let writer = try ArchiveWriter.create(at: dir.file("a"), schema: schema)
        try writer.append(rows(3), at: 0)
        try writer.append(rows(3), at: 3)
        #expect(try writer.append(rows(1), at: 5) == AppendResult(appended: 0, skipped: 1, differing: nil))
        #expect(writer.count == 6)
    }

    @Test func gapIsRefusedAndNothingStored() throws {
        let dir = TemporaryDirectory()
        let writer = try ArchiveWriter.create(at: dir.file("a"), schema: schema)
        try writer.append(rows(3), at: 0)
        try writer.sync()
        let before = fileBytes(dir.file("a"))
        #expect(throws: ArchiveError.gap(path: dir.file("a"), start: 5, count: 3)) { try writer.append(rows(2), at: 5) }
        #expect(writer.count == 3)
        #expect(fileBytes(dir.file("a")) == before)
        #expect("\(ArchiveError.gap(path: "x", start: 5, count: 3))".contains("5"))
    }

    @Test func badIDsAreRefusedWithTheirPositionAndNothingStored() throws {
        let dir = TemporaryDirectory()
        let schema = try Schema(layers: 3, topk: 2, experts: 10, denseLayers: [1])
        let writer = try ArchiveWriter.create(at: dir.file("a"), schema: schema, blockRows: 2)
        try writer.append([Int32](repeating: 1, count: 6 * 3), at: 0)
        var batch = [Int32](repeating: 2, count: 6 * 4)
        batch[2 * 6 + 4 + 1] = 10
        #expect(throws: ArchiveError.invalidRows(path: dir.file("a"), position: 3, reason: "expert id 10 at layer 2, slot 1 is outside [0, 10)")) {
            try writer.append(batch, at: 1)
        }
        batch[2 * 6 + 4 + 1] = 2
        batch[6 * 3] = -3
        #expect(throws: ArchiveError.self) { try writer.append(batch, at: 3) }
        #expect(writer.count == 3)
        batch[6 * 3] = 2
        batch[2] = 0xFFFF // dense layer: anything goes, reads back as 0
        try writer.append(batch, at: 3)
        #expect(try writer.rows(3..<4, as: Int32.self) == [2, 2, 0, 0, 2, 2])
        #expect(throws: ArchiveError.self) { try writer.append([Int32](repeating: 0, count: 5), at: 7) }
    }

    /// Decode steps (batches that only fill the pending block) are checked as they are copied
    /// into it: a bad id anywhere is named and nothing is kept, whether or not the row would
    /// complete a block; valid ids whose OR reaches the expert count (10 = 8 | 2) pass.
    @Test func badIDsOfADecodeStepAreRefusedAndNothingKept() throws {
        let dir = TemporaryDirectory()
        let schema = try Schema(layers: 3, topk: 2, experts: 10)
        let path = dir.file("a")
        let writer = try ArchiveWriter.create(at: path, schema: schema, blockRows: 4)
        var stored: [Int64] = []
        for step in 0..<9 {
            let row: [Int64] = [8, 2, Int64(step % 10), 1, 9, 0]
            for (slot, bad) in [(0, Int64(10)), (5, -1), (3, Int64(1) << 40), (4, Int64.min)] {
                var wrong = row
                wrong[slot] = bad
                let before = fileBytes(path)
                #expect(throws: ArchiveError.invalidRows(path: path, position: step,
                                                         reason: "expert id \(bad) at layer \(slot / 2), slot \(slot % 2) is outside [0, 10)")) {
                    try writer.append(wrong, at: step)
                }
                #expect(writer.count == step && fileBytes(path) == before, "step \(step): nothing kept")
            }
            try writer.append(row, at: step)
            stored += row
        }
        // Two rows at once, the second bad, as the pending block fills: neither is kept.
        #expect(throws: ArchiveError.self) { try writer.append([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 10] as [UInt16], at: 9) }
        #expect(writer.count == 9)
        try writer.flush()
        #expect(try ArchiveReader(path: path).rows(0..<9, as: Int64.self) == stored)
    }

    @Test func truncateIsDurableAndAppendContinuesThere() throws {
        let dir = TemporaryDirectory()
        let writer = try ArchiveWriter.create(at: dir.file("a"), schema: schema, blockRows: 4)
        try writer.append(rows(10), at: 0)
        try writer.truncate(to: 6)
        #expect(writer.count == 6)
        try writer.append(rows(3), at: 6)
        try writer.truncate(to: 8) // inside the buffer
        #expect(try stored(writer) == rows(6) + rows(2))
        #expect(throws: ArchiveError.self) { try writer.truncate(to: 9) }
        try writer.close()
        let reader = try ArchiveReader(path: dir.file("a"))
        #expect(try reader.rows(0..<reader.count, as: Int32.self) == rows(6) + rows(2))
    }

    @Test func reopenResumesAtTheRowCountWithSchemaAndMetadata() throws {
        let dir = TemporaryDirectory()
        let schema = try Schema(layers: 5, topk: 3, experts: 300, denseLayers: [0])
        var synth = TraceSynthesizer(schema: schema, seed: 9)
        let all = synth.rows(1000, as: Int64.self)
        let meta = ["model": "Qwen3-30B-A3B", "request": "r-17", "ünïcode": "✓"]
        do {
            let writer = try ArchiveWriter.create(at: dir.file("a"), schema: schema, metadata: meta, blockRows: 64)
            try writer.append(Array(all[..<(400 * 15)]), at: 0)
        }
        let writer = try ArchiveWriter.open(at: dir.file("a"))
        #expect(writer.count == 400 && writer.schema == schema && writer.metadata == meta && writer.blockRows == 64)
        try writer.append(Array(all[(300 * 15)...]), at: 300)
        try writer.close()
        let reader = try ArchiveReader(path: dir.file("a"))
        #expect(reader.count == 1000)
        #expect(try reader.rows(0..<1000, as: Int64.self) == all.rows(of: 15).flatMap { row in row.enumerated().map { $0.offset < 3 ? 0 : $0.element } })
    }

    @Test func secondWriterIsRefused() throws {
        let dir = TemporaryDirectory()
        let writer = try ArchiveWriter.create(at: dir.file("a"), schema: schema)
        #expect(throws: ArchiveError.locked(path: dir.file("a"))) { try ArchiveWriter.open(at: dir.file("a")) }
        #expect(throws: ArchiveError.exists(path: dir.file("a"))) { try ArchiveWriter.create(at: dir.file("a"), schema: schema) }
        #expect(throws: ArchiveError.locked(path: dir.file("a"))) { try ArchiveWriter.create(at: dir.file("a"), schema: schema, overwrite: true) }
        try writer.close()
        _ = try ArchiveReader(path: dir.file("a"))
    }

    /// 128K rows of a long-context session against the in-memory model: chunked prefill,
    /// evictions at random points with re-prefill from 0, speculative decode with random
    /// acceptance, truncations, and a reopen after every operation.
    @Test func longContextSessionMatchesTheModel() throws {
        let dir = TemporaryDirectory()
        let schema = try Schema(layers: 4, topk: 2, experts: 64)
        var synth = TraceSynthesizer(schema: schema, seed: 11)
        let width = schema.idsPerRow, total = 131_072
        let truth = synth.rows(total + 1024, as: Int64.self).rows(of: width)
        var random = SplitMix64(seed: 12)
        var model = ReferenceModel()
        var writer: ArchiveWriter? = try ArchiveWriter.create(at: dir.file("a"), schema: schema, blockRows: 512)
        var operations = 0
        // Each history position's "true" routing; a re-prefill resends it, a re-routing differs.
        func batch(_ range: Range<Int>, rerouted: Bool = false) -> [[Int64]] {
            range.map { p in rerouted ? truth[p].map { ($0 + 1) % 64 } : truth[p] }
        }
        while model.rows.count < total {
            let count = model.rows.count
            let action = Int.random(in: 0..<100, using: &random)
            var expected: (Int, Int)?
            var result: AppendResult?
            switch action {
            case 0..<10: // chunked prefill chunk at the history's length
                let chunk = batch(count..<count + Int.random(in: 1...4096, using: &random))
                expected = model.append(chunk, at: count)
                result = try writer!.append(chunk.flatMap { $0 }, at: count)
            case 10..<13: // eviction, then re-prefill from 0 (possibly re-routed, possibly longer)
                let longer = Int.random(in: 0...64, using: &random)
                let chunk = batch(0..<count + longer, rerouted: Bool.random(using: &random))
                expected = model.append(chunk, at: 0)
                result = try writer!.append(chunk.flatMap { $0 }, at: 0, compareOverlap: true)
            case 13..<15: // rollback
                let n = Int.random(in: max(0, count - 300)...count, using: &random)
                model.truncate(to: n)
                try writer!.truncate(to: n)
            case 15..<17: // a gap is refused
                #expect(throws: ArchiveError.self) { try writer!.append(batch(count + 1..<count + 2).flatMap { $0 }, at: count + 1) }
            default: // speculative decode: 1 + accepted draft tokens
                let accepted = 1 + Int.random(in: 0...4, using: &random)
                let chunk = batch(count..<count + accepted)
                expected = model.append(chunk, at: count)
                result = try writer!.append(chunk.flatMap { $0 }, at: count)
            }
            if let expected, let result {
                #expect(result.appended == expected.0 && result.skipped == expected.1)
            }
            #expect(writer!.count == model.rows.count)
            operations += 1
            if operations % 7 == 0 { // reopen: a session snapshot resumes where it was
                try writer!.close()
                writer = nil
                writer = try ArchiveWriter.open(at: dir.file("a"))
                #expect(writer!.count == model.rows.count)
            }
        }
        #expect(try writer!.rows(0..<model.rows.count, as: Int64.self) == model.rows.flatMap { $0 })
        try writer!.close()
        let reader = try ArchiveReader(path: dir.file("a"))
        #expect(try reader.rows(0..<reader.count, as: Int64.self) == model.rows.flatMap { $0 })
        #expect(reader.verify().isEmpty)
    }
}

@Suite struct CheckpointTests {
    @Test func rollbackRestoresTheFileByteForByte() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let schema = try Schema(layers: 2, topk: 2, experts: 16)
        let truth = PositionalRows(schema: schema, seed: 1)
        let writer = try ArchiveWriter.create(at: path, schema: schema, blockRows: 8)
        try writer.append(truth.rows(0..<13, as: Int32.self))
        try writer.sync()
        try writer.append(truth.rows(13..<15, as: Int32.self)) // buffered
        let before = fileBytes(path)
        let mark = writer.checkpoint()
        try writer.append(truth.rows(15..<40, as: Int32.self))
        try writer.flush()
        try writer.rollback(to: mark)
        #expect(fileBytes(path) == before)
        #expect(writer.count == 15)
        #expect(try writer.rows(0..<15, as: Int32.self) == truth.rows(0..<15, as: Int32.self))
        try writer.append(truth.rows(15..<20, as: Int32.self))
        try writer.close()
        #expect(try ArchiveReader(path: path).rows(0..<20, as: Int32.self) == truth.rows(0..<20, as: Int32.self))
    }
}

@Suite struct ParallelEncodingTests {
    /// Blocks encoded on several threads give the same file as on one, and a bad id anywhere
    /// in a large batch still stores nothing.
    @Test func threadsChangeNothingButSpeed() throws {
        let dir = TemporaryDirectory()
        let schema = try Schema(layers: 8, topk: 4, experts: 64)
        var synth = TraceSynthesizer(schema: schema, seed: 4)
        let rows = synth.rows(20_000, as: Int32.self)
        var files: [[UInt8]] = []
        for threads in [1, 2, 3] {
            let path = dir.file("t\(threads)")
            let writer = try ArchiveWriter.create(at: path, schema: schema, blockRows: 256)
            writer.encodingThreads = threads
            try writer.append(Array(rows[..<(100 * 32)]), at: 0)     // some rows buffered first
            try writer.append(Array(rows[(100 * 32)...]), at: 100)
            var bad = Array(rows[..<(10_000 * 32)])
            bad[7_000 * 32 + 5] = 64
            #expect(throws: ArchiveError.invalidRows(path: path, position: 27_000, reason: "expert id 64 at layer 1, slot 1 is outside [0, 64)")) {
                try writer.append(bad, at: 20_000)
            }
            #expect(writer.count == 20_000)
            try writer.close()
            files.append(fileBytes(path))
            #expect(try ArchiveReader(path: path).rows(0..<20_000, as: Int32.self) == rows)
        }
        #expect(files[0] == files[1] && files[1] == files[2])
    }
}

import ExpertCodec
import Foundation
import Testing
@testable import Archive

/// The outcome vectors of spec/FORMAT.md Appendix B, read by the library:
///
/// - `spec/vectors/blocks/`: malformed LZ4 blocks and the reader choices of 1.4 and 1.5.6. A row
///   read (content checksum skipped) and a whole-block check each give the reference's outcome,
///   one the spec allows (`reader_must`).
/// - `spec/vectors/archive/*.archive`: every archive vector opens with the rows and tail of its JSON.
/// - `spec/vectors/archive/damaged/`: damaged, cut and edited copies of the 2.9 vectors, in both
///   format versions: each opens or not as its outcome says, at the offset it names, with its
///   rows and tail, the reads it lists failing and `verify()` reporting what it lists.
///
/// `scripts/make-vectors` writes them: the damaged copies and the blocks with
/// `spec/vectors/make_outcome_vectors.py`, the archives with `make-vectors`.
@Suite struct OutcomeSpecVectorTests {
    static let vectors = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("spec/vectors", isDirectory: true)

    static func json(_ path: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(contentsOf: vectors.appendingPathComponent(path)))
    }

    static func outcomes(_ path: String) -> [[String: Any]] {
        (try? json(path)) as? [[String: Any]] ?? []
    }

    static func flatten(_ rows: Any?) -> [UInt16] {
        ((rows as? [[[Int]]]) ?? []).flatMap { $0.flatMap { $0.map { UInt16($0) } } }
    }

    static func schema(_ object: [String: Any]) throws -> Schema {
        let s = object["schema"] as! [String: Any]
        return try Schema(layers: s["layers"] as! Int, topk: s["topk"] as! Int, experts: s["experts"] as! Int,
                          denseLayers: s["dense_layers"] as? [Int] ?? [])
    }

    // MARK: - Blocks

    static var blockOutcomes: [[String: Any]] { outcomes("blocks/outcomes.json") }

    /// Decodes `frame` whole and returns "rows" when it gives `want`, "other rows", or "reject".
    static func decode(_ frame: [UInt8], _ schema: Schema, contentChecksum: Bool, want: [UInt16]) -> String {
        let decoder = BlockDecoder(schema: schema)
        do {
            let ids: [UInt16] = try frame.withUnsafeBytes { bytes in
                let rows = try decoder.open(bytes, contentChecksum: contentChecksum)
                var ids = [UInt16](repeating: 0, count: rows * schema.idsPerRow)
                try ids.withUnsafeMutableBufferPointer { try decoder.decodeRows(0..<rows, into: $0) }
                return ids
            }
            return ids == want ? "rows" : "other rows"
        } catch {
            return "reject"
        }
    }

    @Test(arguments: blockOutcomes.indices)
    func blockOutcome(_ index: Int) throws {
        let o = Self.blockOutcomes[index]
        let file = o["file"] as! String, vectorName = o["vector"] as! String
        let vector = try #require(try Self.json(vectorName + ".json") as? [String: Any])
        let schema = try Self.schema(vector)
        let want = Self.flatten(vector["decoded"] ?? vector["rows"])
        let frame = Array(try Data(contentsOf: Self.vectors.appendingPathComponent("blocks/" + file)))
        let reference = o["reference"] as! String, whole = o["whole_block"] as? String ?? reference
        let allowed: Set<String> = o["reader_must"] as! String == "reject" ? ["reject"] : ["reject", "rows"]
        let read = Self.decode(frame, schema, contentChecksum: false, want: want)
        let checked = Self.decode(frame, schema, contentChecksum: true, want: want)
        #expect(read == reference && allowed.contains(read), "\(file): a row read gives \(read): \(o["rule"]!)")
        #expect(checked == whole, "\(file): a whole-block check gives \(checked): \(o["rule"]!)")

        // 1.5.6: check 7 on the values decoded only: the rows before the bad one read right.
        if let readable = o["readable_rows"] as? Int {
            let decoder = BlockDecoder(schema: schema), width = schema.idsPerRow
            try frame.withUnsafeBytes { bytes in
                let rows = try decoder.open(bytes, contentChecksum: false)
                var ids = [UInt16](repeating: 0, count: readable * width)
                try ids.withUnsafeMutableBufferPointer { try decoder.decodeRows(0..<readable, into: $0) }
                #expect(ids == Array(want[0..<readable * width]))
                var row = [UInt16](repeating: 0, count: width)
                #expect(throws: (any Error).self) {
                    try row.withUnsafeMutableBufferPointer { try decoder.decodeRows(readable..<rows, into: $0) }
                }
            }
        }
    }

    // MARK: - Archives

    static var damagedOutcomes: [[String: Any]] { outcomes("archive/damaged/outcomes.json") }

    static var archiveVectorNames: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: vectors.appendingPathComponent("archive").path)) ?? []
        return names.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }

    /// What `verify()` reports, as the outcome files name it: "block a..<b", "anchor k". The
    /// ignored tail, which `verify()` also reports, is checked apart.
    static func reported(_ reader: ArchiveReader, headerEnd: Int) -> Set<String> {
        var found = Set<String>()
        for problem in reader.verify() {
            guard case let .corrupt(_, offset, reason) = problem, !reason.contains("torn tail") else { continue }
            if let range = reason.range(of: #"rows \d+\.\.<\d+"#, options: .regularExpression) {
                found.insert("block " + reason[range].dropFirst(5))
            } else if reader.formatVersion >= 2, offset == headerEnd || offset == headerEnd + 44 {
                found.insert("anchor \((offset - headerEnd) / 44)")
            } else {
                found.insert("\(offset): \(reason)")
            }
        }
        return found
    }

    /// Checks the archive at `path` against an outcome of Appendix B.
    static func check(_ path: String, _ o: [String: Any], _ name: String) throws {
        let reader: ArchiveReader
        do {
            reader = try ArchiveReader(path: path)
        } catch let ArchiveError.corrupt(_, offset, reason) {
            #expect(o["opens"] as? Bool == false, "\(name): refused at byte \(offset): \(reason)")
            #expect(offset == o["damaged_at"] as? Int, "\(name): refused at byte \(offset), not \(o["damaged_at"] ?? "-"): \(reason)")
            return
        }
        try #require(o["opens"] as? Bool == true, "\(name): opens with \(reader.count) rows, expected damage at \(o["damaged_at"] ?? "-")")
        let rows = o["rows"] as! [[[Int]]], want = flatten(rows), width = reader.schema.idsPerRow
        #expect(reader.count == rows.count, "\(name): \(reader.count) rows, expected \(rows.count)")
        #expect(reader.ignoredTail?.offset == o["tail"] as? Int, "\(name): tail \(reader.ignoredTail.map { "\($0)" } ?? "none")")
        guard reader.count == rows.count else { return }
        let unreadable = Set((o["unreadable"] as? [[Int]] ?? []).map { $0[0]..<$0[1] })
        for block in reader.blocks {
            let live = block.position..<block.position + block.rows
            let stored = block.position..<block.position + block.storedRows
            if unreadable.contains(stored) {
                #expect(throws: ArchiveError.self, "\(name): rows \(stored) read") { try reader.rows(live, as: UInt16.self) }
            } else {
                #expect(try reader.rows(live, as: UInt16.self) == Array(want[live.lowerBound * width..<live.upperBound * width]),
                        "\(name): rows \(live)")
            }
        }
        let head = fileBytes(path), headerEnd = 8 + (0..<4).reduce(0) { $0 | Int(head[4 + $1]) << (8 * $1) }
        #expect(reported(reader, headerEnd: headerEnd) == Set(o["verify"] as? [String] ?? []), "\(name): verify()")
    }

    @Test(arguments: archiveVectorNames)
    func archiveVectorOpensWithItsRowsAndTail(_ name: String) throws {
        let vector = try #require(try Self.json("archive/\(name).json") as? [String: Any])
        var outcome: [String: Any] = ["opens": true, "rows": vector["rows"]!, "verify": [String]()]
        outcome["tail"] = vector["tail"]
        try Self.check(Self.vectors.appendingPathComponent("archive/\(name).archive").path, outcome, name)
    }

    @Test(arguments: damagedOutcomes.indices)
    func damagedArchiveOutcome(_ index: Int) throws {
        let o = Self.damagedOutcomes[index], file = o["file"] as! String
        try Self.check(Self.vectors.appendingPathComponent("archive/damaged/" + file).path, o, "\(file) (\(o["change"]!))")
    }

    /// Every file of the outcome directories is listed in its outcomes.json, and both format
    /// versions are covered.
    @Test func everyOutcomeVectorIsListed() throws {
        for (directory, ext, list) in [("blocks", ".lz4", Self.blockOutcomes), ("archive/damaged", ".archive", Self.damagedOutcomes)] {
            let files = try FileManager.default.contentsOfDirectory(atPath: Self.vectors.appendingPathComponent(directory).path)
                .filter { $0.hasSuffix(ext) }
            #expect(Set(files) == Set(list.map { $0["file"] as! String }), "\(directory)")
            #expect(!files.isEmpty)
        }
        let bases = Set(Self.damagedOutcomes.map { $0["base"] as! String })
        #expect(bases == ["small.archive", "small-v2.archive"])
        #expect(Self.archiveVectorNames.contains("compact-dense"))
    }
}

import Archive
import Foundation
import VectorRecipes

/// The archive vectors of `spec/vectors/archive` the library writes (FORMAT.md Part 2):
/// `small-v2.{archive,json}` (2.9's worked example, format version 2) and
/// `compact-dense.{archive,json}` (codec 2, a dense layer, a torn tail). `small.archive` (format
/// version 1) is kept as written then, and the damaged copies come from make_outcome_vectors.py.
enum ArchiveVectors {
    static func write(to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try writeSmall(to: directory)
        try writeCompactDense(to: directory)
    }

    /// `small-v2.archive` as `SmallArchiveRecipe` builds it, and its JSON: the header, the anchors,
    /// every record and live block as the file holds them, and the rows.
    static func writeSmall(to directory: URL) throws {
        let scratch = try Scratch(), path = scratch.file("small-v2.archive")
        try SmallArchiveRecipe.build(at: path)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let log = LogWalk(bytes)
        let reader = try ArchiveReader(path: path)
        guard try reader.rows(0..<reader.count, as: Int64.self) == SmallArchiveRecipe.expectedRows.flatMap({ $0.flatMap { $0 } }) else {
            throw GeneratorError("small-v2: the archive does not read back as the recipe's rows")
        }
        func row(_ r: [[Int64]]) -> String { "[" + r.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" }.joined(separator: ", ") + "]" }
        let recordKinds = [1: "rows", 2: "truncate", 3: "commit"]
        var json = """
        {
          "name": "small-v2",
          "description": "FORMAT.md 2.9 worked example, format version 2 (commit anchors): 2 layers x top-2 of 16 experts, 4-row blocks; 6 rows appended, truncated to 5, 1 row appended, closed",
          "schema": {"layers": 2, "topk": 2, "experts": 16, "dense_layers": []},
          "metadata": {"model": "demo"},
          "block_rows": 4,
          "operations": [
        \(SmallArchiveRecipe.operations.map { "    \"\($0)\"" }.joined(separator: ",\n"))
          ],
          "file_bytes": \(bytes.count),
          "header_bytes": \(log.headerEnd),
          "anchors": [

        """
        json += log.anchors.map { "    {\"sequence\": \($0.sequence), \"log_end\": \($0.logEnd), \"rows\": \($0.rows), \"last_record_crc\": \($0.lastRecordCRC)}" }
            .joined(separator: ",\n")
        json += "\n  ],\n  \"header_crc\": \(LogWalk.u32(bytes, log.headerEnd - 4)),\n  \"records\": [\n"
        json += log.records.map { r in
            "    {\"offset\": \(r.offset), \"kind\": \(r.kind), \"kind_name\": \"\(recordKinds[r.kind]!)\", \"frame_length\": \(r.frameLength), "
                + "\"position\": \(r.position), \"rows\": \(r.rows), \"synced_length\": \(r.syncedLength)}"
        }.joined(separator: ",\n")
        json += "\n  ],\n  \"blocks\": [\n"
        json += reader.blocks.map { b in
            "    {\"position\": \(b.position), \"rows\": \(b.rows), \"stored_rows\": \(b.storedRows), \"record_offset\": \(b.recordOffset), "
                + "\"frame_offset\": \(b.frameOffset), \"frame_length\": \(b.frameLength)}"
        }.joined(separator: ",\n")
        json += "\n  ],\n  \"rows\": [\n"
        json += SmallArchiveRecipe.expectedRows.map { "    " + row($0) }.joined(separator: ",\n")
        json += "\n  ]\n}\n"
        try Data(bytes).write(to: directory.appendingPathComponent("small-v2.archive"))
        try Data(json.utf8).write(to: directory.appendingPathComponent("small-v2.json"))
    }

    /// 4 layers (layer 1 dense) x top-2 of 40 experts, codec 2, 16-row blocks. Row t, layer l,
    /// slot s is `(t / 3 + 5 l + 7 s) mod 40` (runs of 3 equal rows, for the escape symbol); the
    /// dense layer holds 65535 as an engine writes it and reads as 0.
    static let compactSchema = try! Schema(layers: 4, topk: 2, experts: 40, denseLayers: [1])
    static func compactRow(_ t: Int) -> [[Int]] {
        (0..<4).map { l in (0..<2).map { s in l == 1 ? 65535 : (t / 3 + 5 * l + 7 * s) % 40 } }
    }

    /// `compact-dense.{archive,json}`: 40 rows appended and synced (two full blocks and a short
    /// one, vouched for), then 16 more rows whose block is cut 20 bytes into its frame, as a
    /// crash leaves it: a torn tail at that record.
    static func writeCompactDense(to directory: URL) throws {
        let scratch = try Scratch(), path = scratch.file("compact")
        let writer = try ArchiveWriter.create(at: path, schema: compactSchema, metadata: ["model": "compact-demo"],
                                              blockRows: 16, codec: .compact)
        try writer.append((0..<40).flatMap { compactRow($0).flatMap { $0.map { UInt16($0) } } }, at: 0)
        try writer.sync()
        let synced = try Data(contentsOf: URL(fileURLWithPath: path)).count
        try writer.append((40..<56).flatMap { compactRow($0).flatMap { $0.map { UInt16($0) } } }, at: 40)
        let torn = Array(try Data(contentsOf: URL(fileURLWithPath: path))[0..<synced + 44 + 20])
        try writer.close()
        let decoded = (0..<40).map { t in compactRow(t).enumerated().map { l, slots in l == 1 ? [0, 0] : slots } }
        let vector: [String: Any] = [
            "name": "compact-dense",
            "description": "codec 2 (layout 2 blocks), 4 layers of which layer 1 is dense, top-2 of 40 experts, 16-row "
                + "blocks: rows 0..<40 appended and synced, then a 16-row block cut 20 bytes into its frame (a torn tail)",
            "schema": ["layers": 4, "topk": 2, "experts": 40, "dense_layers": [1]],
            "metadata": ["model": "compact-demo"], "block_rows": 16, "codec": 2,
            "rows": decoded, "tail": synced,
        ]
        try Data(torn).write(to: directory.appendingPathComponent("compact-dense.archive"))
        try JSONSerialization.data(withJSONObject: vector, options: [.sortedKeys])
            .write(to: directory.appendingPathComponent("compact-dense.json"))
    }
}

/// The header end, commit anchors and records of an intact archive file, read as FORMAT.md 2.3,
/// 2.3a and 2.4 lay them out (`ArchiveSpecTests` checks the JSON against its reader from the spec).
struct LogWalk {
    struct Anchor { let sequence: UInt64, logEnd: Int, rows: Int, lastRecordCRC: UInt32 }
    struct Record { let offset: Int, kind: Int, frameLength: Int, position: Int, rows: Int, syncedLength: Int }

    let headerEnd: Int
    private(set) var anchors: [Anchor] = []
    private(set) var records: [Record] = []

    init(_ f: [UInt8]) {
        headerEnd = 8 + Int(Self.u32(f, 4))
        var at = headerEnd
        // Version 2: two 44-byte commit anchor frames follow the header.
        if Self.u32(f, at) == 0x184D_2A5D {
            for slot in 0..<2 {
                let c = at + 44 * slot + 8
                anchors.append(Anchor(sequence: Self.u64(f, c), logEnd: Int(Self.u64(f, c + 8)), rows: Int(Self.u64(f, c + 16)),
                                      lastRecordCRC: Self.u32(f, c + 24)))
            }
            at += 88
        }
        while at + 44 <= f.count, Self.u32(f, at) == 0x184D_2A5F {
            let c = at + 8
            let record = Record(offset: at, kind: Int(f[c]), frameLength: Int(Self.u32(f, c + 4)), position: Int(Self.u64(f, c + 8)),
                                rows: Int(Self.u32(f, c + 16)), syncedLength: Int(Self.u64(f, c + 24)))
            records.append(record)
            at += 44 + record.frameLength
        }
    }

    static func u32(_ p: [UInt8], _ at: Int) -> UInt32 {
        UInt32(p[at]) | UInt32(p[at + 1]) << 8 | UInt32(p[at + 2]) << 16 | UInt32(p[at + 3]) << 24
    }
    static func u64(_ p: [UInt8], _ at: Int) -> UInt64 { UInt64(u32(p, at)) | UInt64(u32(p, at + 4)) << 32 }
}

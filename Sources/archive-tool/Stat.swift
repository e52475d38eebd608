import Archive
import ArgumentParser
import Foundation
import SystemFile

struct Stat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe an archive: schema, rows, blocks, size, compression ratios, metadata.",
        discussion: """
            Ratios compare the file with the same rows as int32 (rows x layers x topk x 4 \
            bytes, what engines often hand out) and at the minimal fixed width (rows x MoE \
            layers x topk x bit width / 8). Sizes are shown in KiB/MiB/GiB with the exact byte \
            count. --json prints one JSON object (sorted keys) with rows, layers, topk, experts, \
            bit_width, dense_layers, blocks, block_rows, codec, file_bytes, int32_bytes, \
            fixed_width_bytes, ratio_int32, ratio_fixed_width (null without rows), metadata.

            EXAMPLES:
              archive-tool stat trace.moe
              archive-tool stat trace.moe --json | jq .ratio_int32

            \(ExitStatus.helpSection)
            """
    )

    static func codecName(_ codec: BlockCodec) -> String { codec.summary }

    @Argument(help: ArgumentHelp("The archive to describe.", valueName: "archive"))
    var archive: String

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        try reportingFailures {
            let reader = try ArchiveReader(path: archive)
            let schema = reader.schema
            let fileBytes = max((FileSystem.size(of: archive) ?? 0), reader.fileBytes)
            let rows = reader.count
            let int32Bytes = rows * schema.idsPerRow * 4
            let fixedWidthBytes = (rows * schema.storedIDsPerRow * schema.bitWidth + 7) / 8
            let ratioInt32 = Double(int32Bytes) / Double(max(fileBytes, 1))
            let ratioFixed = Double(fixedWidthBytes) / Double(max(fileBytes, 1))
            let blocks = reader.blocks.count
            if json {
                var object: [String: Any] = [
                    "path": archive,
                    "rows": rows,
                    "layers": schema.layers,
                    "topk": schema.topk,
                    "experts": schema.experts,
                    "bit_width": schema.bitWidth,
                    "dense_layers": schema.denseLayers,
                    "moe_layers": schema.moeLayers.count,
                    "blocks": blocks,
                    "block_rows": reader.blockRows,
                    "codec": Self.codecName(reader.codec),
                    "file_bytes": fileBytes,
                    "int32_bytes": int32Bytes,
                    "fixed_width_bytes": fixedWidthBytes,
                    // No rows, no ratio (not a ratio of 0).
                    "ratio_int32": rows > 0 ? rounded(ratioInt32) as Any : NSNull(),
                    "ratio_fixed_width": rows > 0 ? rounded(ratioFixed) as Any : NSNull(),
                    "metadata": reader.metadata,
                ]
                if let tail = reader.ignoredTail {
                    object["ignored_tail"] = ["offset": tail.offset, "bytes": fileBytes - tail.offset, "reason": tail.reason] as [String: Any]
                }
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
                try StandardOutput.write(String(decoding: data, as: UTF8.self) + "\n")
                return
            }
            var lines = [archive]
            func line(_ label: String, _ value: String) {
                lines.append("  " + label.padding(toLength: 13, withPad: " ", startingAt: 0) + value)
            }
            line("schema", "\(schema.layers) layers x top-\(schema.topk) of \(schema.experts) experts, \(schema.bitWidth)-bit ids")
            line("dense layers", schema.denseLayers.isEmpty ? "none" : "\(Units.list(schema.denseLayers)) (\(schema.moeLayers.count) MoE layers stored)")
            line("rows", Units.grouped(rows))
            line("blocks", "\(Units.grouped(blocks)) of up to \(Units.grouped(reader.blockRows)) rows")
            line("codec", Self.codecName(reader.codec))
            line("file", Units.bytesExact(fileBytes))
            if rows > 0 {
                line("vs int32", "\(Units.ratio(ratioInt32)) (as int32: \(Units.bytesExact(int32Bytes)))")
                line("vs \(schema.bitWidth)-bit", "\(Units.ratio(ratioFixed)) (at the fixed width of \(schema.bitWidth) bits: \(Units.bytesExact(fixedWidthBytes)))")
            } else {
                line("ratio", "none (no rows)")
            }
            if let tail = reader.ignoredTail {
                line("torn tail", "\(Units.bytesExact(fileBytes - tail.offset)) at byte \(tail.offset) ignored: \(tail.reason)")
            }
            if reader.metadata.isEmpty {
                line("metadata", "none")
            } else {
                for (i, key) in reader.metadata.keys.sorted().enumerated() {
                    line(i == 0 ? "metadata" : "", "\(key) = \(reader.metadata[key]!)")
                }
            }
            try StandardOutput.write(lines.joined(separator: "\n") + "\n")
        }
    }

    private func rounded(_ value: Double) -> Double { (value * 10000).rounded() / 10000 }
}

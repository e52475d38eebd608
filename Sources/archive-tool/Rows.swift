import Archive
import ArgumentParser

struct Rows: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print rows of an archive as text, one line per token position.",
        discussion: """
            Each line is the position, then the ids of each layer (top-k slots separated by \
            spaces, layers by ' | '). Dense layers print as 0.

            EXAMPLES:
              archive-tool rows trace.moe --rows 0:10
              archive-tool rows trace.moe --rows=-5:
              archive-tool rows trace.moe --rows 100:101 --layer-ids 3

            \(ExitStatus.helpSection)
            """
    )

    @Argument(help: ArgumentHelp("The archive to read.", valueName: "archive"))
    var archive: String

    @OptionGroup var rows: RowRangeOption

    @Option(name: .customLong("layer-ids"), parsing: .unconditional, help: ArgumentHelp("Print only this layer's ids.", valueName: "layer"))
    var layer: Int?

    func run() throws {
        try reportingFailures {
            let reader = try ArchiveReader(path: archive)
            let schema = reader.schema
            let range = try rows.resolve(count: reader.count, archive: archive)
            if let layer, !(0..<schema.layers).contains(layer) {
                throw ToolFailure(.badInput, "\(archive): --layer-ids \(layer) is outside its layers 0..<\(schema.layers)")
            }
            let layers = layer.map { [$0] } ?? Array(0..<schema.layers)
            let chunkRows = 4096, perRow = schema.idsPerRow, topk = schema.topk
            var buffer = [UInt16](repeating: 0, count: min(chunkRows, max(range.count, 1)) * perRow)
            var position = range.lowerBound
            while position < range.upperBound {
                let end = min(range.upperBound, position + chunkRows)
                try buffer.withUnsafeMutableBufferPointer { all in
                    try reader.read(position..<end, into: UnsafeMutableBufferPointer(rebasing: all[..<((end - position) * perRow)]))
                }
                var text = ""
                for r in 0..<(end - position) {
                    text += "\(position + r):"
                    for (i, layer) in layers.enumerated() {
                        text += i == 0 ? " " : " | "
                        let base = r * perRow + layer * topk
                        text += (0..<topk).map { String(buffer[base + $0]) }.joined(separator: " ")
                    }
                    text += "\n"
                }
                try StandardOutput.write(text)
                position = end
            }
        }
    }
}

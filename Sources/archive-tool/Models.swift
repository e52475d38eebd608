import Archive
import ArgumentParser
import TraceSynth

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the model shapes synth knows, with their row sizes.",
        discussion: """
            For each model: layers, top-k, experts, dense layers, the bit width of an id, and \
            the bytes of one token's row as int32 and at the minimal fixed width.

            EXAMPLES:
              archive-tool models

            \(ExitStatus.helpSection)
            """
    )

    func run() throws {
        try reportingFailures {
            let header = ["model", "layers", "topk", "experts", "dense", "bits/id", "int32 B/token", "packed B/token"]
            var table = [header]
            for shape in ModelShape.all {
                let schema = try shape.schema()
                table.append([
                    shape.name, "\(schema.layers)", "\(schema.topk)", "\(schema.experts)",
                    schema.denseLayers.isEmpty ? "-" : Units.list(schema.denseLayers),
                    "\(schema.bitWidth)", "\(schema.idsPerRow * 4)",
                    "\((schema.storedIDsPerRow * schema.bitWidth + 7) / 8)",
                ])
            }
            let widths = header.indices.map { column in table.map { $0[column].count }.max() ?? 0 }
            for row in table {
                let cells = row.enumerated().map { column, cell in
                    let pad = String(repeating: " ", count: widths[column] - cell.count)
                    return column == 0 ? cell + pad : pad + cell
                }
                try StandardOutput.write(cells.joined(separator: "  ") + "\n")
            }
        }
    }
}

import Archive

/// The recipe of `spec/vectors/archive/small-v2.archive` (FORMAT.md 2.9's worked example): what
/// `scripts/make-vectors` writes the vector with, and what `ArchiveSpecTests` rebuilds to check
/// that the library still writes those bytes.
public enum SmallArchiveRecipe {
    public static let schema = try! Schema(layers: 2, topk: 2, experts: 16)
    public static let metadata = ["model": "demo"]
    public static let blockRows = 4
    /// Rows 0-5 as first appended: row p is `[[p, p+1], [3p+2, 3p+5]]` (mod 16).
    public static let firstRows: [[[Int64]]] = [
        [[0, 1], [2, 5]], [[1, 2], [5, 8]], [[2, 3], [8, 11]],
        [[3, 4], [11, 14]], [[4, 5], [14, 1]], [[5, 6], [1, 4]],
    ]
    /// The row appended at position 5 after the truncation, replacing the dropped one.
    public static let lastRow: [[Int64]] = [[7, 15], [0, 9]]
    public static let operations = [
        "create(schema: 2 layers x top-2 of 16 experts, metadata: {model: demo}, blockRows: 4)",
        "append(rows 0..<6, at: 0)   -> record A: rows 0..<4 (a full block); rows 4, 5 stay buffered",
        "sync()                      -> record B: rows 4..<6 (a short block), fsync; record C: commit of 6 rows, fsync",
        "truncate(to: 5)             -> record D: truncate to 5 (drops row 5), fsync; record E: commit of 5 rows, fsync",
        "append(1 row, at: 5)        -> buffered",
        "close()                     -> record F: row 5 (a short block), fsync; record G: commit of 6 rows, fsync",
    ]
    public static var expectedRows: [[[Int64]]] { Array(firstRows[0..<5]) + [lastRow] }

    /// Writes the archive at `path` with the library, as the recipe above says.
    public static func build(at path: String) throws {
        let writer = try ArchiveWriter.create(at: path, schema: schema, metadata: metadata, blockRows: blockRows)
        try writer.append(firstRows.flatMap { $0.flatMap { $0 } }, at: 0)
        try writer.sync()
        try writer.truncate(to: 5)
        try writer.append(lastRow.flatMap { $0 }, at: 5)
        try writer.close()
    }
}

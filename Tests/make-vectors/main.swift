// make-vectors: writes the vectors of spec/vectors that Swift code makes. scripts/make-vectors
// runs it, then spec/vectors/make_outcome_vectors.py; the tests only read the files. Not a user tool.
//
//   make-vectors DIRECTORY     DIRECTORY is spec/vectors: its block vectors, compact/ and archive/
import Foundation

struct GeneratorError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A scratch directory for the archives before they are copied into the vectors, removed after.
final class Scratch {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("make-vectors-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { path + "/" + name }
}

let arguments = CommandLine.arguments
guard arguments.count == 2 else {
    FileHandle.standardError.write(Data("usage: make-vectors SPEC_VECTORS_DIRECTORY\n".utf8))
    exit(64)
}
let root = URL(fileURLWithPath: arguments[1], isDirectory: true)
do {
    try BlockVectors.write(to: root)
    try CompactVectors.write(to: root.appendingPathComponent("compact", isDirectory: true))
    try ArchiveVectors.write(to: root.appendingPathComponent("archive", isDirectory: true))
} catch {
    FileHandle.standardError.write(Data("make-vectors: \(error)\n".utf8))
    exit(1)
}

import Foundation
import Testing

/// `make-vectors` (what `scripts/make-vectors` runs) writes exactly the vectors stored in
/// `spec/vectors`: the recipes and the code that wrote them still agree with the files the other
/// tests read.
@Suite(.tags(.processes)) struct VectorGeneratorTests {
    @Test func theGeneratorWritesTheStoredVectors() throws {
        let stored = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("spec/vectors").path
        let dir = TemporaryDirectory()
        let generator = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("make-vectors")
        let (process, _) = try launch(generator.path, [dir.path])
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "make-vectors exited with \(process.terminationStatus)")
        let written = try FileManager.default.subpathsOfDirectory(atPath: dir.path).filter { path in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: dir.file(path), isDirectory: &isDirectory) && !isDirectory.boolValue
        }.sorted()
        #expect(written.count == 6 * 3 + 7 * 3 + 2 * 2, "\(written)")
        for path in written {
            #expect(FileManager.default.contents(atPath: dir.file(path)) == FileManager.default.contents(atPath: stored + "/" + path),
                    "\(path) differs from spec/vectors/\(path)")
        }
    }
}

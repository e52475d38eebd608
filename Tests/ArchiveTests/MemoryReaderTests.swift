import Foundation
import Testing
import Archive
import TraceSynth

/// `ArchiveReader(borrowing:name:)`: an archive's bytes read in place from memory (an object
/// store's buffer, bytes received over a network), and `copyArchive(into:)`, the bytes a reader
/// ships: the same rows, the same checks as a file.
@Suite struct MemoryReaderTests {
    let truth = PositionalRows(schema: crashSchema, seed: 70)

    /// A closed archive of `rows` rows in blocks of 64, a truncation and re-append among them.
    func archive(_ dir: TemporaryDirectory, rows: Int = 1000) throws -> String {
        let path = dir.file("a")
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 64)
        try writer.append(truth.rows(0..<rows, as: Int32.self))
        try writer.truncate(to: rows - 50)
        try writer.append(truth.rows(rows - 50..<rows, as: Int32.self), at: rows - 50)
        try writer.close()
        return path
    }

    @Test func readsTheRowsOfAFileInPlace() throws {
        let dir = TemporaryDirectory()
        let path = try archive(dir)
        let file = try ArchiveReader(path: path)
        let bytes = fileBytes(path)
        try bytes.withUnsafeBytes { memory in
            let reader = try ArchiveReader(borrowing: memory, name: "shipped")
            #expect(reader.count == 1000 && reader.path == "shipped")
            #expect(reader.schema == file.schema && reader.metadata == file.metadata && reader.codec == file.codec)
            #expect(try reader.rows(0..<1000, as: Int32.self) == truth.rows(0..<1000, as: Int32.self))
            #expect(try reader.rows(300..<700, layers: 2..<5, as: UInt8.self) == file.rows(300..<700, layers: 2..<5, as: UInt8.self))
            #expect(reader.verify().isEmpty)
            #expect(try reader.refresh() == false, "memory does not change")
            #expect(reader.count == 1000)
            // The copy of a reader over memory is its bytes.
            var copy = [UInt8](repeating: 0, count: reader.fileBytes)
            try copy.withUnsafeMutableBytes { try reader.copyArchive(into: $0) }
            #expect(copy == bytes)
        }
    }

    /// A prefix cut inside records a commit anchor vouches for is damage; cut past them, a torn
    /// tail (the rows before it are read); a flipped bit is found by a read and by verify; what
    /// is not an archive is refused by name.
    @Test func damageAndTornTailsAsForAFile() throws {
        let dir = TemporaryDirectory()
        let bytes = fileBytes(try archive(dir, rows: 640))
        let reader = try ArchiveReader(path: dir.file("a"))
        Array(bytes[..<(reader.blocks[5].frameOffset + 10)]).withUnsafeBytes { memory in
            let failure = #expect(throws: ArchiveError.self) { try ArchiveReader(borrowing: memory, name: "cut") }
            #expect("\(String(describing: failure))".contains("cut: damaged"))
        }
        let writer = try ArchiveWriter.create(at: dir.file("b"), schema: crashSchema, blockRows: 64)
        try writer.append(truth.rows(0..<320, as: Int32.self))
        try writer.sync()
        try writer.append(truth.rows(320..<640, as: Int32.self))
        try writer.flush()
        let live = try ArchiveReader(path: dir.file("b"))
        try Array(fileBytes(dir.file("b"))[..<(live.blocks[7].frameOffset + 10)]).withUnsafeBytes { memory in
            let torn = try ArchiveReader(borrowing: memory, name: "torn")
            #expect(torn.count == 7 * 64 && torn.ignoredTail != nil)
            #expect(try torn.rows(0..<448, as: Int32.self) == truth.rows(0..<448, as: Int32.self))
        }
        var flipped = bytes
        flipped[reader.blocks[3].frameOffset + reader.blocks[3].frameLength / 2] ^= 0x10
        try flipped.withUnsafeBytes { memory in
            let damaged = try ArchiveReader(borrowing: memory, name: "flipped")
            #expect(throws: ArchiveError.self) { try damaged.rows(3 * 64..<3 * 64 + 1, as: Int32.self) }
            #expect(damaged.verify().count == 1)
            #expect(try damaged.rows(0..<64, as: Int32.self) == truth.rows(0..<64, as: Int32.self))
        }
        for garbage in [[UInt8](), [UInt8](repeating: 7, count: 100), Array(bytes[..<20])] {
            let failure = garbage.withUnsafeBytes { memory in
                #expect(throws: ArchiveError.self) { try ArchiveReader(borrowing: memory, name: "junk") }
            }
            #expect("\(String(describing: failure))".contains("junk"))
        }
    }

    /// A reader of a file ships what it saw at its last refresh, whatever the writer did since:
    /// the copy opens as those rows (its commit anchors are the ones read with them, not the
    /// newer ones in the file, which vouch for bytes the copy does not hold).
    @Test func aCopyIsTheArchiveAsOfTheLastRefresh() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        let writer = try ArchiveWriter.create(at: path, schema: crashSchema, blockRows: 64)
        try writer.append(truth.rows(0..<500, as: Int32.self))
        try writer.sync()
        let reader = try ArchiveReader(path: path)
        try writer.append(truth.rows(500..<900, as: Int32.self))
        try writer.sync()
        try writer.truncate(to: 450)
        func shipped() throws -> [UInt8] {
            var copy = [UInt8](repeating: 0, count: reader.fileBytes)
            try copy.withUnsafeMutableBytes { try reader.copyArchive(into: $0) }
            return copy
        }
        try shipped().withUnsafeBytes { memory in
            let copy = try ArchiveReader(borrowing: memory, name: "copy")
            #expect(copy.count == 500 && copy.verify().isEmpty)
            #expect(try copy.rows(0..<500, as: Int32.self) == truth.rows(0..<500, as: Int32.self))
        }
        try reader.refresh()
        #expect(reader.count == 450)
        try shipped().withUnsafeBytes { memory in
            let copy = try ArchiveReader(borrowing: memory, name: "copy")
            #expect(copy.count == 450 && copy.verify().isEmpty)
            #expect(try copy.rows(0..<450, as: Int32.self) == truth.rows(0..<450, as: Int32.self))
        }
        try writer.close()
        try reader.refresh()
        #expect(try shipped() == fileBytes(path), "after the writer closed, the copy is the file")
        var small = [UInt8](repeating: 0, count: reader.fileBytes - 1)
        #expect(throws: ArchiveError.self) { try small.withUnsafeMutableBytes { try reader.copyArchive(into: $0) } }
    }
}

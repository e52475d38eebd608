import SystemFile
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The layer's own policy, each part on a real file: reads short only at the end, writes
/// whole, errors naming path, operation and errno, the directory sync's directory, exclusive
/// creation, and locks that belong to the open file description.
@Suite("SystemFile: one policy for every call")
struct SystemFileTests {
    @Test("pread and pwrite at offsets; a read is short only where the file ends")
    func readsAndWritesAtOffsets() throws {
        let directory = TemporaryDirectory()
        let file = try FileDescriptor.open(directory.file("f"), .readWrite, options: [.create, .exclusive])
        defer { try? file.close() }
        let bytes = (0..<100).map { UInt8($0) }
        try bytes.withUnsafeBytes { try file.write($0, at: 10) }
        #expect(try file.size() == 110)
        var buffer = [UInt8](repeating: 0xFF, count: 50)
        let got = try buffer.withUnsafeMutableBytes { try file.read(into: $0, at: 80) }
        #expect(got == 30)
        #expect(Array(buffer[..<30]) == Array(bytes[70...]))
        let head = try buffer.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }
        #expect(head == 50 && buffer[..<10].allSatisfy { $0 == 0 } && Array(buffer[10..<50]) == Array(bytes[..<40]))
        try file.resize(to: 5)
        #expect(try file.size() == 5)
        #expect(try file.isRegularFile())
    }

    @Test("a read from a pipe gathers what arrives in pieces until the buffer is full or the writer is gone")
    func readsWholeFromPipes() throws {
        var ends: [Int32] = [-1, -1]
        #expect(pipe(&ends) == 0)
        let reader = FileDescriptor(rawValue: ends[0], path: "pipe"), writer = FileDescriptor(rawValue: ends[1], path: "pipe")
        defer { try? reader.close() }
        for piece in [[UInt8(1), 2, 3], [4, 5], [6]] { try piece.withUnsafeBytes { try writer.write($0) } }
        try writer.close()
        var buffer = [UInt8](repeating: 0, count: 8)
        let got = try buffer.withUnsafeMutableBytes { try reader.read(into: $0) }
        #expect(got == 6 && Array(buffer[..<6]) == [1, 2, 3, 4, 5, 6])
    }

    @Test("a failure names the path, the operation and errno")
    func errorsNameWhatFailed() throws {
        let directory = TemporaryDirectory()
        let missing = directory.file("no/such/file")
        #expect(throws: SystemCallError(path: missing, operation: "open", errno: ENOENT)) {
            try FileDescriptor.open(missing, .readOnly)
        }
        let existing = directory.file("x")
        try FileDescriptor.open(existing, .writeOnly, options: [.create]).close()
        #expect(throws: SystemCallError(path: existing, operation: "open", errno: EEXIST)) {
            try FileDescriptor.open(existing, .readWrite, options: [.create, .exclusive])
        }
        let readOnly = try FileDescriptor.open(existing, .readOnly)
        defer { try? readOnly.close() }
        #expect(throws: SystemCallError(path: existing, operation: "write", errno: EBADF)) {
            try [UInt8(1)].withUnsafeBytes { try readOnly.write($0, at: 0) }
        }
        #expect(SystemCallError(path: existing, operation: "write", errno: EBADF).message == String(cString: strerror(EBADF)))
    }

    @Test("the directory synced is the path's own: '.' for a bare name, '/' at the root, named in errors")
    func syncsTheRightDirectory() throws {
        let directory = TemporaryDirectory()
        try FileSystem.syncDirectory(of: directory.file("anything"))
        try FileSystem.syncDirectory(of: "bare-name")
        try FileSystem.syncDirectory(of: "/at-the-root")
        let missing = directory.file("gone")
        #expect(throws: SystemCallError(path: missing, operation: "open directory", errno: ENOENT)) {
            try FileSystem.syncDirectory(of: missing + "/file")
        }
    }

    @Test("an exclusive create never opens an existing name: it tries the next, and gives up after 100")
    func createsOnlyNewFiles() throws {
        let directory = TemporaryDirectory()
        let taken = directory.file("taken")
        try FileDescriptor.open(taken, .writeOnly, options: [.create]).close()
        var names = [taken, taken, directory.file("free")]
        let file = try FileSystem.createNew(named: { names.removeFirst() }, .readWrite, permissions: 0o600)
        try file.close()
        #expect(file.path == directory.file("free") && names.isEmpty)
        var tries = 0
        #expect(throws: SystemCallError(path: taken, operation: "open", errno: EEXIST)) {
            try FileSystem.createNew(named: { tries += 1; return taken }, .readWrite, permissions: 0o600)
        }
        #expect(tries == 100)
    }

    @Test("locks belong to the open file description: two opens of one file in one process exclude each other")
    func locksExcludeOtherDescriptions() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("locked")
        let first = try FileDescriptor.open(path, .readWrite, options: [.create])
        let second = try FileDescriptor.open(path, .readOnly)
        defer { try? first.close(); try? second.close() }
        #expect(try first.tryLockExclusive())
        #expect(try !second.tryLockExclusive())
        first.unlock()
        #expect(try second.tryLockExclusive())
        second.unlock()
        #if os(Linux)
        let byte = 1 << 62
        #expect(try second.lockByte(at: byte, .shared, wait: false))
        #expect(try !first.lockByte(at: byte, .exclusive, wait: false))
        #expect(try second.lockByte(at: byte, .unlocked, wait: false))
        #expect(try first.lockByte(at: byte, .exclusive, wait: false))
        #expect(try !second.lockByte(at: byte, .shared, wait: false))
        #endif
    }

    @Test("a mapping shows the file's bytes; an empty one maps nothing")
    func mapsFiles() throws {
        let directory = TemporaryDirectory()
        let file = try FileDescriptor.open(directory.file("m"), .readWrite, options: [.create])
        defer { try? file.close() }
        #expect(try MemoryMap(file, count: 0, .shared).bytes.isEmpty)
        try Array("mapped".utf8).withUnsafeBytes { try file.write($0, at: 0) }
        let map = try MemoryMap(file, count: 6, .private)
        map.release(0..<6)
        map.adviseSequential()
        #expect(Array(map.bytes) == Array("mapped".utf8))
    }

    @Test("what is at a path: its kind, whether it exists, its size")
    func describesPaths() throws {
        let directory = TemporaryDirectory()
        let file = directory.file("f"), link = directory.file("dangling")
        try [UInt8](repeating: 7, count: 3).withUnsafeBytes { bytes in
            let descriptor = try FileDescriptor.open(file, .writeOnly, options: [.create])
            defer { try? descriptor.close() }
            try descriptor.write(bytes)
        }
        #expect(symlink(directory.file("nothing"), link) == 0)
        #expect(FileSystem.kind(of: file) == .regular && FileSystem.kind(of: directory.path) == .directory)
        #expect(FileSystem.kind(of: link) == .symbolicLink && FileSystem.exists(link) && !FileSystem.exists(link, followingLinks: true))
        #expect(FileSystem.size(of: file) == 3 && FileSystem.size(of: link) == nil)
        try FileSystem.rename(file, to: directory.file("g"))
        #expect(!FileSystem.exists(file))
        try FileSystem.link(directory.file("g"), to: file)
        #expect(throws: SystemCallError(path: file, operation: "link", errno: EEXIST)) { try FileSystem.link(directory.file("g"), to: file) }
        FileSystem.remove(directory.file("g"))
        FileSystem.remove(directory.file("g"))
        #expect(FileSystem.size(of: file) == 3 && !FileSystem.exists(directory.file("g")))
    }

    @Test("a staged file is installed whole, never over a file that appeared, and removed when not installed")
    func stagedFiles() throws {
        let directory = TemporaryDirectory()
        let destination = directory.file("a.moe")
        let staged = StagedFile(destination: destination)
        #expect(staged.path.hasPrefix(directory.path + "/.a.moe.staged-"))
        try put(Array("new".utf8), at: directory.file(String(staged.path.split(separator: "/").last!)))
        try staged.install(replacing: false)
        #expect(try contents(of: destination) == Array("new".utf8))
        #expect(directory.entries() == ["a.moe"])

        // Without replacing, an existing destination stays; with, it is replaced.
        let second = StagedFile(destination: destination)
        try put(Array("newer".utf8), at: directory.file(String(second.path.split(separator: "/").last!)))
        #expect(throws: PlacementError.destinationExists(path: destination)) { try second.install(replacing: false) }
        #expect(try contents(of: destination) == Array("new".utf8))
        try second.install(replacing: true)
        #expect(try contents(of: destination) == Array("newer".utf8))

        // Not installed: removed on release.
        do {
            let dropped = StagedFile(destination: destination)
            try put(Array("x".utf8), at: directory.file(String(dropped.path.split(separator: "/").last!)))
            #expect(directory.entries().count == 2)
        }
        #expect(directory.entries() == ["a.moe"])
    }

    @Test("only a regular file, or nothing, may be replaced")
    func replacesOnlyRegularFiles() throws {
        let directory = TemporaryDirectory()
        let file = directory.file("file"), fifo = directory.file("fifo"), link = directory.file("link")
        try put(Array("x".utf8), at: file)
        #expect(mkfifo(fifo, 0o600) == 0 && symlink(file, link) == 0)
        try FileSystem.checkReplaceable(file)
        try FileSystem.checkReplaceable(directory.file("nothing"))
        for (path, kind) in [(fifo, "FIFO"), (link, "symbolic link"), (directory.path, "directory")] {
            #expect(throws: PlacementError.notRegularFile(path: path, kind: kind)) { try FileSystem.checkReplaceable(path) }
        }
    }
}

/// Writes `bytes` as the new file `path`.
private func put(_ bytes: [UInt8], at path: String) throws {
    let file = try FileDescriptor.open(path, .writeOnly, options: [.create, .exclusive])
    defer { try? file.close() }
    try bytes.withUnsafeBytes { try file.write($0) }
}

/// What the file at `path` holds.
private func contents(of path: String) throws -> [UInt8] {
    let file = try FileDescriptor.open(path, .readOnly)
    defer { try? file.close() }
    var bytes = [UInt8](repeating: 0, count: try file.size())
    let count = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }
    return Array(bytes[..<count])
}

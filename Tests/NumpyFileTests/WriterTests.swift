import Foundation
import NumpyFile
import SystemFile
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Writer: atomic replacement and cleanup")
struct WriterTests {
    @Test("an existing destination is refused before anything is written")
    func refusesToOverwrite() throws {
        let directory = TemporaryDirectory()
        let path = try directory.write(Array("keep me".utf8), to: "x.npy")
        let error = numpyError { _ = try NumpyWriter(path: path, dtype: .uint8, shape: [3]) }
        #expect(error == .destinationExists(path: path))
        #expect(error?.description == "\(path): file already exists; not overwriting it")
        #expect(try readAll(path) == Array("keep me".utf8))
        #expect(directory.entries() == ["x.npy"])
    }

    @Test("overwrite: true replaces only a regular file: not a FIFO, a symbolic link or a directory")
    func replacesOnlyRegularFiles() throws {
        let directory = TemporaryDirectory()
        let target = try directory.write(Array("target".utf8), to: "target")
        let fifo = directory.file("fifo"), link = directory.file("link"), sub = directory.file("sub")
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(symlink(target, link) == 0)
        #expect(mkdir(sub, 0o700) == 0)
        for (path, kind) in [(fifo, "FIFO"), (link, "symbolic link"), (sub, "directory")] {
            let error = numpyError { _ = try NumpyWriter(path: path, dtype: .uint8, shape: [3], overwrite: true) }
            #expect(error == .notRegularFile(path: path, kind: kind))
            #expect(error?.description == "\(path): is a \(kind), not a regular file; only a regular file is replaced")
        }
        #expect(try readAll(target) == Array("target".utf8))
        #expect(directory.entries() == ["fifo", "link", "sub", "target"])
    }

    @Test("names of up to 255 bytes work: the temporary name is cut to fit NAME_MAX")
    func longNames() throws {
        let directory = TemporaryDirectory()
        for length in [243, 250, 255] {
            let name = String(repeating: "n", count: length - 4) + ".npy"
            let path = directory.file(name)
            let temporary = TemporaryName.beside(path, suffix: "ABCDEF")
            #expect(temporary.hasPrefix(directory.path + "/."))
            #expect(temporary.split(separator: "/").last!.utf8.count <= 255)
            try writeArray(path, dtype: .uint8, shape: [4], bytes: pattern(4))
            try NumpyReader(path: path).withData { #expect(Array($0) == pattern(4)) }
        }
        #expect(directory.entries().count == 3)
        // A multi-byte character is never cut in half.
        let wide = String(repeating: "é", count: 127)  // 254 bytes
        let cut = TemporaryName.beside(wide, suffix: "ABCDEF")
        #expect(cut.utf8.count <= 255 && cut.hasPrefix(".é") && cut.hasSuffix("é.ABCDEF"))
    }

    @Test("a stream spooled to an unnamed file reads back the same, leaving nothing behind")
    func spooledStream() throws {
        let directory = TemporaryDirectory()
        let data = pattern(3000)
        let bytes = npy(dict(descr: "'<u2'", shape: "(100, 15)"), data: data)
        let (readEnd, writeEnd) = try makePipe()
        defer { close(readEnd) }
        let writer = Thread { writeAndClose(writeEnd, bytes) }
        writer.start()
        let stream = try NumpyReader(fileDescriptor: readEnd, path: "<pipe>")
        #expect(!stream.isMemoryMapped)
        let spooled = try stream.spooled(inDirectoryOf: directory.file("archive"), maxChunkBytes: 64)
        #expect(spooled.isMemoryMapped && spooled.path == "<pipe>" && spooled.shape == [100, 15])
        #expect(directory.entries().isEmpty, "the copy has no name")
        #expect(try readChunks(spooled, rowsPerChunk: 7) == data)
        #expect(try readChunks(spooled, rowsPerChunk: 100) == data, "read again")
        // A mapped reader is its own spool.
        let path = try directory.write(bytes, to: "x.npy")
        let mapped = try NumpyReader(path: path)
        #expect(try mapped.spooled(inDirectoryOf: path) === mapped)
    }

    @Test("overwrite: true replaces the destination")
    func overwrites() throws {
        let directory = TemporaryDirectory()
        let path = try directory.write(Array("old".utf8), to: "x.npy")
        try writeArray(path, dtype: .int8, shape: [4], bytes: pattern(4), overwrite: true)
        try NumpyReader(path: path).withData { #expect(Array($0) == pattern(4)) }
        #expect(directory.entries() == ["x.npy"])
    }

    @Test("a destination appearing during the write is not overwritten")
    func destinationAppearsBeforeCommit() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("x.npy")
        let writer = try NumpyWriter(path: path, dtype: .uint8, shape: [2])
        try writer.write([UInt8(1), 2])
        _ = try directory.write(Array("theirs".utf8), to: "x.npy")
        #expect(numpyError { try writer.commit() } == .destinationExists(path: path))
        #expect(try readAll(path) == Array("theirs".utf8))
        #expect(directory.entries() == ["x.npy"])
    }

    @Test("the temporary file is hidden, in the same directory, and gone after commit")
    func temporaryFile() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("x.npy")
        let writer = try NumpyWriter(path: path, dtype: .uint16, shape: [2])
        let entries = directory.entries()
        #expect(entries.count == 1)
        #expect(entries.first?.hasPrefix(".x.npy.") == true)
        try writer.write([UInt16(1), 2])
        try writer.commit()
        #expect(directory.entries() == ["x.npy"])
        #expect(numpyError { try writer.write([UInt16(3)]) } != nil, "use after commit")
    }

    @Test("abort(), release without commit, and failed commits leave nothing behind")
    func cleanup() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("x.npy")

        let aborted = try NumpyWriter(path: path, dtype: .uint32, shape: [10])
        try aborted.write([UInt32](repeating: 7, count: 5))
        aborted.abort()
        #expect(directory.entries() == [])
        #expect(numpyError { try aborted.commit() } != nil, "commit after abort")

        do {
            let abandoned = try NumpyWriter(path: path, dtype: .uint32, shape: [10])
            try abandoned.write([UInt32](repeating: 7, count: 5))
        }
        #expect(directory.entries() == [])

        let short = try NumpyWriter(path: path, dtype: .uint32, shape: [10])
        try short.write([UInt32](repeating: 7, count: 9))
        #expect(numpyError { try short.commit() } == .wrongByteCount(path: path, expected: 40, written: 36))
        #expect(directory.entries() == [])

        let long = try NumpyWriter(path: path, dtype: .uint32, shape: [10])
        try long.write([UInt32](repeating: 7, count: 9))
        #expect(numpyError { try long.write([UInt32](repeating: 7, count: 2)) }
            == .wrongByteCount(path: path, expected: 40, written: 44))
        #expect(directory.entries() == [])

        let mistyped = try NumpyWriter(path: path, dtype: .uint32, shape: [10])
        #expect(numpyError { try mistyped.write([Int32](repeating: 7, count: 10)) }
            == .typeMismatch(path: path, dtype: .uint32, requested: "Int32"))
        #expect(directory.entries() == [])
    }

    @Test("a missing directory gives an error naming the path")
    func missingDirectory() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("no/such/dir/x.npy")
        let error = try #require(numpyError { _ = try NumpyWriter(path: path, dtype: .uint8, shape: [1]) })
        guard case let .systemCall(errorPath, _, code, message) = error else {
            Issue.record("got \(error)")
            return
        }
        #expect(errorPath == path)
        #expect(code == ENOENT)
        #expect(message == "No such file or directory")
        #expect(error.description.hasPrefix(path + ": "))
        #expect(directory.entries() == [])
    }

    @Test("the committed file gets the same permissions as any new file")
    func permissions() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("x.npy")
        try writeArray(path, dtype: .uint8, shape: [1], bytes: [1])
        let reference = directory.file("reference")
        let fd = open(reference, O_WRONLY | O_CREAT | O_EXCL, 0o666)
        close(fd)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        let expected = try FileManager.default.attributesOfItem(atPath: reference)
        #expect(attributes[.posixPermissions] as? Int == expected[.posixPermissions] as? Int)
    }
}

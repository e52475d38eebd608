import Foundation
import NumpyFile
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Checks against the real numpy: files it writes must read the same here, files written here
/// must load the same there, and `np.save` and `NumpyWriter` must agree byte for byte.
@Suite(
    "Interoperability with numpy",
    .enabled(if: Python.hasNumpy, "python3 cannot import numpy, so there is no reference implementation to compare with"),
    .tags(.processes)
)
struct NumpyInteropTests {
    static let shapes: [[Int]] = [[7], [0], [5, 3], [13, 4, 2], [0, 24, 2], []]

    struct Case: Codable {
        var file: String
        var descr: String
        var shape: [Int]
        /// nil: `np.save`; otherwise `np.lib.format.write_array(..., version=)`.
        var version: [Int]?
    }

    static func runPython(_ script: String, _ cases: [Case]) throws {
        let json = String(decoding: try JSONEncoder().encode(cases), as: UTF8.self)
        let result = try Python.run(pythonPattern + script, arguments: [json])
        #expect(result.status == 0, "python failed:\n\(result.errors)")
    }

    @Test("numpy's files (np.save, versions 1.0, 2.0, 3.0) read as the same bytes")
    func readNumpyFiles() throws {
        let directory = TemporaryDirectory()
        var cases: [Case] = []
        for dtype in NumpyDType.allCases {
            for (index, shape) in Self.shapes.enumerated() {
                for version in [nil, [1, 0], [2, 0], [3, 0]] as [[Int]?] {
                    let name = "\(dtype.name)-\(index)-\(version.map { "v\($0[0])" } ?? "save").npy"
                    cases.append(Case(file: directory.file(name), descr: dtype.descr, shape: shape, version: version))
                }
            }
        }
        try Self.runPython("""
            import json, sys, warnings
            import numpy as np
            warnings.simplefilter("ignore")
            for c in json.loads(sys.argv[1]):
                dtype = np.dtype(c["descr"])
                a = np.frombuffer(pattern(int(np.prod(c["shape"])) * dtype.itemsize), dtype=dtype).reshape(c["shape"])
                if c.get("version") is None:
                    np.save(c["file"], a)
                else:
                    with open(c["file"], "wb") as f:
                        np.lib.format.write_array(f, a, version=tuple(c["version"]))
            """, cases)

        for item in cases {
            let dtype = try #require(NumpyDType(descr: item.descr))
            let bytes = pattern(item.shape.reduce(1, *) * dtype.itemSize)
            let reader = try NumpyReader(path: item.file)
            #expect(reader.dtype == dtype, "\(item.file)")
            #expect(reader.shape == item.shape, "\(item.file)")
            #expect(Int(reader.header.majorVersion) == item.version?[0] ?? 1, "\(item.file)")
            try reader.withData { #expect(Array($0) == bytes, "\(item.file)") }
            #expect(try readChunks(reader, rowsPerChunk: 3) == bytes, "\(item.file)")

            if item.version == nil {
                // What we write for the same array is exactly what np.save wrote.
                let ours = item.file + ".ours"
                try writeArray(ours, dtype: dtype, shape: item.shape, bytes: bytes)
                #expect(try readAll(ours) == readAll(item.file), "header of \(item.file)")
            }
        }
    }

    @Test("numpy's Fortran-order, big-endian, float, bool and structured arrays are refused")
    func refuseNumpyFiles() throws {
        let directory = TemporaryDirectory()
        let result = try Python.run("""
            import sys
            import numpy as np
            d = sys.argv[1]
            np.save(d + "/fortran.npy", np.asfortranarray(np.arange(12, dtype="<u2").reshape(3, 4)))
            np.save(d + "/big.npy", np.arange(5, dtype=">i4"))
            np.save(d + "/float.npy", np.arange(5, dtype="<f4"))
            np.save(d + "/bool.npy", np.zeros(5, dtype=bool))
            np.save(d + "/struct.npy", np.zeros(5, dtype=[("a", "<i4"), ("b", "<f8")]))
            """, arguments: [directory.path])
        #expect(result.status == 0, "python failed:\n\(result.errors)")

        let fortran = directory.file("fortran.npy")
        #expect(numpyError { _ = try NumpyReader(path: fortran) } == .fortranOrder(path: fortran))
        for (name, text) in [("big", "big-endian"), ("float", "float32"), ("bool", "bool"), ("struct", "structured")] {
            let path = directory.file(name + ".npy")
            let error = numpyError { _ = try NumpyReader(path: path) }
            guard case .unsupportedDType = error else {
                Issue.record("\(name): got \(String(describing: error))")
                continue
            }
            #expect(error?.description.contains(text) == true, "\(String(describing: error))")
        }
    }

    @Test("our files load in numpy, with np.load and with mmap_mode='r'")
    func numpyLoadsOurFiles() throws {
        let directory = TemporaryDirectory()
        var cases: [Case] = []
        for dtype in NumpyDType.allCases {
            for (index, shape) in Self.shapes.enumerated() {
                let path = directory.file("\(dtype.name)-\(index).npy")
                try writeArray(path, dtype: dtype, shape: shape, bytes: pattern(shape.reduce(1, *) * dtype.itemSize), piece: 5)
                cases.append(Case(file: path, descr: dtype.descr, shape: shape, version: nil))
            }
        }
        try Self.runPython("""
            import json, sys
            import numpy as np
            for c in json.loads(sys.argv[1]):
                dtype = np.dtype(c["descr"])
                expected = np.frombuffer(pattern(int(np.prod(c["shape"])) * dtype.itemsize), dtype=dtype).reshape(c["shape"])
                for a in (np.load(c["file"]), np.load(c["file"], mmap_mode="r")):
                    assert a.dtype.str == c["descr"], (c, a.dtype.str)
                    assert a.shape == tuple(c["shape"]), (c, a.shape)
                    assert np.array_equal(a, expected), c
            """, cases)
    }

    @Test("numpy streams into our reader through a process pipe")
    func streamFromNumpy() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", pythonPattern + """
            import sys
            import numpy as np
            a = np.frombuffer(pattern(20000 * 24 * 2 * 2), dtype="<u2").reshape(20000, 24, 2)
            np.save(sys.stdout.buffer, a)
            """]
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? output.fileHandleForWriting.close()  // so the pipe ends when python exits
        defer { process.waitUntilExit() }

        let reader = try NumpyReader(fileDescriptor: output.fileHandleForReading.fileDescriptor, path: "<python>")
        #expect(reader.shape == [20000, 24, 2])
        #expect(try readChunks(reader, rowsPerChunk: 1001) == pattern(20000 * 24 * 2 * 2))
    }

    @Test("our writer streams into numpy through a process pipe")
    func streamToNumpy() throws {
        signal(SIGPIPE, SIG_IGN)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", pythonPattern + """
            import sys
            import numpy as np
            class Stream:  # only read(): numpy then reads the data in pieces, not with fromfile
                def read(self, n=-1):
                    return sys.stdin.buffer.read(n)
            a = np.lib.format.read_array(Stream())
            expected = np.frombuffer(pattern(20000 * 3 * 4), dtype="<i4").reshape(20000, 3)
            assert a.dtype.str == "<i4" and a.shape == (20000, 3), (a.dtype, a.shape)
            assert np.array_equal(a, expected)
            print("ok")
            """]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()

        let writer = try NumpyWriter(
            fileDescriptor: input.fileHandleForWriting.fileDescriptor, path: "<python>", dtype: .int32, shape: [20000, 3])
        try write(pattern(20000 * 3 * 4), to: writer, piece: 65_537)
        try writer.commit()
        try input.fileHandleForWriting.close()

        let answer = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(answer == "ok\n")
    }
}

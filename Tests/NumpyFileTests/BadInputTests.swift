import Foundation
import NumpyFile
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A hand-made `.npy` and the error reading it must give.
struct BadInput: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    /// Checks the error thrown for an input named `path`.
    var check: @Sendable (NumpyError, String) -> Bool

    var testDescription: String { name }

    /// An error equal to `expected(path)`.
    init(_ name: String, _ bytes: [UInt8], _ expected: @escaping @Sendable (String) -> NumpyError) {
        self.name = name
        self.bytes = bytes
        self.check = { error, path in error == expected(path) }
    }

    /// An error accepted by `matches` whose description names the path and contains `text`.
    init(_ name: String, _ bytes: [UInt8], contains text: String, _ matches: @escaping @Sendable (NumpyError) -> Bool) {
        self.name = name
        self.bytes = bytes
        self.check = { error, path in
            matches(error) && error.description.hasPrefix(path + ": ") && error.description.contains(text)
        }
    }
}

/// Preamble + `dict` padded numpy's way (to `alignment`) + `data`.
func npy(
    _ dict: String, data: [UInt8] = [], major: UInt8 = 1, alignment: Int = 64, terminator: String = "\n"
) -> [UInt8] {
    let prefix = major == 1 ? 10 : 12
    var header = Array(dict.utf8)
    let unpadded = prefix + header.count + terminator.utf8.count
    header += Array(repeating: UInt8(ascii: " "), count: (alignment - unpadded % alignment) % alignment)
    header += Array(terminator.utf8)
    var bytes = [0x93] + Array("NUMPY".utf8) + [major, 0]
    for i in 0..<(prefix - 8) { bytes.append(UInt8(truncatingIfNeeded: header.count >> (8 * i))) }
    return bytes + header + data
}

func dict(descr: String = "'<u2'", fortran: String = "False", shape: String = "(10,)") -> String {
    "{'descr': \(descr), 'fortran_order': \(fortran), 'shape': \(shape), }"
}

extension NumpyError {
    var isInvalidShape: Bool {
        if case .invalidField(_, "shape", _) = self { return true }
        return false
    }
    var isUnsupportedDType: Bool {
        if case .unsupportedDType = self { return true }
        return false
    }
    var isMalformed: Bool {
        if case .malformedHeader = self { return true }
        return false
    }
}

let goodFile = npy(dict(), data: pattern(20))

let badInputs: [BadInput] = [
    BadInput("empty input", []) { .truncatedHeader(path: $0, expected: 8, actual: 0) },
    BadInput("wrong magic", [0x93] + Array("NUMPZ".utf8) + Array(goodFile.dropFirst(6))) { .notNumpyFile(path: $0) },
    BadInput("text file", Array("hello, world\n".utf8)) { .notNumpyFile(path: $0) },
    BadInput("version 4.0", Array(goodFile.prefix(6)) + [4, 0] + Array(goodFile.dropFirst(8))) {
        .unsupportedVersion(path: $0, major: 4, minor: 0)
    },
    BadInput("truncated in the length field", Array(goodFile.prefix(9))) {
        .truncatedHeader(path: $0, expected: 10, actual: 9)
    },
    BadInput("truncated in the header", Array(goodFile.prefix(40))) {
        .truncatedHeader(path: $0, expected: 128, actual: 40)
    },
    BadInput("header length beyond the file", Array(goodFile.prefix(8)) + [0xF6, 0x03] + Array(goodFile.dropFirst(10))) {
        .truncatedHeader(path: $0, expected: 1024, actual: goodFile.count)
    },
    BadInput("huge header length", Array(goodFile.prefix(6)) + [2, 0, 0xF4, 0xFF, 0xFF, 0xFF] + Array(goodFile.dropFirst(12))) {
        .headerTooLarge(path: $0, length: 0xFFFF_FFF4, limit: 1 << 20)
    },
    BadInput("float32 dtype", npy(dict(descr: "'<f4'"), data: pattern(40)), contains: "float32") { $0.isUnsupportedDType },
    BadInput("big-endian int32", npy(dict(descr: "'>i4'"), data: pattern(40)), contains: "big-endian") { $0.isUnsupportedDType },
    BadInput("absurd integer size", npy(dict(descr: "'<i9223372036854775807'")), contains: "9223372036854775807-byte") {
        $0.isUnsupportedDType
    },
    BadInput("bool dtype", npy(dict(descr: "'|b1'"), data: pattern(10)), contains: "bool") { $0.isUnsupportedDType },
    BadInput("object dtype", npy(dict(descr: "'|O'"), data: pattern(80)), contains: "|O") { $0.isUnsupportedDType },
    BadInput("structured dtype", npy(dict(descr: "[('a', '<i4'), ('b', '<f8')]"), data: pattern(120)),
             contains: "structured") { $0.isUnsupportedDType },
    BadInput("descr not a string", npy(dict(descr: "7"), data: pattern(20)), contains: "'descr'") {
        if case .invalidField(_, "descr", _) = $0 { return true }
        return false
    },
    BadInput("Fortran order", npy(dict(fortran: "True", shape: "(5, 2)"), data: pattern(20))) { .fortranOrder(path: $0) },
    BadInput("fortran_order not a bool", npy(dict(fortran: "0"), data: pattern(20)), contains: "'fortran_order'") {
        if case .invalidField(_, "fortran_order", _) = $0 { return true }
        return false
    },
    BadInput("negative dimension", npy(dict(shape: "(3, -1)")), contains: "negative dimension -1") { $0.isInvalidShape },
    BadInput("shape product overflow", npy(dict(shape: "(4611686018427387904, 4)")), contains: "overflows") {
        $0.isInvalidShape
    },
    BadInput("row size overflow with zero rows", npy(dict(shape: "(0, 4611686018427387904, 4)")), contains: "overflows") {
        $0.isInvalidShape
    },
    BadInput("dimension beyond Int", npy(dict(shape: "(99999999999999999999,)")), contains: "too large") {
        $0.isInvalidShape
    },
    BadInput("float dimension", npy(dict(shape: "(3.0, 4)")), contains: "3.0 at axis 0, not an integer") { $0.isInvalidShape },
    BadInput("string dimension", npy(dict(shape: "('3',)")), contains: "not an integer") { $0.isInvalidShape },
    BadInput("shape not a tuple", npy(dict(shape: "10")), contains: "not a tuple") { $0.isInvalidShape },
    BadInput("missing key", npy("{'descr': '<u2', 'fortran_order': False, }")) { .missingField(path: $0, field: "shape") },
    BadInput("extra key", npy("{'descr': '<u2', 'fortran_order': False, 'shape': (10,), 'x': 1}", data: pattern(20))) {
        .unexpectedField(path: $0, field: "x")
    },
    BadInput("duplicate key", npy("{'descr': '<u2', 'descr': '<u2', 'fortran_order': False, 'shape': (10,)}", data: pattern(20)),
             contains: "appears twice") {
        if case .invalidField(_, "descr", _) = $0 { return true }
        return false
    },
    BadInput("unclosed dict", npy("{'descr': '<u2', 'fortran_order': False, 'shape': (10,), ", data: pattern(20)),
             contains: "unexpected end of header") { $0.isMalformed },
    BadInput("unterminated string", npy("{'descr': '<u2, 'fortran_order': False, 'shape': (10,)}", data: pattern(20)),
             contains: "malformed header") { $0.isMalformed },
    BadInput("not a dict", npy("[1, 2, 3]"), contains: "not a dict") { $0.isMalformed },
    BadInput("unknown name", npy(dict(fortran: "Flase"), data: pattern(20)), contains: "unknown name 'Flase'") { $0.isMalformed },
    BadInput("deep nesting", npy("{'descr': " + String(repeating: "[", count: 100) + "}"), contains: "nested deeper") {
        $0.isMalformed
    },
    // Found by the npy-reader fuzzer (Fuzz/): a number at the very start of the header trapped.
    BadInput("header that is a number", npy("1"), contains: "not a dict") { $0.isMalformed },
    BadInput("number before the header dict", npy("1" + dict(), data: pattern(20)), contains: "after the header dict") {
        $0.isMalformed
    },
    BadInput("truncated data", npy(dict(), data: pattern(15))) { .truncatedData(path: $0, expected: 20, actual: 15) },
    BadInput("no data at all", npy(dict())) { .truncatedData(path: $0, expected: 20, actual: 0) },
    BadInput("trailing bytes", npy(dict(), data: pattern(25))) { .trailingData(path: $0, expected: 20, extra: 5) },
]

@Suite("Hostile and broken inputs")
struct BadInputTests {
    @Test("from a regular file (memory-mapped)", arguments: badInputs)
    func fromFile(input: BadInput) throws {
        let directory = TemporaryDirectory()
        let path = try directory.write(input.bytes, to: "bad.npy")
        let error = numpyError {
            let reader = try NumpyReader(path: path)
            _ = try readChunks(reader, rowsPerChunk: 3)
        }
        let unwrapped = try #require(error)
        #expect(input.check(unwrapped, path), "\(unwrapped)")
    }

    @Test("from a pipe (streamed)", arguments: badInputs)
    func fromPipe(input: BadInput) throws {
        let (readEnd, writeEnd) = try makePipe()
        defer { close(readEnd) }
        writeAndClose(writeEnd, input.bytes)  // every input fits in the pipe's buffer
        let error = numpyError {
            let reader = try NumpyReader(fileDescriptor: readEnd, path: "<pipe>")
            _ = try readChunks(reader, rowsPerChunk: 3)
        }
        let unwrapped = try #require(error)
        #expect(input.check(unwrapped, "<pipe>"), "\(unwrapped)")
    }

    @Test("the good file the bad ones are made from reads")
    func controlCase() throws {
        let directory = TemporaryDirectory()
        let path = try directory.write(goodFile, to: "good.npy")
        let reader = try NumpyReader(path: path)
        #expect(reader.shape == [10])
        #expect(try readChunks(reader, rowsPerChunk: 3) == pattern(20))
    }

    /// Headers other writers make and numpy reads: without padding (data at any offset, even
    /// an odd one), without the final newline, with '=', '|' or no byte order on wide types.
    @Test("headers numpy accepts are read", arguments: [
        ("no padding, data at byte 69", npy(dict(), data: pattern(20), alignment: 1)),
        ("no padding, data at byte 70", npy(dict() + " ", data: pattern(20), alignment: 1)),
        ("no final newline", npy(dict(), data: pattern(20), terminator: " ")),
        ("no padding and no newline", npy(dict(), data: pattern(20), alignment: 1, terminator: "")),
        ("'=' byte order", npy(dict(descr: "'=u2'"), data: pattern(20))),
        ("'|' byte order", npy(dict(descr: "'|u2'"), data: pattern(20))),
        ("no byte order", npy(dict(descr: "'u2'"), data: pattern(20))),
    ])
    func numpyAccepts(name: String, bytes: [UInt8]) throws {
        let directory = TemporaryDirectory()
        let path = try directory.write(bytes, to: "ok.npy")
        let mapped = try NumpyReader(path: path)
        #expect(mapped.dtype == .uint16 && mapped.shape == [10], "\(name)")
        #expect(try readChunks(mapped, rowsPerChunk: 3) == pattern(20), "\(name)")
        // Typed chunks are aligned even when the data in the file is not.
        var values: [UInt16] = []
        try mapped.forEachChunk(as: UInt16.self, rowsPerChunk: 4) { chunk, _ in values += chunk }
        #expect(values == pattern(20).withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }, "\(name)")
        if mapped.header.dataOffset % 2 != 0 {
            #expect(numpyError { try mapped.withData(as: UInt16.self) { _ in } } == .misalignedHeader(path: path, dataOffset: mapped.header.dataOffset))
        }
        let (readEnd, writeEnd) = try makePipe()
        defer { close(readEnd) }
        writeAndClose(writeEnd, bytes)
        let streamed = try NumpyReader(fileDescriptor: readEnd, path: "<pipe>")
        #expect(try readChunks(streamed, rowsPerChunk: 3) == pattern(20), "\(name)")
    }

    @Test("messages name the file and the field")
    func messages() {
        #expect(NumpyError.fortranOrder(path: "x.npy").description
            == "x.npy: header field 'fortran_order' is True: Fortran-order arrays are not supported; save with np.ascontiguousarray")
        #expect(NumpyError.truncatedData(path: "x.npy", expected: 100, actual: 60).description.contains("40 missing"))
        #expect(NumpyError.missingField(path: "x.npy", field: "shape").description == "x.npy: header field 'shape' is missing")
    }

    @Test("a file that does not exist names the path and strerror")
    func missingFile() {
        let error = numpyError { _ = try NumpyReader(path: "/nonexistent/dir/x.npy") }
        #expect(error == .systemCall(path: "/nonexistent/dir/x.npy", operation: "open", errno: ENOENT, message: "No such file or directory"))
    }
}

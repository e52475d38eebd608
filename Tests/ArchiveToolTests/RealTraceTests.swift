import Foundation
import NumpyFile
import Testing

/// pack/unpack bit for bit on the real traces of ../shared/data, in every dtype.
@Suite(.enabled(if: realTracesPresent, "the real traces of ../shared/data are missing (a clone without them): skipped"),
       .tags(.processes, .realTraces, .slow))
struct RealTraceTests {
    static let inputDTypes = NumpyDType.allCases
    static let outputDTypes: [NumpyDType] = [.uint8, .uint16, .int32, .int64]

    /// Converts `values` to every input dtype, packs each (all archives must be byte-identical:
    /// the archive does not depend on the input's dtype), then unpacks with every --dtype.
    func roundTripEveryDType(_ values: [Int64], shape: [Int], experts: Int, inferExperts: Bool) throws {
        let dir = TemporaryDirectory()
        var archives: [Data] = []
        for dtype in Self.inputDTypes {
            try FileManager.default.createDirectory(atPath: dir.file(dtype.name), withIntermediateDirectories: false)
            let input = dir.file("\(dtype.name)/trace.npy"), archive = dir.file("\(dtype.name)/trace.arch")
            try writeNpy(input, values, shape: shape, dtype: dtype)
            let result = try tool(["pack", input, "-o", archive] + (inferExperts ? [] : ["--experts", "\(experts)"]))
            expectSuccess(result)
            if inferExperts {
                #expect(result.stderr.contains("inferred --experts \(experts) from the data; pass --experts to set it"), "\(result.stderr)")
            }
            archives.append(try #require(fileBytes(archive)))
        }
        #expect(Set(archives).count == 1, "every input dtype gives the same archive")

        let archive = dir.file("uint8/trace.arch")
        for dtype in Self.outputDTypes {
            let output = dir.file("out-\(dtype.name).npy")
            expectSuccess(try tool(["unpack", archive, "-o", output, "--dtype", dtype.name]))
            let back = try readNpy(output)
            #expect(back.dtype == dtype)
            #expect(back.shape == shape)
            #expect(back.values == values, "\(dtype.name) values are the input's")
        }
        // Default dtype: the narrowest holding the ids.
        let output = dir.file("default.npy")
        expectSuccess(try tool(["unpack", archive, "-o", output]))
        #expect(try readNpy(output) == NumpyArray(dtype: experts <= 256 ? .uint8 : .uint16, shape: shape, values: values))
    }

    @Test func llama4EveryInputAndOutputDType() throws {
        let trace = try readNpy(llama4Trace)
        #expect(trace.shape == [34517, 24, 1])
        let experts = Int(trace.values.max()!) + 1
        try roundTripEveryDType(trace.values, shape: trace.shape, experts: experts, inferExperts: true)
    }

    @Test func deepseekSliceEveryInputAndOutputDType() throws {
        let trace = try readNpy(deepseekTrace)
        #expect(trace.shape == [94168, 26, 6])
        let rows = 3000
        try roundTripEveryDType(slice(trace.values, rows: 0..<rows, perRow: 156), shape: [rows, 26, 6], experts: 64, inferExperts: false)
    }

    /// The whole deepseek trace: the file itself packed (experts inferred), unpacked as uint8
    /// (the data bytes equal the file's) and as int64; int32 input to uint16 output.
    @Test func deepseekWhole() throws {
        let dir = TemporaryDirectory(), archive = dir.file("ds.arch")
        let packed = try tool(["pack", deepseekTrace, "-o", archive])
        expectSuccess(packed)
        #expect(packed.stderr.contains("inferred --experts 64 from the data; pass --experts to set it"), "\(packed.stderr)")
        let original = try NumpyReader(path: deepseekTrace)
        let originalData = try original.withData { Data($0) }

        let uint8 = dir.file("ds-u1.npy")
        expectSuccess(try tool(["unpack", archive, "-o", uint8, "--quiet"]))
        let back = try NumpyReader(path: uint8)
        #expect(back.dtype == .uint8 && back.shape == [94168, 26, 6])
        #expect(try back.withData { Data($0) } == originalData, "bit for bit")

        let int64 = dir.file("ds-i8.npy")
        expectSuccess(try tool(["unpack", archive, "-o", int64, "--dtype", "int64", "--quiet"]))
        let wide = try readNpy(int64)
        #expect(wide.dtype == .int64 && wide.values == originalData.map { Int64($0) })

        // int32 input, uint16 output.
        let int32Input = dir.file("ds-i4.npy"), archive2 = dir.file("ds2.arch"), uint16 = dir.file("ds-u2.npy")
        try writeNpy(int32Input, wide.values, shape: wide.shape, dtype: .int32)
        expectSuccess(try tool(["pack", int32Input, "-o", archive2, "--experts", "64", "--quiet"]))
        expectSuccess(try tool(["unpack", archive2, "-o", uint16, "--dtype", "uint16", "--quiet"]))
        #expect(try readNpy(uint16) == NumpyArray(dtype: .uint16, shape: wide.shape, values: wide.values))
    }
}

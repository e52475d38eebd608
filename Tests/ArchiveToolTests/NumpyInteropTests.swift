import Foundation
import NumpyFile
import Testing

/// What unpack writes opens in numpy, also memory-mapped.
@Suite(.enabled(if: numpyAvailable, "python3 with numpy is not available: skipped"), .tags(.processes))
struct NumpyInteropTests {
    static let script = """
        import json, sys
        import numpy as np
        out = {}
        for mode in (None, 'r'):
            a = np.load(sys.argv[1], mmap_mode=mode)
            v = a.astype(np.int64).ravel()
            w = np.arange(v.size, dtype=np.int64) % 1009 + 1
            out[str(mode)] = [list(a.shape), str(a.dtype), int(v.sum()), int((v * w).sum()), type(a).__name__]
        print(json.dumps(out))
        """

    /// Shape, dtype, sum and a position-weighted checksum, as numpy sees them, loaded and mmapped.
    func numpyView(_ path: String) throws -> [String: [Any]] {
        let result = try runProcess("/usr/bin/env", ["python3", "-c", Self.script, path])
        #expect(result.status == 0, "python: \(result.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: result.stdout) as? [String: [Any]])
    }

    func checksum(_ values: [Int64]) -> (sum: Int64, weighted: Int64) {
        var sum: Int64 = 0, weighted: Int64 = 0
        for (i, v) in values.enumerated() {
            sum += v
            weighted += v * Int64(i % 1009 + 1)
        }
        return (sum, weighted)
    }

    @Test(arguments: [nil, NumpyDType.uint8, .uint16, .int32, .int64])
    func unpackedFilesLoadInNumpy(dtype: NumpyDType?) throws {
        let dir = TemporaryDirectory()
        // mixtral: 8 experts (uint8 by default); kimi-k2: 384 (uint16 by default, too wide for uint8).
        for (model, experts, dense) in [("mixtral-8x7b", 8, ""), ("kimi-k2", 384, "0")] {
            if dtype == .uint8 && experts > 256 { continue }
            let trace = dir.file("\(model).npy"), archive = dir.file("\(model).arch")
            let output = dir.file("\(model)-\(dtype?.name ?? "default").npy")
            expectSuccess(try tool(["synth", "--model", model, "--tokens", "700", "-o", trace, "--force", "--quiet"]))
            expectSuccess(try tool(["pack", trace, "-o", archive, "--experts", "\(experts)", "--force", "--quiet"]
                                   + (dense.isEmpty ? [] : ["--dense-layers", dense])))
            for rows in [nil, "100:650"] {
                var arguments = ["unpack", archive, "-o", output, "--force", "--quiet"]
                if let dtype { arguments += ["--dtype", dtype.name] }
                if let rows { arguments += ["--rows", rows] }
                expectSuccess(try tool(arguments))
                let source = try readNpy(trace)
                let perRow = source.shape[1] * source.shape[2]
                let range = rows == nil ? 0..<700 : 100..<650
                let expected = slice(source.values, rows: range, perRow: perRow)
                let (sum, weighted) = checksum(expected)
                let expectedDType = dtype?.name ?? (experts <= 256 ? "uint8" : "uint16")
                let view = try numpyView(output)
                for mode in ["None", "r"] {
                    let seen = try #require(view[mode])
                    #expect(seen[0] as? [Int] == [range.count, source.shape[1], source.shape[2]], "\(model) \(mode) shape")
                    #expect(seen[1] as? String == expectedDType, "\(model) \(mode) dtype")
                    #expect((seen[2] as? NSNumber)?.int64Value == sum, "\(model) \(mode) sum")
                    #expect((seen[3] as? NSNumber)?.int64Value == weighted, "\(model) \(mode) checksum")
                }
                #expect(view["r"]?[4] as? String == "memmap")
            }
        }
    }
}

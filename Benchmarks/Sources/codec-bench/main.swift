// codec-bench: ratio and single-core speed of ExpertCodec on real and generated traces, with
// liblz4 on the raw int32 array measured in the same run. Speeds count int32 bytes.
//
// usage: codec-bench [--block-rows N] [--repeats R] [--decode-repeats R] [--codec fast|compact] [--cpu-time] [--digest] [TRACE.npy | MODEL:TOKENS]...
// Both codecs by default (fast: layout 1, compact: layout 2).
// Without traces: ../shared/data's traces when present, and generated model shapes.
import ExpertCodec
import Foundation
import LZ4Reference
import NumpyFile
import TraceSynth

struct Trace {
    let name: String
    let schema: Schema
    let rows: [Int32]
    var count: Int { rows.count / schema.idsPerRow }
    var int32Bytes: Int { rows.count * 4 }
}

/// Widens any integer `.npy` to Int32, the layout SGLang hands out.
struct WidenToInt32: NumpyIntegerVisitor {
    let reader: NumpyReader
    func visit<T: FixedWidthInteger & Sendable>(_ type: T.Type) throws -> [Int32] {
        try reader.withData(as: T.self) { $0.map { Int32(truncatingIfNeeded: $0) } }
    }
}

func loadTrace(_ path: String) throws -> Trace {
    let reader = try NumpyReader(path: path)
    let shape = reader.header.shape
    guard shape.count == 3 else { throw CodecError.shapeMismatch("\(path): expected [tokens, layers, topk], got \(shape)") }
    let rows = try reader.header.dtype.accept(WidenToInt32(reader: reader))
    let experts = max(2, Int(rows.max() ?? 0) + 1)
    let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
    return Trace(name: name, schema: try Schema(layers: shape[1], topk: shape[2], experts: experts), rows: rows)
}

func synthesize(_ model: ModelShape, tokens: Int) throws -> Trace {
    var synth = TraceSynthesizer(schema: try model.schema(), seed: 1)
    return Trace(name: "synth \(model.name)", schema: try model.schema(), rows: synth.rows(tokens, as: Int32.self))
}

/// With `--digest`, a digest of every frame written is printed: encoder changes meant to keep
/// the bytes are checked by comparing it before and after.
nonisolated(unsafe) var printDigest = false

/// FNV-1a, 64 bits, over the frames in order.
func digest(_ frames: [[UInt8]]) -> UInt64 {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for frame in frames { for byte in frame { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 } }
    return hash
}

/// Wall time, or with `--cpu-time` this thread's CPU time (steadier on a shared machine).
nonisolated(unsafe) var useCPUTime = false

func now() -> Double {
    if useCPUTime {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
    return Double(DispatchTime.now().uptimeNanoseconds) / 1e9
}

/// Best time of `repeats` runs of `body`, in seconds.
func bestTime(_ repeats: Int, _ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<repeats {
        let start = now()
        try body()
        best = min(best, now() - start)
    }
    return best
}

struct Measurement {
    let method: String
    let bytes: Int
    let encodeSeconds: Double
    let decodeSeconds: Double
}

func measureCodec(_ trace: Trace, blockRows: Int, repeats: Int, codec: BlockCodec) throws -> Measurement {
    let encoder = BlockEncoder(schema: trace.schema, codec: codec), decoder = BlockDecoder(schema: trace.schema)
    let perRow = trace.schema.idsPerRow
    var frames: [[UInt8]] = []
    let encode = try trace.rows.withUnsafeBufferPointer { rows in
        try bestTime(repeats) {
            frames.removeAll(keepingCapacity: true)
            for start in stride(from: 0, to: trace.count, by: blockRows) {
                let end = min(trace.count, start + blockRows)
                frames.append(try encoder.encode(UnsafeBufferPointer(rebasing: rows[start * perRow..<end * perRow])))
            }
        }
    }
    var output = [Int32](repeating: -1, count: trace.rows.count)
    let decode = try output.withUnsafeMutableBufferPointer { out in
        try bestTime(decodeRepeats ?? repeats) {
            var start = 0
            for frame in frames {
                let rows = try frame.withUnsafeBytes { try decoder.open($0) }
                try decoder.decodeRows(0..<rows, into: UnsafeMutableBufferPointer(rebasing: out[start * perRow..<(start + rows) * perRow]))
                start += rows
            }
        }
    }
    guard output == trace.rows else { throw CodecError.shapeMismatch("\(trace.name): round trip differs") }
    if printDigest { print("frames digest \(String(digest(frames), radix: 16)) (\(codec), \(blockRows)-row blocks)") }
    return Measurement(method: "ExpertCodec \(codec), \(blockRows)-row blocks", bytes: frames.reduce(0) { $0 + $1.count },
                       encodeSeconds: encode, decodeSeconds: decode)
}

/// liblz4's frame format at its default level on the raw int32 array: what `lz4` does.
func measureLZ4(_ trace: Trace, repeats: Int) -> Measurement {
    let source = trace.rows.withUnsafeBytes { Array($0) }
    var prefs = LZ4F_preferences_t()
    prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
    let bound = LZ4F_compressFrameBound(source.count, &prefs)
    var compressed = [UInt8](repeating: 0, count: bound)
    var size = 0
    let encode = bestTime(repeats) {
        size = LZ4F_compressFrame(&compressed, bound, source, source.count, &prefs)
    }
    var restored = [UInt8](repeating: 0, count: source.count)
    var context: OpaquePointer?
    LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))
    let decode = bestTime(repeats) {
        LZ4F_resetDecompressionContext(context)
        var outSize = restored.count, inSize = size
        _ = LZ4F_decompress(context, &restored, &outSize, compressed, &inSize, nil)
    }
    LZ4F_freeDecompressionContext(context)
    precondition(restored == source, "lz4 round trip differs")
    return Measurement(method: "lz4 frame on int32 (liblz4 default)", bytes: size, encodeSeconds: encode, decodeSeconds: decode)
}

func report(_ trace: Trace, _ rows: [Measurement]) {
    let fixed = Double(trace.int32Bytes) / Double((trace.count * trace.schema.storedIDsPerRow * trace.schema.bitWidth + 7) / 8)
    print("\n\(trace.name): \(trace.count) rows, \(trace.schema); int32 = \(trace.int32Bytes) bytes; fixed width alone \(String(format: "%.2f", fixed))x; "
          + "decoder kernels: \(VectorKernels.available ? "AVX-512" : "Swift")")
    print("method".padding(toLength: 44, withPad: " ", startingAt: 0) + "   bytes      ratio  enc GB/s  dec GB/s")
    let reference = rows.last!
    for m in rows {
        let enc = Double(trace.int32Bytes) / m.encodeSeconds / 1e9, dec = Double(trace.int32Bytes) / m.decodeSeconds / 1e9
        print(m.method.padding(toLength: 44, withPad: " ", startingAt: 0)
              + String(format: "%10d %8.2f %8.2f %9.2f", m.bytes, Double(trace.int32Bytes) / Double(m.bytes), enc, dec))
        if m.method != reference.method {
            print("  vs lz4 on int32: ratio x\(String(format: "%.2f", Double(reference.bytes) / Double(m.bytes)))"
                  + ", encode x\(String(format: "%.2f", reference.encodeSeconds / m.encodeSeconds))"
                  + ", decode x\(String(format: "%.2f", reference.decodeSeconds / m.decodeSeconds))")
        }
    }
}

let usage = """
    usage: codec-bench [--block-rows N] [--repeats R] [--decode-repeats R] [--codec fast|compact] [--cpu-time] [--digest] [TRACE.npy | MODEL:TOKENS]...
    models: \(ModelShape.all.map(\.name).joined(separator: ", "))
    """
var blockRows: Int?
/// Runs of each measurement, best kept; by default 5, more for small traces (at least about
/// 100 MB of int32 in all: the 3 MB llama4 trace measured 35% slow with 5 in one run).
var repeats: Int?
/// Decode runs, when not `repeats` (profiling the decoder with one encode).
nonisolated(unsafe) var decodeRepeats: Int?
var inputs: [String] = []
var codecs = BlockCodec.allCases
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--block-rows": blockRows = arguments.next().flatMap(Int.init)
    case "--repeats": repeats = arguments.next().flatMap(Int.init)
    case "--decode-repeats": decodeRepeats = arguments.next().flatMap(Int.init)
    case "--cpu-time": useCPUTime = true
    case "--digest": printDigest = true
    case "--codec": codecs = arguments.next().flatMap(BlockCodec.init(name:)).map { [$0] } ?? codecs
    case "-h", "--help":
        print(usage)
        exit(0)
    case let option where option.hasPrefix("-"):
        FileHandle.standardError.write(Data("codec-bench: unknown option \(option)\n\(usage)\n".utf8))
        exit(2)
    default: inputs.append(argument)
    }
}
if inputs.isEmpty {
    let shared = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../../shared/data").standardized.path
    for name in ["llama4-maverick-mmlu", "deepseek-v2-lite-prefill"] where FileManager.default.fileExists(atPath: "\(shared)/\(name).npy") {
        inputs.append("\(shared)/\(name).npy")
    }
    inputs += ["qwen3-30b-a3b:50000", "kimi-k2:20000", "mixtral-8x7b:200000"]
}
for input in inputs {
  do {
    let trace: Trace
    if input.hasSuffix(".npy") {
        trace = try loadTrace(input)
    } else {
        let parts = input.split(separator: ":")
        guard let model = ModelShape.named(String(parts[0])) else {
            FileHandle.standardError.write(Data("codec-bench: unknown model \(parts[0]) (neither a .npy path nor one of the models)\n\(usage)\n".utf8))
            exit(2)
        }
        trace = try synthesize(model, tokens: parts.count > 1 ? Int(parts[1]) ?? 50000 : 50000)
    }
    // Each codec at the fast codec's default block size; the compact one also at its own
    // (4x larger) default.
    var runs: [(BlockCodec, Int)] = codecs.map { ($0, blockRows ?? BlockEncoder.defaultBlockRows(for: trace.schema)) }
    if blockRows == nil && codecs.contains(.compact) {
        runs.append((.compact, BlockEncoder.defaultBlockRows(for: trace.schema, codec: .compact)))
    }
    let runsEach = repeats ?? max(5, 100_000_000 / max(1, trace.int32Bytes))
    report(trace, try runs.map { try measureCodec(trace, blockRows: $0.1, repeats: runsEach, codec: $0.0) }
                  + [measureLZ4(trace, repeats: runsEach)])
  } catch {
    print("\(input): \(error)")
    exit(1)
  }
}

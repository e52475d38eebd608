// archive-bench: the archive's figures on a Qwen3-30B-A3B trace (48 layers x top-8, 128 experts):
// one-row appends (a decode step), random one-row reads and open time on a 1M-row archive,
// resident memory while appending, and reads of a quarter of the layers against all of them. LMDeploy's grow-by-np.pad history is measured beside it by
// Benchmarks/run (lmdeploy_growth.py), in the same run.
//
// usage: archive-bench [--rows N] [--reads N] [--block-rows N] [--dir DIR] [--only-append] [--only-layers] [--codec fast|compact]
//        archive-bench --read-all ARCHIVE [--layers A:B] [--threads N]   (the Swift side of
//        python_bench.py: the best of 5 reads of every row, those layers only if given, as int32
//        into one buffer, decoded on N threads (default 1); prints wall and CPU seconds)
import Archive
import Foundation
import TraceSynth

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func threadCPUTime() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// Resident set size in MiB, from /proc/self/statm.
func residentMiB() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let pages = Double(text.split(separator: " ")[1]) ?? 0
    return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
}

let usage = "usage: archive-bench [--rows N] [--reads N] [--block-rows N] [--dir DIR] [--only-append] [--only-layers] [--codec fast|compact] | --read-all ARCHIVE [--layers A:B] [--threads N]"
var totalRows = 1 << 20
var directory = FileManager.default.temporaryDirectory.path
var onlyAppend = false
var onlyLayers = false
var layerCodecs = BlockCodec.allCases
var blockRows: Int?
var reads = 20_000
var readAll: String?
var readLayers: Range<Int>?
var readThreads = 1
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--rows": totalRows = arguments.next().flatMap(Int.init) ?? totalRows
    case "--dir": directory = arguments.next() ?? directory
    case "--only-append": onlyAppend = true
    case "--only-layers": onlyLayers = true
    case "--codec": layerCodecs = arguments.next().flatMap(BlockCodec.init(name:)).map { [$0] } ?? layerCodecs
    case "--block-rows": blockRows = arguments.next().flatMap(Int.init)
    case "--reads": reads = arguments.next().flatMap(Int.init) ?? reads
    case "--read-all": readAll = arguments.next()
    case "--threads": readThreads = arguments.next().flatMap(Int.init) ?? readThreads
    case "--layers":
        let bounds = (arguments.next() ?? "").split(separator: ":").compactMap { Int($0) }
        if bounds.count == 2, bounds[0] <= bounds[1] { readLayers = bounds[0]..<bounds[1] }
    case "-h", "--help":
        print(usage)
        exit(0)
    default:
        FileHandle.standardError.write(Data("archive-bench: unknown argument \(argument)\n\(usage)\n".utf8))
        exit(2)
    }
}

if let readAll {
    let opened: ArchiveReader
    do {
        opened = try ArchiveReader(path: readAll)
    } catch {
        FileHandle.standardError.write(Data("archive-bench: \(error)\n".utf8))
        exit(1)
    }
    let reader = opened
    reader.decodingThreads = readThreads
    let layers = readLayers ?? 0..<reader.schema.layers
    var out = [Int32](repeating: 0, count: reader.count * layers.count * reader.schema.topk)
    // Wall and CPU seconds (CPU time is what a machine shared with other work still measures).
    func cpu() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
    var best = Double.infinity, bestCPU = Double.infinity
    for _ in 0..<5 {
        let start = now(), startCPU = cpu()
        try out.withUnsafeMutableBufferPointer { try reader.read(0..<reader.count, layers: layers, into: $0) }
        best = min(best, now() - start)
        bestCPU = min(bestCPU, cpu() - startCPU)
    }
    print(String(format: "%.6f %.6f", best, bestCPU))
    exit(0)
}

let schema = try ModelShape.named("qwen3-30b-a3b")!.schema()
let perRow = schema.idsPerRow
// A realistic trace of up to 64K rows, replayed to fill longer archives.
let sourceCount = min(65536, totalRows)
var synth = TraceSynthesizer(schema: schema, seed: 1)
let source: [Int32] = synth.rows(sourceCount, as: Int32.self)
func sourceRows(_ positions: Range<Int>) -> ArraySlice<Int32> {
    let start = positions.lowerBound % sourceCount
    return source[start * perRow..<(start + positions.count) * perRow]
}

let path = "\(directory)/archive-bench-\(getpid()).moe"
defer { try? FileManager.default.removeItem(atPath: path) }

// 4 (first when asked alone). Reads of a quarter of the layers (a pipeline stage's share)
// against all layers, both codecs: the rows read in 8192-row batches into one reused int32
// buffer (page cache warm), best of 5 runs of this thread's CPU time (steadier than wall time
// on a shared machine; the reads make no system calls).
func measureLayerRanges(schema: Schema, rows: Int, blockRows: Int?, codecs: [BlockCodec], path: String, source: [Int32]) throws {
    let batch = 8192, quarter = schema.layers / 4, perRow = schema.idsPerRow, sourceCount = source.count / perRow
    print("layer-range reads of \(rows) rows in \(batch)-row batches to int32 (best of 5, CPU time):")
    for codec in codecs {
        let writer = try ArchiveWriter.create(at: path, schema: schema, blockRows: blockRows, codec: codec, overwrite: true)
        var position = 0
        while position < rows {
            let count = min(batch, rows - position)
            let first = position % sourceCount, piece = min(count, sourceCount - first)
            try source[first * perRow..<(first + piece) * perRow].withUnsafeBufferPointer { _ = try writer.append($0, at: position) }
            position += piece
        }
        try writer.close()
        let reader = try ArchiveReader(path: path)
        var out = [Int32](repeating: 0, count: batch * perRow)
        let topk = schema.topk
        func readAll(_ layers: Range<Int>) throws -> Double {
            var best = Double.infinity
            for _ in 0..<5 {
                let start = threadCPUTime()
                try out.withUnsafeMutableBufferPointer { out in
                    for first in stride(from: 0, to: rows, by: batch) {
                        let count = min(batch, rows - first)
                        try reader.read(first..<first + count, layers: layers,
                                        into: UnsafeMutableBufferPointer(rebasing: out[..<(count * layers.count * topk)]))
                    }
                }
                best = min(best, threadCPUTime() - start)
            }
            return best
        }
        let all = try readAll(0..<schema.layers)
        var line = String(format: "  %@: all %d layers %.1f ms (%.2f GB/s of int32)", "\(codec)", schema.layers, all * 1e3,
                          Double(rows * perRow * 4) / all / 1e9)
        for q in 0..<4 {
            let layers = q * quarter..<(q + 1) * quarter
            let seconds = try readAll(layers)
            line += String(format: "; layers %d..<%d %.1f ms = %.0f%%", layers.lowerBound, layers.upperBound, seconds * 1e3, seconds / all * 100)
        }
        print(line)
    }
}
if onlyLayers {
    try measureLayerRanges(schema: schema, rows: min(totalRows, 262_144), blockRows: blockRows, codecs: layerCodecs, path: path, source: source)
    exit(0)
}

// 1. One-row appends, as a decode loop makes them, up to 128K rows.
let appendRows = min(totalRows, 131_072)
do {
    let writer = try ArchiveWriter.create(at: path, schema: schema, blockRows: blockRows, overwrite: true)
    let start = now()
    for position in 0..<appendRows {
        try sourceRows(position..<position + 1).withUnsafeBufferPointer { _ = try writer.append($0, at: position) }
    }
    try writer.flush()
    let seconds = now() - start
    try writer.close()
    print(String(format: "one-row append (Qwen3-30B-A3B row, %d rows, flushed): %.3f us per row amortised", appendRows, seconds / Double(appendRows) * 1e6))
}

if onlyAppend { exit(0) }

// 2. Memory while appending 1M rows in decode-sized batches, then the archive's figures.
do {
    let writer = try ArchiveWriter.create(at: path, schema: schema, blockRows: blockRows, overwrite: true)
    print("block rows: \(writer.blockRows); decoder kernels: \(VectorKernels.available ? "AVX-512 (CVectorKernels)" : "Swift")")
    var samples: [Double] = []
    let start = now()
    var position = 0
    while position < totalRows {
        let batch = min(4096, totalRows - position)
        try sourceRows(position..<position + batch).withUnsafeBufferPointer { _ = try writer.append($0, at: position) }
        position += batch
        if position % 131_072 == 0 { samples.append(residentMiB()) }
    }
    try writer.close()
    let seconds = now() - start
    let bytes = writer.fileBytes, int32Bytes = totalRows * perRow * 4
    print(String(format: "append %d rows in 4096-row batches: %.2f s, %.2f GB/s of int32; archive %.1f MiB, ratio %.2f vs int32",
                 totalRows, seconds, Double(int32Bytes) / seconds / 1e9, Double(bytes) / 1_048_576, Double(int32Bytes) / Double(bytes)))
    print("resident memory every 128K rows (MiB): " + samples.map { String(format: "%.1f", $0) }.joined(separator: " "))
}

// 3. Open time and random one-row reads on the big archive (page cache warm).
do {
    var bestOpen = Double.infinity
    for _ in 0..<10 {
        let start = now()
        let reader = try ArchiveReader(path: path)
        bestOpen = min(bestOpen, now() - start)
        precondition(reader.count == totalRows)
    }
    print(String(format: "open a %d-row archive: %.2f ms (best of 10)", totalRows, bestOpen * 1e3))

    let reader = try ArchiveReader(path: path)
    var random = SplitMix64(seed: 5)
    var row = [Int32](repeating: 0, count: perRow)
    let positions = (0..<reads).map { _ in Int(random.next() % UInt64(totalRows)) }
    let start = now()
    for position in positions {
        try row.withUnsafeMutableBufferPointer { try reader.read(position..<position + 1, into: $0) }
    }
    let seconds = now() - start
    precondition(row[...] == sourceRows(positions.last!..<positions.last! + 1), "read back differs")
    print(String(format: "read one row at a random position: %.2f us (mean of %d, each in another block)", seconds / Double(reads) * 1e6, reads))
}

try measureLayerRanges(schema: schema, rows: min(totalRows, 262_144), blockRows: blockRows, codecs: layerCodecs, path: path, source: source)

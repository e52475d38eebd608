// archive-bench: the archive's figures on a Qwen3-30B-A3B trace (48 layers x top-8, 128 experts):
// one-row appends (a decode step), random one-row reads and open time on a 1M-row archive, and
// resident memory while appending. LMDeploy's grow-by-np.pad history is measured beside it by
// Benchmarks/run (lmdeploy_growth.py), in the same run.
//
// usage: archive-bench [--rows N] [--reads N] [--block-rows N] [--dir DIR] [--only-append]
//        archive-bench --read-all ARCHIVE [--layers A:B]   (the Swift side of python_bench.py: the
//        best of 5 reads of every row, those layers only if given, as int32 into one buffer)
import Archive
import Foundation
import TraceSynth

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Resident set size in MiB, from /proc/self/statm.
func residentMiB() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let pages = Double(text.split(separator: " ")[1]) ?? 0
    return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
}

let usage = "usage: archive-bench [--rows N] [--reads N] [--block-rows N] [--dir DIR] [--only-append] | --read-all ARCHIVE [--layers A:B]"
var totalRows = 1 << 20
var directory = FileManager.default.temporaryDirectory.path
var onlyAppend = false
var blockRows: Int?
var reads = 20_000
var readAll: String?
var readLayers: Range<Int>?
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--rows": totalRows = arguments.next().flatMap(Int.init) ?? totalRows
    case "--dir": directory = arguments.next() ?? directory
    case "--only-append": onlyAppend = true
    case "--block-rows": blockRows = arguments.next().flatMap(Int.init)
    case "--reads": reads = arguments.next().flatMap(Int.init) ?? reads
    case "--read-all": readAll = arguments.next()
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
    let reader = try ArchiveReader(path: readAll)
    let layers = readLayers ?? 0..<reader.schema.layers
    var out = [Int32](repeating: 0, count: reader.count * layers.count * reader.schema.topk)
    var best = Double.infinity
    for _ in 0..<5 {
        let start = now()
        try out.withUnsafeMutableBufferPointer { try reader.read(0..<reader.count, layers: layers, into: $0) }
        best = min(best, now() - start)
    }
    print(String(format: "%.6f", best))
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
    print("block rows: \(writer.blockRows)")
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

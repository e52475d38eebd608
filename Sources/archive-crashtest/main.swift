// archive-crashtest: the writer and reader processes of the archive's crash and concurrency
// tests (and of the soak script). Not a user tool.
//
//   archive-crashtest write PATH SEED      append deterministic rows forever, printing "opened N"
//                                          once open, then "synced N" after each completed sync()
//   archive-crashtest flush PATH SEED ROWS append ROWS rows, flushing often ("flushed N"), then close
//   archive-crashtest churn PATH SEED ROWS [handshake]
//                                          as flush, but every few flushes truncate some rows
//                                          away (a rollback) and append them again; with
//                                          handshake, the first rollback prints "before N" (rows
//                                          flushed) and "truncated N" (rows after it), each time
//                                          waiting for a line on standard input before going on
//   archive-crashtest limit PATH SEED BYTES under a file-size limit of BYTES (RLIMIT_FSIZE), append
//                                          and sync until a write fails: prints "synced N" after each
//                                          sync, then "failed after N: ERROR" and exits 3
//   archive-crashtest check PATH SEED      exit 0 if every row equals the deterministic one
//   archive-crashtest read PATH SEED       read every row again and again (refreshing, and now and
//                                          then opening anew), printing "read N" after each pass,
//                                          until PATH.stop exists; a wrong row prints "wrong P" and
//                                          exits 1, an error exits 4 (a healthy archive has none)
//
// Row p's ids depend only on (SEED, p) (TraceSynth's PositionalRows): any process can check any prefix.
import Archive
import Foundation
import TraceSynth

let schema = try! Schema(layers: 6, topk: 4, experts: 100, denseLayers: [0])

func rows(_ positions: Range<Int>, seed: UInt64) -> [Int32] {
    PositionalRows(schema: schema, seed: seed).rows(positions)
}

func openOrCreate(_ path: String) throws -> ArchiveWriter {
    FileManager.default.fileExists(atPath: path)
        ? try ArchiveWriter.open(at: path)
        : try ArchiveWriter.create(at: path, schema: schema, blockRows: 64)
}

func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

let arguments = CommandLine.arguments
guard arguments.count >= 4, let seed = UInt64(arguments[3]) else {
    FileHandle.standardError.write(Data("usage: archive-crashtest write|flush|check PATH SEED [ROWS]\n".utf8))
    exit(2)
}
let path = arguments[2]
do {
    switch arguments[1] {
    case "write":
        let writer = try openOrCreate(path)
        say("opened \(writer.count)")
        var generator = SystemRandomNumberGenerator()
        var batches = 0
        while true {
            let start = writer.count
            // Re-send a little history now and then, as a re-prefill after eviction does.
            let from = Int.random(in: 0..<10, using: &generator) == 0 ? max(0, start - 50) : start
            let size = Int.random(in: 1...40, using: &generator)
            try writer.append(rows(from..<start + size, seed: seed), at: from)
            batches += 1
            if batches % 5 == 0 {
                try writer.sync()
                say("synced \(writer.count)")
            }
        }
    case "flush":
        let total = Int(arguments[4])!
        let writer = try openOrCreate(path)
        while writer.count < total {
            try writer.append(rows(writer.count..<min(total, writer.count + 7), seed: seed))
            if writer.count % 21 == 0 { try writer.flush(); say("flushed \(writer.count)") }
        }
        try writer.close()
        say("closed \(writer.count)")
    case "churn":
        let total = Int(arguments[4])!
        var handshake = arguments.count > 5 && arguments[5] == "handshake"
        let writer = try openOrCreate(path)
        var generator = SystemRandomNumberGenerator()
        var flushes = 0
        while writer.count < total {
            try writer.append(rows(writer.count..<min(total, writer.count + 5), seed: seed))
            guard Int.random(in: 0..<4, using: &generator) == 0 else { continue }
            try writer.flush()
            flushes += 1
            usleep(2000) // paced, so that the reader in the other process sees the steps
            if flushes % 2 == 0 && writer.count > 0 {
                if handshake {
                    // The reader in the other process sees the rows before the rollback, then after.
                    say("before \(writer.count)")
                    _ = readLine()
                }
                try writer.truncate(to: max(0, writer.count - Int.random(in: 1...40, using: &generator)))
                say("truncated \(writer.count)")
                if handshake {
                    _ = readLine()
                    handshake = false
                }
            }
        }
        try writer.close()
        say("closed \(writer.count)")
    case "limit":
        var limit = rlimit(rlim_cur: rlim_t(arguments[4])!, rlim_max: rlim_t(arguments[4])!)
        signal(SIGXFSZ, SIG_IGN) // a write past the limit fails with EFBIG instead of killing us
        guard setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit) == 0 else { exit(2) }
        let writer = try openOrCreate(path)
        do {
            while true {
                try writer.append(rows(writer.count..<writer.count + 37, seed: seed))
                try writer.sync()
                say("synced \(writer.count)")
            }
        } catch {
            say("failed after \(writer.count): \(error)")
            exit(3)
        }
    case "check":
        let reader = try ArchiveReader(path: path)
        for p in 0..<reader.count where try reader.row(at: p, as: Int32.self) != rows(p..<p + 1, seed: seed) {
            FileHandle.standardError.write(Data("row \(p) differs\n".utf8))
            exit(1)
        }
        say("rows \(reader.count)")
    case "read":
        var reader = try ArchiveReader(path: path)
        var passes = 0
        while access(path + ".stop", F_OK) != 0 {
            passes += 1
            if passes % 5 == 0 { reader = try ArchiveReader(path: path) } else { try reader.refresh() }
            let count = reader.count
            let stored = try reader.rows(0..<count, as: Int32.self), truth = rows(0..<count, seed: seed)
            if stored != truth {
                let row = (0..<count).first { stored[($0 * schema.idsPerRow)..<(($0 + 1) * schema.idsPerRow)] != truth[($0 * schema.idsPerRow)..<(($0 + 1) * schema.idsPerRow)] }!
                say("wrong \(row)")
                exit(1)
            }
            say("read \(count)")
        }
        say("passes \(passes)")
    default:
        exit(2)
    }
} catch {
    FileHandle.standardError.write(Data("archive-crashtest: \(error)\n".utf8))
    say("error \(error)")
    exit(arguments[1] == "read" ? 4 : 1)
}

import Foundation
import Testing
@_spi(Faults) import Archive
import TraceSynth

// Crash and failure tables in the manner of SQLite's crash tests (`src/test6.c`): a workload of
// appends, flushes, syncs, truncations, reopens and rollbacks runs on a simulated disk that sees
// every write, fsync and ftruncate. For every N, the run either crashes at the N-th operation
// (unsynced writes then reach the disk whole, not at all, torn by sector or garbled) or sees it
// fail with ENOSPC, EIO or EFBIG; then the promises of the README are checked.
//
// CI runs `faultWorkloads` workloads (a few hundred cases each); scripts/soak raises it.
let faultWorkloads = soakSetting("ARCHIVE_SOAK_WORKLOADS", default: 2)

/// The simulated disk under one archive file: a log of what the writer did to it, and a fault at
/// one operation (counted from 1).
final class SimulatedDisk: FileFaults {
    enum Operation {
        case write(offset: Int, bytes: [UInt8])
        case sync
        case truncate(length: Int)
    }

    enum Fault {
        case none
        case crash(at: Int)
        case fail(at: Int, errno: Int32)
    }

    /// Stops the writer at the crash; every later operation is refused the same way.
    struct Crash: Error {}

    let fault: Fault
    private(set) var operations = 0
    /// What reached the page cache, in order.
    private(set) var log: [Operation] = []
    /// The operation the crash interrupted: a write of it may have reached the disk in part.
    private(set) var interrupted: Operation?
    private(set) var crashed = false
    /// The operation that was made to fail, once it has.
    private(set) var failed: Operation?

    init(_ fault: Fault = .none) { self.fault = fault }

    func before(_ operation: FileOperation) throws {
        if crashed { throw Crash() }
        operations += 1
        let recorded: Operation
        switch operation {
        case .write(let offset, let bytes): recorded = .write(offset: offset, bytes: Array(bytes))
        case .sync: recorded = .sync
        case .truncate(let length): recorded = .truncate(length: length)
        }
        switch fault {
        case .crash(let n) where n == operations:
            crashed = true
            interrupted = recorded
            throw Crash()
        case .fail(let n, let code) where n == operations:
            failed = recorded
            throw InjectedFailure(errno: code)
        default:
            log.append(recorded)
        }
    }

    /// What unsynced writes leave on the disk after a power loss.
    enum Loss: CaseIterable {
        /// All of them arrived.
        case none
        /// None arrived.
        case all
        /// Each 512-byte sector arrived or not; each truncation happened or not.
        case torn
        /// As `torn`, and some sectors hold garbage.
        case garbled
    }

    /// The file as the disk holds it after the crash: everything up to the last completed
    /// fsync, then the later operations (and the interrupted write) as `loss` has it.
    func diskImage(after loss: Loss, random: inout SplitMix64) -> [UInt8] {
        var cache: [UInt8] = [], durable: [UInt8] = []
        var unsynced: [Operation] = []
        for operation in log {
            Self.apply(operation, to: &cache)
            if case .sync = operation {
                durable = cache
                unsynced = []
            } else {
                unsynced.append(operation)
            }
        }
        if let interrupted { unsynced.append(interrupted) }
        var disk = durable
        for operation in unsynced {
            switch (operation, loss) {
            case (_, .all), (.sync, _): break
            case (_, .none): Self.apply(operation, to: &disk)
            case (.truncate, _): if random.next() & 1 == 0 { Self.apply(operation, to: &disk) }
            case (.write(let offset, let bytes), _):
                // Sectors are aligned to the file, as the disk's are.
                var start = offset
                while start < offset + bytes.count {
                    let end = min((start / 512 + 1) * 512, offset + bytes.count)
                    var sector = Array(bytes[(start - offset)..<(end - offset)])
                    let fate = random.next() % (loss == .garbled ? 3 : 2)
                    if fate == 2 { for i in sector.indices { sector[i] = UInt8(truncatingIfNeeded: random.next()) } }
                    if fate != 0 { Self.apply(.write(offset: start, bytes: sector), to: &disk) }
                    start = end
                }
            }
        }
        return disk
    }

    private static func apply(_ operation: Operation, to file: inout [UInt8]) {
        switch operation {
        case .sync: break
        case .truncate(let length):
            if length < file.count { file.removeLast(file.count - length) } else { file += [UInt8](repeating: 0, count: length - file.count) }
        case .write(let offset, let bytes):
            if file.count < offset + bytes.count { file += [UInt8](repeating: 0, count: offset + bytes.count - file.count) }
            file.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        }
    }
}

/// One call of the workload, drawn from the seed and the step's number.
enum WorkloadStep {
    case append(start: Int, rows: [Int32])
    case flush
    case sync
    case truncate(to: Int)
    case reopen
    /// Appends at the end, then rolls back to before (a failed import).
    case rollback(rows: [Int32])

    static func draw(seed: UInt64, step: Int, count: Int, schema: Schema) -> WorkloadStep {
        var random = SplitMix64(seed: seed &* 1_000_003 &+ UInt64(step))
        func rows(_ n: Int) -> [Int32] {
            (0..<(n * schema.idsPerRow)).map { _ in Int32(random.next() % UInt64(schema.experts)) }
        }
        func below(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }
        switch below(100) {
        case 0..<40: return .append(start: count, rows: rows(1)) // a decode step
        case 40..<52: return .append(start: count, rows: rows(1 + below(20))) // a prefill chunk
        case 52..<60: // a re-prefill after eviction: the head is already stored
            let start = max(0, count - below(12))
            return .append(start: start, rows: rows(count - start + below(12)))
        case 60..<70: return .flush
        case 70..<81: return .sync
        case 81..<87: return .truncate(to: max(0, count - below(15)))
        case 87..<92: return .reopen
        default: return .rollback(rows: rows(1 + below(20)))
        }
    }
}

/// The archive's rows (flushed ones: what a crash can keep) after a completed call.
struct Snapshot {
    /// Operations on the disk when the call returned.
    let operations: Int
    let rows: [[Int64]]
    /// Whether the call made every written row durable (sync, close, a truncation on disk).
    let durable: Bool
}

/// The archive just before a call of the workload: what a failed call must leave.
struct CallState {
    let model: ReferenceModel
    let bytes: [UInt8]
    /// Rows a failed fsync may not lose: those written before the call, or fewer if the call
    /// itself cuts rows (a truncation, a rollback).
    let floor: Int
}

/// Runs a workload against an archive on a simulated disk, keeping the reference model and a
/// snapshot after every call.
final class FaultWorkload {
    static let schema = try! Schema(layers: 4, topk: 2, experts: 16, denseLayers: [1])
    let seed: UInt64, path: String, disk: SimulatedDisk
    var writer: ArchiveWriter?
    var model = ReferenceModel()
    var snapshots: [Snapshot] = []
    /// Set to keep ``beforeCall`` (the failure table needs it).
    var recordsCalls = false
    private(set) var beforeCall: CallState?

    init(seed: UInt64, path: String, disk: SimulatedDisk) {
        self.seed = seed
        self.path = path
        self.disk = disk
    }

    var schema: Schema { Self.schema }

    /// The model's rows as reads return them: dense layers hold the dense fill.
    func modelRows(_ ids: [Int32]) -> [[Int64]] {
        ids.map(Int64.init).rows(of: schema.idsPerRow).map { row in
            var row = row
            for layer in schema.denseLayers { for slot in 0..<schema.topk { row[layer * schema.topk + slot] = Int64(Schema.denseFill) } }
            return row
        }
    }

    private var flushed: Int { writer?.flushedCount ?? model.rows.count }

    private func snapshot(durable: Bool) {
        snapshots.append(Snapshot(operations: disk.operations, rows: Array(model.rows[..<flushed]), durable: durable))
    }

    private func willCall(floor: Int? = nil) {
        guard recordsCalls else { return }
        beforeCall = CallState(model: model, bytes: fileBytes(path), floor: floor ?? flushed)
    }

    func create() throws {
        writer = try ArchiveWriter.create(at: path, schema: schema, blockRows: 8, overwrite: true, faults: disk)
        snapshot(durable: true)
    }

    /// Runs step `index`; the model follows each call that succeeds.
    func run(step index: Int) throws {
        guard let writer else { return }
        let step = WorkloadStep.draw(seed: seed, step: index, count: writer.count, schema: schema)
        switch step {
        case .append(let start, let rows):
            willCall()
            let result = try writer.append(rows, at: start)
            let expected = model.append(modelRows(rows), at: start)
            #expect(expected.map { [$0.0, $0.1] } == [result.appended, result.skipped])
            snapshot(durable: false)
        case .flush:
            willCall()
            try writer.flush()
            snapshot(durable: false)
        case .sync:
            willCall()
            try writer.sync()
            snapshot(durable: true)
        case .truncate(let rows):
            let onDisk = rows < writer.flushedCount
            willCall(floor: min(rows, flushed))
            try writer.truncate(to: rows)
            model.truncate(to: rows)
            snapshot(durable: onDisk)
        case .reopen:
            willCall()
            try writer.close()
            self.writer = nil
            willCall()
            self.writer = try ArchiveWriter.open(at: path, faults: disk)
            snapshot(durable: true)
        case .rollback(let rows):
            let checkpoint = writer.checkpoint(), before = model, flushedAtCheckpoint = flushed
            willCall()
            try writer.append(rows, at: writer.count)
            _ = model.append(modelRows(rows), at: model.rows.count)
            snapshot(durable: false)
            willCall(floor: flushedAtCheckpoint)
            try writer.rollback(to: checkpoint)
            model = before
            snapshot(durable: true)
        }
    }
}

@Suite(.tags(.soak, .slow)) struct FaultInjectionTests {
    static let steps = 150

    /// The snapshots of the workload run to the end without a fault, and the
    /// operations it made.
    static func cleanRun(seed: UInt64, in dir: TemporaryDirectory) throws -> (snapshots: [Snapshot], operations: Int) {
        let disk = SimulatedDisk(), workload = FaultWorkload(seed: seed, path: dir.file("clean-\(seed)"), disk: disk)
        try workload.create()
        for step in 0..<steps { try workload.run(step: step) }
        return (workload.snapshots, disk.operations)
    }

    /// A crash at every operation of the workload, with every kind of loss of unsynced writes:
    /// the archive opens; its rows are those of a state the archive went through since the last
    /// completed durable call, cut to a prefix no shorter than the shortest state since then;
    /// nothing read is wrong; and it takes appends again.
    @Test func crashAtEveryOperation() throws {
        let dir = TemporaryDirectory()
        var cases = 0, tornTails = 0
        for seed in 1...UInt64(faultWorkloads) {
            let clean = try Self.cleanRun(seed: seed, in: dir)
            for n in 1...clean.operations {
                // One run to the crash; every kind of loss is a different disk image of it.
                let disk = try crashRun(seed: seed, at: n, dir: dir)
                for loss in SimulatedDisk.Loss.allCases {
                    if try checkCrash(seed: seed, at: n, disk: disk, loss: loss, clean: clean.snapshots, dir: dir) {
                        tornTails += 1
                    }
                    cases += 1
                }
            }
        }
        #expect(cases >= 500 * faultWorkloads)
        #expect(tornTails >= cases / 10, "the table reaches torn and garbled tails")
        print("fault injection: \(cases) crash cases (\(tornTails) with a torn tail cut)")
    }

    /// Runs the workload of `seed` until the crash at operation `n`; returns the disk that saw it.
    func crashRun(seed: UInt64, at n: Int, dir: TemporaryDirectory) throws -> SimulatedDisk {
        let disk = SimulatedDisk(.crash(at: n))
        let workload = FaultWorkload(seed: seed, path: dir.file("live"), disk: disk)
        do {
            try workload.create()
            for step in 0..<Self.steps { try workload.run(step: step) }
        } catch is SimulatedDisk.Crash {}
        workload.writer = nil
        #expect(disk.crashed, "seed \(seed), crash at operation \(n)")
        return disk
    }

    /// Checks the disk image `loss` leaves of the crashed run; returns whether recovery cut a
    /// torn tail.
    func checkCrash(seed: UInt64, at n: Int, disk: SimulatedDisk, loss: SimulatedDisk.Loss, clean: [Snapshot],
                    dir: TemporaryDirectory) throws -> Bool {
        let schema = FaultWorkload.schema
        let context: Comment = "seed \(seed), crash at operation \(n), loss \(loss)"
        var random = SplitMix64(seed: seed << 32 | UInt64(n))
        let crashed = dir.file("crashed")
        writeFile(crashed, disk.diskImage(after: loss, random: &random))

        let completed = clean.filter { $0.operations < n }
        guard let lastDurable = completed.lastIndex(where: \.durable) else {
            // The crash came before create() returned: there is no archive to promise anything
            // about, but what is there must not open as something else.
            if let reader = try? ArchiveReader(path: crashed) { #expect(reader.count == 0, context) }
            return false
        }
        let recovered = try ArchiveWriter.open(at: crashed)
        let rows = try recovered.rows(0..<recovered.count, as: Int64.self).rows(of: schema.idsPerRow)
        // The states the archive may be in: from the last completed durable call to the call
        // the crash interrupted.
        let candidates = Array(completed[lastDurable...]) + clean.filter { $0.operations >= n }.prefix(1)
        var shortest = Int.max, found = false
        for state in candidates {
            shortest = min(shortest, state.rows.count)
            if rows.count >= shortest, rows.count <= state.rows.count, Array(state.rows[..<rows.count]) == rows {
                found = true
                break
            }
        }
        #expect(found, "\(context): the \(rows.count) recovered rows are not a state the archive went through, or synced rows were lost")
        // A reader sees the same rows; the torn tail stays until the writer writes (a writer
        // that only opened changes nothing), and is then zeroed under this reader's mapping.
        let reader = try ArchiveReader(path: crashed)
        #expect(reader.count == rows.count, context)
        #expect((reader.ignoredTail != nil) == (recovered.recoveredTail != nil), context)
        // It goes on: appends after recovery land after the recovered rows.
        try recovered.append([Int32](repeating: 3, count: 2 * schema.idsPerRow))
        try recovered.close()
        let after = try ArchiveReader(path: crashed)
        #expect(after.count == rows.count + 2, context)
        #expect(after.verify().isEmpty, context)
        #expect(try after.rows(0..<rows.count, as: Int64.self).rows(of: schema.idsPerRow) == rows, context)
        withExtendedLifetime(reader) {}
        return recovered.recoveredTail != nil
    }

    /// Every operation of the workload fails once, with ENOSPC, EIO or EFBIG in turn: the call
    /// reports the error naming the file and the system's reason, the archive is as it was
    /// before the call (rows and bytes), and the workload goes on. A failed fsync is the
    /// documented exception: the writer refuses to go on, and reopening gives every row that
    /// was written before the call (fewer only if the call was cutting them).
    @Test func failureAtEveryOperation() throws {
        let dir = TemporaryDirectory()
        let codes: [Int32] = [ENOSPC, EIO, EFBIG]
        var cases = 0
        for seed in 1...UInt64(faultWorkloads) {
            let clean = try Self.cleanRun(seed: seed, in: dir)
            for n in 1...clean.operations {
                try checkFailure(seed: seed, at: n, errno: codes[n % codes.count], dir: dir)
                cases += 1
            }
        }
        #expect(cases >= 100 * faultWorkloads)
        print("fault injection: \(cases) failure cases")
    }

    /// A writer stopped by a failed fsync and then dropped releases its lock at once, even while
    /// a child process forked meanwhile still holds a copy of its descriptor (a soak finding:
    /// test suites, and engines, start processes while a writer is open).
    @Test(.tags(.processes)) func aDroppedWriterUnlocksWhileAForkedChildHoldsItsDescriptor() throws {
        let dir = TemporaryDirectory(), path = dir.file("a")
        // create: ftruncate, write, fsync; sync(): write, then the fsync that fails.
        var writer: ArchiveWriter? = try ArchiveWriter.create(at: path, schema: FaultWorkload.schema, blockRows: 8,
                                                              faults: SimulatedDisk(.fail(at: 5, errno: EIO)))
        try writer!.append([Int32](repeating: 1, count: FaultWorkload.schema.idsPerRow))
        #expect(throws: ArchiveError.self) { try writer!.sync() }
        let child = fork()
        if child == 0 { // holds the descriptor, never execs
            usleep(2_000_000)
            _exit(0)
        }
        defer { kill(child, SIGKILL); waitpid(child, nil, 0) }
        writer = nil
        let reopened = try ArchiveWriter.open(at: path)
        #expect(reopened.count == 1)
        try reopened.close()
    }

    func checkFailure(seed: UInt64, at n: Int, errno code: Int32, dir: TemporaryDirectory) throws {
        let path = dir.file("failing-\(seed)-\(n)"), disk = SimulatedDisk(.fail(at: n, errno: code))
        let workload = FaultWorkload(seed: seed, path: path, disk: disk)
        workload.recordsCalls = true
        let context: Comment = "seed \(seed), \(String(cString: strerror(code))) at operation \(n)"
        func expectClear(_ error: any Error) {
            #expect("\(error)".contains(path) && "\(error)".contains(String(cString: strerror(code))), "\(context): \(error)")
        }
        do {
            try workload.create()
        } catch {
            expectClear(error)
            return
        }
        for step in 0..<Self.steps {
            do {
                try workload.run(step: step)
                continue
            } catch {
                expectClear(error)
            }
            let before = workload.beforeCall!
            if case .sync = disk.failed {
                // The writer refuses to go on; reopening gives what was written.
                if let writer = workload.writer {
                    #expect(throws: ArchiveError.self, context) { try writer.flush() }
                }
                workload.writer = nil
                let reopened = try ArchiveWriter.open(at: path, faults: disk)
                let rows = try reopened.rows(0..<reopened.count, as: Int64.self).rows(of: workload.schema.idsPerRow)
                #expect(rows.count >= before.floor && rows.count <= before.model.rows.count
                        && Array(before.model.rows[..<rows.count]) == rows, "\(context): \(rows.count) rows after reopening")
                workload.writer = reopened
                workload.model.rows = rows
            } else {
                #expect(fileBytes(path) == before.bytes, "\(context): the file changed")
                let writer = try workload.writer ?? ArchiveWriter.open(at: path, faults: disk)
                workload.writer = writer
                #expect(writer.count == before.model.rows.count, context)
                #expect(try writer.rows(0..<writer.count, as: Int64.self).rows(of: workload.schema.idsPerRow) == before.model.rows, context)
                workload.model = before.model
            }
        }
        #expect(disk.failed != nil, "\(context): the failure was injected")
        try workload.writer?.close()
        let reader = try ArchiveReader(path: path)
        #expect(try reader.rows(0..<reader.count, as: Int64.self).rows(of: workload.schema.idsPerRow) == workload.model.rows, context)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Archive
import ArgumentParser
import Foundation
import NumpyFile
import SystemFile

struct Pack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store a .npy trace in a new archive, or append it to an existing one.",
        discussion: """
            The input is a .npy array of integer expert ids (|u1 <u2 <u4 <u8 |i1 <i2 <i4 <i8, \
            versions 1.0 to 3.0, C order) shaped [tokens, layers, topk], or [tokens, \
            layers*topk] with --layers. Row i of the input is the token at absolute position \
            --start + i. A regular file is memory-mapped, standard input (-) streamed: memory \
            use stays around 16 MiB whatever the input size.

            A new archive is written under a temporary name beside OUTPUT and renamed onto it \
            when complete: a failed pack leaves no file behind. Without --experts the count is \
            inferred from the data (largest id on a MoE layer + 1, at least 2): the input is \
            read twice, so standard input needs --experts.

            With --append the rows go to an existing archive by the replay rules: rows it \
            already holds are kept and skipped (the report counts those that differ), a start \
            past its end (a gap) is refused. The whole input is checked before any of it is \
            written (standard input is first copied to an unnamed temporary file beside the \
            archive): a refused or failed append leaves the archive byte for byte as it was.

            Ids on --dense-layers layers are not stored (they read back as 0): non-zero ones \
            are counted in a warning naming the first, and --strict refuses such an input.

            SIGINT or SIGTERM (any number of times) stops the work at its next step; what was \
            written is undone before the tool exits with 130 or 143.

            EXAMPLES:
              archive-tool pack trace.npy -o trace.moe
              archive-tool pack trace.npy -o trace.moe --experts 256 \\
                  --dense-layers 0,1,2 --meta model=deepseek-v3 --meta run=42
              archive-tool pack flat.npy -o trace.moe --layers 48        # [tokens, 48*8]
              archive-tool pack next.npy -o trace.moe --append           # at the end
              archive-tool pack reprefill.npy -o trace.moe --append --start 0
              python3 -c 'import numpy,sys; numpy.save(sys.stdout.buffer, a)' | \\
                  archive-tool pack - -o trace.moe --experts 64

            \(ExitStatus.helpSection)
            """
    )

    @Argument(help: ArgumentHelp(
        "The .npy trace: [tokens, layers, topk], or [tokens, layers*topk] with --layers; - reads standard input.",
        valueName: "input.npy"))
    var input: String

    @Option(name: [.customShort("o"), .customLong("output")],
            help: ArgumentHelp("The archive to create, or to append to with --append.", valueName: "archive"))
    var output: String

    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Expert count E: ids are in [0, E). Default: the largest id + 1 (at least 2); required when reading standard input. With --append it must equal the archive's.",
        valueName: "E"))
    var experts: Int?

    @Flag(help: "Append to an existing archive instead of creating one.")
    var append = false

    @Option(parsing: .unconditional, help: ArgumentHelp(
        "With --append: the absolute position of the input's first row (default: the archive's row count). Rows the archive already holds are skipped; a start past its end is refused.",
        valueName: "N"))
    var start: Int?

    @Option(name: .customLong("meta"), help: ArgumentHelp(
        "Metadata of a new archive (repeatable). 'source' defaults to the input's file name.", valueName: "key=value"))
    var meta: [String] = []

    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Layers per row: reads a 2-D input [tokens, layers*topk] (with --append the default is the archive's).",
        valueName: "L"))
    var layers: Int?

    @Option(name: .customLong("dense-layers"), help: ArgumentHelp(
        "Dense (non-MoE) layers, comma-separated: their values are not stored and read back as 0. With --append they must be the archive's.",
        valueName: "0,1,2"), transform: parseLayerList)
    var denseLayers: [Int]?

    @Option(name: .customLong("block-rows"), parsing: .unconditional, help: ArgumentHelp(
        "Rows per block of a new archive: 1 or more, at most 2^26 stored ids a block (67,108,864 / (MoE layers x topk)). Default: about \(BlockEncoder.defaultBlockBytes / 1024) KiB of fixed-width ids with the fast codec, \(BlockEncoder.defaultCompactBlockBytes / 1024) KiB with the compact one (a multiple of 8 in 64...65536).",
        valueName: "N"))
    var blockRows: Int?

    @Option(help: ArgumentHelp(
        "Block codec of a new archive: 'fast' (column bit planes in LZ4 frames) or 'compact' (rANS-coded columns, about 10-25% smaller on real traces, encodes and decodes about 2-3x slower).",
        valueName: "fast|compact"), transform: { name in
            guard let codec = BlockCodec(name: name) else { throw ValidationError("--codec must be \(BlockCodec.allCases.map { "'\($0)'" }.joined(separator: " or ")), got '\(name)'") }
            return codec
        })
    var codec: BlockCodec?

    @Flag(help: "Replace an existing output, if it is a regular file (a new archive only; --append never overwrites).")
    var force = false

    @Flag(help: "Refuse an input with non-zero ids on --dense-layers layers (they are not stored) instead of warning.")
    var strict = false

    @OptionGroup var options: QuietOption

    @Option(parsing: .unconditional, help: ArgumentHelp("Threads that encode blocks (default: the processors available).", valueName: "N"))
    var threads = ProcessInfo.processInfo.activeProcessorCount

    func validate() throws {
        guard (1...256).contains(threads) else { throw ValidationError("--threads must be in 1...256, got \(threads)") }
        if output == "-" { throw ValidationError("an archive cannot be written to standard output; give a file with -o") }
        if let experts, !Schema.expertLimits.contains(experts) {
            throw ValidationError("--experts must be in \(Schema.expertLimits), got \(experts)")
        }
        if let layers, !Schema.layerLimits.contains(layers) {
            throw ValidationError("--layers must be in \(Schema.layerLimits), got \(layers)")
        }
        if let start {
            guard start >= 0 else { throw ValidationError("--start must be a position (0 or more), got \(start)") }
            guard append || start == 0 else {
                throw ValidationError("--start applies to --append: a new archive starts at position 0")
            }
        }
        if let blockRows, blockRows < 1 { throw ValidationError("--block-rows must be at least 1, got \(blockRows)") }
        if append {
            if force { throw ValidationError("--force replaces a new archive's destination; --append never overwrites") }
            if !meta.isEmpty { throw ValidationError("--meta sets the metadata of a new archive; an existing archive's cannot change") }
            if blockRows != nil { throw ValidationError("--block-rows is fixed when an archive is created; it cannot change with --append") }
            if codec != nil { throw ValidationError("--codec is fixed when an archive is created; it cannot change with --append") }
        }
        _ = try parseMetadata(meta)
        if input == "-" && experts == nil && !append {
            throw ValidationError("reading standard input needs --experts: a stream cannot be scanned for the largest id before it is stored")
        }
    }

    func run() throws {
        try reportingFailures {
            Interrupt.install()
            if input == "-" && Console.stdinIsTerminal {
                throw ToolFailure(.usage, "standard input is a terminal; pipe a .npy file into it, or name the file")
            }
            let reader = try NumpyReader(path: input)
            if append {
                try appendRows(from: reader)
            } else {
                try createArchive(from: reader)
            }
        }
    }

    // MARK: A new archive

    private func createArchive(from reader: NumpyReader) throws {
        if FileSystem.exists(output) {
            guard force else {
                throw ToolFailure(.conflict, "\(output): already exists; pass --force to replace it, or --append to add rows to it")
            }
            try FileSystem.checkReplaceable(output)
            try Self.checkNotLocked(output)
        }
        let (layers, topk) = try rowShape(of: reader, archiveLayers: nil)
        let dense = denseLayers ?? []
        // Layers, top-k and dense layers are checked before the data is scanned.
        _ = try makeSchema(layers: layers, topk: topk, experts: Schema.expertLimits.lowerBound, dense: dense, input: reader.path)
        let experts: Int
        if let given = self.experts {
            experts = given
        } else {
            guard reader.isMemoryMapped else {
                throw ToolFailure(.usage, "\(reader.path) is a stream, which cannot be scanned for the largest id before it is stored; pass --experts")
            }
            experts = try inferExperts(reader, layers: layers, topk: topk, dense: dense)
        }
        let schema = try makeSchema(layers: layers, topk: topk, experts: experts, dense: dense, input: reader.path)
        var metadata = try parseMetadata(meta)
        if metadata["source"] == nil { metadata["source"] = sourceName }

        let staged = StagedFile(destination: output)
        let progress = ProgressLine("packing", total: reader.header.rowCount, quiet: options.quiet)
        let audit = InputAudit(schema: schema, input: reader.path, start: 0, archive: nil, threads: threads)
        let totals: CopyTotals, fileBytes: Int
        do {
            // The staged path is new (its name is unique): there is nothing to overwrite.
            let created = try ArchiveWriter.create(at: staged.path, schema: schema, metadata: metadata,
                                                   blockRows: blockRows, codec: codec ?? .fast)
            created.encodingThreads = threads
            totals = try reader.dtype.withExpertIDType(
                CopyRows(reader: reader, writer: created, start: 0, compareOverlap: false, archive: output,
                         audit: audit, progress: progress))
            try audit.finish(strict: strict)
            // The last moment a signal can still undo the work.
            try Interrupt.check()
            try created.close()
            fileBytes = created.fileBytes
            try staged.install(replacing: force)
        } catch {
            progress.finish()
            staged.discard()
            if case PlacementError.destinationExists = error {
                throw ToolFailure(.conflict, "\(output): already exists (it appeared while packing); pass --force to replace it")
            }
            throw ToolFailure(error).replacingPath(staged.path, with: output)
        }
        progress.finish()
        let int32Bytes = totals.appended * schema.idsPerRow * 4
        let ratio = totals.appended > 0 ? ", ratio \(Units.ratio(Double(int32Bytes) / Double(fileBytes))) vs int32" : ""
        Console.info("packed \(Units.grouped(totals.appended)) rows of \(reader.path) into \(output): \(schema); "
                     + "\(Units.bytesExact(fileBytes))\(ratio)", quiet: options.quiet)
    }

    /// The input's name for the `source` metadata.
    private var sourceName: String {
        input == "-" ? "<stdin>" : URL(fileURLWithPath: input).lastPathComponent
    }

    /// Refuses to replace an archive a writer has open (its rows would go to the replaced file).
    static func checkNotLocked(_ path: String) throws {
        if ArchiveWriter.isWriterActive(at: path) {
            throw ToolFailure(.conflict, "\(path): another writer has the archive open; not replacing it")
        }
    }

    // MARK: Appending

    private func appendRows(from input: NumpyReader) throws {
        guard FileSystem.exists(output) else {
            throw ToolFailure(.io, "\(output): no such archive; pack without --append to create it")
        }
        let writer = try ArchiveWriter.open(at: output)
        writer.encodingThreads = threads
        // Every refusal the header allows comes before the data is read.
        let schema = writer.schema
        let (layers, topk) = try rowShape(of: input, archiveLayers: schema.layers)
        guard layers == schema.layers, topk == schema.topk else {
            throw ToolFailure(.conflict, "\(input.path): rows of \(layers) layers x top-\(topk) do not match the schema of \(output): \(schema)")
        }
        if let experts, experts != schema.experts {
            throw ToolFailure(.conflict, "--experts \(experts) does not match the schema of \(output): \(schema)")
        }
        if let denseLayers, Set(denseLayers) != Set(schema.denseLayers) {
            throw ToolFailure(.conflict, "--dense-layers \(Units.list(denseLayers)) does not match the schema of \(output): \(schema)")
        }
        let start = self.start ?? writer.count
        let before = writer.count
        guard start <= before else { throw ArchiveError.gap(path: output, start: start, count: before) }

        // The whole input is checked before any of it is written: a stream is first copied to
        // an unnamed file beside the archive (as large as the archive's own growth may be).
        let reader = try input.spooled(inDirectoryOf: output)
        let audit = InputAudit(schema: schema, input: reader.path, start: start, archive: output, threads: threads)
        try reader.dtype.withExpertIDType(AuditInput(reader: reader, audit: audit))
        try audit.finish(strict: strict)

        let checkpoint = writer.checkpoint()
        let progress = ProgressLine("appending", total: reader.header.rowCount, quiet: options.quiet)
        let totals: CopyTotals
        do {
            totals = try reader.dtype.withExpertIDType(
                CopyRows(reader: reader, writer: writer, start: start, compareOverlap: true, archive: output,
                         audit: nil, progress: progress))
            // The last moment a signal can still undo the work.
            try Interrupt.check()
            try writer.close()
        } catch {
            progress.finish()
            let failure = ToolFailure(error)
            do {
                try writer.rollback(to: checkpoint)
                try writer.close()
            } catch {
                throw ToolFailure(.io, failure.message + "; undoing the append also failed, the archive may hold part of it: \(error)")
            }
            throw failure
        }
        progress.finish()
        // The library discards such bytes before its first write, and only then.
        if let tail = writer.recoveredTail, totals.appended > 0 {
            Console.warning("\(output): discarded \(tail.bytes) bytes at byte \(tail.offset) that an interrupted writer left (\(tail.reason))")
        }
        Console.info(appendReport(totals, input: reader.path, start: start, before: before, after: writer.count,
                                  fileBytes: writer.fileBytes), quiet: options.quiet)
    }

    /// What an append did, naming the positions the input's rows went to or were already at.
    private func appendReport(_ totals: CopyTotals, input: String, start: Int, before: Int, after: Int, fileBytes: Int) -> String {
        let rows = totals.appended + totals.skipped
        let stored = "already stored (\(Units.grouped(totals.differing)) of them differ; the stored rows are kept)"
        var report: String
        if totals.appended == 0 {
            report = rows == 0 ? "\(output): appended 0 rows: \(input) holds none"
                : "\(output): appended 0 rows: all \(Units.grouped(rows)) of \(input) (positions \(start)..<\(start + rows)) are \(stored)"
        } else {
            let first = start + totals.skipped
            report = "\(output): appended \(Units.grouped(totals.appended)) rows of \(input) as positions \(first)..<\(first + totals.appended)"
            if totals.skipped > 0 {
                report += ", skipped \(Units.grouped(totals.skipped)) (positions \(start)..<\(first)) \(stored)"
            }
        }
        return report + "; now \(Units.grouped(after)) rows (was \(Units.grouped(before))), \(Units.bytesExact(fileBytes))"
    }

    // MARK: Shape and schema

    /// Layers and top-k of the input's rows.
    private func rowShape(of reader: NumpyReader, archiveLayers: Int?) throws -> (layers: Int, topk: Int) {
        let shape = reader.shape, name = reader.path, text = reader.header.shapeDescription
        switch shape.count {
        case 3:
            if let layers, layers != shape[1] {
                throw ToolFailure(.badInput, "\(name): shape \(text) has \(shape[1]) layers, --layers says \(layers)")
            }
            return (shape[1], shape[2])
        case 2:
            guard let layers = layers ?? archiveLayers else {
                throw ToolFailure(.usage, "\(name): shape \(text) is 2-D; pass --layers L to read each row as L layers x \(shape[1])/L slots")
            }
            guard shape[1] > 0, shape[1] % layers == 0 else {
                throw ToolFailure(.badInput, "\(name): shape \(text): a row of \(shape[1]) ids is not \(layers) layers of equal top-k")
            }
            return (layers, shape[1] / layers)
        default:
            throw ToolFailure(.badInput, "\(name): shape \(text) is not [tokens, layers, topk] (or [tokens, layers*topk] with --layers)")
        }
    }

    private func makeSchema(layers: Int, topk: Int, experts: Int, dense: [Int], input: String) throws -> Schema {
        do {
            return try Schema(layers: layers, topk: topk, experts: experts, denseLayers: dense)
        } catch {
            throw ToolFailure(.badInput, "\(input): \(error)")
        }
    }

    /// The largest id on a MoE layer + 1 (at least 2), said on stderr.
    private func inferExperts(_ reader: NumpyReader, layers: Int, topk: Int, dense: [Int]) throws -> Int {
        let denseSet = Set(dense)
        let columns = (0..<layers).filter { !denseSet.contains($0) }.flatMap { layer in (0..<topk).map { layer * topk + $0 } }
        let progress = ProgressLine("scanning for the largest id", total: reader.header.rowCount, quiet: options.quiet)
        defer { progress.finish() }
        let largest = try reader.dtype.withExpertIDType(
            LargestID(reader: reader, columns: columns, idsPerRow: layers * topk, threads: threads, progress: progress))
        let limit = UInt64(Schema.expertLimits.upperBound)
        guard let largest else {
            Console.info("no ids to infer --experts from: using 2; pass --experts to set it", quiet: options.quiet)
            return 2
        }
        let layer = largest.column / topk, slot = largest.column % topk
        guard largest.value < limit else {
            throw ToolFailure(.badInput, "\(reader.path) row \(largest.row): expert id \(largest.value) at layer \(layer), slot \(slot) is outside [0, \(limit)), the ids an archive can hold")
        }
        let experts = max(2, Int(largest.value) + 1)
        Console.info("inferred --experts \(experts) from the data; pass --experts to set it (largest id \(largest.value) at row \(largest.row), layer \(layer), slot \(slot))",
                     quiet: options.quiet)
        return experts
    }
}

/// What the appends of one pack did.
struct CopyTotals {
    var appended = 0, skipped = 0, differing = 0
}

/// Appends the input chunk by chunk, chunk k at `start` + the rows before it; each chunk is
/// first checked by `audit`, when given (an input not checked whole beforehand).
private struct CopyRows: ExpertIDOperation {
    let reader: NumpyReader
    let writer: ArchiveWriter
    let start: Int
    let compareOverlap: Bool
    let archive: String
    let audit: InputAudit?
    let progress: ProgressLine

    func run<T: ExpertID>(_ type: T.Type) throws -> CopyTotals {
        var totals = CopyTotals()
        let rowsPerChunk = reader.header.rowsPerChunk(maxBytes: 16 << 20)
        try reader.forEachChunk(as: T.self, rowsPerChunk: rowsPerChunk) { chunk, rows in
            try Interrupt.check()
            try audit?.check(chunk, firstRow: rows.lowerBound)
            let result: AppendResult
            do {
                result = try writer.append(chunk, at: start + rows.lowerBound, compareOverlap: compareOverlap)
            } catch let ArchiveError.invalidRows(_, position, reason) {
                // Name the input's row (and the archive's position when they differ).
                let row = (position ?? start + rows.lowerBound) - start
                let where_ = start == 0 ? "" : " (position \(row + start) of \(archive))"
                throw ToolFailure(.badInput, "\(reader.path) row \(row): \(reason)\(where_)")
            }
            totals.appended += result.appended
            totals.skipped += result.skipped
            totals.differing += result.differing ?? 0
            progress.update(rows.upperBound)
        }
        return totals
    }
}

/// The largest non-negative id in the MoE columns, with its row and column.
private struct LargestID: ExpertIDOperation {
    let reader: NumpyReader
    let columns: [Int]
    let idsPerRow: Int
    let threads: Int
    let progress: ProgressLine

    func run<T: ExpertID>(_ type: T.Type) throws -> (value: UInt64, row: Int, column: Int)? {
        var largest: (value: UInt64, row: Int, column: Int)?
        var best: T = -1 < (0 as T) ? -1 : 0
        var found = false
        let rowsPerChunk = reader.header.rowsPerChunk(maxBytes: 16 << 20)
        let allColumns = columns.count == idsPerRow
        try reader.forEachChunk(as: T.self, rowsPerChunk: rowsPerChunk) { chunk, rows in
            try Interrupt.check()
            // The chunk's maximum first (a loop that vectorizes); the row and column are only
            // looked for in a chunk that holds a new maximum.
            var chunkMax: T = T.min
            let unsigned = allColumns ? largestUnsignedID(chunk, threads: threads) : UInt64.max
            if unsigned <= UInt64(Int64.max) {
                chunkMax = T(truncatingIfNeeded: unsigned) // no negative id: the unsigned maximum is the maximum
            } else if allColumns {
                for id in chunk { chunkMax = Swift.max(chunkMax, id) }
            } else {
                for r in 0..<rows.count { for column in columns { chunkMax = Swift.max(chunkMax, chunk[r * idsPerRow + column]) } }
            }
            if chunkMax >= 0 && (chunkMax > best || !found) {
                search: for r in 0..<rows.count {
                    for column in columns where chunk[r * idsPerRow + column] == chunkMax {
                        best = chunkMax
                        found = true
                        largest = (UInt64(chunkMax), rows.lowerBound + r, column)
                        break search
                    }
                }
            }
            progress.update(rows.upperBound)
        }
        return largest
    }
}

import Archive
import ArgumentParser
import NumpyFile

struct Unpack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the rows of an archive (or a range of them) to a .npy file.",
        discussion: """
            Writes a .npy (format 1.0, C order) of shape [rows, layers, topk] that numpy.load \
            opens, also with mmap_mode='r'. Dense layers read back as 0. The default dtype is \
            the narrowest holding every id: uint8 up to 256 experts, else uint16. Rows are \
            decoded in chunks of at most 64Ki rows: memory use stays small whatever the archive \
            size.

            The output is written under a temporary name and renamed into place when complete: \
            a failed unpack leaves no partial file (on standard output, -, nothing can be taken \
            back: check the exit status).

            EXAMPLES:
              archive-tool unpack trace.moe -o trace.npy
              archive-tool unpack trace.moe -o head.npy --rows :1000 --dtype int32
              archive-tool unpack trace.moe -o tail.npy --rows=-100: --force
              archive-tool unpack trace.moe -o - --rows :4096 | ssh gpu1 'cat > t.npy'

            \(ExitStatus.helpSection)
            """
    )

    @Argument(help: ArgumentHelp("The archive to read.", valueName: "archive"))
    var archive: String

    @OptionGroup var target: NumpyOutputOptions
    @OptionGroup var range: RowRangeOption

    @Flag(help: "fsync the output before renaming it into place (durable across a power cut; slower).")
    var sync = false

    @OptionGroup var options: QuietOption

    func run() throws {
        try reportingFailures {
            Interrupt.install()
            let reader = try ArchiveReader(path: archive)
            // Streamed through a 1 MiB buffer: the archive need not stay resident behind it.
            reader.releasesPagesBehind = true
            if let tail = reader.ignoredTail {
                Console.warning("\(archive): ignoring the bytes from byte \(tail.offset) on: \(tail.reason)")
            }
            let schema = reader.schema
            let range = try self.range.resolve(count: reader.count, archive: archive)
            let narrowest = NumpyDType.narrowest(experts: schema.experts)
            let dtype = target.dtype ?? narrowest
            guard dtype.holds(experts: schema.experts) else {
                throw ToolFailure(.badInput, "\(archive): --dtype \(dtype.name) cannot hold its expert ids (up to \(schema.experts - 1)); use \(narrowest.name) or wider")
            }
            try target.checkNotTerminal()
            let writer = try NumpyWriter(path: target.output, dtype: dtype, shape: [range.count, schema.layers, schema.topk],
                                         overwrite: target.force, durable: sync)
            let progress = ProgressLine("unpacking", total: range.count, quiet: options.quiet)
            let bytes = try writer.fill(dtype, with: CopyOut(reader: reader, writer: writer, range: range, progress: progress), progress: progress)
            Console.info("unpacked rows \(range.lowerBound)..<\(range.upperBound) of \(archive) into \(writer.path): "
                         + "\(writer.header.shapeDescription) \(dtype.name), \(Units.bytesExact(bytes))", quiet: options.quiet)
        }
    }
}

/// Decodes `range` in chunks into a reused buffer and writes each to the .npy.
private struct CopyOut: ExpertIDOperation {
    let reader: ArchiveReader
    let writer: NumpyWriter
    let range: Range<Int>
    let progress: ProgressLine

    func run<T: ExpertID>(_ type: T.Type) throws {
        let perRow = reader.schema.idsPerRow
        // 1 MiB pieces: decoded into a buffer that stays in cache until write() copies it out.
        let chunkRows = max(1, min(65536, (1 << 20) / (perRow * MemoryLayout<T>.size)))
        var buffer = [T](repeating: 0, count: min(chunkRows, max(range.count, 1)) * perRow)
        var position = range.lowerBound
        while position < range.upperBound {
            try Interrupt.check()
            let end = min(range.upperBound, position + chunkRows)
            let ids = (end - position) * perRow
            try buffer.withUnsafeMutableBufferPointer { all in
                let out = UnsafeMutableBufferPointer(rebasing: all[..<ids])
                try reader.read(position..<end, into: out)
                try writer.write(UnsafeBufferPointer(out))
            }
            position = end
            progress.update(position - range.lowerBound)
        }
    }
}

import Archive
import ArgumentParser
import SystemFile

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every block of an archive: checksums, structure, every id.",
        discussion: """
            Exits 0 when the archive is whole. Otherwise prints each damaged byte range with \
            the rows it holds on standard output, one line each, and exits 3 (an archive that \
            cannot even be opened too). Rows outside the damaged ranges stay readable: use \
            unpack --rows to save them.

            EXAMPLES:
              archive-tool verify trace.moe
              archive-tool verify trace.moe || echo "damaged"

            \(ExitStatus.helpSection)
            """
    )

    @Argument(help: ArgumentHelp("The archive to check.", valueName: "archive"))
    var archive: String

    @OptionGroup var options: QuietOption

    func run() throws {
        try reportingFailures {
            let reader = try ArchiveReader(path: archive)
            let problems = reader.verify()
            let blocks = reader.blocks
            guard !problems.isEmpty else {
                Console.infoOut("\(archive): \(Units.grouped(reader.count)) rows in \(Units.grouped(blocks.count)) blocks, all checksums good", quiet: options.quiet)
                return
            }
            var damagedRows = 0, damagedRanges = 0, tornBytes = 0
            for problem in problems {
                guard case let .corrupt(_, offset, reason) = problem else {
                    try StandardOutput.write("\(archive): \(problem)\n")
                    damagedRanges += 1
                    continue
                }
                if let tail = reader.ignoredTail, tail.offset == offset {
                    tornBytes = max(0, (FileSystem.size(of: archive) ?? 0) - offset)
                    try StandardOutput.write("\(archive): bytes \(offset)..<\(offset + tornBytes) are a torn tail, not part of the archive "
                          + "(an interrupted write: no stored row is affected; the next pack --append cuts it): \(tail.reason)\n")
                } else if let block = blocks.first(where: { $0.recordOffset <= offset && offset < $0.frameOffset + $0.frameLength }) {
                    damagedRows += block.rows
                    damagedRanges += 1
                    try StandardOutput.write("\(archive): bytes \(block.recordOffset)..<\(block.frameOffset + block.frameLength) damaged (at byte \(offset)), "
                          + "holding rows \(block.position)..<\(block.position + block.rows): \(reason)\n")
                } else {
                    damagedRanges += 1
                    try StandardOutput.write("\(archive): damaged at byte \(offset): \(reason)\n")
                }
            }
            if damagedRanges == 0 {
                throw ToolFailure(.damaged, "\(archive): a torn tail of \(tornBytes) bytes follows the archive; "
                                  + "all \(Units.grouped(reader.count)) stored rows are good")
            }
            throw ToolFailure(.damaged, "\(archive): \(damagedRanges) damaged range\(damagedRanges == 1 ? "" : "s"), "
                              + "\(Units.grouped(damagedRows)) of \(Units.grouped(reader.count)) rows unreadable")
        }
    }
}


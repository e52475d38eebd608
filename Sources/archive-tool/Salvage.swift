import Archive
import ArgumentParser
import SystemFile

struct SalvageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "salvage",
        abstract: "Copy what is intact of a damaged archive into a new one, and say what was lost.",
        discussion: """
            Scans the damaged archive record by record, checks every block whole, and prints \
            each damaged byte range, the intact blocks and the lost rows. With -o it writes a new \
            archive holding rows 0..<N, N being the first row no intact block holds (or the first \
            row a truncation lost with the damage may have replaced); rows after a hole stay in \
            the report (their blocks are intact in the old file). The new archive is written \
            under a temporary name and renamed into place when whole. Only a damaged archive \
            header makes salvage impossible. Exits 0 when no row was lost, 3 otherwise.

            EXAMPLES:
              archive-tool salvage damaged.moe
              archive-tool salvage damaged.moe -o saved.moe

            \(ExitStatus.helpSection)
            """
    )

    @Argument(help: ArgumentHelp("The damaged archive (read only).", valueName: "archive"))
    var archive: String

    @Option(name: .shortAndLong, help: ArgumentHelp("A new archive for the rows that survive.", valueName: "path"))
    var output: String?

    @Flag(help: "Replace an existing output, if it is a regular file.")
    var force = false

    @OptionGroup var options: QuietOption

    func run() throws {
        try reportingFailures {
            let report = try Salvage.scan(archive)
            for range in report.damaged {
                try StandardOutput.write("\(archive): bytes \(range.lowerBound)..<\(range.upperBound) damaged\n")
            }
            for rows in report.lostRows {
                try StandardOutput.write("\(archive): rows \(rows.lowerBound)..<\(rows.upperBound) lost\n")
            }
            if let tail = report.ignoredTail {
                try StandardOutput.write("\(archive): bytes \(tail.offset)..<\(tail.offset + tail.bytes) are a torn tail (an interrupted write, not part of the archive), ignored\n")
            }
            let intact = report.blocks.reduce(0) { $0 + $1.rows }
            Console.infoOut("\(archive): \(Units.grouped(report.blocks.count)) intact blocks holding \(Units.grouped(intact)) rows; "
                            + "rows 0..<\(Units.grouped(report.recoverable)) are whole", quiet: options.quiet)
            if let output {
                if force { try FileSystem.checkReplaceable(output) }
                let kept = try Salvage.write(report, to: output, overwrite: force)
                Console.infoOut("wrote \(output): \(Units.grouped(kept)) rows", quiet: options.quiet)
            }
            if !report.lostRows.isEmpty {
                throw ToolFailure(.damaged, "\(archive): \(report.damaged.count) damaged range\(report.damaged.count == 1 ? "" : "s"), "
                                  + "\(Units.grouped(report.lostRows.reduce(0) { $0 + $1.count })) rows lost")
            }
            if !report.damaged.isEmpty {
                Console.warning("\(archive): \(report.damaged.count) damaged range\(report.damaged.count == 1 ? "" : "s") held no row of the archive (discarded rows); no row lost")
            }
        }
    }
}

import Archive
import ArgumentParser

struct SalvageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "salvage",
        abstract: "Copy what is intact of a damaged archive into a new one, and say what was lost.",
        discussion: """
            Scans the damaged archive record by record, checks every block whole, and prints \
            each damaged byte range, the intact blocks and the lost rows. With -o it writes a new \
            archive holding rows 0..<N, N being the first row no intact block holds; rows after a \
            hole stay in the report (their blocks are intact in the old file). Only a damaged \
            archive header makes salvage impossible. Exits 0 when nothing was lost, 3 otherwise.

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

    @Flag(help: "Replace an existing output file.")
    var force = false

    @Flag(help: "Print nothing but errors.")
    var quiet = false

    func run() throws {
        try reportingFailures {
            let report = try Salvage.scan(archive)
            for range in report.damaged {
                print("\(archive): bytes \(range.lowerBound)..<\(range.upperBound) damaged")
            }
            for rows in report.lostRows {
                print("\(archive): rows \(rows.lowerBound)..<\(rows.upperBound) lost")
            }
            let intact = report.blocks.reduce(0) { $0 + $1.rows }
            Console.infoOut("\(archive): \(Units.grouped(report.blocks.count)) intact blocks holding \(Units.grouped(intact)) rows; "
                            + "rows 0..<\(Units.grouped(report.recoverable)) are whole", quiet: quiet)
            if let output {
                let kept = try Salvage.write(report, to: output, overwrite: force)
                Console.infoOut("wrote \(output): \(Units.grouped(kept)) rows", quiet: quiet)
            }
            if !report.damaged.isEmpty || !report.lostRows.isEmpty {
                throw ToolFailure(.damaged, "\(archive): \(report.damaged.count) damaged range\(report.damaged.count == 1 ? "" : "s"), "
                                  + "\(Units.grouped(report.lostRows.reduce(0) { $0 + $1.count })) rows lost")
            }
        }
    }
}

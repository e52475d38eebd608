import Archive
import ArgumentParser

struct Truncate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Discard an archive's rows from a position on (a rollback), durably.",
        discussion: """
            Keeps rows 0..<N and discards the rest: the only way rows leave an archive, for \
            a rollback such as a rejected speculative step or an episode thrown away. The next \
            pack --append continues at N. The file stays append-only: a truncation record is \
            added, and readers that refresh see N rows. Durable when the command returns; a \
            failed truncation leaves the archive as it was, an interrupted one either happened \
            or did not. Refused while another writer holds the archive, and for an N past the \
            stored rows.

            EXAMPLES:
              archive-tool truncate trace.moe --to 4096
              archive-tool truncate trace.moe --to 0      # keeps the schema and metadata, no rows

            \(ExitStatus.helpSection)
            """
    )

    @Argument(help: ArgumentHelp("The archive to cut back.", valueName: "archive"))
    var archive: String

    @Option(name: .customLong("to"), parsing: .unconditional, help: ArgumentHelp("Rows to keep: positions 0..<N stay.", valueName: "N"))
    var rows: Int

    @OptionGroup var options: QuietOption

    func validate() throws {
        guard rows >= 0 else { throw ValidationError("--to must be 0 or more rows, not \(rows)") }
    }

    func run() throws {
        try reportingFailures {
            let writer = try ArchiveWriter.open(at: archive)
            let before = writer.count
            do {
                try writer.truncate(to: rows)
                try writer.close()
            } catch {
                try? writer.close()
                throw error
            }
            Console.infoOut("\(archive): \(Units.grouped(before)) -> \(Units.grouped(rows)) rows "
                            + "(\(Units.grouped(before - rows)) discarded)", quiet: options.quiet)
        }
    }
}

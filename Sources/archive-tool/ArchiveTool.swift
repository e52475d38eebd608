#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser

@main
struct ArchiveTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "archive-tool",
        abstract: "Store Mixture-of-Experts routing traces compactly, and get them back bit for bit.",
        discussion: """
            A trace holds, per token, a row of LAYERS x TOPK expert ids in [0, EXPERTS): what the \
            router picked. Engines hand them out as .npy arrays [tokens, layers, topk]; an \
            archive (a .moe file) stores them as column bit-planes in LZ4 frames, indexed by \
            absolute token position, appendable with the replay rules (overlap kept, gap refused).

            EXAMPLES:
              archive-tool synth --model deepseek-v3 --tokens 100000 -o trace.npy
              archive-tool pack trace.npy -o trace.moe --experts 256 --dense-layers 0,1,2
              archive-tool pack more.npy -o trace.moe --append --start 100000
              archive-tool stat trace.moe
              archive-tool verify trace.moe
              archive-tool unpack trace.moe -o back.npy --rows 1000:2000

            \(ExitStatus.helpSection)
            """,
        version: "1.0.0",
        subcommands: [Pack.self, Unpack.self, Stat.self, Verify.self, SalvageCommand.self, Rows.self, Truncate.self, Synth.self, Models.self]
    )

    /// ArgumentParser's `main`, with the process set up for files and pipes first and every
    /// argument error reported as one line.
    static func main() {
        // A write past `ulimit -f` fails with EFBIG (reported, undone) instead of killing the
        // process mid-write; a closed pipe fails with EPIPE (a reader such as `head` that has
        // seen enough) instead of killing it without a word.
        signal(SIGXFSZ, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let unknown = unknownHelpTopic(arguments) {
            Console.error("help: no command '\(unknown)'; the commands are \(commandNames.joined(separator: ", "))")
            Self.exit(withError: ExitCode(ExitStatus.usage.rawValue))
        }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            let code = exitCode(for: error)
            // Help, version and the statuses reportingFailures chose after reporting.
            if code == .success || error is ExitCode { Self.exit(withError: error) }
            let command = arguments.first.flatMap { commandNames.contains($0) ? $0 : nil }
            let help = command.map { "archive-tool \($0) --help" } ?? "archive-tool --help"
            Console.error("\(message(for: error)) (see '\(help)')")
            Self.exit(withError: code)
        }
    }

    static var commandNames: [String] {
        configuration.subcommands.map { $0._commandName }
    }

    /// The topic of `help TOPIC` when it names no command.
    static func unknownHelpTopic(_ arguments: [String]) -> String? {
        guard arguments.first == "help", arguments.count > 1, !arguments[1].hasPrefix("-"),
              !commandNames.contains(arguments[1]) else { return nil }
        return arguments[1]
    }
}

import ArgumentParser

@main
struct ArchiveTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "archive-tool",
        abstract: "Store Mixture-of-Experts routing traces compactly, and get them back bit for bit.",
        discussion: """
            A trace holds, per token, a row of LAYERS x TOPK expert ids in [0, EXPERTS): what the \
            router picked. Engines hand them out as .npy arrays [tokens, layers, topk]; an \
            archive stores them as column bit-planes in LZ4 frames, indexed by absolute token \
            position, appendable with the replay rules (overlap kept, gap refused).

            EXAMPLES:
              archive-tool synth --model deepseek-v3 --tokens 100000 -o trace.npy
              archive-tool pack trace.npy -o trace.arch --experts 256 --dense-layers 0,1,2
              archive-tool pack more.npy -o trace.arch --append --start 100000
              archive-tool stat trace.arch
              archive-tool verify trace.arch
              archive-tool unpack trace.arch -o back.npy --rows 1000:2000

            \(ExitStatus.helpSection)
            """,
        version: "1.0.0",
        subcommands: [Pack.self, Unpack.self, Stat.self, Verify.self, SalvageCommand.self, Rows.self, Truncate.self, Synth.self, Models.self]
    )
}

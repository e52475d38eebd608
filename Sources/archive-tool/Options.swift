import ArgumentParser
import NumpyFile

// Options that several commands share, declared once (`@OptionGroup`): the same name, help and
// checks everywhere.

/// `--quiet`.
struct QuietOption: ParsableArguments {
    @Flag(help: "Print nothing but errors and warnings (no progress, no report).")
    var quiet = false
}

/// `-o`, `--dtype` and `--force` of the commands that write a `.npy` (`unpack`, `synth`).
struct NumpyOutputOptions: ParsableArguments {
    @Option(name: [.customShort("o"), .customLong("output")],
            help: ArgumentHelp("The .npy file to write; - writes standard output.", valueName: "output.npy"))
    var output: String

    @Option(help: ArgumentHelp(
        "Element type: uint8, uint16, int32, int64 (or int8, int16, uint32, uint64). Default: uint8 up to 256 experts, else uint16.",
        valueName: "dtype"), transform: parseDType)
    var dtype: NumpyDType?

    @Flag(help: "Replace an existing output, if it is a regular file.")
    var force = false

    /// Refuses a terminal as standard output (binary data would flood it).
    func checkNotTerminal() throws {
        if output == "-" && Console.stdoutIsTerminal {
            throw ToolFailure(.usage, "standard output is a terminal; redirect it to a file or a pipe, or write a file with -o")
        }
    }
}

/// `--rows A:B` of the commands that read a range of an archive (`unpack`, `rows`).
struct RowRangeOption: ParsableArguments {
    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Half-open range of absolute positions A:B, either side optional (:100, 5:); a negative side counts from the end. Default: all rows.",
        valueName: "A:B"))
    var rows: RowSelection?

    /// The positions selected in an archive of `count` rows.
    func resolve(count: Int, archive: String) throws -> Range<Int> {
        try rows?.resolve(count: count, archive: archive) ?? 0..<count
    }
}

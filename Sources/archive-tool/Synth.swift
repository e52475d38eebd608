import Archive
import ArgumentParser
import NumpyFile
import TraceSynth

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a realistic routing trace of a real model's shape as .npy.",
        discussion: """
            The rows follow what real traces show: skewed expert popularity per layer, the \
            previous token's choice repeated with a layer-specific probability, distinct ids \
            within a row, zeros on dense layers. The same seed gives the same trace. Rows are \
            generated and written 4096 at a time. Models (see `archive-tool models`): \
            \(ModelShape.all.map(\.name).joined(separator: ", ")).

            EXAMPLES:
              archive-tool synth --model qwen3-30b-a3b --tokens 100000 -o q.npy
              archive-tool synth --model deepseek-v3 --tokens 4096 --seed 7 -o ds.npy
              archive-tool synth --model kimi-k2 --tokens 10 -o - --dtype int32 | xxd
              archive-tool pack ds.npy -o ds.moe --experts 256 --dense-layers 0,1,2

            \(ExitStatus.helpSection)
            """
    )

    @Option(help: ArgumentHelp("The model shape: \(ModelShape.all.map(\.name).joined(separator: ", ")).", valueName: "name"))
    var model: String

    @Option(parsing: .unconditional, help: ArgumentHelp("Rows (tokens) to generate.", valueName: "N"))
    var tokens: Int

    @Option(parsing: .unconditional, help: "Random seed: the same seed gives the same trace.")
    var seed: UInt64 = 1

    @OptionGroup var target: NumpyOutputOptions
    @OptionGroup var options: QuietOption

    func validate() throws {
        guard ModelShape.named(model) != nil else {
            throw ValidationError("unknown model '\(model)'; choose one of \(ModelShape.all.map(\.name).joined(separator: ", "))")
        }
        guard tokens >= 0 else { throw ValidationError("--tokens must be 0 or more, got \(tokens)") }
    }

    func run() throws {
        try reportingFailures {
            Interrupt.install()
            guard let shape = ModelShape.named(model) else { throw ToolFailure(.usage, "unknown model '\(model)'") }
            let schema = try shape.schema()
            let narrowest = NumpyDType.narrowest(experts: schema.experts)
            let dtype = target.dtype ?? narrowest
            guard dtype.holds(experts: schema.experts) else {
                throw ToolFailure(.badInput, "--dtype \(dtype.name) cannot hold the ids of \(shape.name) (up to \(schema.experts - 1)); use \(narrowest.name) or wider")
            }
            try target.checkNotTerminal()
            let writer = try NumpyWriter(path: target.output, dtype: dtype, shape: [tokens, schema.layers, schema.topk], overwrite: target.force)
            let progress = ProgressLine("generating", total: tokens, quiet: options.quiet)
            let bytes = try writer.fill(dtype, with: Generate(schema: schema, seed: seed, tokens: tokens, writer: writer, progress: progress), progress: progress)
            Console.info("wrote \(writer.path): \(Units.grouped(tokens)) tokens of \(shape.name) (\(schema)), \(dtype.name), \(Units.bytesExact(bytes))",
                         quiet: options.quiet)
            var hint = "--experts \(schema.experts)"
            if !schema.denseLayers.isEmpty {
                let dense = Units.list(schema.denseLayers)
                hint = "--dense-layers \(dense) " + hint
                Console.info("dense layers \(dense) hold zeros: pack with \(hint)", quiet: options.quiet)
            } else {
                Console.info("pack with \(hint)", quiet: options.quiet)
            }
        }
    }
}

private struct Generate: ExpertIDOperation {
    let schema: Schema
    let seed: UInt64
    let tokens: Int
    let writer: NumpyWriter
    let progress: ProgressLine

    func run<T: ExpertID>(_ type: T.Type) throws {
        var synthesizer = TraceSynthesizer(schema: schema, seed: seed)
        var done = 0
        while done < tokens {
            try Interrupt.check()
            let count = min(4096, tokens - done)
            try writer.write(synthesizer.rows(count, as: T.self))
            done += count
            progress.update(done)
        }
    }
}

import Archive
import NumpyFile

/// The check of a whole input, chunk by chunk, before its rows are kept: the first id outside
/// `[0, experts)` on a MoE layer refuses it (naming the input's row and, on an append, the
/// archive's position); non-zero ids on dense layers, which are not stored, are counted for
/// ``finish(strict:)``.
final class InputAudit {
    let schema: Schema
    let input: String
    /// The archive position of the input's row 0.
    let start: Int
    /// The archive appended to, named in errors (nil for a new archive).
    let archive: String?
    let threads: Int
    private(set) var denseNonZero = 0
    /// The first of them, its row counted in the input.
    private(set) var firstDenseNonZero: IDPosition?

    init(schema: Schema, input: String, start: Int, archive: String?, threads: Int) {
        self.schema = schema
        self.input = input
        self.start = start
        self.archive = archive
        self.threads = threads
    }

    /// Checks the input's rows from `firstRow` on.
    func check<T: ExpertID>(_ chunk: UnsafeBufferPointer<T>, firstRow: Int) throws {
        let audit = schema.audit(chunk, threads: threads)
        denseNonZero += audit.denseNonZero
        if firstDenseNonZero == nil, let first = audit.firstDenseNonZero {
            firstDenseNonZero = IDPosition(row: firstRow + first.row, layer: first.layer, slot: first.slot, value: first.value)
        }
        if let bad = audit.firstInvalid {
            let row = firstRow + bad.row
            let position = archive.map { start == 0 ? "" : " (position \(start + row) of \($0))" } ?? ""
            throw ToolFailure(.badInput, "\(input) row \(row): expert id \(bad.value) at layer \(bad.layer), slot \(bad.slot) "
                              + "is outside [0, \(schema.experts))\(position)")
        }
    }

    /// Once the whole input is checked: a warning for the non-zero ids on dense layers, or
    /// with `strict` a refusal.
    func finish(strict: Bool) throws {
        guard let first = firstDenseNonZero else { return }
        let found = "\(input): \(Units.grouped(denseNonZero)) non-zero id\(denseNonZero == 1 ? "" : "s") on dense layers "
            + "\(Units.list(schema.denseLayers)) (the first: id \(first.value) at row \(first.row), layer \(first.layer), slot \(first.slot))"
        if strict {
            throw ToolFailure(.badInput, found + " would be lost: dense layers are not stored; check --dense-layers")
        }
        Console.warning(found + " are not stored and read back as 0; check --dense-layers (--strict refuses such input)")
    }
}

/// Checks a whole input (one that can be read again) with an ``InputAudit``.
struct AuditInput: ExpertIDOperation {
    let reader: NumpyReader
    let audit: InputAudit

    func run<T: ExpertID>(_ type: T.Type) throws {
        try reader.forEachChunk(as: T.self, rowsPerChunk: reader.header.rowsPerChunk(maxBytes: 16 << 20)) { chunk, rows in
            try Interrupt.check()
            try audit.check(chunk, firstRow: rows.lowerBound)
        }
    }
}

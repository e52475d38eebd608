import NumpyFile

extension NumpyWriter {
    /// Fills the file with `operation` (run with the dtype's Swift type), commits it and
    /// returns its size in bytes. On any error (a signal too) the partial output is removed.
    func fill<Operation: ExpertIDOperation>(_ dtype: NumpyDType, with operation: Operation,
                                            progress: ProgressLine) throws -> Int where Operation.Result == Void {
        defer { progress.finish() }
        do {
            try dtype.withExpertIDType(operation)
            // The last moment a signal can still undo the work.
            try Interrupt.check()
            try commit()
        } catch {
            abort()
            throw error
        }
        return header.dataOffset + header.dataByteCount
    }
}

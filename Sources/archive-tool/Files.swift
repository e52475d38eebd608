#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NumpyFile

/// Whether anything (a dangling symbolic link too) is at `path`.
func fileExists(_ path: String) -> Bool {
    var status = stat()
    return lstat(path, &status) == 0
}

/// The size of the file at `path` (0 if it cannot be read).
func fileSize(_ path: String) -> Int {
    var status = stat()
    return stat(path, &status) == 0 ? Int(status.st_size) : 0
}

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

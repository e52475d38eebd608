import SystemFile

/// How a program asks reads and writes to stop (from a signal handler); see the type's own
/// documentation. Reads of streams and writes of this module honour it.
public typealias StopRequest = SystemFile.StopRequest

extension NumpyError {
    /// A failed system call as this module reports it; a call that a ``StopRequest`` ended is
    /// ``NumpyError/interrupted(path:signal:)``.
    init(_ error: SystemCallError) {
        if let signal = error.stopSignal {
            self = .interrupted(path: error.path, signal: signal)
        } else {
            self = .systemCall(path: error.path, operation: error.operation, errno: error.errno, message: error.message)
        }
    }
}

extension NumpyError {
    /// A file that could not be put in place, as this module reports it (and archive-tool
    /// reports ``StagedFile``'s failures).
    package init(_ error: PlacementError) {
        switch error {
        case .destinationExists(let path): self = .destinationExists(path: path)
        case let .notRegularFile(path, kind): self = .notRegularFile(path: path, kind: kind)
        case .systemCall(let failure): self.init(failure)
        }
    }
}

/// Runs a ``SystemFile`` call, its failure a ``NumpyError``; named `path` and `operation`
/// when given (the destination a temporary file stands for, a longer operation).
func numpyCall<T>(as path: String? = nil, _ operation: String? = nil,
                  _ call: () throws(SystemCallError) -> T) throws(NumpyError) -> T {
    do {
        return try call()
    } catch {
        throw NumpyError(error.named(path ?? error.path, operation ?? error.operation))
    }
}

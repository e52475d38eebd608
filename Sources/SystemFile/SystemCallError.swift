#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A system call that failed, or that a stop request ended: which file, which operation, which
/// errno. The modules above turn it into their own errors (`ArchiveError.io`,
/// `NumpyError.systemCall`, `NumpyError.interrupted`), each in its own message form.
package struct SystemCallError: Error, Equatable, Sendable {
    /// The file the call was made on (as its caller named it).
    package let path: String
    /// The call, as messages name it: "open", "write", "fsync", "fcntl(F_OFD_SETLKW)", ...
    package let operation: String
    package let errno: Int32
    /// The signal of the ``StopRequest`` that ended the call (`errno` is then EINTR): the call
    /// was not made, or not retried, because the program was asked to stop. Nil for a failure
    /// of the system's own.
    package let stopSignal: Int32?

    package init(path: String, operation: String, errno: Int32, stopSignal: Int32? = nil) {
        self.path = path
        self.operation = operation
        self.errno = errno
        self.stopSignal = stopSignal
    }

    /// strerror's text for `errno`.
    package var message: String { String(cString: strerror(errno)) }

    /// The same failure, named as the caller's message wants it (the destination a temporary
    /// file stands for, a longer operation).
    package func named(_ path: String, _ operation: String) -> SystemCallError {
        SystemCallError(path: path, operation: operation, errno: errno, stopSignal: stopSignal)
    }
}

/// The errno of the call that just failed, for the error naming `path` and `operation`.
func lastError(_ path: String, _ operation: String) -> SystemCallError {
    SystemCallError(path: path, operation: operation, errno: errno)
}

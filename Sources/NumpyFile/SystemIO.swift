#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A request, made by a program's signal handler, that the work stop. Reads and writes that
/// a signal cut short (EINTR: the handler is installed without SA_RESTART) then end with
/// ``NumpyError/interrupted(path:signal:)`` instead of being retried, so that a read from
/// a pipe that stays silent cannot keep the program from undoing its work and exiting.
public enum StopRequest {
    private static let received = Atomic<Int32>(0)

    /// Records `signal` (the first one recorded is kept). Async-signal-safe once
    /// ``signal`` has been read (which initializes the storage).
    public static func record(_ signal: Int32) {
        _ = received.compareExchange(expected: 0, desired: signal, ordering: .relaxed)
    }

    /// The signal recorded, if any.
    public static var signal: Int32? {
        let value = received.load(ordering: .relaxed)
        return value == 0 ? nil : value
    }
}

/// Thin wrappers over the POSIX calls, turning `-1`/`errno` into `NumpyError.systemCall`
/// and retrying on EINTR (unless a stop was requested), so the reader and writer read as plain sequences of steps.
enum SystemIO {
    static func failure(_ path: String, _ operation: String, errno code: Int32 = errno) -> NumpyError {
        .systemCall(path: path, operation: operation, errno: code, message: String(cString: strerror(code)))
    }

    static func openFile(_ path: String, flags: Int32, mode: mode_t = 0, operation: String) throws(NumpyError) -> Int32 {
        while true {
            let fd = open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw failure(path, operation) }
        }
    }

    static func fileStatus(_ fd: Int32, path: String) throws(NumpyError) -> stat {
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw failure(path, "fstat") }
        return status
    }

    static func isRegularFile(_ status: stat) -> Bool { (status.st_mode & S_IFMT) == S_IFREG }

    /// True when something (a file, directory, even a dangling symlink) is at `path`.
    static func exists(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0
    }

    /// Makes a rename or link into `path`'s directory durable. Best effort: the data is
    /// already synced, and some filesystems refuse fsync on directories.
    static func syncDirectory(of path: String) {
        let directory = TemporaryFile.split(path).directory
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// Reads into `buffer` until it is full or the input ends; returns the bytes read.
    static func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws(NumpyError) -> Int {
        var filled = 0
        while filled < buffer.count {
            let n = read(fd, buffer.baseAddress! + filled, buffer.count - filled)
            if n > 0 {
                filled += n
            } else if n == 0 {
                break
            } else if errno != EINTR {
                throw failure(path, "read")
            } else if let signal = StopRequest.signal {
                throw .interrupted(path: path, signal: signal)
            }
        }
        return filled
    }

    /// Writes all of `bytes`, looping over partial writes.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(NumpyError) {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n >= 0 {
                done += n
            } else if errno != EINTR {
                throw failure(path, "write")
            } else if let signal = StopRequest.signal {
                throw .interrupted(path: path, signal: signal)
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Thin wrappers over the POSIX calls, turning `-1`/`errno` into `NumpyError.systemCall`
/// and retrying on EINTR, so the reader and writer read as plain sequences of steps.
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
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A request, made by a program's signal handler, that the work stop. Once ``prepare()`` has
/// run, a read from a pipe or terminal waits in poll(2) for data or for the request (a byte
/// the handler writes to a pipe of its own), so that a read from a pipe that stays silent
/// cannot keep the program from undoing its work and exiting, whenever the signal lands.
/// Reads and writes that a signal cuts short (EINTR) end too, with
/// ``NumpyError/interrupted(path:signal:)``, instead of being retried.
public enum StopRequest {
    private static let received = Atomic<Int32>(0)
    /// The wake-up pipe: the handler writes to `wakeWrite`, waits poll `wakeRead`; -1 until prepared.
    private static let wakeRead = Atomic<Int32>(-1)
    private static let wakeWrite = Atomic<Int32>(-1)

    /// Creates the wake-up pipe (once). Call it before installing the signal handler that
    /// calls ``record(_:)``.
    public static func prepare() {
        guard wakeRead.load(ordering: .acquiring) < 0 else { return }
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            // The handler must never block on a full pipe.
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        wakeWrite.store(ends[1], ordering: .releasing)
        wakeRead.store(ends[0], ordering: .releasing)
    }

    /// Records `signal` (the first one recorded is kept) and wakes a waiting read.
    /// Async-signal-safe: atomics and write(2).
    public static func record(_ signal: Int32) {
        _ = received.compareExchange(expected: 0, desired: signal, ordering: .sequentiallyConsistent)
        let fd = wakeWrite.load(ordering: .acquiring)
        if fd >= 0 {
            var byte: UInt8 = 1
            _ = write(fd, &byte, 1)
        }
    }

    /// The signal recorded, if any.
    public static var signal: Int32? {
        let value = received.load(ordering: .sequentiallyConsistent)
        return value == 0 ? nil : value
    }

    /// Returns when `fd` has data (or its end) to read; throws `interrupted` when a stop is
    /// requested first. Without ``prepare()`` it returns at once (the read then blocks).
    static func waitReadable(_ fd: Int32, path: String) throws(NumpyError) {
        let wake = wakeRead.load(ordering: .acquiring)
        while true {
            if let signal { throw .interrupted(path: path, signal: signal) }
            guard wake >= 0 else { return }
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, -1)
            // A failed poll leaves the read to report what is wrong with the descriptor.
            if ready < 0 && errno != EINTR { return }
            // The wake-up byte stays in its pipe: the check above sees the request.
            if ready > 0 && fds[1].revents == 0 && fds[0].revents != 0 { return }
        }
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
            try StopRequest.waitReadable(fd, path: path)
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
            if let signal = StopRequest.signal { throw .interrupted(path: path, signal: signal) }
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

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A request, made by a program's signal handler, that the work stop. Once ``prepare()`` has
/// run, a read from a pipe or terminal that honours it (``FileDescriptor/Interruption/stopIfRequested``)
/// waits in poll(2) for data or for the request (a byte the handler writes to a pipe of its
/// own), so that a read from a pipe that stays silent cannot keep the program from undoing its
/// work and exiting, whenever the signal lands. Such reads and writes that a signal cuts short
/// (EINTR) end too, instead of being retried.
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

    /// Returns when `file` has data (or its end) to read; throws once a stop is requested
    /// first. Without ``prepare()`` it returns at once (the read then blocks).
    static func waitReadable(_ file: FileDescriptor) throws(SystemCallError) {
        let wake = wakeRead.load(ordering: .acquiring)
        while true {
            if let signal { throw SystemCallError(path: file.path, operation: "read", errno: EINTR, stopSignal: signal) }
            guard wake >= 0 else { return }
            var fds = [pollfd(fd: file.rawValue, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, -1)
            // A failed poll leaves the read to report what is wrong with the descriptor.
            if ready < 0 && errno != EINTR { return }
            // The wake-up byte stays in its pipe: the check above sees the request.
            if ready > 0 && fds[1].revents == 0 && fds[0].revents != 0 { return }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file's descriptor and the path that names it in errors: a value, as swift-system's
/// `FileDescriptor` is, not an owner (whoever opens it closes it).
///
/// Every call follows one policy: an interrupted call (EINTR) is retried; a read returns fewer
/// bytes than asked only at the end of the input; a write writes everything or throws; a
/// failure throws ``SystemCallError`` naming the path, the operation and errno. Only a caller
/// that asks for it (``Interruption/stopIfRequested``) has a ``StopRequest`` end a read or
/// write instead.
package struct FileDescriptor: Sendable {
    package let rawValue: Int32
    /// Names the file in errors.
    package let path: String

    /// A descriptor opened elsewhere (standard input, a caller's), named `path` in errors.
    package init(rawValue: Int32, path: String) {
        self.rawValue = rawValue
        self.path = path
    }

    package enum Access {
        case readOnly, writeOnly, readWrite

        var flags: Int32 {
            switch self {
            case .readOnly: O_RDONLY
            case .writeOnly: O_WRONLY
            case .readWrite: O_RDWR
            }
        }
    }

    package struct Options: OptionSet, Sendable {
        package let rawValue: Int32
        package init(rawValue: Int32) { self.rawValue = rawValue }
        /// O_CREAT: create the file if it is absent (with the permissions given, less the umask).
        package static let create = Options(rawValue: O_CREAT)
        /// O_EXCL (with `create`): fail with EEXIST if anything is at the path.
        package static let exclusive = Options(rawValue: O_EXCL)
        /// O_DIRECTORY: fail unless the path is a directory.
        package static let directory = Options(rawValue: O_DIRECTORY)
    }

    /// Opens `path` (close-on-exec, so that no child process inherits it).
    package static func open(_ path: String, _ access: Access, options: Options = [],
                             permissions: mode_t = 0o644) throws(SystemCallError) -> FileDescriptor {
        while true {
            let fd = systemOpen(path, access.flags | options.rawValue | O_CLOEXEC, permissions)
            if fd >= 0 { return FileDescriptor(rawValue: fd, path: path) }
            if errno != EINTR { throw lastError(path, "open") }
        }
    }

    /// Closes the descriptor. Never retried: after EINTR the descriptor is closed on Linux, and
    /// a retry could close one another thread has just opened.
    package func close() throws(SystemCallError) {
        if systemClose(rawValue) != 0 { throw lastError(path, "close") }
    }

    /// What a read or write does when a signal interrupts it.
    package enum Interruption {
        /// Retries: the call completes whatever signals arrive.
        case retry
        /// Ends with a ``SystemCallError`` carrying the signal once a ``StopRequest`` is made;
        /// a read waits for data or for the request (see ``StopRequest``), so that an input that
        /// stays silent cannot hold the program.
        case stopIfRequested
    }

    /// Reads into `buffer` from `offset` (pread; from the current position when nil) until it
    /// is full or the input ends; returns the number of bytes read.
    package func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int? = nil,
                      _ interruption: Interruption = .retry) throws(SystemCallError) -> Int {
        var done = 0
        while done < buffer.count {
            if interruption == .stopIfRequested { try StopRequest.waitReadable(self) }
            let start = buffer.baseAddress! + done, count = buffer.count - done
            let n = if let offset { pread(rawValue, start, count, off_t(offset + done)) } else { systemRead(rawValue, start, count) }
            if n > 0 {
                done += n
            } else if n == 0 {
                break
            } else if errno != EINTR {
                throw lastError(path, "read")
            }
        }
        return done
    }

    /// Writes all of `bytes` at `offset` (pwrite; at the current position when nil).
    package func write(_ bytes: UnsafeRawBufferPointer, at offset: Int? = nil,
                       _ interruption: Interruption = .retry) throws(SystemCallError) {
        var done = 0
        while done < bytes.count {
            if interruption == .stopIfRequested, let signal = StopRequest.signal {
                throw SystemCallError(path: path, operation: "write", errno: EINTR, stopSignal: signal)
            }
            let start = bytes.baseAddress! + done, count = bytes.count - done
            let n = if let offset { pwrite(rawValue, start, count, off_t(offset + done)) } else { systemWrite(rawValue, start, count) }
            if n > 0 {
                done += n
            } else if n == 0 {
                // No progress and no error: the device takes nothing more.
                throw SystemCallError(path: path, operation: "write", errno: EIO)
            } else if errno != EINTR {
                throw lastError(path, "write")
            }
        }
    }

    /// Makes the file's data and size durable (fsync).
    package func sync() throws(SystemCallError) {
        while fsync(rawValue) != 0 {
            if errno != EINTR { throw lastError(path, "fsync") }
        }
    }

    /// Sets the file's size to `length`, cutting or extending it with zeros (ftruncate).
    package func resize(to length: Int) throws(SystemCallError) {
        while ftruncate(rawValue, off_t(length)) != 0 {
            if errno != EINTR { throw lastError(path, "ftruncate") }
        }
    }

    /// The file's status (fstat).
    package func status() throws(SystemCallError) -> stat {
        var info = stat()
        guard fstat(rawValue, &info) == 0 else { throw lastError(path, "fstat") }
        return info
    }

    package func size() throws(SystemCallError) -> Int { Int(try status().st_size) }

    package func isRegularFile() throws(SystemCallError) -> Bool {
        (try status().st_mode & S_IFMT) == S_IFREG
    }
}

// MARK: Locks

extension FileDescriptor {
    /// Takes the whole-file advisory lock (flock) exclusively without waiting; false when
    /// another open file description holds it. The lock belongs to the open file description:
    /// it ends with ``unlock()`` or when the last descriptor of it closes.
    package func tryLockExclusive() throws(SystemCallError) -> Bool {
        while flock(rawValue, LOCK_EX | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK { return false }
            if errno != EINTR { throw lastError(path, "flock") }
        }
        return true
    }

    /// Releases the whole-file lock; releasing one not held does nothing.
    package func unlock() {
        _ = flock(rawValue, LOCK_UN)
    }

    package enum ByteLock {
        case shared, exclusive, unlocked

        var type: Int32 {
            switch self {
            case .shared: Int32(F_RDLCK)
            case .exclusive: Int32(F_WRLCK)
            case .unlocked: Int32(F_UNLCK)
            }
        }
    }

    /// Sets an open-file-description lock (Linux's F_OFD_SETLK) on the one byte at `offset`,
    /// which may lie past the file's end. Waits for a conflicting lock to go when `wait`;
    /// otherwise returns false at once. The lock belongs to the open file description, not the
    /// process: two descriptors opened separately in one process exclude each other, and
    /// closing one does not drop the other's lock. Where the system has none, throws ENOTSUP.
    package func lockByte(at offset: Int, _ lock: ByteLock, wait: Bool) throws(SystemCallError) -> Bool {
        let operation = wait ? "fcntl(F_OFD_SETLKW)" : "fcntl(F_OFD_SETLK)"
        #if os(Linux)
        var request = flock()
        request.l_type = Int16(lock.type)
        request.l_whence = Int16(SEEK_SET)
        request.l_start = off_t(offset)
        request.l_len = 1
        let F_OFD_SETLK: Int32 = 37, F_OFD_SETLKW: Int32 = 38
        while fcntl(rawValue, wait ? F_OFD_SETLKW : F_OFD_SETLK, &request) != 0 {
            if !wait && (errno == EAGAIN || errno == EACCES) { return false }
            if errno != EINTR { throw lastError(path, operation) }
        }
        return true
        #else
        throw SystemCallError(path: path, operation: operation, errno: ENOTSUP)
        #endif
    }
}

// The calls that ``FileDescriptor``'s methods of the same names hide.
private func systemOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func systemClose(_ fd: Int32) -> Int32 { close(fd) }
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, buffer, count) }
private func systemWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int { write(fd, bytes, count) }

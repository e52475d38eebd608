#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file created next to its destination (same directory, hence same filesystem, so the
/// final rename is atomic) and renamed over it on `commit`. Until then the destination is
/// untouched; `discard` removes the file, so a failed write leaves nothing behind.
final class TemporaryFile {
    let destination: String
    let path: String
    private(set) var fd: Int32
    private var isFinished = false

    /// Creates `<dir>/.<name>.XXXXXX` (``TemporaryName``) with mode 0666 minus the umask (what `open` gives a new
    /// file, unlike mkstemp's 0600), so the committed file has ordinary permissions.
    init(destination: String) throws(NumpyError) {
        self.destination = destination
        guard !Self.split(destination).name.isEmpty else {
            throw .invalidUse(path: destination, reason: "not a file name (the path ends with '/')")
        }
        var attempt = 0
        while true {
            let candidate = TemporaryName.beside(destination, suffix: Self.randomSuffix())
            let fd = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if fd >= 0 {
                self.path = candidate
                self.fd = fd
                return
            }
            let code = errno
            attempt += 1
            if code == EINTR || (code == EEXIST && attempt < 100) { continue }
            throw SystemIO.failure(destination, "creating temporary file \(candidate)", errno: code)
        }
    }

    deinit { discard() }

    /// Atomically replaces the destination, first making the data durable when `durable`.
    /// With `overwrite` false an existing destination is refused (checked again here, having
    /// been checked before writing: something may have appeared meanwhile).
    func commit(overwrite: Bool, durable: Bool) throws(NumpyError) {
        if durable {
            guard fsync(fd) == 0 else { throw SystemIO.failure(destination, "fsync of \(path)") }
        }
        let closed = close(fd)
        fd = -1
        guard closed == 0 else { throw SystemIO.failure(destination, "close of \(path)") }
        if !overwrite && SystemIO.exists(destination) {
            throw .destinationExists(path: destination)
        }
        guard rename(path, destination) == 0 else {
            throw SystemIO.failure(destination, "renaming \(path) to \(destination)")
        }
        isFinished = true
        if durable { SystemIO.syncDirectory(of: destination) }
    }

    /// Closes and removes the file unless it was committed. Safe to call more than once.
    func discard() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        if !isFinished {
            unlink(path)
            isFinished = true
        }
    }

    /// `"a/b/x.npy"` → (`"a/b/"`, `"x.npy"`); `"x.npy"` → (`""`, `"x.npy"`).
    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[...slash]), String(path[path.index(after: slash)...]))
    }

    static func randomSuffix() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<6).map { _ in alphabet.randomElement()! })
    }
}

/// A path beside a destination for a file that another writer creates and completes (an
/// archive), moved onto the destination by ``install(replacing:)``: until then the
/// destination is untouched, and whatever is at the path is removed by ``discard()`` or on
/// release, so a failed or interrupted write leaves nothing behind.
public final class StagedFile {
    public let destination: String
    /// `dir/.NAME.staged-PID-XXXXXX` (``TemporaryName``).
    public let path: String
    private var isFinished = false

    public init(destination: String) {
        self.destination = destination
        path = TemporaryName.beside(destination, suffix: "staged-\(getpid())-\(TemporaryFile.randomSuffix())")
    }

    deinit { discard() }

    /// Moves the complete file onto the destination and makes the move durable (the file
    /// itself must already be synced). With `replacing`, rename(2) replaces what is there
    /// (only a regular file: ``OutputPath/checkReplaceable(_:)``); without, link(2) fails if
    /// the destination appeared meanwhile (`destinationExists`), never overwriting it.
    public func install(replacing: Bool) throws(NumpyError) {
        if replacing {
            try OutputPath.checkReplaceable(destination)
            guard rename(path, destination) == 0 else { throw SystemIO.failure(destination, "renaming \(path) onto it") }
        } else if link(path, destination) == 0 {
            unlink(path)
        } else {
            let code = errno
            if code == EEXIST { throw .destinationExists(path: destination) }
            // A filesystem without hard links: check, then rename.
            guard code == EPERM || code == ENOTSUP || code == EOPNOTSUPP || code == EMLINK || code == ENOSYS else {
                throw SystemIO.failure(destination, "linking \(path) to it", errno: code)
            }
            if SystemIO.exists(destination) { throw .destinationExists(path: destination) }
            guard rename(path, destination) == 0 else { throw SystemIO.failure(destination, "renaming \(path) onto it") }
        }
        isFinished = true
        SystemIO.syncDirectory(of: destination)
    }

    /// Removes what is at the path, unless installed. Safe to call more than once.
    public func discard() {
        guard !isFinished else { return }
        unlink(path)
        isFinished = true
    }
}

/// Names of temporary files beside a destination: in its directory (so that the final rename
/// stays on one filesystem), hidden, and never longer than NAME_MAX, whatever the length of
/// the destination's name.
public enum TemporaryName {
    /// NAME_MAX of Linux and macOS filesystems.
    public static let maxNameBytes = 255

    /// `dir/.NAME.SUFFIX`; NAME is cut (at a character boundary) so that the whole name stays
    /// within ``maxNameBytes``.
    public static func beside(_ destination: String, suffix: String) -> String {
        let (directory, name) = TemporaryFile.split(destination)
        let room = maxNameBytes - 2 - suffix.utf8.count
        var kept = Substring(name)
        while kept.utf8.count > room { kept = kept.dropLast() }
        return directory + "." + kept + "." + suffix
    }
}

/// A file for scratch data that no path names: created in a directory and unlinked at once,
/// so that nothing is left behind however the process ends. Closed on release.
final class UnlinkedFile: CustomStringConvertible {
    let fd: Int32
    /// What it holds and where, for errors: "spool of <stdin> in /data".
    let description: String

    init(in directory: String, purpose: String) throws(NumpyError) {
        let place = directory.isEmpty ? "." : directory
        description = "\(purpose) in \(place)"
        var attempt = 0
        while true {
            let candidate = place + "/.scratch-" + TemporaryFile.randomSuffix()
            let fd = open(candidate, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 {
                unlink(candidate)
                self.fd = fd
                return
            }
            let code = errno
            attempt += 1
            if code == EINTR || (code == EEXIST && attempt < 100) { continue }
            throw SystemIO.failure(description, "creating a temporary file", errno: code)
        }
    }

    deinit { close(fd) }
}

/// Outputs that a command may replace.
public enum OutputPath {
    /// Refuses to replace anything at `path` that is not a regular file: a device node, a
    /// FIFO, a socket, a symbolic link (even to a regular file) or a directory. Nothing at
    /// `path` passes.
    public static func checkReplaceable(_ path: String) throws(NumpyError) {
        var status = stat()
        guard lstat(path, &status) == 0 else { return }
        let kind: String
        switch status.st_mode & S_IFMT {
        case S_IFREG: return
        case S_IFLNK: kind = "symbolic link"
        case S_IFDIR: kind = "directory"
        case S_IFIFO: kind = "FIFO"
        case S_IFCHR: kind = "character device"
        case S_IFBLK: kind = "block device"
        case S_IFSOCK: kind = "socket"
        default: kind = "special file"
        }
        throw .notRegularFile(path: path, kind: kind)
    }
}

/// Collects small writes into large `write(2)` calls; large writes go straight through.
final class OutputBuffer {
    private let fd: Int32
    private let path: String
    private let storage: UnsafeMutableRawBufferPointer
    private var used = 0
    static let capacity = 1 << 20

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        storage = .allocate(byteCount: Self.capacity, alignment: 16)
    }

    deinit { storage.deallocate() }

    func append(_ bytes: UnsafeRawBufferPointer) throws(NumpyError) {
        if used + bytes.count > storage.count { try flush() }
        if bytes.count >= storage.count {
            try SystemIO.writeAll(fd, bytes, path: path)
        } else if !bytes.isEmpty {
            UnsafeMutableRawBufferPointer(rebasing: storage[used..<used + bytes.count]).copyMemory(from: bytes)
            used += bytes.count
        }
    }

    func flush() throws(NumpyError) {
        guard used > 0 else { return }
        let pending = UnsafeRawBufferPointer(rebasing: storage[..<used])
        used = 0
        try SystemIO.writeAll(fd, pending, path: path)
    }
}

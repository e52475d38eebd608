#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SystemFile

/// A file created next to its destination (same directory, hence same filesystem, so the
/// final rename is atomic) and renamed over it on `commit`. Until then the destination is
/// untouched; `discard` removes the file, so a failed write leaves nothing behind.
final class TemporaryFile {
    let destination: String
    let path: String
    /// Open until committed or discarded; named in errors as the destination.
    let descriptor: FileDescriptor
    private var isOpen = true
    private var isFinished = false

    /// Creates `<dir>/.<name>.XXXXXX` (``TemporaryName``) with mode 0666 minus the umask (what `open` gives a new
    /// file, unlike mkstemp's 0600), so the committed file has ordinary permissions.
    init(destination: String) throws(NumpyError) {
        self.destination = destination
        guard !Self.split(destination).name.isEmpty else {
            throw .invalidUse(path: destination, reason: "not a file name (the path ends with '/')")
        }
        let file: FileDescriptor
        do {
            file = try FileSystem.createNew(named: { TemporaryName.beside(destination, suffix: Self.randomSuffix()) },
                                            .writeOnly, permissions: 0o666)
        } catch {
            throw NumpyError(error.named(destination, "creating temporary file \(error.path)"))
        }
        path = file.path
        descriptor = FileDescriptor(rawValue: file.rawValue, path: destination)
    }

    deinit { discard() }

    /// Atomically replaces the destination, first making the data durable when `durable`.
    /// With `overwrite` false an existing destination is refused (checked again here, having
    /// been checked before writing: something may have appeared meanwhile).
    func commit(overwrite: Bool, durable: Bool) throws(NumpyError) {
        let descriptor = self.descriptor, path = self.path, destination = self.destination
        if durable {
            try numpyCall(as: destination, "fsync of \(path)") { () throws(SystemCallError) in try descriptor.sync() }
        }
        isOpen = false
        try numpyCall(as: destination, "close of \(path)") { () throws(SystemCallError) in try descriptor.close() }
        if !overwrite && FileSystem.exists(destination) {
            throw .destinationExists(path: destination)
        }
        try numpyCall(as: destination, "renaming \(path) to \(destination)") { () throws(SystemCallError) in
            try FileSystem.rename(path, to: destination)
        }
        isFinished = true
        // Best effort: the data is already synced, and some filesystems refuse fsync on directories.
        if durable { try? FileSystem.syncDirectory(of: destination) }
    }

    /// Closes and removes the file unless it was committed. Safe to call more than once.
    func discard() {
        if isOpen {
            isOpen = false
            try? descriptor.close()
        }
        if !isFinished {
            FileSystem.remove(path)
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
        let path = self.path, destination = self.destination
        let renameOnto = { () throws(NumpyError) in
            try numpyCall(as: destination, "renaming \(path) onto it") { () throws(SystemCallError) in
                try FileSystem.rename(path, to: destination)
            }
        }
        if replacing {
            try OutputPath.checkReplaceable(destination)
            try renameOnto()
        } else {
            do throws(SystemCallError) {
                try FileSystem.link(path, to: destination)
                FileSystem.remove(path)
            } catch {
                let code = error.errno
                if code == EEXIST { throw .destinationExists(path: destination) }
                // A filesystem without hard links: check, then rename.
                guard code == EPERM || code == ENOTSUP || code == EOPNOTSUPP || code == EMLINK || code == ENOSYS else {
                    throw NumpyError(error.named(destination, "linking \(path) to it"))
                }
                if FileSystem.exists(destination) { throw .destinationExists(path: destination) }
                try renameOnto()
            }
        }
        isFinished = true
        // Best effort, as for ``TemporaryFile``.
        try? FileSystem.syncDirectory(of: destination)
    }

    /// Removes what is at the path, unless installed. Safe to call more than once.
    public func discard() {
        guard !isFinished else { return }
        FileSystem.remove(path)
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
    let descriptor: FileDescriptor
    /// What it holds and where, for errors: "spool of <stdin> in /data".
    let description: String

    init(in directory: String, purpose: String) throws(NumpyError) {
        let place = directory.isEmpty ? "." : directory
        description = "\(purpose) in \(place)"
        let file: FileDescriptor
        do {
            file = try FileSystem.createNew(named: { place + "/.scratch-" + TemporaryFile.randomSuffix() },
                                            .readWrite, permissions: 0o600)
        } catch {
            throw NumpyError(error.named(description, "creating a temporary file"))
        }
        FileSystem.remove(file.path)
        descriptor = FileDescriptor(rawValue: file.rawValue, path: description)
    }

    deinit { try? descriptor.close() }
}

/// Outputs that a command may replace.
public enum OutputPath {
    /// Refuses to replace anything at `path` that is not a regular file: a device node, a
    /// FIFO, a socket, a symbolic link (even to a regular file) or a directory. Nothing at
    /// `path` passes.
    public static func checkReplaceable(_ path: String) throws(NumpyError) {
        let kind: String
        switch FileSystem.kind(of: path) {
        case nil, .regular: return
        case .symbolicLink: kind = "symbolic link"
        case .directory: kind = "directory"
        case .fifo: kind = "FIFO"
        case .characterDevice: kind = "character device"
        case .blockDevice: kind = "block device"
        case .socket: kind = "socket"
        case .other: kind = "special file"
        }
        throw .notRegularFile(path: path, kind: kind)
    }
}

/// Collects small writes into large `write(2)` calls; large writes go straight through.
/// Its writes end when a ``StopRequest`` is made.
final class OutputBuffer {
    private let file: FileDescriptor
    private let storage: UnsafeMutableRawBufferPointer
    private var used = 0
    static let capacity = 1 << 20

    /// `file` is named in errors as the writer's destination.
    init(_ file: FileDescriptor) {
        self.file = file
        storage = .allocate(byteCount: Self.capacity, alignment: 16)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws(NumpyError) {
        try numpyCall { () throws(SystemCallError) in try file.write(bytes, .stopIfRequested) }
    }

    deinit { storage.deallocate() }

    func append(_ bytes: UnsafeRawBufferPointer) throws(NumpyError) {
        if used + bytes.count > storage.count { try flush() }
        if bytes.count >= storage.count {
            try writeAll(bytes)
        } else if !bytes.isEmpty {
            UnsafeMutableRawBufferPointer(rebasing: storage[used..<used + bytes.count]).copyMemory(from: bytes)
            used += bytes.count
        }
    }

    func flush() throws(NumpyError) {
        guard used > 0 else { return }
        let pending = UnsafeRawBufferPointer(rebasing: storage[..<used])
        used = 0
        try writeAll(pending)
    }
}

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
        guard !TemporaryName.split(destination).name.isEmpty else {
            throw .invalidUse(path: destination, reason: "not a file name (the path ends with '/')")
        }
        let file: FileDescriptor
        do {
            file = try FileSystem.createNew(named: { TemporaryName.beside(destination, suffix: TemporaryName.randomSuffix()) },
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
            file = try FileSystem.createNew(named: { place + "/.scratch-" + TemporaryName.randomSuffix() },
                                            .readWrite, permissions: 0o600)
        } catch {
            throw NumpyError(error.named(description, "creating a temporary file"))
        }
        FileSystem.remove(file.path)
        descriptor = FileDescriptor(rawValue: file.rawValue, path: description)
    }

    deinit { try? descriptor.close() }
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

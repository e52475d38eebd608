#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file could not be put at its destination.
package enum PlacementError: Error, Equatable, Sendable {
    /// Something is at the destination, which was not to be replaced; nothing was changed.
    case destinationExists(path: String)
    /// The destination to replace is a `kind` (a FIFO, a device, a symbolic link, a
    /// directory), not a regular file; nothing was changed.
    case notRegularFile(path: String, kind: String)
    case systemCall(SystemCallError)
}

/// A path beside a destination for a file that another writer creates and completes (an
/// archive), moved onto the destination by ``install(replacing:)``: until then the
/// destination is untouched, and whatever is at the path is removed by ``discard()`` or on
/// release, so a failed or interrupted write leaves nothing behind.
package final class StagedFile {
    package let destination: String
    /// `dir/.NAME.staged-PID-XXXXXX` (``TemporaryName``).
    package let path: String
    private var isFinished = false

    package init(destination: String) {
        self.destination = destination
        path = TemporaryName.beside(destination, suffix: "staged-\(getpid())-\(TemporaryName.randomSuffix())")
    }

    deinit { discard() }

    /// Moves the complete file onto the destination and makes the move durable (the file
    /// itself must already be synced). With `replacing`, rename(2) replaces what is there
    /// (only a regular file: ``FileSystem/checkReplaceable(_:)``); without, link(2) fails if
    /// the destination appeared meanwhile (`destinationExists`), never overwriting it.
    package func install(replacing: Bool) throws(PlacementError) {
        let path = self.path, destination = self.destination
        let renameOnto = { () throws(PlacementError) in
            do throws(SystemCallError) {
                try FileSystem.rename(path, to: destination)
            } catch {
                throw .systemCall(error.named(destination, "renaming \(path) onto it"))
            }
        }
        if replacing {
            try FileSystem.checkReplaceable(destination)
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
                    throw .systemCall(error.named(destination, "linking \(path) to it"))
                }
                if FileSystem.exists(destination) { throw .destinationExists(path: destination) }
                try renameOnto()
            }
        }
        isFinished = true
        // Best effort: the data is already synced, and some filesystems refuse fsync on directories.
        try? FileSystem.syncDirectory(of: destination)
    }

    /// Removes what is at the path, unless installed. Safe to call more than once.
    package func discard() {
        guard !isFinished else { return }
        FileSystem.remove(path)
        isFinished = true
    }
}

/// Names of temporary files beside a destination: in its directory (so that the final rename
/// stays on one filesystem), hidden, and never longer than NAME_MAX, whatever the length of
/// the destination's name.
package enum TemporaryName {
    /// NAME_MAX of Linux and macOS filesystems.
    package static let maxNameBytes = 255

    /// `dir/.NAME.SUFFIX`; NAME is cut (at a character boundary) so that the whole name stays
    /// within ``maxNameBytes``.
    package static func beside(_ destination: String, suffix: String) -> String {
        let (directory, name) = split(destination)
        let room = maxNameBytes - 2 - suffix.utf8.count
        var kept = Substring(name)
        while kept.utf8.count > room { kept = kept.dropLast() }
        return directory + "." + kept + "." + suffix
    }

    /// `"a/b/x.npy"` → (`"a/b/"`, `"x.npy"`); `"x.npy"` → (`""`, `"x.npy"`).
    package static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[...slash]), String(path[path.index(after: slash)...]))
    }

    /// Six random letters and digits.
    package static func randomSuffix() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<6).map { _ in alphabet.randomElement()! })
    }
}

extension FileSystem {
    /// Refuses to replace anything at `path` that is not a regular file: a device node, a
    /// FIFO, a socket, a symbolic link (even to a regular file) or a directory. Nothing at
    /// `path` passes.
    package static func checkReplaceable(_ path: String) throws(PlacementError) {
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

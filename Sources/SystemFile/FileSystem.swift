#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The calls on paths rather than open files: what is at a path, renaming, linking, removing,
/// and making a directory's entries durable. Errors follow ``FileDescriptor``'s policy.
package enum FileSystem {
    /// What a directory entry is (lstat: a symbolic link is itself, not what it points to).
    package enum Kind: Equatable {
        case regular, directory, symbolicLink, fifo, characterDevice, blockDevice, socket, other
    }

    /// What is at `path`, without following a final symbolic link; nil when nothing is.
    package static func kind(of path: String) -> Kind? {
        var status = stat()
        guard lstat(path, &status) == 0 else { return nil }
        switch status.st_mode & S_IFMT {
        case S_IFREG: return .regular
        case S_IFDIR: return .directory
        case S_IFLNK: return .symbolicLink
        case S_IFIFO: return .fifo
        case S_IFCHR: return .characterDevice
        case S_IFBLK: return .blockDevice
        case S_IFSOCK: return .socket
        default: return .other
        }
    }

    /// True when something (a file, a directory, a dangling symbolic link too) is at `path`;
    /// `followingLinks`, when a symbolic link there leads to something.
    package static func exists(_ path: String, followingLinks: Bool = false) -> Bool {
        var status = stat()
        return (followingLinks ? stat(path, &status) : lstat(path, &status)) == 0
    }

    /// The size of the file at `path`, following symbolic links; nil when it cannot be read.
    package static func size(of path: String) -> Int? {
        var status = stat()
        return stat(path, &status) == 0 ? Int(status.st_size) : nil
    }

    /// Renames `source` to `destination`, replacing what is there (atomically, within one
    /// filesystem). The error names `destination`.
    package static func rename(_ source: String, to destination: String) throws(SystemCallError) {
        guard systemRename(source, destination) == 0 else { throw lastError(destination, "rename") }
    }

    /// Gives the file at `source` the second name `destination`; fails with EEXIST if
    /// anything is there (never replacing it). The error names `destination`.
    package static func link(_ source: String, to destination: String) throws(SystemCallError) {
        guard systemLink(source, destination) == 0 else { throw lastError(destination, "link") }
    }

    /// Removes the name `path`; nothing there is not an error (what removes a file that a
    /// failed or abandoned operation leaves).
    package static func remove(_ path: String) {
        _ = unlink(path)
    }

    /// Makes the entries of `path`'s directory durable (after creating, renaming or linking
    /// `path`). The error names the directory.
    package static func syncDirectory(of path: String) throws(SystemCallError) {
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(directory.isEmpty ? "/" : directory, .readOnly, options: .directory)
        } catch {
            throw error.named(directory, "open directory")
        }
        defer { try? fd.close() }
        do {
            try fd.sync()
        } catch {
            throw error.named(directory, "fsync directory")
        }
    }

    /// Creates a new file at the first free name `name()` gives (O_EXCL: an existing name is
    /// never opened), trying up to 100 names. The error names the last name tried.
    package static func createNew(named name: () -> String, _ access: FileDescriptor.Access,
                                  permissions: mode_t) throws(SystemCallError) -> FileDescriptor {
        var attempt = 0
        while true {
            do {
                return try FileDescriptor.open(name(), access, options: [.create, .exclusive], permissions: permissions)
            } catch where error.errno == EEXIST && attempt < 99 {
                attempt += 1
            }
        }
    }
}

// The calls that ``FileSystem``'s functions of the same names hide.
private func systemRename(_ source: String, _ destination: String) -> Int32 { rename(source, destination) }
private func systemLink(_ source: String, _ destination: String) -> Int32 { link(source, destination) }

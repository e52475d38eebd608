#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A per-process file path for readers that open files by path: in `/dev/shm` when it exists
/// (no disk traffic), else in `$TMPDIR` or `/tmp`.
public func scratchPath(_ name: String) -> String {
    let directory: String
    if access("/dev/shm", W_OK) == 0 {
        directory = "/dev/shm"
    } else if let tmp = getenv("TMPDIR") {
        directory = String(cString: tmp)
    } else {
        directory = "/tmp"
    }
    return "\(directory)/expert-archive-fuzz-\(getpid())-\(name)"
}

/// Replaces the file at `path` with `size` bytes from `data`. Traps when that fails: a fuzzer
/// that cannot write its input tests nothing.
public func writeScratch(_ path: String, _ data: UnsafePointer<UInt8>, _ size: Int) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0, "fuzz harness: cannot create \(path): errno \(errno)")
    var written = 0
    while written < size {
        let n = write(fd, data + written, size - written)
        precondition(n > 0, "fuzz harness: cannot write \(path): errno \(errno)")
        written += n
    }
    close(fd)
}

public func writeScratch(_ path: String, _ bytes: [UInt8]) {
    let padded = bytes + [0] // a non-nil base address for an empty input too
    padded.withUnsafeBufferPointer { writeScratch(path, $0.baseAddress!, bytes.count) }
}

/// Removes `path` if it exists.
public func removeScratch(_ path: String) {
    unlink(path)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only mapping of a whole regular file. The mapping, not a copy, backs the data a
/// reader hands out, so a 2 GB file costs page cache, not heap. Unmapped on release.
///
/// A file truncated by another process while mapped makes access fault (SIGBUS); mmap
/// offers no way around that, and the size is validated against the header when opened.
final class MappedFile {
    let bytes: UnsafeRawBufferPointer

    /// `size` must be the file's size and greater than 0 (mmap refuses empty mappings).
    init(fd: Int32, size: Int, path: String) throws(NumpyError) {
        guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0),
              address != UnsafeMutableRawPointer(bitPattern: -1)  // MAP_FAILED
        else { throw SystemIO.failure(path, "mmap") }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count)
    }

    /// Drops the whole pages of `range` (byte offsets) from this process's resident memory:
    /// a front-to-back reader calls it behind itself so that reading a 2 GB file does not
    /// count 2 GB resident. The pages stay in the page cache; touching them again is a minor fault.
    func release(_ range: Range<Int>) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page, end = range.upperBound / page * page
        guard end > start, let base = bytes.baseAddress else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    /// Tells the kernel we read front to back: more read-ahead, pages dropped sooner.
    func adviseSequential() {
        _ = madvise(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count, MADV_SEQUENTIAL)
    }
}

/// A pipe, terminal or other descriptor read front to back exactly once.
final class ByteStream {
    let fd: Int32
    private let ownsDescriptor: Bool
    /// Set once the data has been read: a stream cannot be rewound.
    var isConsumed = false

    init(fd: Int32, ownsDescriptor: Bool) {
        self.fd = fd
        self.ownsDescriptor = ownsDescriptor
    }

    deinit {
        if ownsDescriptor { close(fd) }
    }

    /// The next `count` bytes, fewer only at the end of the input. For the header only:
    /// `count` is bounded by `Preamble.maxHeaderLength`.
    func read(_ count: Int, path: String) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let got = try bytes.withUnsafeMutableBytes { buffer in
            try SystemIO.readFully(fd, into: buffer, path: path)
        }
        bytes.removeLast(count - got)
        return bytes
    }

    /// Reads and counts bytes until the end of the input, keeping none.
    func drain(path: String) throws(NumpyError) -> Int {
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { scratch.deallocate() }
        var total = 0
        while true {
            let got = try SystemIO.readFully(fd, into: scratch, path: path)
            total += got
            if got < scratch.count { return total }
        }
    }
}

/// Memory for one chunk of a stream, 16-byte aligned so it can be viewed as any integer
/// type. It grows only as bytes actually arrive: a header announcing a huge array on a
/// short stream ends in a truncation error, not in a huge allocation.
final class ChunkBuffer {
    private(set) var storage: UnsafeMutableRawBufferPointer
    static let initialCapacity = 1 << 20

    init(capacity: Int = initialCapacity) {
        storage = .allocate(byteCount: max(capacity, 16), alignment: 16)
    }

    deinit { storage.deallocate() }

    /// Fills the buffer with up to `count` bytes from `stream`; returns how many arrived
    /// (fewer than `count` only at the end of the input). They start at `storage.baseAddress`.
    func fill(from stream: ByteStream, count: Int, path: String) throws(NumpyError) -> Int {
        var filled = 0
        while filled < count {
            if filled == storage.count { grow(toAtMost: count, keeping: filled) }
            let target = UnsafeMutableRawBufferPointer(rebasing: storage[filled..<min(count, storage.count)])
            let got = try SystemIO.readFully(stream.fd, into: target, path: path)
            filled += got
            if got < target.count { break }
        }
        return filled
    }

    private func grow(toAtMost limit: Int, keeping used: Int) {
        let larger = UnsafeMutableRawBufferPointer.allocate(
            byteCount: min(limit, storage.count * 2), alignment: 16)
        larger.copyMemory(from: UnsafeRawBufferPointer(rebasing: storage[..<used]))
        storage.deallocate()
        storage = larger
    }
}

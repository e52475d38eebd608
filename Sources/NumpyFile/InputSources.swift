import SystemFile

/// A pipe, terminal or other descriptor read front to back exactly once.
/// Its reads end when a ``StopRequest`` is made.
final class ByteStream {
    /// Named in errors as the reader's input.
    let file: FileDescriptor
    private let ownsDescriptor: Bool
    /// Set once the data has been read: a stream cannot be rewound.
    var isConsumed = false

    init(_ file: FileDescriptor, ownsDescriptor: Bool) {
        self.file = file
        self.ownsDescriptor = ownsDescriptor
    }

    deinit {
        if ownsDescriptor { try? file.close() }
    }

    /// Fills `buffer` unless the input ends first; returns the bytes read.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(NumpyError) -> Int {
        try numpyCall { () throws(SystemCallError) in try file.read(into: buffer, .stopIfRequested) }
    }

    /// The next `count` bytes, fewer only at the end of the input. For the header only:
    /// `count` is bounded by `Preamble.maxHeaderLength`.
    func read(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let got = try bytes.withUnsafeMutableBytes { buffer in try read(into: buffer) }
        bytes.removeLast(count - got)
        return bytes
    }

    /// Reads and counts bytes until the end of the input, keeping none.
    func drain() throws(NumpyError) -> Int {
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { scratch.deallocate() }
        var total = 0
        while true {
            let got = try read(into: scratch)
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
    func fill(from stream: ByteStream, count: Int) throws(NumpyError) -> Int {
        var filled = 0
        while filled < count {
            if filled == storage.count { grow(toAtMost: count, keeping: filled) }
            let target = UnsafeMutableRawBufferPointer(rebasing: storage[filled..<min(count, storage.count)])
            let got = try stream.read(into: target)
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

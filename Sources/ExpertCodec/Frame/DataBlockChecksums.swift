import CVectorKernels

/// The XXH32 checksums of the first data block of frames about to be opened, computed four
/// frames at a time where the CPU can (`ek_xxh32_x4`): one block's checksum is a chain of
/// multiplies a vector unit runs no faster than the scalar one, four blocks side by side run in
/// one. The frame decoder takes a block's checksum from here when it has the same bytes (address
/// and length) and computes it otherwise; a checksum is taken once, and the frame decoder still
/// compares it with the stored one before it uses the block.
final class DataBlockChecksums {
    private struct Entry {
        var data: UnsafeRawPointer
        var length: Int
        var hash: UInt32
    }

    private var entries: [Entry] = []
    /// Whether `compute` computes anything (``VectorKernels``).
    private let fourAtOnce: Bool

    init(fourAtOnce: Bool) {
        self.fourAtOnce = fourAtOnce
        entries.reserveCapacity(4)
    }

    /// Computes the checksums of the first data block of each of four `frames`, or nothing when
    /// the CPU lacks the kernel or a frame does not start like a block's (the frame decoder then
    /// reports it). Forgets the checksums computed before.
    func compute(_ frames: [UnsafeRawBufferPointer]) {
        entries.removeAll(keepingCapacity: true)
        guard fourAtOnce, frames.count == 4 else { return }
        for frame in frames {
            // The data block after a block frame's 15-byte header (spec 1.4), if it is whole.
            let header = 15
            guard frame.count >= header + 4, let base = frame.baseAddress else { return entries.removeAll(keepingCapacity: true) }
            let length = Int(base.loadLE(UInt32.self, at: header) & 0x7FFF_FFFF)
            guard length > 0, frame.count - header - 8 >= length else { return entries.removeAll(keepingCapacity: true) }
            entries.append(Entry(data: base + header + 4, length: length, hash: 0))
        }
        var data: (UnsafePointer<UInt8>?, UnsafePointer<UInt8>?, UnsafePointer<UInt8>?, UnsafePointer<UInt8>?) = (
            entries[0].data.assumingMemoryBound(to: UInt8.self), entries[1].data.assumingMemoryBound(to: UInt8.self),
            entries[2].data.assumingMemoryBound(to: UInt8.self), entries[3].data.assumingMemoryBound(to: UInt8.self))
        var lengths = (entries[0].length, entries[1].length, entries[2].length, entries[3].length)
        var hashes: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
        withUnsafeMutablePointer(to: &data) { d in
            withUnsafeMutablePointer(to: &lengths) { l in
                withUnsafeMutablePointer(to: &hashes) { h in
                    ek_xxh32_x4(UnsafeRawPointer(d).assumingMemoryBound(to: UnsafePointer<UInt8>?.self),
                                UnsafeRawPointer(l).assumingMemoryBound(to: Int.self),
                                UnsafeMutableRawPointer(h).assumingMemoryBound(to: UInt32.self))
                }
            }
        }
        (entries[0].hash, entries[1].hash, entries[2].hash, entries[3].hash) = hashes
    }

    /// The checksum of `data`: computed here before, or now.
    func checksum(of data: UnsafeRawBufferPointer) -> UInt32 {
        if let i = entries.firstIndex(where: { $0.data == data.baseAddress && $0.length == data.count }) {
            return entries.remove(at: i).hash
        }
        return XXH32.hash(data)
    }

    /// Forgets every checksum computed.
    func clear() {
        entries.removeAll(keepingCapacity: true)
    }
}

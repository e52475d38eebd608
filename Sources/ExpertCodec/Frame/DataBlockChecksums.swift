import CVectorKernels

/// The XXH32 checksums of the first data block of frames about to be opened, computed
/// ``batch`` frames at a time where the CPU can (`ek_xxh32_x8`): one block's checksum is a chain
/// of dependent multiplies that a vector unit runs no faster than the scalar one, while eight
/// blocks side by side run in two such chains. The frame decoder takes a block's checksum from
/// here when it has the same bytes (address and length) and computes it otherwise; a checksum
/// is taken once, and the frame decoder still compares it with the stored one before it uses
/// the block.
final class DataBlockChecksums {
    /// Frames whose checksums are computed together.
    static let batch = 8

    private struct Entry {
        var data: UnsafeRawPointer
        var length: Int
        var hash: UInt32
    }

    private var entries: [Entry] = []
    /// The kernel's arguments, kept between batches: no allocation per batch.
    private var data: [UnsafePointer<UInt8>?] = [], lengths: [Int] = [], hashes: [UInt32]
    /// Whether `compute` computes anything (``VectorKernels``).
    private let sideBySide: Bool

    init(sideBySide: Bool) {
        self.sideBySide = sideBySide
        entries.reserveCapacity(Self.batch)
        data.reserveCapacity(Self.batch)
        lengths.reserveCapacity(Self.batch)
        hashes = [UInt32](repeating: 0, count: Self.batch)
    }

    /// Computes the checksums of the first data block of each of ``batch`` `frames`, or
    /// nothing when the CPU lacks the kernel or a frame does not start like a block's (the
    /// frame decoder then reports it). Forgets the checksums computed before.
    func compute(_ frames: [UnsafeRawBufferPointer]) {
        entries.removeAll(keepingCapacity: true)
        guard sideBySide, frames.count == Self.batch else { return }
        data.removeAll(keepingCapacity: true)
        lengths.removeAll(keepingCapacity: true)
        for frame in frames {
            // The data block after a block frame's 15-byte header (spec 1.4), if it is whole.
            let header = 15
            guard frame.count >= header + 4, let base = frame.baseAddress else { return }
            let length = Int(base.loadLE(UInt32.self, at: header) & 0x7FFF_FFFF)
            guard length > 0, frame.count - header - 8 >= length else { return }
            data.append((base + header + 4).assumingMemoryBound(to: UInt8.self))
            lengths.append(length)
        }
        ek_xxh32_x8(&data, lengths, &hashes)
        for k in 0..<Self.batch { entries.append(Entry(data: UnsafeRawPointer(data[k]!), length: lengths[k], hash: hashes[k])) }
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

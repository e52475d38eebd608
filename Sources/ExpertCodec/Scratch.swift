/// Growable scratch memory owned by one encoder or decoder, reused from block to block.
final class Scratch {
    private(set) var base: UnsafeMutableRawPointer
    private var capacity: Int

    init() {
        capacity = 64
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    /// At least `bytes` bytes; earlier contents are not kept when it grows.
    func reserve(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > capacity {
            base.deallocate()
            capacity = max(bytes, capacity * 2)
            base = .allocate(byteCount: capacity, alignment: 16)
        }
        return base
    }

    func reserve<S>(_ count: Int, of: S.Type) -> UnsafeMutablePointer<S> {
        reserve(count * MemoryLayout<S>.stride).bindMemory(to: S.self, capacity: count)
    }
}

/// Little-endian field access on raw bytes.
extension UnsafeMutableRawPointer {
    @inline(__always)
    func storeLE<I: FixedWidthInteger>(_ value: I, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: I.self)
    }
}

extension UnsafeRawPointer {
    @inline(__always)
    func loadLE<I: FixedWidthInteger>(_: I.Type, at offset: Int) -> I {
        I(littleEndian: loadUnaligned(fromByteOffset: offset, as: I.self))
    }
}

import CLZ4

/// The standard LZ4 frame around a block payload: content size, block and content checksums
/// always present, so `lz4 -t` checks a block and `lz4 -d` returns its payload.
enum LZ4Frame {
    /// The frame magic number, little-endian on disk.
    static let magic: UInt32 = 0x184D_2204
    /// FLG: version 01, independent blocks, block checksums, content size, content checksum.
    static let flags: UInt8 = 0x7C
    /// BD: 64 KiB block maximum size.
    static let blockDescriptor: UInt8 = 0x40
    static let maxBlockBytes = 64 * 1024
    /// liblz4's acceleration for blocks worth compressing. Bit planes give LZ4 little to find
    /// beyond runs: on the real traces 4 costs 0.2-0.4% of the ratio and halves LZ4's time.
    static let acceleration: Int32 = 4

    /// `payload` in one frame, every block compressed where LZ4 shrinks it.
    static func compress(_ payload: UnsafeRawBufferPointer) throws -> [UInt8] {
        LZ4FrameWriter().frame(payload, segments: [PayloadSegment(range: 0..<payload.count, compress: true)])
    }
}

/// A run of payload bytes and whether LZ4 should try to compress it. The encoder knows which
/// columns are random bits: storing those as uncompressed blocks saves LZ4's futile search.
struct PayloadSegment {
    var range: Range<Int>
    var compress: Bool
}

/// Writes LZ4 frames itself (liblz4's block compressor inside), one reusable state per encoder.
final class LZ4FrameWriter {
    private let state: UnsafeMutableRawPointer

    init() {
        state = .allocate(byteCount: Int(LZ4_sizeofState()), alignment: 16)
    }

    deinit { state.deallocate() }

    /// The frame of `payload`; each segment becomes blocks of at most 64 KiB, compressed when
    /// it asks for it and LZ4 shrinks it, stored otherwise.
    func frame(_ payload: UnsafeRawBufferPointer, segments: [PayloadSegment]) -> [UInt8] {
        var bound = 15 + 8
        for segment in segments {
            let blocks = (segment.range.count + LZ4Frame.maxBlockBytes - 1) / LZ4Frame.maxBlockBytes
            bound += blocks * 8 + (segment.compress ? Int(LZ4_compressBound(Int32(segment.range.count))) + blocks * 16 : segment.range.count)
        }
        return [UInt8](unsafeUninitializedCapacity: bound) { buffer, count in
            let out = UnsafeMutableRawPointer(buffer.baseAddress!)
            out.storeLE(LZ4Frame.magic, at: 0)
            out.storeLE(LZ4Frame.flags, at: 4)
            out.storeLE(LZ4Frame.blockDescriptor, at: 5)
            out.storeLE(UInt64(payload.count), at: 6)
            out.storeLE(UInt8(truncatingIfNeeded: XXH32.hash(UnsafeRawBufferPointer(start: out + 4, count: 10)) >> 8), at: 14)
            var cursor = 15
            for segment in segments {
                var start = segment.range.lowerBound
                while start < segment.range.upperBound {
                    let length = min(LZ4Frame.maxBlockBytes, segment.range.upperBound - start)
                    cursor += writeBlock(payload.baseAddress! + start, length, compress: segment.compress, to: out + cursor)
                    start += length
                }
            }
            out.storeLE(UInt32(0), at: cursor)
            out.storeLE(XXH32.hash(payload), at: cursor + 4)
            count = cursor + 8
        }
    }

    /// One data block: size, data, checksum. Returns the bytes written.
    private func writeBlock(_ source: UnsafeRawPointer, _ length: Int, compress: Bool,
                            to out: UnsafeMutableRawPointer) -> Int {
        var stored = 0
        if compress {
            let capacity = Int(LZ4_compressBound(Int32(length)))
            stored = Int(LZ4_compress_fast_extState(state, source, out + 4, Int32(length), Int32(capacity), LZ4Frame.acceleration))
        }
        let data = UnsafeRawBufferPointer(start: out + 4, count: stored > 0 && stored < length ? stored : length)
        if stored > 0 && stored < length {
            out.storeLE(UInt32(stored), at: 0)
        } else {
            (out + 4).copyMemory(from: source, byteCount: length)
            out.storeLE(UInt32(length) | 0x8000_0000, at: 0)
        }
        out.storeLE(XXH32.hash(data), at: 4 + data.count)
        return 8 + data.count
    }
}

/// Reads block frames (spec 1.4): it parses the frame itself and checks every field before it
/// trusts a byte, verifies each data block's checksum before liblz4 decompresses it
/// (`LZ4_decompress_safe`), and the content checksum on request. Stateless: safe to share.
struct LZ4FrameDecoder {
    private static func fail(_ why: String, _ offset: Int) -> CodecError {
        .corruptBlock(why, offset: offset, inPayload: false)
    }

    /// The frame header's fields.
    struct Header {
        /// The content size: the payload length.
        var size: Int
        /// Bytes of the header: where the first data block starts.
        var length: Int
        /// The block maximum size.
        var blockLimit: Int
        /// Blocks may refer to the previous 64 KiB (B.Indep = 0).
        var linked: Bool
    }

    /// Reads and checks the frame header, refusing frames that are not LZ4 frames, lack a
    /// content size, block checksums or the content checksum, name a dictionary, or declare
    /// more than `limit` bytes.
    func header(of frame: UnsafeRawBufferPointer, limit: Int) throws -> Header {
        guard frame.count >= 4 else { throw Self.fail("frame of \(frame.count) bytes is too short", 0) }
        let raw = frame.baseAddress!
        let magic = raw.loadLE(UInt32.self, at: 0)
        guard magic == LZ4Frame.magic else { throw Self.fail("not an LZ4 frame (magic 0x\(String(magic, radix: 16)))", 0) }
        guard frame.count >= 7 else { throw Self.fail("frame ends inside its header", frame.count) }
        let flags = raw.loadLE(UInt8.self, at: 4), descriptor = raw.loadLE(UInt8.self, at: 5)
        guard flags >> 6 == 1 else { throw Self.fail("frame version \(flags >> 6), not 1", 4) }
        guard flags & 0x02 == 0 else { throw Self.fail("a reserved frame flag is set", 4) }
        guard flags & 0x01 == 0 else { throw Self.fail("frame names a dictionary", 4) }
        guard flags & 0x10 != 0 else { throw Self.fail("frame has no block checksums", 4) }
        guard flags & 0x08 != 0 else { throw Self.fail("frame has no content size", 4) }
        guard flags & 0x04 != 0 else { throw Self.fail("frame has no content checksum", 4) }
        guard descriptor & 0x8F == 0 else { throw Self.fail("a reserved bit of the block descriptor is set", 5) }
        let sizeID = Int(descriptor >> 4)
        guard sizeID >= 4 else { throw Self.fail("invalid block maximum size id \(sizeID)", 5) }
        guard frame.count >= 15 else { throw Self.fail("frame ends inside its header", frame.count) }
        let checksum = UInt8(truncatingIfNeeded: XXH32.hash(UnsafeRawBufferPointer(start: raw + 4, count: 10)) >> 8)
        guard raw.loadLE(UInt8.self, at: 14) == checksum else { throw Self.fail("wrong frame header checksum", 14) }
        let size = raw.loadLE(UInt64.self, at: 6)
        guard size > 0 else { throw Self.fail("frame has no content size", 6) }
        guard size <= UInt64(limit) else {
            throw Self.fail("frame declares \(size) bytes, more than the \(limit) a block can hold", 6)
        }
        return Header(size: Int(size), length: 15, blockLimit: 1 << (8 + 2 * sizeID), linked: flags & 0x20 == 0)
    }

    /// Decompresses the frame's data blocks into `destination` (exactly `header.size` bytes),
    /// each verified by its checksum first; then checks the end mark, the content checksum
    /// (when `contentChecksum`), and that no byte follows the frame.
    /// A data block's checksum comes from `checksums` when it holds that block's.
    func decompress(_ frame: UnsafeRawBufferPointer, header: Header, into destination: UnsafeMutableRawPointer,
                    contentChecksum: Bool = true, checksums: DataBlockChecksums? = nil) throws {
        let raw = frame.baseAddress!, end = frame.count, size = header.size
        var read = header.length, written = 0
        while true {
            guard end - read >= 4 else { throw Self.fail("frame ends early (\(end) bytes, \(written) of \(size) decoded)", end) }
            let word = raw.loadLE(UInt32.self, at: read)
            if word == 0 { break }
            let stored = word & 0x8000_0000 != 0, length = Int(word & 0x7FFF_FFFF)
            guard length > 0 else { throw Self.fail("stored data block of 0 bytes", read) }
            guard length <= header.blockLimit else {
                throw Self.fail("data block of \(length) bytes is longer than the frame's \(header.blockLimit)", read)
            }
            guard end - read - 4 >= length + 4 else { throw Self.fail("frame ends inside a data block", end) }
            let data = UnsafeRawBufferPointer(start: raw + read + 4, count: length)
            guard (checksums?.checksum(of: data) ?? XXH32.hash(data)) == raw.loadLE(UInt32.self, at: read + 4 + length) else {
                throw Self.fail("wrong data block checksum", read + 4 + length)
            }
            let room = min(size - written, header.blockLimit)
            if stored {
                guard length <= room else { throw Self.fail("frame holds more than its content size \(size)", read) }
                (destination + written).copyMemory(from: data.baseAddress!, byteCount: length)
                written += length
            } else {
                let produced: Int32
                let source = data.baseAddress!.assumingMemoryBound(to: CChar.self)
                let target = (destination + written).assumingMemoryBound(to: CChar.self)
                if header.linked && written > 0 {
                    let history = min(written, 64 * 1024)
                    produced = LZ4_decompress_safe_usingDict(source, target, Int32(length), Int32(room),
                                                             target - history, Int32(history))
                } else {
                    produced = LZ4_decompress_safe(source, target, Int32(length), Int32(room))
                }
                guard produced >= 0 else {
                    throw Self.fail("malformed LZ4 data block (or more than the content size \(size))", read + 4)
                }
                written += Int(produced)
            }
            read += 8 + length
        }
        guard written == size else {
            throw Self.fail("frame decoded to \(written) bytes, its header says \(size)", 6)
        }
        guard end - read >= 8 else { throw Self.fail("frame ends before its content checksum", end) }
        if contentChecksum {
            guard XXH32.hash(UnsafeRawBufferPointer(start: destination, count: size)) == raw.loadLE(UInt32.self, at: read + 4) else {
                throw Self.fail("wrong content checksum", read + 4)
            }
        }
        guard read + 8 == end else { throw Self.fail("\(end - read - 8) bytes follow the end of the frame", read + 8) }
    }
}

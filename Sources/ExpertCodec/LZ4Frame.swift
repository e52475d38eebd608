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

/// Decompresses frames with one reusable liblz4 context. Not thread-safe: one per thread.
final class LZ4FrameDecoder {
    private var context: OpaquePointer?

    init() {
        // Only fails on allocation failure, which Swift treats as fatal everywhere else too.
        let result = LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))
        precondition(LZ4F_isError(result) == 0 && context != nil, "liblz4 could not allocate a context")
    }

    deinit { LZ4F_freeDecompressionContext(context) }

    /// Reads the frame header and returns the declared content size, refusing frames that are
    /// not LZ4 frames, lack a content size or content checksum, or declare more than `limit` bytes.
    func contentSize(of frame: UnsafeRawBufferPointer, limit: Int) throws -> (size: Int, headerBytes: Int) {
        guard frame.count >= 4 else { throw CodecError.corruptBlock("frame of \(frame.count) bytes is too short", offset: 0, inPayload: false) }
        let magic = frame.loadUnaligned(as: UInt32.self).littleEndian
        guard magic == LZ4Frame.magic else {
            throw CodecError.corruptBlock("not an LZ4 frame (magic 0x\(String(magic, radix: 16)))", offset: 0, inPayload: false)
        }
        LZ4F_resetDecompressionContext(context)
        var info = LZ4F_frameInfo_t()
        var consumed = frame.count
        let result = LZ4F_getFrameInfo(context, &info, frame.baseAddress, &consumed)
        if LZ4F_isError(result) != 0 {
            throw CodecError.corruptBlock("bad frame header: \(String(cString: LZ4F_getErrorName(result)))", offset: 4, inPayload: false)
        }
        guard info.contentChecksumFlag == LZ4F_contentChecksumEnabled else {
            throw CodecError.corruptBlock("frame has no content checksum", offset: 4, inPayload: false)
        }
        guard info.blockChecksumFlag == LZ4F_blockChecksumEnabled else {
            throw CodecError.corruptBlock("frame has no block checksums", offset: 4, inPayload: false)
        }
        guard info.dictID == 0, frame.count > 4, frame.load(fromByteOffset: 4, as: UInt8.self) & 0x01 == 0 else {
            throw CodecError.corruptBlock("frame names a dictionary", offset: 4, inPayload: false)
        }
        guard info.contentSize > 0 else {
            throw CodecError.corruptBlock("frame has no content size", offset: 4, inPayload: false)
        }
        guard info.contentSize <= UInt64(limit) else {
            throw CodecError.corruptBlock("frame declares \(info.contentSize) bytes, more than the \(limit) a block can hold",
                                offset: 6, inPayload: false)
        }
        return (Int(info.contentSize), consumed)
    }

    /// Decompresses the whole frame into `destination` (exactly `size` bytes, from `contentSize`),
    /// verifying the content checksum, the content size and that no byte follows the frame.
    func decompress(_ frame: UnsafeRawBufferPointer, headerBytes: Int, size: Int,
                    into destination: UnsafeMutableRawPointer) throws {
        var written = 0, read = headerBytes
        while true {
            var outBytes = size - written, inBytes = frame.count - read
            let hint = LZ4F_decompress(context, destination + written, &outBytes,
                                       frame.baseAddress! + read, &inBytes, nil)
            if LZ4F_isError(hint) != 0 {
                throw CodecError.corruptBlock(String(cString: LZ4F_getErrorName(hint)), offset: read, inPayload: false)
            }
            written += outBytes
            read += inBytes
            if hint == 0 { break }
            if outBytes == 0 && inBytes == 0 {
                throw CodecError.corruptBlock("frame ends early (\(frame.count) bytes, \(written) of \(size) decoded)",
                                    offset: frame.count, inPayload: false)
            }
        }
        guard written == size else {
            throw CodecError.corruptBlock("frame decoded to \(written) bytes, its header says \(size)", offset: 6, inPayload: false)
        }
        guard read == frame.count else {
            throw CodecError.corruptBlock("\(frame.count - read) bytes follow the end of the frame", offset: read, inPayload: false)
        }
    }
}

import CLZ4

/// The standard LZ4 frame around a block payload (liblz4's frame API): content size, block and content
/// checksums always present, so `lz4 -t` checks a block and `lz4 -d` returns its payload.
enum LZ4Frame {
    /// The frame magic number, little-endian on disk.
    static let magic: UInt32 = 0x184D_2204

    /// Compresses `payload` into one frame.
    static func compress(_ payload: UnsafeRawBufferPointer) throws -> [UInt8] {
        var prefs = LZ4F_preferences_t()
        prefs.frameInfo.blockMode = LZ4F_blockIndependent
        prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
        // Block checksums too: a flipped match offset can point at equal bytes and decode
        // to the same content; damage must still be detected.
        prefs.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled
        prefs.frameInfo.contentSize = UInt64(payload.count)
        prefs.compressionLevel = 0
        let bound = LZ4F_compressFrameBound(payload.count, &prefs)
        var failure: String?
        let frame = [UInt8](unsafeUninitializedCapacity: bound) { out, count in
            let result = LZ4F_compressFrame(out.baseAddress, bound, payload.baseAddress, payload.count, &prefs)
            if LZ4F_isError(result) != 0 {
                failure = String(cString: LZ4F_getErrorName(result))
                count = 0
            } else {
                count = result
            }
        }
        if let failure { throw CodecError.compressionFailed(failure) }
        return frame
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

import ExpertCodec

/// The archive file, version 1; `spec/FORMAT.md` ("Archive file") is the normative text.
///
/// The file is a sequence of LZ4 frames, so `lz4 -t` checks all of it:
///
///     header frame   skippable frame 0x184D2A5E: the archive header
///     record frame   skippable frame 0x184D2A5F: one record header (36 bytes)
///     block frame    LZ4 frame: the block of a `rows` record (ExpertCodec block format)
///     record frame   ...
///
/// A skippable frame is `magic (u32 LE), size (u32 LE), size bytes`.
enum SegmentFormat {
    static let headerMagic: UInt32 = 0x184D_2A5E
    static let recordMagic: UInt32 = 0x184D_2A5F
    static let anchorMagic: UInt32 = 0x184D_2A5D
    static let skippableHeaderBytes = 8
    /// The version new archives are written in: 2 adds the commit anchors after the header.
    static let version: UInt16 = 2
    /// Versions read. A writer appending to a version 1 archive keeps writing version 1 records.
    static let readableVersions: ClosedRange<UInt16> = 1...2
    static let archiveMagic: [UInt8] = Array("MOEROUTE".utf8)
    /// Caps that bound what a reader allocates from a header's numbers.
    static let maxHeaderBytes = 1 << 20
    static let maxMetadataEntries = 4096
}

/// The archive header: schema, codec, block size and user metadata, checksummed.
///
///     0   8   "MOEROUTE"
///     8   2   format version (1)
///     10  2   codec: the block layout the writer writes (1 fast, 2 compact)
///     12  4   layers          16  4   topk          20  4   experts
///     24  4   block rows: rows per block the writer aims for
///     28  4   dense layer count D, then D x u32 dense layer indices, ascending
///     ..  4   metadata entry count M, then M x (u32 key length, key, u32 value length, value), UTF-8
///     ..  4   CRC-32C of every byte of the header before it
struct ArchiveHeader: Equatable {
    var schema: Schema
    var blockRows: Int
    var metadata: [String: String]
    var codec: BlockCodec = .fast
    var version: UInt16 = SegmentFormat.version

    /// Whether the two commit anchors follow the header frame (version 2 on).
    var hasAnchors: Bool { version >= 2 }

    /// Refuses a metadata key that is not in Unicode NFC (FORMAT.md 2.3). Readers compare keys as
    /// bytes; with NFC keys the `String` order `encoded()` sorts by is their byte order.
    /// `_nfcCodeUnits` is the standard library's own normalizer (the one `String ==` uses), so no
    /// table of another Unicode version is involved.
    static func requireNFCKeys(_ metadata: [String: String]) throws {
        for key in metadata.keys where !key.utf8.elementsEqual(key._nfcCodeUnits) {
            throw ArchiveError.invalidArgument("metadata key '\(key)' is not in Unicode NFC; write it as its NFC form (FORMAT.md 2.3)")
        }
    }

    /// The whole header frame: skippable frame header and content.
    func encoded() -> [UInt8] {
        var content = SegmentFormat.archiveMagic
        content.appendLE(version)
        content.appendLE(codec.rawValue)
        content.appendLE(UInt32(schema.layers))
        content.appendLE(UInt32(schema.topk))
        content.appendLE(UInt32(schema.experts))
        content.appendLE(UInt32(blockRows))
        content.appendLE(UInt32(schema.denseLayers.count))
        for layer in schema.denseLayers { content.appendLE(UInt32(layer)) }
        content.appendLE(UInt32(metadata.count))
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            content.appendLE(UInt32(key.utf8.count)); content += key.utf8
            content.appendLE(UInt32(value.utf8.count)); content += value.utf8
        }
        content.appendLE(CRC32C.checksum(content))
        var frame = [UInt8]()
        frame.appendLE(SegmentFormat.headerMagic)
        frame.appendLE(UInt32(content.count))
        return frame + content
    }

    /// Parses and checks the header frame at the start of `file`; returns it and its length.
    /// Every length is checked against the bytes present before it is used.
    static func parse(_ file: UnsafeRawBufferPointer, path: String) throws -> (ArchiveHeader, Int) {
        func fail(_ offset: Int, _ why: String) -> ArchiveError { .corrupt(path: path, offset: offset, reason: why) }
        guard file.count >= SegmentFormat.skippableHeaderBytes else {
            throw fail(0, "file of \(file.count) bytes is too short for an archive header")
        }
        guard file.loadLE(UInt32.self, at: 0) == SegmentFormat.headerMagic else {
            throw fail(0, "not an expert-trace archive (no archive header frame)")
        }
        let size = Int(file.loadLE(UInt32.self, at: 4))
        guard size <= SegmentFormat.maxHeaderBytes else { throw fail(4, "header size \(size) exceeds \(SegmentFormat.maxHeaderBytes)") }
        guard file.count - SegmentFormat.skippableHeaderBytes >= size else {
            throw fail(4, "header of \(size) bytes runs past the end of the file")
        }
        guard size >= 40 else { throw fail(4, "header of \(size) bytes is too short") }
        let base = SegmentFormat.skippableHeaderBytes
        let content = UnsafeRawBufferPointer(rebasing: file[base..<base + size])
        let stored = content.loadLE(UInt32.self, at: size - 4)
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: content[..<(size - 4)])) == stored else {
            throw fail(base + size - 4, "header checksum mismatch")
        }
        var reader = ByteReader(bytes: UnsafeRawBufferPointer(rebasing: content[..<(size - 4)]), base: base)
        guard Array(try reader.bytes(8, path)) == SegmentFormat.archiveMagic else { throw fail(base, "bad archive magic") }
        let version = try reader.read(UInt16.self, path)
        guard SegmentFormat.readableVersions.contains(version) else { throw fail(base + 8, "unsupported format version \(version)") }
        let codecValue = try reader.read(UInt16.self, path)
        guard let codec = BlockCodec(rawValue: codecValue) else { throw fail(base + 10, "unknown codec \(codecValue)") }
        let layers = Int(try reader.read(UInt32.self, path))
        let topk = Int(try reader.read(UInt32.self, path))
        let experts = Int(try reader.read(UInt32.self, path))
        let blockRows = Int(try reader.read(UInt32.self, path))
        let denseCount = Int(try reader.read(UInt32.self, path))
        guard denseCount < Schema.layerLimits.upperBound else { throw fail(base + 28, "\(denseCount) dense layers") }
        var dense: [Int] = []
        for _ in 0..<denseCount { dense.append(Int(try reader.read(UInt32.self, path))) }
        guard dense == dense.sorted(), Set(dense).count == dense.count else { throw fail(base + 32, "dense layers are not ascending") }
        let schema: Schema
        do { schema = try Schema(layers: layers, topk: topk, experts: experts, denseLayers: dense) } catch {
            throw fail(base + 12, "\(error)")
        }
        guard (1...schema.maxBlockRows).contains(blockRows) else {
            throw fail(base + 24, "block rows \(blockRows) outside 1...\(schema.maxBlockRows)")
        }
        let entries = Int(try reader.read(UInt32.self, path))
        guard entries <= SegmentFormat.maxMetadataEntries else { throw fail(reader.offset - 4, "\(entries) metadata entries") }
        var metadata: [String: String] = [:]
        for _ in 0..<entries {
            let keyAt = reader.offset
            let key = try reader.string(path), value = try reader.string(path)
            guard metadata.updateValue(value, forKey: key) == nil else { throw fail(keyAt, "metadata key '\(key)' appears twice") }
        }
        guard reader.remaining == 0 else { throw fail(reader.offset, "\(reader.remaining) unexpected bytes in the header") }
        return (ArchiveHeader(schema: schema, blockRows: blockRows, metadata: metadata, codec: codec, version: version), base + size)
    }
}

/// A commit anchor (version 2): one of two fixed frames between the header and the log that
/// say what the last completed `sync()` or `truncate(to:)` made durable. The writer overwrites
/// the older of the two in place, so a torn anchor write leaves the other intact, and damage
/// that removes the log's last records (its commit and truncate records included) cannot pass
/// for a torn tail: the log must reach the anchor's end (spec 2.5).
///
///     0   8   sequence: the anchor with the larger one is the current
///     8   8   log end: a record boundary; file bytes up to it were durable
///     16  8   rows: the row count of the log at that end
///     24  4   the record CRC of the last record before that end (0 when the log is empty)
///     28  4   reserved, 0
///     32  4   CRC-32C of bytes 0..<32
struct CommitAnchor: Equatable {
    static let contentBytes = 36
    static let frameBytes = SegmentFormat.skippableHeaderBytes + contentBytes
    /// Both anchors: the log starts this many bytes after the header frame.
    static let pairBytes = 2 * frameBytes

    var sequence: UInt64
    var logEnd: Int
    var rows: Int
    var lastRecordCRC: UInt32

    func encoded() -> [UInt8] {
        var out = [UInt8]()
        out.appendLE(SegmentFormat.anchorMagic)
        out.appendLE(UInt32(CommitAnchor.contentBytes))
        out.appendLE(sequence)
        out.appendLE(UInt64(logEnd))
        out.appendLE(UInt64(rows))
        out.appendLE(lastRecordCRC)
        out.appendLE(UInt32(0))
        let crc = out.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[8...])) }
        out.appendLE(crc)
        return out
    }

    /// The anchor at `offset`, or why it is not intact.
    static func parse(_ bytes: UnsafeRawBufferPointer, at offset: Int, logStart: Int) -> Result<CommitAnchor, AnchorDamage> {
        guard bytes.count - offset >= frameBytes else { return .failure(AnchorDamage(offset: offset, reason: "commit anchor cut short")) }
        guard bytes.loadLE(UInt32.self, at: offset) == SegmentFormat.anchorMagic,
              bytes.loadLE(UInt32.self, at: offset + 4) == UInt32(contentBytes) else {
            return .failure(AnchorDamage(offset: offset, reason: "no commit anchor frame"))
        }
        let content = offset + SegmentFormat.skippableHeaderBytes
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[content..<content + 32])) == bytes.loadLE(UInt32.self, at: content + 32) else {
            return .failure(AnchorDamage(offset: offset, reason: "commit anchor checksum mismatch"))
        }
        let end = bytes.loadLE(UInt64.self, at: content + 8), rows = bytes.loadLE(UInt64.self, at: content + 16)
        guard bytes.loadLE(UInt32.self, at: content + 28) == 0, end >= UInt64(logStart), end < 1 << 62, rows < 1 << 62 else {
            return .failure(AnchorDamage(offset: offset, reason: "commit anchor fields out of range"))
        }
        return .success(CommitAnchor(sequence: bytes.loadLE(UInt64.self, at: content), logEnd: Int(end), rows: Int(rows),
                                     lastRecordCRC: bytes.loadLE(UInt32.self, at: content + 24)))
    }

    /// The current anchor of the pair at `offset`: the intact one with the larger sequence
    /// (the first on a tie), with its slot; and what is wrong with each anchor that is not
    /// intact. Both are in one disk sector, so a crash that garbles that sector during an
    /// anchor write takes both: the archive is then read as version 1 is (its records alone
    /// decide, spec 2.5), and `verify` reports the anchors.
    static func current(in bytes: UnsafeRawBufferPointer, at offset: Int) -> (current: (anchor: CommitAnchor, slot: Int)?, damage: [AnchorDamage]) {
        let logStart = offset + pairBytes
        var intact: [(anchor: CommitAnchor, slot: Int)] = [], damage: [AnchorDamage] = []
        for slot in 0..<2 {
            switch parse(bytes, at: offset + slot * frameBytes, logStart: logStart) {
            case .success(let anchor): intact.append((anchor, slot))
            case .failure(let why): damage.append(why)
            }
        }
        return (intact.max { $0.anchor.sequence < $1.anchor.sequence || ($0.anchor.sequence == $1.anchor.sequence && $0.slot > $1.slot) }, damage)
    }
}

struct AnchorDamage: Error {
    let offset: Int
    let reason: String
}

/// One record: the skippable frame that precedes each block, or stands alone for a truncation.
///
///     0   1   kind: 1 rows (an LZ4 block frame follows), 2 truncate, 3 commit
///     1   3   reserved, 0
///     4   4   block frame length in bytes (rows records; 0 otherwise)
///     8   8   rows: the position of the block's first row; truncate: the new row count;
///             commit: the row count
///     16  4   rows in the block (rows records; 0 otherwise)
///     20  4   reserved, 0
///     24  8   synced length: file bytes known durable when this record was written
///     32  4   CRC-32C of bytes 0..<32
struct RecordHeader: Equatable {
    enum Kind: UInt8 { case rows = 1, truncate = 2, commit = 3 }

    static let contentBytes = 36
    /// The skippable frame header plus the content.
    static let frameBytes = SegmentFormat.skippableHeaderBytes + contentBytes

    var kind: Kind
    var frameLength: Int
    var position: Int
    var rows: Int
    var syncedLength: Int
    /// The stored record CRC (set by `parse`; what a commit anchor names the log's last record by).
    var crc: UInt32 = 0

    /// Appends the record frame; returns its CRC.
    @discardableResult
    func encoded(into out: inout [UInt8]) -> UInt32 {
        out.appendLE(SegmentFormat.recordMagic)
        out.appendLE(UInt32(RecordHeader.contentBytes))
        let start = out.count
        out.append(kind.rawValue); out += [0, 0, 0]
        out.appendLE(UInt32(frameLength))
        out.appendLE(UInt64(position))
        out.appendLE(UInt32(rows))
        out.appendLE(UInt32(0))
        out.appendLE(UInt64(syncedLength))
        let crc = out.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[start...])) }
        out.appendLE(crc)
        return crc
    }

    enum ParseResult {
        case record(RecordHeader)
        /// The bytes end before the record does: a torn or in-progress write.
        case incomplete
        case invalid(String)
    }

    /// Parses the record frame at `offset`, checking magic, size, checksum and reserved bytes.
    static func parse(_ file: UnsafeRawBufferPointer, at offset: Int) -> ParseResult {
        guard file.count - offset >= frameBytes else {
            return file.count - offset >= 4 && file.loadLE(UInt32.self, at: offset) != SegmentFormat.recordMagic
                ? .invalid("no record frame") : .incomplete
        }
        guard file.loadLE(UInt32.self, at: offset) == SegmentFormat.recordMagic else { return .invalid("no record frame") }
        guard file.loadLE(UInt32.self, at: offset + 4) == UInt32(contentBytes) else { return .invalid("record frame of the wrong size") }
        let content = offset + SegmentFormat.skippableHeaderBytes
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: file[content..<content + 32]))
        guard crc == file.loadLE(UInt32.self, at: content + 32) else { return .invalid("record checksum mismatch") }
        guard let kind = Kind(rawValue: file.loadLE(UInt8.self, at: content)) else { return .invalid("unknown record kind") }
        guard file.loadLE(UInt8.self, at: content + 1) == 0, file.loadLE(UInt16.self, at: content + 2) == 0,
              file.loadLE(UInt32.self, at: content + 20) == 0 else { return .invalid("reserved record bytes are not zero") }
        let position = file.loadLE(UInt64.self, at: content + 8), synced = file.loadLE(UInt64.self, at: content + 24)
        guard position < 1 << 62, synced < 1 << 62 else { return .invalid("record position out of range") }
        // A writer can only vouch for bytes before the record it is writing.
        guard synced <= UInt64(offset) else { return .invalid("record claims \(synced) synced bytes, past its own offset") }
        let header = RecordHeader(kind: kind, frameLength: Int(file.loadLE(UInt32.self, at: content + 4)),
                                  position: Int(position), rows: Int(file.loadLE(UInt32.self, at: content + 16)),
                                  syncedLength: Int(synced), crc: crc)
        switch kind {
        case .rows: guard header.rows > 0, header.frameLength > 0 else { return .invalid("empty rows record") }
        case .truncate, .commit: guard header.rows == 0, header.frameLength == 0 else { return .invalid("malformed \(kind) record") }
        }
        return .record(header)
    }
}

/// Sequential little-endian reads with bounds checks.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    /// File offset of `bytes[0]`, for error messages.
    let base: Int
    private(set) var position = 0

    init(bytes: UnsafeRawBufferPointer, base: Int) {
        self.bytes = bytes
        self.base = base
    }

    var offset: Int { base + position }
    var remaining: Int { bytes.count - position }

    mutating func bytes(_ count: Int, _ path: String) throws -> UnsafeRawBufferPointer {
        guard count >= 0, remaining >= count else {
            throw ArchiveError.corrupt(path: path, offset: offset, reason: "header field of \(count) bytes runs past the header")
        }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<position + count])
    }

    mutating func read<I: FixedWidthInteger>(_: I.Type, _ path: String) throws -> I {
        try bytes(MemoryLayout<I>.size, path).loadLE(I.self, at: 0)
    }

    mutating func string(_ path: String) throws -> String {
        let length = Int(try read(UInt32.self, path)), at = offset
        guard let text = String(validating: try bytes(length, path), as: UTF8.self) else {
            throw ArchiveError.corrupt(path: path, offset: at, reason: "metadata is not valid UTF-8")
        }
        return text
    }
}

extension UnsafeRawBufferPointer {
    @inline(__always)
    func loadLE<I: FixedWidthInteger>(_: I.Type, at offset: Int) -> I {
        I(littleEndian: loadUnaligned(fromByteOffset: offset, as: I.self))
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE<I: FixedWidthInteger>(_ value: I) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

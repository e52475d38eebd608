/// Makes the checksums of an archive's header, anchor and record frames match their bytes (spec/FORMAT.md
/// part 2), so that mutated inputs reach the log replay instead of stopping at a checksum. Block
/// frames are left as they are: their LZ4 checksums are the block decoder target's business.
/// Returns whether any byte changed.
public func fixArchiveChecksums(_ file: inout [UInt8]) -> Bool {
    var changed = false
    func u32(_ at: Int) -> Int {
        Int(file[at]) | Int(file[at + 1]) << 8 | Int(file[at + 2]) << 16 | Int(file[at + 3]) << 24
    }
    func store(_ crc: UInt32, at: Int) {
        for i in 0..<4 {
            let byte = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i)))
            if file[at + i] != byte { file[at + i] = byte; changed = true }
        }
    }
    // The header frame: magic 0x184D2A5E, size, content whose last 4 bytes are its CRC-32C.
    guard file.count >= 8, u32(0) == 0x184D_2A5E else { return false }
    let size = u32(4)
    guard size >= 4, file.count - 8 >= size else { return false }
    store(crc32c(file[8..<(8 + size - 4)]), at: 8 + size - 4)
    // Commit anchors (format version 2: magic 0x184D2A5D, size 36, CRC-32C of content bytes
    // 0..<32), then record frames (magic 0x184D2A5F, the same layout), each record followed by
    // its block frame of the length it states.
    var offset = 8 + size
    while file.count - offset >= 44, u32(offset) == 0x184D_2A5D, u32(offset + 4) == 36 {
        store(crc32c(file[(offset + 8)..<(offset + 40)]), at: offset + 40)
        offset += 44
    }
    while file.count - offset >= 44, u32(offset) == 0x184D_2A5F, u32(offset + 4) == 36 {
        let content = offset + 8
        store(crc32c(file[content..<(content + 32)]), at: content + 32)
        let next = content + 36 + (file[content] == 1 ? u32(content + 4) : 0)
        guard next <= file.count else { break }
        offset = next
    }
    return changed
}

private let crcTable: [UInt32] = (0..<256).map { index in
    var crc = UInt32(index)
    for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    return crc
}

/// CRC-32C (Castagnoli), as the archive uses.
public func crc32c(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes { crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
    return crc ^ 0xFFFF_FFFF
}

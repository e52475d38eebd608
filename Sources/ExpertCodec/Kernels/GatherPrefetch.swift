import CPrefetch

/// Prefetches for the gathers (``ByteGather``, ``ShortGather``), which read 8 rows at a time, a
/// tile of 8 ids from each row per step: 8 short row-strided streams that the hardware
/// prefetchers do not keep ahead of once the input outgrows the caches (without these hints a
/// 77 MB Qwen3 trace encodes a third slower than a 3 MB one). While group `g` is gathered, the
/// lines of group `g + 2` are asked for, a share with each tile.
struct GatherPrefetch {
    private let groupBytes: Int
    /// Cache lines asked for with each tile: a group's lines over the tiles of a group.
    private let linesPerTile: Int
    private let end: UnsafeRawPointer

    /// For `rows` rows of `rowBytes` each at `input`, gathered `tiles` tiles a group.
    init(_ input: UnsafeRawPointer, rows: Int, rowBytes: Int, tiles: Int) {
        groupBytes = 8 &* rowBytes
        linesPerTile = max(0, groupBytes / 64 &+ tiles &- 1) / max(1, tiles)
        end = input + rows &* rowBytes
    }

    /// The first line to ask for while the group at `group` (a pointer to its first row) is
    /// gathered, or nil near the input's end. The lines asked for may run past the group two
    /// ahead by fewer lines than there are tiles, which is less than a group (a tile holds 8
    /// ids of each row, a row at least 8 bytes a tile): with 4 groups left they stay inside.
    @inline(__always)
    func start(at group: UnsafeRawPointer) -> UnsafeRawPointer? {
        end - group >= 4 &* groupBytes ? group + 2 &* groupBytes : nil
    }

    /// Asks for the next lines, with one tile.
    @inline(__always)
    func tile(_ next: inout UnsafeRawPointer?) {
        guard var line = next else { return }
        for _ in 0..<linesPerTile {
            expert_prefetch(line)
            line += 64
        }
        next = line
    }
}

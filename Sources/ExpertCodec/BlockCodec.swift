/// Which block layout an encoder writes: the payload layouts there are (spec 1.1). Its raw
/// value is the payload's layout byte, and the `codec` field of an archive header. A new layout
/// is a ``BlockLayout`` and a case here with its line in `layout`.
public enum BlockCodec: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    /// Layout 1: column bit planes at the fixed width, LZ4 removes the runs. Fast everywhere.
    case fast = 1
    /// Layout 2: per column symbols (ids or slot deltas, with a repeat-previous-token escape)
    /// coded with static frequency tables and interleaved rANS. Smaller, slower.
    case compact = 2

    var layout: any BlockLayout.Type {
        switch self {
        case .fast: FastLayout.self
        case .compact: CompactLayout.self
        }
    }

    /// The codec whose name (`description`) is `name`.
    public init?(name: String) {
        guard let codec = Self.allCases.first(where: { $0.layout.name == name }) else { return nil }
        self = codec
    }

    /// The codec of payloads whose first byte is `layoutByte`.
    init?(layoutByte: UInt8) {
        self.init(rawValue: UInt16(layoutByte))
    }

    /// The name it is chosen by: "fast", "compact".
    public var description: String { layout.name }

    /// What it is, in a few words: "column bit-planes v1 in LZ4 frames".
    public var summary: String { layout.summary }
}

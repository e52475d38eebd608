/// Everything the codec refuses, each naming what and where.
public enum CodecError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidSchema(String)
    /// An id outside `[0, experts)` in the rows handed to the encoder; nothing was encoded.
    case idOutOfRange(token: Int, layer: Int, slot: Int, value: Int64, experts: Int)
    /// The buffer length is not a whole number of rows.
    case shapeMismatch(String)
    /// More rows than one block may hold.
    case blockTooLarge(rows: Int, limit: Int)
    /// The output integer type cannot hold every id of the schema.
    case outputTypeTooNarrow(type: String, experts: Int)
    /// A frame or payload that is damaged or not of this format; `offset` is a byte offset in
    /// the frame (or in its decompressed payload when `inPayload` is true).
    case corruptBlock(String, offset: Int, inPayload: Bool)
    /// liblz4 reported an error while compressing.
    case compressionFailed(String)

    public var description: String {
        switch self {
        case .invalidSchema(let why):
            return "invalid schema: \(why)"
        case let .idOutOfRange(token, layer, slot, value, experts):
            return "expert id \(value) at token \(token), layer \(layer), slot \(slot) is outside [0, \(experts))"
        case .shapeMismatch(let why):
            return "shape mismatch: \(why)"
        case let .blockTooLarge(rows, limit):
            return "block of \(rows) rows exceeds the limit of \(limit) ids per block"
        case let .outputTypeTooNarrow(type, experts):
            return "\(type) cannot hold expert ids up to \(experts - 1)"
        case let .corruptBlock(why, offset, inPayload):
            return "corrupt block at \(inPayload ? "payload" : "frame") byte \(offset): \(why)"
        case .compressionFailed(let why):
            return "LZ4 compression failed: \(why)"
        }
    }
}

import Archive
import CExpertArchive

/// The C status of a failure: ArchiveError and CodecError cases by meaning. Matched case by
/// case (not an exhaustive switch) so that a case added to the library later builds and maps
/// to EA_ERR_INTERNAL until it is given its own status.
func status(of error: any Error) -> (code: Int32, errno: Int32) {
    if let error = error as? ArchiveError {
        if case .gap = error { return (Int32(EA_ERR_GAP), 0) }
        if case .invalidRows = error { return (Int32(EA_ERR_SCHEMA), 0) }
        if case .exists = error { return (Int32(EA_ERR_EXISTS), 0) }
        if case .locked = error { return (Int32(EA_ERR_LOCKED), 0) }
        if case .corrupt = error { return (Int32(EA_ERR_DAMAGED), 0) }
        if case let .io(_, _, errno, _) = error { return (Int32(EA_ERR_IO), errno) }
        if case .closed = error { return (Int32(EA_ERR_CLOSED), 0) }
        if case .outOfRange = error { return (Int32(EA_ERR_OUT_OF_RANGE), 0) }
        if case .invalidArgument = error { return (Int32(EA_ERR_INVALID_ARGUMENT), 0) }
    }
    if let error = error as? CodecError {
        if case .invalidSchema = error { return (Int32(EA_ERR_SCHEMA), 0) }
        if case .idOutOfRange = error { return (Int32(EA_ERR_SCHEMA), 0) }
        if case .shapeMismatch = error { return (Int32(EA_ERR_SCHEMA), 0) }
        if case .blockTooLarge = error { return (Int32(EA_ERR_INVALID_ARGUMENT), 0) }
        if case .outputTypeTooNarrow = error { return (Int32(EA_ERR_INVALID_ARGUMENT), 0) }
        if case .corruptBlock = error { return (Int32(EA_ERR_DAMAGED), 0) }
    }
    return (Int32(EA_ERR_INTERNAL), 0)
}

/// Runs one C call: EA_OK and a cleared `error`, or the failure's status and message.
func call(_ error: UnsafeMutablePointer<ea_error>?, _ body: () throws -> Void) -> Int32 {
    do {
        try body()
        if let error {
            error.pointee.code = Int32(EA_OK)
            error.pointee.sys_errno = 0
            withUnsafeMutableBytes(of: &error.pointee.message) { $0[0] = 0 }
        }
        return Int32(EA_OK)
    } catch let failure {
        let (code, errno) = status(of: failure)
        if let error {
            error.pointee.code = code
            error.pointee.sys_errno = errno
            withUnsafeMutableBytes(of: &error.pointee.message) { copyText("\(failure)", into: $0) }
        }
        return code
    }
}

/// Copies `text` as UTF-8 with a NUL into `buffer`, cut at a character boundary if too long.
func copyText(_ text: String, into buffer: UnsafeMutableRawBufferPointer) {
    guard buffer.count > 0 else { return }
    var utf8 = Array(text.utf8)
    if utf8.count > buffer.count - 1 {
        var end = buffer.count - 1
        // Back off continuation bytes (10xxxxxx) so that no character is cut in two.
        while end > 0, utf8[end] & 0xC0 == 0x80 { end -= 1 }
        utf8.removeSubrange(end...)
    }
    buffer.copyBytes(from: utf8)
    buffer[utf8.count] = 0
}

/// The text-out convention of the header: `*length` is always set; the text and a NUL are
/// written only when `capacity > *length`.
func writeText(_ text: String, _ out: UnsafeMutablePointer<CChar>?, _ capacity: Int,
               _ length: UnsafeMutablePointer<Int>?) throws {
    let utf8 = Array(text.utf8)
    length?.pointee = utf8.count
    guard capacity > utf8.count else { return }
    guard let out else { throw ArchiveError.invalidArgument("the output buffer is NULL but its capacity is \(capacity)") }
    let buffer = UnsafeMutableRawBufferPointer(start: out, count: capacity)
    buffer.copyBytes(from: utf8)
    buffer[utf8.count] = 0
}

/// A C string argument as a Swift string; `what` names it in the error.
func string(_ pointer: UnsafePointer<CChar>?, _ what: String) throws -> String {
    guard let pointer else { throw ArchiveError.invalidArgument("\(what) is NULL") }
    guard let text = String(validatingCString: pointer) else {
        throw ArchiveError.invalidArgument("\(what) is not valid UTF-8")
    }
    return text
}

/// `metadata` as a JSON object of strings, keys sorted.
func json(_ metadata: [String: String]) -> String {
    func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
    let pairs = metadata.keys.sorted().map { "\(quoted($0)): \(quoted(metadata[$0]!))" }
    return "{" + pairs.joined(separator: ", ") + "}"
}

/// The fixed parts of the preamble (numpy's `lib/format.py`, NEP 1):
///
///     offset  size  field
///     0       6     magic "\x93NUMPY"
///     6       1     major version (1, 2 or 3)
///     7       1     minor version (0)
///     8       2|4   header length: u16 LE for 1.0, u32 LE for 2.0 and 3.0
///     10|12   len   header: a Python dict literal, space-padded, ending in "\n"
///
/// numpy pads so data starts on a multiple of 64 bytes; files from before numpy 1.14 used 16.
/// numpy reads a header without padding or final newline too, and so does the decoder.
enum Preamble {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"
    /// Magic plus the two version bytes: read before the length field's size is known.
    static let fixedBytes = 8
    static let writeAlignment = 64
    /// Longest header accepted on read. numpy itself refuses more than 10000 bytes by default;
    /// a hostile length field must not make us allocate gigabytes.
    static let maxHeaderLength = 1 << 20
    /// numpy leaves room after the dict so the first dimension can grow to this many digits
    /// in place (`GROWTH_AXIS_MAX_DIGITS`); we pad the same way to write identical headers.
    static let growthAxisMaxDigits = 21

    static func lengthFieldBytes(major: UInt8) -> Int { major == 1 ? 2 : 4 }
}

/// Builds the header numpy's `np.save` writes for a C-order array, byte for byte.
enum HeaderEncoder {
    static func encode(
        dtype: NumpyDType, shape: [Int], path: String
    ) throws(NumpyError) -> (header: NumpyHeader, bytes: [UInt8]) {
        var dict = "{'descr': '\(dtype.descr)', 'fortran_order': False, 'shape': \(NumpyHeader.pythonTuple(shape)), }"
        if let first = shape.first {
            dict += String(repeating: " ", count: max(0, Preamble.growthAxisMaxDigits - String(first).count))
        }
        let text = Array(dict.utf8)
        // numpy's `_wrap_header`: the newline counts toward the length, and an already
        // aligned length still gets a full 64 bytes of padding.
        for major: UInt8 in [1, 2] {
            let lengthBytes = Preamble.lengthFieldBytes(major: major)
            let unpadded = text.count + 1
            let prefix = Preamble.fixedBytes + lengthBytes
            let padding = Preamble.writeAlignment - (prefix + unpadded) % Preamble.writeAlignment
            let headerLength = unpadded + padding
            if major == 1 && headerLength > Int(UInt16.max) { continue }
            let header = try NumpyHeader(
                dtype: dtype, shape: shape, majorVersion: major, dataOffset: prefix + headerLength, path: path)
            var bytes = Preamble.magic + [major, 0]
            for i in 0..<lengthBytes {
                bytes.append(UInt8(truncatingIfNeeded: headerLength >> (8 * i)))  // little-endian
            }
            bytes += text
            bytes += repeatElement(UInt8(ascii: " "), count: padding)
            bytes.append(UInt8(ascii: "\n"))
            return (header, bytes)
        }
        throw .invalidUse(path: path, reason: "shape \(NumpyHeader.pythonTuple(shape)) needs a header longer than 4 GiB")
    }
}

/// Reads and validates a header from any byte source, trusting nothing before it is checked.
enum HeaderDecoder {
    /// `read(n)` returns the next `n` bytes, fewer only at the end of the input.
    static func decode(path: String, read: (Int) throws -> [UInt8]) throws -> NumpyHeader {
        let fixed = try read(Preamble.fixedBytes)
        let magicSeen = fixed.prefix(Preamble.magic.count)
        guard magicSeen.elementsEqual(Preamble.magic.prefix(magicSeen.count)) else {
            throw NumpyError.notNumpyFile(path: path)
        }
        guard fixed.count == Preamble.fixedBytes else {
            throw NumpyError.truncatedHeader(path: path, expected: Preamble.fixedBytes, actual: fixed.count)
        }
        let major = fixed[6]
        let minor = fixed[7]
        guard (1...3).contains(major), minor == 0 else {
            throw NumpyError.unsupportedVersion(path: path, major: major, minor: minor)
        }

        let lengthBytes = Preamble.lengthFieldBytes(major: major)
        let prefix = Preamble.fixedBytes + lengthBytes
        let lengthField = try read(lengthBytes)
        guard lengthField.count == lengthBytes else {
            throw NumpyError.truncatedHeader(path: path, expected: prefix, actual: Preamble.fixedBytes + lengthField.count)
        }
        let headerLength = lengthField.reversed().reduce(0) { $0 << 8 | Int($1) }  // little-endian
        guard headerLength <= Preamble.maxHeaderLength else {
            throw NumpyError.headerTooLarge(path: path, length: headerLength, limit: Preamble.maxHeaderLength)
        }
        // Any length is read, as numpy reads it: a header without padding puts the data at an
        // unaligned offset, which NumpyReader copies out in aligned chunks.
        let dataOffset = prefix + headerLength

        let text = try read(headerLength)
        guard text.count == headerLength else {
            throw NumpyError.truncatedHeader(path: path, expected: dataOffset, actual: prefix + text.count)
        }
        let literal: PythonLiteral
        do {
            literal = try PythonLiteralParser.parse(text, encoding: major == 3 ? .utf8 : .latin1)
        } catch {
            throw NumpyError.malformedHeader(path: path, reason: "\(error.reason) at header byte \(error.offset)")
        }
        let fields = try HeaderFields(literal, path: path)
        return try NumpyHeader(
            dtype: fields.dtype, shape: fields.shape, majorVersion: major, dataOffset: dataOffset, path: path)
    }
}

/// The three keys of the header dict, each checked for type and value.
struct HeaderFields {
    static let keys = ["descr", "fortran_order", "shape"]

    let dtype: NumpyDType
    let shape: [Int]

    init(_ literal: PythonLiteral, path: String) throws(NumpyError) {
        guard case .dict(let entries) = literal else {
            throw .malformedHeader(path: path, reason: "the header is \(literal.repr.prefix(80)), not a dict")
        }
        var values: [String: PythonLiteral] = [:]
        for entry in entries {
            guard case .string(let key) = entry.key else {
                throw .malformedHeader(path: path, reason: "dict key \(entry.key.repr.prefix(80)) is not a string")
            }
            guard Self.keys.contains(key) else { throw .unexpectedField(path: path, field: key) }
            guard values.updateValue(entry.value, forKey: key) == nil else {
                throw .invalidField(path: path, field: key, reason: "appears twice")
            }
        }
        for key in Self.keys where values[key] == nil {
            throw .missingField(path: path, field: key)
        }

        let descr = values["descr"]!
        if case .string(let text) = descr {
            dtype = try NumpyDType(descr: text, path: path)
        } else if case .list = descr {
            throw .unsupportedDType(
                path: path, descr: String(descr.repr.prefix(200)),
                reason: "structured dtypes are not supported; \(NumpyDType.supportedList)")
        } else {
            throw .invalidField(path: path, field: "descr", reason: "is \(descr.repr.prefix(80)), not a dtype string")
        }

        switch values["fortran_order"]! {
        case .bool(false): break
        case .bool(true): throw .fortranOrder(path: path)
        case let other:
            throw .invalidField(path: path, field: "fortran_order", reason: "is \(other.repr.prefix(80)), not True or False")
        }

        guard case .tuple(let dimensions) = values["shape"]! else {
            throw .invalidField(path: path, field: "shape", reason: "is \(values["shape"]!.repr.prefix(80)), not a tuple")
        }
        var shape: [Int] = []
        for (axis, dimension) in dimensions.enumerated() {
            guard case .integer(let text) = dimension else {
                throw .invalidField(
                    path: path, field: "shape", reason: "has \(dimension.repr.prefix(80)) at axis \(axis), not an integer")
            }
            guard let value = Int(text) else {
                throw .invalidField(path: path, field: "shape", reason: "has \(text) at axis \(axis), too large for a 64-bit integer")
            }
            shape.append(value)
        }
        self.shape = shape
    }
}

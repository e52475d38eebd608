/// The Python literal forms a `.npy` header can hold. numpy writes the header with `repr` and
/// reads it with `ast.literal_eval`; this is the subset needed to read numpy's dict and to
/// *name* what we refuse (a structured dtype's list, a float in a shape) instead of
/// reporting a syntax error.
indirect enum PythonLiteral: Equatable {
    case string(String)
    /// Sign and digits as written; `Int(text)` is nil when the value does not fit in `Int`.
    case integer(String)
    case float(String)
    case bool(Bool)
    case none
    case tuple([PythonLiteral])
    case list([PythonLiteral])
    case dict([Entry])

    struct Entry: Equatable {
        var key: PythonLiteral
        var value: PythonLiteral
    }

    /// The value as Python's `repr` would show it, for error messages.
    var repr: String {
        switch self {
        case .string(let s): return "'\(s)'"
        case .integer(let text), .float(let text): return text
        case .bool(let b): return b ? "True" : "False"
        case .none: return "None"
        case .tuple(let items):
            let inner = items.map(\.repr).joined(separator: ", ")
            return items.count == 1 ? "(\(inner),)" : "(\(inner))"
        case .list(let items): return "[" + items.map(\.repr).joined(separator: ", ") + "]"
        case .dict(let entries):
            return "{" + entries.map { "\($0.key.repr): \($0.value.repr)" }.joined(separator: ", ") + "}"
        }
    }
}

/// A syntax error at byte `offset` of the header text.
struct PythonSyntaxError: Error {
    var reason: String
    var offset: Int
}

/// A recursive-descent parser over the header's bytes. Nesting is capped so a hostile header
/// cannot exhaust the stack.
struct PythonLiteralParser {
    /// How string contents are decoded: format versions 1.0 and 2.0 use latin-1, 3.0 UTF-8.
    enum TextEncoding { case latin1, utf8 }

    static let maxDepth = 32

    private let bytes: [UInt8]
    private let encoding: TextEncoding
    private var index = 0

    /// Parses one literal that must span all of `bytes` except surrounding whitespace.
    static func parse(_ bytes: [UInt8], encoding: TextEncoding) throws(PythonSyntaxError) -> PythonLiteral {
        var parser = PythonLiteralParser(bytes: bytes, encoding: encoding)
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        if parser.index < bytes.count {
            throw parser.error("unexpected \(parser.describeCurrent()) after the header dict")
        }
        return value
    }

    private init(bytes: [UInt8], encoding: TextEncoding) {
        self.bytes = bytes
        self.encoding = encoding
    }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private func error(_ reason: String) -> PythonSyntaxError {
        PythonSyntaxError(reason: reason, offset: index)
    }

    private func describeCurrent() -> String {
        guard let byte = current else { return "end of header" }
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x" + String(byte, radix: 16)
    }

    private mutating func skipWhitespace() {
        while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D {
            index += 1
        }
    }

    private mutating func parseValue(depth: Int) throws(PythonSyntaxError) -> PythonLiteral {
        guard depth < Self.maxDepth else { throw error("nested deeper than \(Self.maxDepth) levels") }
        skipWhitespace()
        guard let byte = current else { throw error("unexpected end of header (unclosed bracket?)") }
        switch byte {
        case UInt8(ascii: "'"), UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "("):
            let (items, sawComma) = try parseSequence(closing: UInt8(ascii: ")"), depth: depth)
            // `(5)` is a parenthesized 5 in Python, not a tuple.
            return items.count == 1 && !sawComma ? items[0] : .tuple(items)
        case UInt8(ascii: "["):
            return .list(try parseSequence(closing: UInt8(ascii: "]"), depth: depth).items)
        case UInt8(ascii: "{"):
            return try parseDict(depth: depth)
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."):
            return try parseNumber()
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "_"):
            let start = index
            while let c = current, Self.isIdentifierByte(c) { index += 1 }
            let name = String(decoding: bytes[start..<index], as: UTF8.self)
            switch name {
            case "True": return .bool(true)
            case "False": return .bool(false)
            case "None": return .none
            default:
                index = start
                throw error("unknown name '\(name)'")
            }
        default:
            throw error("unexpected \(describeCurrent())")
        }
    }

    /// Items up to `closing`, separated by commas, a trailing comma allowed.
    private mutating func parseSequence(
        closing: UInt8, depth: Int
    ) throws(PythonSyntaxError) -> (items: [PythonLiteral], sawComma: Bool) {
        let close = Character(Unicode.Scalar(closing))
        index += 1
        var items: [PythonLiteral] = []
        var sawComma = false
        while true {
            skipWhitespace()
            if current == closing {
                index += 1
                return (items, sawComma)
            }
            items.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            if current == UInt8(ascii: ",") {
                index += 1
                sawComma = true
            } else if current != closing {
                throw error("expected ',' or '\(close)', found \(describeCurrent())")
            }
        }
    }

    private mutating func parseDict(depth: Int) throws(PythonSyntaxError) -> PythonLiteral {
        index += 1
        var entries: [PythonLiteral.Entry] = []
        while true {
            skipWhitespace()
            if current == UInt8(ascii: "}") {
                index += 1
                return .dict(entries)
            }
            let key = try parseValue(depth: depth + 1)
            skipWhitespace()
            guard current == UInt8(ascii: ":") else {
                throw error("expected ':' after dict key \(key.repr), found \(describeCurrent())")
            }
            index += 1
            let value = try parseValue(depth: depth + 1)
            entries.append(.init(key: key, value: value))
            skipWhitespace()
            if current == UInt8(ascii: ",") {
                index += 1
            } else if current != UInt8(ascii: "}") {
                throw error("expected ',' or '}', found \(describeCurrent())")
            }
        }
    }

    /// A quoted string on one line; the common backslash escapes are decoded.
    private mutating func parseString() throws(PythonSyntaxError) -> String {
        let quote = bytes[index]
        index += 1
        var content: [UInt8] = []
        while true {
            guard let byte = current, byte != 0x0A else { throw error("unterminated string") }
            index += 1
            if byte == quote { break }
            if byte == UInt8(ascii: "\\") {
                guard let escaped = current else { throw error("unterminated string") }
                index += 1
                switch escaped {
                case UInt8(ascii: "n"): content.append(0x0A)
                case UInt8(ascii: "t"): content.append(0x09)
                case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): content.append(escaped)
                default: content += [byte, escaped]
                }
            } else {
                content.append(byte)
            }
        }
        switch encoding {
        case .utf8: return String(decoding: content, as: UTF8.self)
        case .latin1: return String(String.UnicodeScalarView(content.map { Unicode.Scalar($0) }))
        }
    }

    /// An integer (Python 2's `L` suffix tolerated, as numpy does for old files) or a float.
    private mutating func parseNumber() throws(PythonSyntaxError) -> PythonLiteral {
        let start = index
        if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
        while let c = current {
            let previous = index > start ? bytes[index - 1] : 0 // a number may start the header
            let exponentSign = (c == UInt8(ascii: "+") || c == UInt8(ascii: "-"))
                && (previous == UInt8(ascii: "e") || previous == UInt8(ascii: "E"))
            guard Self.isIdentifierByte(c) || c == UInt8(ascii: ".") || exponentSign else { break }
            index += 1
        }
        var text = String(decoding: bytes[start..<index], as: UTF8.self)
        if text.hasSuffix("L") || text.hasSuffix("l") {
            text.removeLast()
        }
        let digits = text.drop(while: { $0 == "+" || $0 == "-" })
        if text.filter({ $0 == "+" || $0 == "-" }).count <= 1, !digits.isEmpty,
           digits.allSatisfy({ $0.isASCII && $0.isNumber }) {
            return .integer(text)
        }
        if Double(text) != nil {
            return .float(text)
        }
        index = start
        throw error("invalid number '\(text)'")
    }

    private static func isIdentifierByte(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || c == UInt8(ascii: "_")
    }
}

import Archive
import Foundation
import ArgumentParser
import NumpyFile

/// `--rows A:B`: a half-open range of absolute positions, either side optional as in Python
/// (`:100`, `5:`, `:`); a negative side counts from the end (`-100:` is the last 100 rows).
struct RowSelection: ExpressibleByArgument, CustomStringConvertible {
    let lower: Int?
    let upper: Int?

    init?(argument: String) {
        let sides = argument.split(separator: ":", omittingEmptySubsequences: false)
        guard sides.count == 2 else { return nil }
        func side(_ text: Substring) -> Int?? {
            let text = text.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { return .some(nil) }
            guard let value = Int(text) else { return nil }
            return .some(value)
        }
        guard let lower = side(sides[0]), let upper = side(sides[1]) else { return nil }
        self.lower = lower
        self.upper = upper
    }

    var description: String { "\(lower.map(String.init) ?? ""):\(upper.map(String.init) ?? "")" }

    static var defaultCompletionKind: CompletionKind { .default }

    /// The positions selected in an archive of `count` rows; a range outside it is refused,
    /// naming the row count.
    func resolve(count: Int, archive: String) throws -> Range<Int> {
        func absolute(_ value: Int?, default fallback: Int) -> Int {
            guard let value else { return fallback }
            return value < 0 ? count + value : value
        }
        let from = absolute(lower, default: 0), to = absolute(upper, default: count)
        guard from <= to else {
            throw ToolFailure(.badInput, "\(archive): --rows \(self) is reversed: it starts at position \(from), after its end \(to) (write A:B with A <= B)")
        }
        guard from >= 0, to <= count else {
            throw ToolFailure(.badInput, "\(archive): --rows \(self) is outside the archive's \(Units.grouped(count)) rows (valid positions 0..<\(count))")
        }
        return from..<to
    }
}

/// Parses a `--dtype` value: one of numpy's integer type names.
@Sendable func parseDType(_ text: String) throws -> NumpyDType {
    guard let dtype = NumpyDType(rawValue: text.lowercased()) else {
        throw ValidationError("unknown dtype '\(text)'; choose one of \(NumpyDType.allCases.map(\.name).joined(separator: ", "))")
    }
    return dtype
}

/// Parses `--dense-layers 0,1,2` (an empty value means none).
@Sendable func parseLayerList(_ text: String) throws -> [Int] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: true).map { $0.trimmingCharacters(in: .whitespaces) }
    return try parts.map { part in
        guard let layer = Int(part), layer >= 0 else {
            throw ValidationError("--dense-layers takes comma-separated layer indices like 0,1,2; '\(part)' is not one")
        }
        return layer
    }
}

/// Parses the `--meta KEY=VALUE` options: a missing `=`, an empty key or a key given twice
/// is refused.
func parseMetadata(_ entries: [String]) throws -> [String: String] {
    var metadata: [String: String] = [:]
    for entry in entries {
        guard let equals = entry.firstIndex(of: "=") else {
            throw ValidationError("--meta '\(entry)' has no '=': write it as KEY=VALUE")
        }
        let key = String(entry[..<equals]), value = String(entry[entry.index(after: equals)...])
        guard !key.isEmpty else { throw ValidationError("--meta '\(entry)' has an empty key: write it as KEY=VALUE") }
        guard metadata[key] == nil else { throw ValidationError("--meta key '\(key)' is given twice") }
        metadata[key] = value
    }
    return metadata
}

extension NumpyDType {
    /// The largest value the dtype holds.
    var maxValue: UInt64 { (try? accept(MaxValue())) ?? 0 }

    /// Whether the dtype holds every id of `experts` experts.
    func holds(experts: Int) -> Bool { maxValue >= UInt64(experts - 1) }

    /// The narrowest unsigned dtype holding every id: uint8 up to 256 experts, else uint16.
    static func narrowest(experts: Int) -> NumpyDType { experts <= 256 ? .uint8 : .uint16 }

    /// Runs `operation` with the Swift type of this dtype as an ``ExpertID`` (NumpyFile's
    /// visitor hands out `FixedWidthInteger` types, the archive takes `ExpertID` ones).
    func withExpertIDType<Operation: ExpertIDOperation>(_ operation: Operation) throws -> Operation.Result {
        // A switch, not NumpyFile's visitor: each branch names a concrete type, so the
        // operation's loops run specialized (through an existential they crawl).
        switch self {
        case .uint8: return try operation.run(UInt8.self)
        case .int8: return try operation.run(Int8.self)
        case .uint16: return try operation.run(UInt16.self)
        case .int16: return try operation.run(Int16.self)
        case .uint32: return try operation.run(UInt32.self)
        case .int32: return try operation.run(Int32.self)
        case .uint64: return try operation.run(UInt64.self)
        case .int64: return try operation.run(Int64.self)
        }
    }
}

private struct MaxValue: NumpyIntegerVisitor {
    func visit<T: FixedWidthInteger & Sendable>(_ type: T.Type) throws -> UInt64 { UInt64(T.max) }
}

/// A generic operation over the integer types of the archive's API.
protocol ExpertIDOperation {
    associatedtype Result
    func run<T: ExpertID>(_ type: T.Type) throws -> Result
}


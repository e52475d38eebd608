import Foundation
import Archive
@_exported import TestSupport

/// The rules of DOMAIN.md as a plain in-memory model: what the archive must hold.
struct ReferenceModel {
    var rows: [[Int64]] = []

    /// Returns (appended, skipped), or nil for a refused gap.
    mutating func append(_ batch: [[Int64]], at start: Int) -> (Int, Int)? {
        guard start <= rows.count else { return nil }
        let skipped = min(batch.count, rows.count - start)
        rows += batch[skipped...]
        return (batch.count - skipped, skipped)
    }

    mutating func truncate(to n: Int) { rows.removeLast(rows.count - n) }
}

extension Array where Element == Int64 {
    /// Splits flat token-major ids into rows of `width`.
    func rows(of width: Int) -> [[Int64]] { stride(from: 0, to: count, by: width).map { Array(self[$0..<$0 + width]) } }
}

/// The SHA-free fingerprint of a file's bytes: a test compares before and after.
func fileBytes(_ path: String) -> [UInt8] { Array(FileManager.default.contents(atPath: path) ?? Data()) }

/// Replaces the file at `path` with `bytes`.
func writeFile(_ path: String, _ bytes: [UInt8]) {
    precondition(FileManager.default.createFile(atPath: path, contents: Data(bytes)), "cannot write \(path)")
}

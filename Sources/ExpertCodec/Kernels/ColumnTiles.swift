/// Runs of `width` stored columns whose ids sit side by side in a row. The encoders' gathers
/// move those `width` rows x `width` columns at a time and the rest one id at a time; the fast
/// decoder's scatter does the reverse.
struct ColumnTiles {
    /// The first stored column of every run.
    let starts: [Int]
    /// For each stored column, whether a run covers it.
    let covered: [Bool]

    /// The runs of `source` (each stored column's index inside a row), taken greedily from the left.
    init(source: [Int], width: Int) {
        var starts: [Int] = [], covered = [Bool](repeating: false, count: source.count), c = 0
        while c + width <= source.count {
            if source[c + width - 1] - source[c] == width - 1 {
                starts.append(c)
                for j in 0..<width { covered[c + j] = true }
                c += width
            } else {
                c += 1
            }
        }
        self.starts = starts
        self.covered = covered
    }

    /// Gathers what the tiles leave of `count` token-major rows of `input`: every row of the
    /// uncovered columns, and rows `tiledRows..<count` of the covered ones, into `cols` (column
    /// `c` at `c * stride`). Returns false if some id has a bit at or above `bitWidth`, is
    /// negative or is not below `experts` (when given).
    func gatherRest<T: ExpertID, Out: FixedWidthInteger>(
        _ input: UnsafePointer<T>, perRow: Int, source: [Int], tiledRows: Int, count: Int, bitWidth: Int,
        experts: Int = .max, into cols: UnsafeMutablePointer<Out>, stride: Int
    ) -> Bool {
        let limit = min(UInt64(1) << UInt64(bitWidth), UInt64(experts))
        var clean = true
        for c in 0..<source.count {
            let rows = covered[c] ? tiledRows..<count : 0..<count
            let column = cols + c &* stride
            var at = input + (rows.lowerBound &* perRow &+ source[c])
            for t in rows {
                let id = UInt64(truncatingIfNeeded: T.Magnitude(truncatingIfNeeded: at.pointee))
                // A negative id of a type no wider than the ids reads as a valid magnitude.
                clean = clean && id < limit && at.pointee >= 0
                column[t] = Out(truncatingIfNeeded: id)
                at += perRow
            }
        }
        return clean
    }

    /// Scatters what the tiles leave of rows `range` of `cols` (column `c` at `c * stride`) into
    /// the token-major rows at `out` (row `range.lowerBound` first): every row of the uncovered
    /// columns, and the rows outside `tiled` of the covered ones.
    func scatterRest<S: FixedWidthInteger, T: ExpertID>(
        _ cols: UnsafePointer<S>, stride: Int, range: Range<Int>, tiled: Range<Int>, perRow: Int, source: [Int],
        into out: UnsafeMutablePointer<T>
    ) {
        for c in 0..<source.count {
            let column = cols + c &* stride, index = source[c]
            @inline(__always) func rows(_ r: Range<Int>) {
                var at = out + ((r.lowerBound &- range.lowerBound) &* perRow &+ index)
                for t in r {
                    at.pointee = T(truncatingIfNeeded: column[t])
                    at += perRow
                }
            }
            if covered[c] && !tiled.isEmpty {
                rows(range.lowerBound..<tiled.lowerBound)
                rows(tiled.upperBound..<range.upperBound)
            } else {
                rows(range)
            }
        }
    }
}

/// Whether all `total` values at `values` are below `experts`: one vector maximum. The byte and
/// compact gathers check ids against `2^width` as they go; this completes the check when
/// `experts` is less. (The word gather checks against `experts` as it goes.)
func allBelow<S: FixedWidthInteger & UnsignedInteger & SIMDScalar>(_ experts: Int, _ values: UnsafePointer<S>, total: Int) -> Bool {
    var largest = SIMD16<S>()
    let raw = UnsafeRawPointer(values), size = MemoryLayout<S>.size
    var i = 0
    while i &+ 16 <= total {
        largest = pointwiseMax(largest, raw.loadUnaligned(fromByteOffset: size &* i, as: SIMD16<S>.self))
        i &+= 16
    }
    var top = Int(largest.max())
    while i < total {
        top = max(top, Int(values[i]))
        i &+= 1
    }
    return top < experts
}

/// The ids of a row that belong to dense layers, as runs of consecutive indices (a dense
/// layer's `topk` ids, merged with its dense neighbours). The decoders write ``Schema/denseFill``
/// there only, instead of filling whole rows that the stored columns then overwrite: for
/// deepseek-v3 (3 dense layers of 61) a 20th of the stores, not twice all of them.
struct DenseRuns {
    /// `(first index, ids)` of each run, in row order.
    let runs: [(start: Int, count: Int)]

    init(schema: Schema) {
        self.init(denseLayers: schema.denseLayers, topk: schema.topk)
    }

    /// Rows whose layers `denseLayers` (ascending) are dense, `topk` ids a layer.
    init(denseLayers: [Int], topk: Int) {
        var runs: [(start: Int, count: Int)] = []
        for layer in denseLayers {
            let start = layer * topk
            if let last = runs.last, last.start + last.count == start {
                runs[runs.count - 1].count += topk
            } else {
                runs.append((start, topk))
            }
        }
        self.runs = runs
    }

    /// Fills the dense ids of `rows` rows of `perRow` ids at `out`.
    func fill<T: ExpertID>(rows: Int, perRow: Int, in out: UnsafeMutablePointer<T>) {
        guard !runs.isEmpty else { return }
        runs.withUnsafeBufferPointer { runs in
            var row = out
            for _ in 0..<rows {
                for run in runs {
                    for i in 0..<run.count { row[run.start &+ i] = T(Schema.denseFill) }
                }
                row += perRow
            }
        }
    }
}

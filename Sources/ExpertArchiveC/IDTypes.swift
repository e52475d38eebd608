import Archive
import CExpertArchive

/// Generic work over ids, run with the concrete type an `ea_dtype` names.
protocol IDTypeBody {
    associatedtype Output
    func run<T: ExpertID>(_ type: T.Type) throws -> Output
}

/// The Swift type of `dtype`, or nil for an unknown code.
func idType(_ dtype: Int32) -> (any ExpertID.Type)? {
    switch Int(dtype) {
    case EA_U8: return UInt8.self
    case EA_I8: return Int8.self
    case EA_U16: return UInt16.self
    case EA_I16: return Int16.self
    case EA_U32: return UInt32.self
    case EA_I32: return Int32.self
    case EA_U64: return UInt64.self
    case EA_I64: return Int64.self
    default: return nil
    }
}

func withIDType<Body: IDTypeBody>(_ dtype: Int32, _ body: Body) throws -> Body.Output {
    guard let type = idType(dtype) else { throw ArchiveError.invalidArgument("unknown dtype code \(dtype)") }
    return try body.run(type)
}

/// `count` ids of `T` at `pointer`, after checking that the pointer may be read as `T`
/// (not NULL unless empty, aligned) and that the byte count does not overflow.
func idBuffer<T: ExpertID>(_ pointer: UnsafeRawPointer?, count: Int, as _: T.Type, _ what: String) throws -> UnsafeBufferPointer<T> {
    guard count > 0 else { return UnsafeBufferPointer(start: nil, count: 0) }
    guard let pointer else { throw ArchiveError.invalidArgument("\(what) is NULL") }
    guard Int(bitPattern: pointer) % MemoryLayout<T>.alignment == 0 else {
        throw ArchiveError.invalidArgument("\(what) is not aligned for \(T.self)")
    }
    guard !count.multipliedReportingOverflow(by: MemoryLayout<T>.stride).overflow else {
        throw ArchiveError.invalidArgument("\(what): \(count) ids overflow the address space")
    }
    return UnsafeBufferPointer(start: pointer.assumingMemoryBound(to: T.self), count: count)
}

/// Rows `start..<stop` of an archive, layers `layers`, as a C caller asked for them.
struct RowRequest {
    let rows: Range<Int>
    let layers: Range<Int>
    let schema: Schema
    let outCount: Int

    init(start: Int64, stop: Int64, layerStart: Int32, layerStop: Int32, schema: Schema, outCount: Int, path: String) throws {
        guard start >= 0, start <= stop else {
            throw ArchiveError.invalidArgument("\(path): rows \(start)..<\(stop) is not a range of positions")
        }
        guard layerStart >= 0, layerStart <= layerStop, Int(layerStop) <= schema.layers else {
            throw ArchiveError.invalidArgument("\(path): layers \(layerStart)..<\(layerStop) are not within 0..<\(schema.layers)")
        }
        rows = Int(start)..<Int(stop)
        layers = Int(layerStart)..<Int(layerStop)
        self.schema = schema
        self.outCount = outCount
        let (ids, overflow) = rows.count.multipliedReportingOverflow(by: layers.count * schema.topk)
        guard !overflow, ids == outCount else {
            throw ArchiveError.invalidArgument("\(path): an output of \(outCount) ids cannot hold \(rows.count) rows of \(layers.count) layers x \(schema.topk)")
        }
    }

    /// The output buffer, checked as ``idBuffer(_:count:as:_:)`` does.
    func output<T: ExpertID>(_ out: UnsafeMutableRawPointer?, as type: T.Type) throws -> UnsafeMutableBufferPointer<T> {
        let checked = try idBuffer(UnsafeRawPointer(out), count: outCount, as: type, "the output")
        return UnsafeMutableBufferPointer(mutating: checked)
    }
}

/// What the C interface reads rows from: a reader, or a writer (its buffered rows included).
protocol RowSource: AnyObject {
    var path: String { get }
    var schema: Schema { get }
    func read<T: ExpertID>(_ range: Range<Int>, layers: Range<Int>, into out: UnsafeMutableBufferPointer<T>) throws
}

extension ArchiveReader: RowSource {}
extension ArchiveWriter: RowSource {}

/// `ea_reader_read` and `ea_writer_read`: rows `start..<stop` of layers `layerStart..<layerStop`
/// of `source` into `out`, `outCount` ids of `dtype`.
func readRows(_ source: some RowSource, start: Int64, stop: Int64, layerStart: Int32, layerStop: Int32,
              dtype: Int32, out: UnsafeMutableRawPointer?, outCount: Int) throws {
    let request = try RowRequest(start: start, stop: stop, layerStart: layerStart, layerStop: layerStop,
                                 schema: source.schema, outCount: outCount, path: source.path)
    try withIDType(dtype, RowRead(source: source, request: request, out: out))
}

/// The read of one request, for the dtype `withIDType` finds.
private struct RowRead<Source: RowSource>: IDTypeBody {
    let source: Source, request: RowRequest, out: UnsafeMutableRawPointer?

    func run<T: ExpertID>(_ type: T.Type) throws {
        try source.read(request.rows, layers: request.layers, into: try request.output(out, as: type))
    }
}

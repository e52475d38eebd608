import Archive
import CExpertArchive

// The writer half of include/expert_archive.h; each function documented there.

@_cdecl("ea_abi_version")
public func eaABIVersion() -> Int32 { Int32(EA_ABI_VERSION) }

@_cdecl("ea_dtype_size")
public func eaDtypeSize(_ dtype: Int32) -> Int {
    idType(dtype).map { $0.bitWidth / 8 } ?? 0
}

@_cdecl("ea_writer_create")
public func eaWriterCreate(_ path: UnsafePointer<CChar>?, _ layers: Int32, _ topk: Int32, _ experts: Int32,
                           _ denseLayers: UnsafePointer<Int32>?, _ denseCount: Int, _ codec: Int32,
                           _ blockRows: Int64, _ metaKeys: UnsafePointer<UnsafePointer<CChar>?>?,
                           _ metaValues: UnsafePointer<UnsafePointer<CChar>?>?, _ metaCount: Int,
                           _ overwrite: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                           _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    call(error) {
        guard let out else { throw ArchiveError.invalidArgument("the output handle pointer is NULL") }
        let path = try string(path, "the path")
        let dense = try idBuffer(UnsafeRawPointer(denseLayers), count: denseCount, as: Int32.self, "the dense layers")
        let schema = try Schema(layers: Int(layers), topk: Int(topk), experts: Int(experts), denseLayers: dense.map(Int.init))
        guard let codec = UInt16(exactly: codec).flatMap(BlockCodec.init(rawValue:)) else {
            throw ArchiveError.invalidArgument("unknown codec code \(codec)")
        }
        guard blockRows >= 0 else { throw ArchiveError.invalidArgument("block rows must not be negative, got \(blockRows)") }
        var metadata: [String: String] = [:]
        if metaCount > 0 {
            guard let metaKeys, let metaValues else { throw ArchiveError.invalidArgument("the metadata keys or values are NULL") }
            for i in 0..<metaCount {
                metadata[try string(metaKeys[i], "metadata key \(i)")] = try string(metaValues[i], "metadata value \(i)")
            }
        }
        let writer = try ArchiveWriter.create(at: path, schema: schema, metadata: metadata,
                                              blockRows: blockRows == 0 ? nil : Int(blockRows), codec: codec,
                                              overwrite: overwrite != 0)
        out.pointee = WriterHandle(writer).opaque
    }
}

@_cdecl("ea_writer_open")
public func eaWriterOpen(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                         _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    call(error) {
        guard let out else { throw ArchiveError.invalidArgument("the output handle pointer is NULL") }
        out.pointee = WriterHandle(try ArchiveWriter.open(at: try string(path, "the path"))).opaque
    }
}

/// `ArchiveWriter.append` with the ids typed as the caller's dtype.
private struct Append: IDTypeBody {
    let writer: ArchiveWriter, rows: UnsafeRawPointer?, rowCount: Int, start: Int, compare: Bool

    func run<T: ExpertID>(_ type: T.Type) throws -> AppendResult {
        let (ids, overflow) = rowCount.multipliedReportingOverflow(by: writer.schema.idsPerRow)
        guard !overflow else { throw ArchiveError.invalidArgument("\(writer.path): \(rowCount) rows overflow the address space") }
        return try writer.append(try idBuffer(rows, count: ids, as: type, "the rows"), at: start, compareOverlap: compare)
    }
}

@_cdecl("ea_writer_append")
public func eaWriterAppend(_ handle: OpaquePointer?, _ rows: UnsafeRawPointer?, _ dtype: Int32, _ rowCount: Int,
                           _ start: Int64, _ compare: Int32, _ result: UnsafeMutablePointer<ea_append_result>?,
                           _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    call(error) {
        let handle = try WriterHandle.from(handle)
        try handle.lock.withLock {
            let writer = handle.writer
            guard start >= -1 else { throw ArchiveError.invalidArgument("\(writer.path): batch start \(start) is negative") }
            let at = start == -1 ? writer.count : Int(start)
            let done = try withIDType(dtype, Append(writer: writer, rows: rows, rowCount: rowCount, start: at, compare: compare != 0))
            result?.pointee = ea_append_result(appended: Int64(done.appended), skipped: Int64(done.skipped),
                                               differing: Int64(done.differing ?? -1))
        }
    }
}

@_cdecl("ea_writer_count")
public func eaWriterCount(_ handle: OpaquePointer?) -> Int64 {
    guard let handle = try? WriterHandle.from(handle) else { return -1 }
    return handle.lock.withLock { Int64(handle.writer.count) }
}

/// Runs `body` on the writer behind `handle`, under its lock.
private func withWriter(_ handle: OpaquePointer?, _ error: UnsafeMutablePointer<ea_error>?,
                        _ body: (ArchiveWriter) throws -> Void) -> Int32 {
    call(error) {
        let handle = try WriterHandle.from(handle)
        try handle.lock.withLock { try body(handle.writer) }
    }
}

@_cdecl("ea_writer_flush")
public func eaWriterFlush(_ handle: OpaquePointer?, _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withWriter(handle, error) { try $0.flush() }
}

@_cdecl("ea_writer_sync")
public func eaWriterSync(_ handle: OpaquePointer?, _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withWriter(handle, error) { try $0.sync() }
}

@_cdecl("ea_writer_set_threads")
public func eaWriterSetThreads(_ handle: OpaquePointer?, _ threads: Int32, _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withWriter(handle, error) { writer in
        guard threads >= 1 else { throw ArchiveError.invalidArgument("\(writer.path): encoding threads must be at least 1, got \(threads)") }
        writer.encodingThreads = Int(threads)
        writer.decodingThreads = Int(threads)
    }
}

@_cdecl("ea_writer_truncate")
public func eaWriterTruncate(_ handle: OpaquePointer?, _ rows: Int64, _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withWriter(handle, error) { writer in
        guard let rows = Int(exactly: rows) else { throw ArchiveError.invalidArgument("\(writer.path): cannot truncate to \(rows) rows") }
        try writer.truncate(to: rows)
    }
}

@_cdecl("ea_writer_close")
public func eaWriterClose(_ handle: OpaquePointer?, _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withWriter(handle, error) { try $0.close() }
}

@_cdecl("ea_writer_free")
public func eaWriterFree(_ handle: OpaquePointer?) {
    releaseHandle(handle, as: WriterHandle.self)
}

@_cdecl("ea_writer_schema")
public func eaWriterSchema(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<ea_schema>?,
                           _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withWriter(handle, error) { writer in
        try fillSchema(out, writer.schema, codec: writer.codec, blockRows: writer.blockRows)
    }
}

@_cdecl("ea_writer_dense_layers")
public func eaWriterDenseLayers(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?, _ capacity: Int,
                                _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withWriter(handle, error) { try fillDenseLayers(out, capacity, $0.schema) }
}

@_cdecl("ea_writer_metadata")
public func eaWriterMetadata(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<CChar>?, _ capacity: Int,
                             _ length: UnsafeMutablePointer<Int>?, _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withWriter(handle, error) { try writeText(json($0.metadata), out, capacity, length) }
}

@_cdecl("ea_writer_read")
public func eaWriterRead(_ handle: OpaquePointer?, _ start: Int64, _ stop: Int64, _ layerStart: Int32, _ layerStop: Int32,
                         _ dtype: Int32, _ out: UnsafeMutableRawPointer?, _ outCount: Int,
                         _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withWriter(handle, error) {
        try readRows($0, start: start, stop: stop, layerStart: layerStart, layerStop: layerStop,
                     dtype: dtype, out: out, outCount: outCount)
    }
}

func fillSchema(_ out: UnsafeMutablePointer<ea_schema>?, _ schema: Schema, codec: BlockCodec, blockRows: Int) throws {
    guard let out else { throw ArchiveError.invalidArgument("the schema output is NULL") }
    out.pointee = ea_schema(layers: Int32(schema.layers), topk: Int32(schema.topk), experts: Int32(schema.experts),
                            bits: Int32(schema.bitWidth), dense_count: Int32(schema.denseLayers.count),
                            // The header's EA_CODEC_* values are the codecs' raw values (spec 2.3).
                            codec: Int32(codec.rawValue),
                            block_rows: Int64(blockRows))
}

func fillDenseLayers(_ out: UnsafeMutablePointer<Int32>?, _ capacity: Int, _ schema: Schema) throws {
    let count = min(max(0, capacity), schema.denseLayers.count)
    guard count > 0 else { return }
    guard let out else { throw ArchiveError.invalidArgument("the dense layers output is NULL") }
    for i in 0..<count { out[i] = Int32(schema.denseLayers[i]) }
}


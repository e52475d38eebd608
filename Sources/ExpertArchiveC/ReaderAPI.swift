import Archive
import CExpertArchive

// The reader half of include/expert_archive.h; each function documented there.

@_cdecl("ea_reader_open")
public func eaReaderOpen(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                         _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    call(error) {
        guard let out else { throw ArchiveError.invalidArgument("the output handle pointer is NULL") }
        out.pointee = ReaderHandle(try ArchiveReader(path: try string(path, "the path"))).opaque
    }
}

@_cdecl("ea_reader_open_memory")
public func eaReaderOpenMemory(_ bytes: UnsafeRawPointer?, _ count: Int, _ name: UnsafePointer<CChar>?,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    call(error) {
        guard let out else { throw ArchiveError.invalidArgument("the output handle pointer is NULL") }
        let name = name == nil ? "<memory>" : try string(name, "the name")
        guard bytes != nil || count == 0 else { throw ArchiveError.invalidArgument("\(name): the bytes are NULL but their count is \(count)") }
        // The caller keeps the bytes alive and unchanged until ea_reader_free (the header's contract).
        let memory = UnsafeRawBufferPointer(start: count == 0 ? nil : bytes, count: count)
        out.pointee = ReaderHandle(try ArchiveReader(borrowing: memory, name: name)).opaque
    }
}

@_cdecl("ea_reader_copy_archive")
public func eaReaderCopyArchive(_ handle: OpaquePointer?, _ out: UnsafeMutableRawPointer?, _ capacity: Int,
                                _ length: UnsafeMutablePointer<Int>?, _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withReader(handle, error) { handle in
        let bytes = handle.reader.fileBytes
        length?.pointee = bytes
        guard capacity >= bytes else { return }
        guard let out else { throw ArchiveError.invalidArgument("the output buffer is NULL but its capacity is \(capacity)") }
        try handle.reader.copyArchive(into: UnsafeMutableRawBufferPointer(start: out, count: capacity))
    }
}

@_cdecl("ea_reader_free")
public func eaReaderFree(_ handle: OpaquePointer?) {
    releaseHandle(handle, as: ReaderHandle.self)
}

@_cdecl("ea_reader_count")
public func eaReaderCount(_ handle: OpaquePointer?) -> Int64 {
    guard let handle = try? ReaderHandle.from(handle) else { return -1 }
    return handle.lock.withLock { Int64(handle.reader.count) }
}

@_cdecl("ea_reader_set_threads")
public func eaReaderSetThreads(_ handle: OpaquePointer?, _ threads: Int32, _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withReader(handle, error) { handle in
        guard threads >= 1 else { throw ArchiveError.invalidArgument("\(handle.reader.path): decoding threads must be at least 1, got \(threads)") }
        handle.reader.decodingThreads = Int(threads)
    }
}

/// Runs `body` on the handle behind `pointer`, under its lock.
private func withReader(_ pointer: OpaquePointer?, _ error: UnsafeMutablePointer<ea_error>?,
                        _ body: (ReaderHandle) throws -> Void) -> Int32 {
    call(error) {
        let handle = try ReaderHandle.from(pointer)
        try handle.lock.withLock { try body(handle) }
    }
}

@_cdecl("ea_reader_schema")
public func eaReaderSchema(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<ea_schema>?,
                           _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withReader(handle, error) {
        try fillSchema(out, $0.reader.schema, codec: $0.reader.codec, blockRows: $0.reader.blockRows)
    }
}

@_cdecl("ea_reader_dense_layers")
public func eaReaderDenseLayers(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?, _ capacity: Int,
                                _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withReader(handle, error) { try fillDenseLayers(out, capacity, $0.reader.schema) }
}

@_cdecl("ea_reader_metadata")
public func eaReaderMetadata(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<CChar>?, _ capacity: Int,
                             _ length: UnsafeMutablePointer<Int>?, _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withReader(handle, error) { try writeText(json($0.reader.metadata), out, capacity, length) }
}

@_cdecl("ea_reader_read")
public func eaReaderRead(_ handle: OpaquePointer?, _ start: Int64, _ stop: Int64, _ layerStart: Int32, _ layerStop: Int32,
                         _ dtype: Int32, _ out: UnsafeMutableRawPointer?, _ outCount: Int,
                         _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withReader(handle, error) {
        try readRows($0.reader, start: start, stop: stop, layerStart: layerStart, layerStop: layerStop,
                     dtype: dtype, out: out, outCount: outCount)
    }
}

@_cdecl("ea_reader_refresh")
public func eaReaderRefresh(_ handle: OpaquePointer?, _ count: UnsafeMutablePointer<Int64>?,
                            _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withReader(handle, error) { handle in
        try handle.reader.refresh()
        count?.pointee = Int64(handle.reader.count)
    }
}

@_cdecl("ea_reader_verify")
public func eaReaderVerify(_ handle: OpaquePointer?, _ problems: UnsafeMutablePointer<Int>?,
                           _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withReader(handle, error) { handle in
        // One line each: the text interface hands problems out as lines.
        handle.problems = handle.reader.verify().map { "\($0)".split(whereSeparator: \.isNewline).joined(separator: " ") }
        problems?.pointee = handle.problems.count
    }
}

@_cdecl("ea_reader_problem")
public func eaReaderProblem(_ handle: OpaquePointer?, _ index: Int, _ out: UnsafeMutablePointer<CChar>?, _ capacity: Int,
                            _ length: UnsafeMutablePointer<Int>?, _ error: UnsafeMutablePointer<ea_error>?) -> Int32 {
    withReader(handle, error) { handle in
        guard handle.problems.indices.contains(index) else {
            throw ArchiveError.invalidArgument("\(handle.reader.path): problem \(index) of \(handle.problems.count)")
        }
        try writeText(handle.problems[index], out, capacity, length)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Archive

/// A mutex around one handle's calls: the C interface promises that a handle may be shared
/// between threads (its calls run one at a time), which the Swift objects themselves do not.
final class HandleLock {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// What an `ea_writer *` points at (retained until `ea_writer_free`).
final class WriterHandle {
    let lock = HandleLock()
    let writer: ArchiveWriter

    init(_ writer: ArchiveWriter) { self.writer = writer }

    static func from(_ pointer: OpaquePointer?) throws -> WriterHandle {
        guard let pointer else { throw ArchiveError.invalidArgument("the writer handle is NULL") }
        return Unmanaged<WriterHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }

    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passRetained(self).toOpaque()) }
}

/// What an `ea_reader *` points at (retained until `ea_reader_free`).
final class ReaderHandle {
    let lock = HandleLock()
    let reader: ArchiveReader
    /// The problems the last `ea_reader_verify` found, read one by one with `ea_reader_problem`.
    var problems: [String] = []

    init(_ reader: ArchiveReader) { self.reader = reader }

    static func from(_ pointer: OpaquePointer?) throws -> ReaderHandle {
        guard let pointer else { throw ArchiveError.invalidArgument("the reader handle is NULL") }
        return Unmanaged<ReaderHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }

    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passRetained(self).toOpaque()) }
}

/// Releases the handle behind `pointer` (its deinit closes a writer, errors ignored).
func releaseHandle<H: AnyObject>(_ pointer: OpaquePointer?, as _: H.Type) {
    guard let pointer else { return }
    Unmanaged<H>.fromOpaque(UnsafeRawPointer(pointer)).release()
}

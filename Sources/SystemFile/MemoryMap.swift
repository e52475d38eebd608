#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only mapping of the first `count` bytes of a file, unmapped on release. It stays
/// valid after the descriptor closes. Touching a page past the end of a file that another
/// process has cut raises SIGBUS: mmap offers no way around that, so its users keep the file
/// from shrinking under them or validate its size first.
package final class MemoryMap {
    package let bytes: UnsafeRawBufferPointer

    package enum Sharing {
        /// MAP_SHARED: sees what writers of the file write later.
        case shared
        /// MAP_PRIVATE: for a file nobody is expected to change.
        case `private`
    }

    /// Maps `count` bytes of `file`; a count of 0 maps nothing (mmap refuses empty mappings)
    /// and gives an empty buffer.
    package init(_ file: FileDescriptor, count: Int, _ sharing: Sharing) throws(SystemCallError) {
        guard count > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let address = mmap(nil, count, PROT_READ, sharing == .shared ? MAP_SHARED : MAP_PRIVATE, file.rawValue, 0)
        guard let address, address != MAP_FAILED else { throw lastError(file.path, "mmap") }
        bytes = UnsafeRawBufferPointer(start: address, count: count)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }

    /// Drops the whole pages of `range` (byte offsets) from this process's resident memory:
    /// a front-to-back reader calls it behind itself, so that reading a large file does not
    /// count it all as resident. The pages stay in the page cache; touching them again is a
    /// minor fault.
    package func release(_ range: Range<Int>) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page, end = range.upperBound / page * page
        guard end > start, let base = bytes.baseAddress else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    /// Drops the pages of `range`, just read front to back, and those of the `lookBehindBytes`
    /// before it: a fault maps the page cache's pages around the faulting one (a 64 KiB window,
    /// or a whole large folio where the file system caches in them), and so maps again pages
    /// behind the reader that were dropped already.
    package func releaseBehind(_ range: Range<Int>) {
        release(max(0, range.lowerBound - Self.lookBehindBytes)..<range.upperBound)
    }

    /// The most a page fault maps before the faulting page: Linux's 64 KiB fault-around window,
    /// or a large folio of at most 2 MiB (a PMD).
    package static let lookBehindBytes = 2 << 20

    /// Tells the kernel the mapping is read front to back: more read-ahead, pages dropped sooner.
    package func adviseSequential() {
        guard let base = bytes.baseAddress else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base), bytes.count, MADV_SEQUENTIAL)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Archive
import ArgumentParser
import Foundation
import NumpyFile
import SystemFile

/// The exit statuses of archive-tool: one table, documented in every command's help
/// (``ExitStatus/helpSection``), and one place (``ToolFailure/init(_:)``) mapping errors to them.
enum ExitStatus: Int32 {
    /// Success.
    case success = 0
    /// Bad input data: a `.npy` that is unreadable or unsupported (magic, version, header,
    /// dtype, Fortran order, truncated or over-long data, shape), expert ids out of range,
    /// a `--rows` range outside the archive, a `--dtype` too narrow for the ids.
    case badInput = 1
    /// Conflict with the archive or an existing file: a gap on append, a schema mismatch,
    /// an existing output without `--force`, an output that is not a regular file, an
    /// archive locked by another writer.
    case conflict = 2
    /// Damaged archive: a corrupt header, record or block (the message names the byte offset
    /// and the rows); `verify` found damage.
    case damaged = 3
    /// System I/O error: a file that cannot be opened, created, read, written or renamed
    /// (missing directory, permissions, disk full).
    case io = 4
    /// Usage error: ArgumentParser's own (unknown option, missing argument) and
    /// combinations of options that cannot work (EX_USAGE).
    case usage = 64
    /// Interrupted by SIGINT; what the command was writing was undone.
    case interrupted = 130
    /// Interrupted by SIGTERM; what the command was writing was undone.
    case terminated = 143

    /// The EXIT STATUS section of every command's help.
    static let helpSection = """
        EXIT STATUS:
          0    success
          1    bad input data: .npy unreadable or unsupported (dtype, version, Fortran
               order, truncated), shape, expert ids out of range, --rows outside the
               archive, --dtype too narrow for the ids
          2    conflict: gap on append, schema mismatch with the archive, existing
               output without --force, output not a regular file, archive locked by
               another writer
          3    damaged archive (the message names the byte offset and the rows)
          4    system I/O error (missing directory, permissions, disk full)
          64   usage error (unknown option, missing or contradictory arguments)
          130  interrupted by SIGINT, 143 by SIGTERM: the partial work was undone (a
               signal after the work was complete leaves it kept, status 0)
        """
}

/// A failure to report: one line on stderr and an exit status.
struct ToolFailure: Error, CustomStringConvertible {
    let status: ExitStatus
    let message: String

    init(_ status: ExitStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    var description: String { message }

    /// The one mapping from the libraries' errors to exit statuses.
    init(_ error: any Error) {
        switch error {
        case let failure as ToolFailure:
            self = failure
        case let error as ArchiveError:
            switch error {
            case .gap, .locked:
                self.init(.conflict, error.description)
            case .exists(let path):
                self.init(.conflict, "\(path): already exists; pass --force to replace it")
            case .corrupt:
                self.init(.damaged, error.description)
            case .io, .closed:
                self.init(.io, error.description)
            case .invalidRows, .outOfRange, .invalidArgument:
                self.init(.badInput, error.description)
            }
        case let interrupted as Interrupted:
            self.init(interrupted.status, "interrupted by \(interrupted.name); stopped, and what it had written to files was undone")
        case let error as NumpyError:
            switch error {
            case .interrupted(_, let signal):
                self = ToolFailure(Interrupted(signal: signal))
            case .destinationExists(let path):
                self.init(.conflict, "\(path): file already exists; pass --force to replace it")
            case .notRegularFile:
                self.init(.conflict, error.description)
            case .systemCall:
                self.init(.io, error.description)
            default:
                self.init(.badInput, error.description)
            }
        case let error as PlacementError:
            self.init(NumpyError(error))
        case let error as CodecError:
            if case .corruptBlock = error {
                self.init(.damaged, error.description)
            } else {
                self.init(.badInput, error.description)
            }
        case let error as CocoaError:
            self.init(.io, error.localizedDescription)
        default:
            self.init(.io, String(describing: error))
        }
    }

    /// The same failure with `old` replaced by `new` in the message (a temporary path by the
    /// destination the user named).
    func replacingPath(_ old: String, with new: String) -> ToolFailure {
        ToolFailure(status, message.replacingOccurrences(of: old, with: new))
    }
}

/// Runs a command's body: any error becomes one `archive-tool: error: ...` line on stderr
/// and the exit status of its kind. ArgumentParser's own errors pass through.
///
/// A reader that closed standard output ends the command quietly with status 0. A failed
/// write to standard output that the command carried on after fails it at the end.
func reportingFailures(_ body: () throws -> Void) throws {
    do {
        try body()
        if let failure = StandardOutput.failure { throw failure }
        if let signal = Interrupt.received {
            Console.warning("\(Interrupted(signal: signal).name) arrived after the work was complete; it was kept")
        }
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        throw error
    } catch {
        if isBrokenPipe(error) { throw ExitCode.success }
        let failure = ToolFailure(error)
        Console.error(failure.message)
        throw ExitCode(failure.status.rawValue)
    }
}

/// Whether `error` says that the reader of standard output has gone.
private func isBrokenPipe(_ error: any Error) -> Bool {
    if error is BrokenPipe { return true }
    if case let NumpyError.systemCall(path, _, code, _) = error, code == EPIPE, path == "<stdout>" { return true }
    return false
}

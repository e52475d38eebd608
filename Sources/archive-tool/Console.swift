#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import SystemFile

/// Lines for the user on stderr: errors, warnings, information and progress.
enum Console {
    static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) != 0 }
    static var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) != 0 }
    static var stdinIsTerminal: Bool { isatty(STDIN_FILENO) != 0 }

    /// `archive-tool: error: message`, always exactly one line.
    static func error(_ message: String) {
        emit("archive-tool: error: " + oneLine(message) + "\n")
    }

    /// `archive-tool: warning: message`; shown even with --quiet (something unexpected happened).
    static func warning(_ message: String) {
        emit("archive-tool: warning: " + oneLine(message) + "\n")
    }

    /// An informational line, silenced by --quiet.
    static func info(_ message: String, quiet: Bool) {
        guard !quiet else { return }
        emit(message + "\n")
    }

    /// Writes `text` to stderr; a failure is ignored (there is nowhere left to report it).
    static func emit(_ text: String) {
        _ = writeAll(text, to: STDERR_FILENO)
    }

    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// Sizes for people: `14.0 MiB (14,690,336 bytes)`.
enum Units {
    /// `812 B`, `1.5 KiB`, `14.0 MiB`, `2.25 GiB`.
    static func bytes(_ count: Int) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB"]
        guard count >= 1024 else { return "\(count) B" }
        var value = Double(count) / 1024
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return String(format: value < 10 ? "%.2f" : "%.1f", value) + " " + units[unit]
    }

    /// The human size with the exact count: `14.0 MiB (14,690,336 bytes)`.
    static func bytesExact(_ count: Int) -> String {
        count < 1024 ? "\(count) bytes" : "\(bytes(count)) (\(grouped(count)) bytes)"
    }

    /// `14690336` → `14,690,336`.
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (i, digit) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return value < 0 ? "-" + out : out
    }

    /// A ratio as `7.12x`.
    static func ratio(_ value: Double) -> String { String(format: "%.2fx", value) }

    /// `[0, 1, 2]` → `0,1,2`, as `--dense-layers` takes it.
    static func list(_ values: [Int]) -> String { values.map(String.init).joined(separator: ",") }
}

/// A progress line on stderr for work that takes more than a second, only when stderr is a
/// terminal and not silenced; redrawn at most ten times a second and erased when done.
final class ProgressLine {
    private let label: String
    private let total: Int
    private let unit: String
    private let enabled: Bool
    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant
    private var lastDrawn: ContinuousClock.Instant?

    init(_ label: String, total: Int, unit: String = "rows", quiet: Bool) {
        self.label = label
        self.total = total
        self.unit = unit
        enabled = !quiet && Console.stderrIsTerminal
        started = clock.now
    }

    func update(_ done: Int) {
        guard enabled else { return }
        let now = clock.now
        guard now - started >= .seconds(1) else { return }
        if let last = lastDrawn, now - last < .milliseconds(100) { return }
        lastDrawn = now
        let percent = total > 0 ? Double(done) * 100 / Double(total) : 100
        Console.emit("\r\u{1B}[K\(label): \(Units.grouped(done)) of \(Units.grouped(total)) \(unit) (" + String(format: "%.0f", percent) + "%)")
    }

    /// Erases the line, if one was drawn.
    func finish() {
        guard lastDrawn != nil else { return }
        Console.emit("\r\u{1B}[K")
        lastDrawn = nil
    }

    deinit { finish() }
}

extension Console {
    /// A report line on standard output, silenced by --quiet. A failed write is kept by
    /// ``StandardOutput`` and fails the command when it ends.
    static func infoOut(_ message: String, quiet: Bool) {
        guard !quiet else { return }
        try? StandardOutput.write(message + "\n")
    }
}

/// Standard output written with write(2), every failure seen: a full disk or `> /dev/full`
/// fails the command (exit 4), a reader that closed the pipe (`| head`) ends it quietly.
enum StandardOutput {
    /// The first failed write, for a command that carried on (``Console/infoOut(_:quiet:)``).
    nonisolated(unsafe) private(set) static var failure: (any Error)?

    /// Writes all of `text`; throws ``ToolFailure`` on an I/O error, ``BrokenPipe`` when the
    /// reader is gone.
    static func write(_ text: String) throws {
        if let failure { throw failure }
        guard let code = writeAll(text, to: STDOUT_FILENO) else { return }
        let error: any Error = code == EPIPE ? BrokenPipe()
            : ToolFailure(.io, "standard output: write failed: \(String(cString: strerror(code))) (errno \(code))")
        failure = error
        throw error
    }
}

/// The reader of standard output closed it: the command ends quietly with status 0, as the
/// reader chose to stop.
struct BrokenPipe: Error {}

/// Writes all of `text` to `fd`; the errno of a failure, nil on success.
private func writeAll(_ text: String, to fd: Int32) -> Int32? {
    var text = text
    return text.withUTF8 { bytes in
        do throws(SystemCallError) {
            try FileDescriptor(rawValue: fd, path: "standard output").write(UnsafeRawBufferPointer(bytes))
            return nil
        } catch {
            return error.errno
        }
    }
}

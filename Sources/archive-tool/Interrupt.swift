#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NumpyFile

/// The handler only records the signal: the work stops at its next check (or the blocking
/// read or write the signal cut short), undoes what it wrote, and exits with 128 + signal. A
/// second signal changes nothing: undoing must not itself be cut short.
private func onSignal(_ signal: Int32) {
    StopRequest.record(signal)
}

/// SIGINT and SIGTERM stop a long command at its next check, so it can undo what it wrote
/// (roll the archive back, remove a temporary file) before exiting with status 130 or 143.
enum Interrupt {
    static func install() {
        StopRequest.prepare()  // also initializes the storage the handler writes
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signalNumber in [SIGINT, SIGTERM] {
            var action = sigaction(), previous = sigaction()
            #if canImport(Darwin)
            action.__sigaction_u.__sa_handler = onSignal
            #else
            action.__sigaction_handler.sa_handler = onSignal
            #endif
            sigemptyset(&action.sa_mask)
            // No SA_RESTART: a read from a silent pipe returns EINTR and sees the request.
            action.sa_flags = 0
            sigaction(signalNumber, &action, &previous)
            // A signal the parent set to be ignored (a background job) stays ignored.
            #if canImport(Darwin)
            let wasIgnored = unsafeBitCast(previous.__sigaction_u.__sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
            #else
            let wasIgnored = unsafeBitCast(previous.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
            #endif
            if wasIgnored {
                signal(signalNumber, SIG_IGN)
            } else {
                sigaddset(&unblock, signalNumber)
            }
        }
        // Some parents (thread pools spawning tools) hand down a mask blocking them.
        sigprocmask(SIG_UNBLOCK, &unblock, nil)
    }

    /// The signal received, if any.
    static var received: Int32? { StopRequest.signal }

    /// Throws ``Interrupted`` when a signal arrived.
    static func check() throws {
        if let signal = received { throw Interrupted(signal: signal) }
    }
}

/// The work stopped on a signal. Thrown by ``Interrupt/check()``; a command lets it reach
/// ``reportingFailures(_:)`` only once it has undone its work (an undo that fails becomes an
/// I/O error instead), so that 130 and 143 keep their promise.
struct Interrupted: Error {
    let signal: Int32

    var status: ExitStatus { signal == SIGTERM ? .terminated : .interrupted }
    var name: String { signal == SIGTERM ? "SIGTERM" : signal == SIGINT ? "SIGINT" : "signal \(signal)" }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Signals received; written by the signal handler, read between chunks.
private let signalsReceived = Atomic<Int>(0)

private func onSignal(_ signal: Int32) {
    // A second signal ends the process at once (a read from a silent pipe may never return).
    if signalsReceived.add(1, ordering: .relaxed).newValue > 1 { _exit(128 + signal) }
}

/// SIGINT and SIGTERM stop a long command between chunks, so it can undo what it wrote
/// (roll the archive back, remove a temporary file) before exiting with status 130.
enum Interrupt {
    static func install() {
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signalNumber in [SIGINT, SIGTERM] {
            // A signal the parent set to be ignored (a background job) stays ignored.
            let previous = signal(signalNumber, onSignal)
            if unsafeBitCast(previous, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) {
                signal(signalNumber, SIG_IGN)
            } else {
                sigaddset(&unblock, signalNumber)
            }
        }
        // Some parents (thread pools spawning tools) hand down a mask blocking them.
        sigprocmask(SIG_UNBLOCK, &unblock, nil)
    }

    /// Throws when a signal arrived.
    static func check() throws {
        if signalsReceived.load(ordering: .relaxed) > 0 {
            throw ToolFailure(.interrupted, "interrupted; nothing was kept")
        }
    }
}

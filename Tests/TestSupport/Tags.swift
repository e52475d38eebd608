import Testing

/// The tags of the test suite, declared once for every test target.
///
/// `swift test` (Swift 6.3) filters by test name only, not by tag: `scripts/test --fast` skips
/// the suites tagged `.slow` by name (keep its list in step with this tag). The tags also group
/// the tests in an IDE and in Swift Testing's event stream.
extension Tag {
    /// A reliability table (crash, kill, signal, failure injection, damage) whose CI size
    /// `scripts/soak` raises through the `ARCHIVE_SOAK_*` variables.
    @Tag public static var soak: Self
    /// Starts child processes (`archive-tool`, `archive-crashtest`, `python3`, `lz4`).
    @Tag public static var processes: Self
    /// Reads the real traces of `../shared/data`.
    @Tag public static var realTraces: Self
    /// Takes seconds rather than milliseconds: skipped by `scripts/test --fast`.
    @Tag public static var slow: Self
}

import Foundation

/// The size of a reliability table: `value` in CI, what `scripts/soak` sets in the environment
/// variable `name` (`ARCHIVE_SOAK_WORKLOADS`, `ARCHIVE_SOAK_KILLS`, `ARCHIVE_SOAK_FLIPS`) otherwise.
public func soakSetting(_ name: String, default value: Int) -> Int {
    ProcessInfo.processInfo.environment[name].flatMap { Int($0) } ?? value
}

import Foundation

/// A fresh temporary directory for one test, removed with everything in it when the value is
/// released. Shared by every test target.
public final class TemporaryDirectory {
    public let path: String
    public var url: URL { URL(fileURLWithPath: path, isDirectory: true) }

    public init() {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("expert-archive-tests-\(UUID().uuidString)", isDirectory: true).path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// The path of `name` in the directory.
    public func file(_ name: String) -> String { path + "/" + name }

    /// Every entry, hidden ones (temporary files) included, sorted.
    public func entries() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }
}

import Foundation

/// A fresh temporary directory for one test, removed with everything in it when the value is
/// released. Shared by every test target.
public final class TemporaryDirectory {
    public let path: String
    public var url: URL { URL(fileURLWithPath: path, isDirectory: true) }

    public init() {
        path = Self.root + "/expert-archive-tests-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Where the directories are made: `$TMPDIR` when set, else `/dev/shm` (a tmpfs) when there
    /// is one with room for the suite, else the system's temporary directory. No test can
    /// observe what an fsync makes durable (a power loss is what the simulated disk of the fault
    /// injection tables models), while on a disk the crash tables' thousands of fsyncs are most
    /// of the suite's time.
    public static let root: String = {
        let environment = ProcessInfo.processInfo.environment
        if let tmp = environment["TMPDIR"], !tmp.isEmpty { return tmp }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory), isDirectory.boolValue,
           FileManager.default.isWritableFile(atPath: "/dev/shm"), freeBytes(at: "/dev/shm") >= suiteBytes {
            return "/dev/shm"
        }
        return FileManager.default.temporaryDirectory.path
    }()

    /// Room the suite's files may take at once, tests running in parallel: a container's
    /// default /dev/shm (64 MiB) is too small for them.
    static let suiteBytes = 2 << 30

    private static func freeBytes(at path: String) -> Int {
        let attributes = try? FileManager.default.attributesOfFileSystem(forPath: path)
        return (attributes?[.systemFreeSize] as? NSNumber)?.intValue ?? 0
    }

    /// The path of `name` in the directory.
    public func file(_ name: String) -> String { path + "/" + name }

    /// Every entry, hidden ones (temporary files) included, sorted.
    public func entries() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }
}

// swift-tools-version: 6.1
import PackageDescription

// Dependencies run one way: CLZ4 (and CPrefetch) <- ExpertCodec <- Archive <- {archive-tool, ExpertArchiveC},
// and SystemFile <- {Archive, NumpyFile, archive-tool}. The codec knows no files, the archive knows no
// command line, and only SystemFile makes file system calls.
let package = Package(
    name: "ExpertArchive",
    products: [
        .library(name: "ExpertCodec", targets: ["ExpertCodec"]),
        .library(name: "Archive", targets: ["Archive"]),
        .library(name: "TraceSynth", targets: ["TraceSynth"]),
        .library(name: "NumpyFile", targets: ["NumpyFile"]),
        .executable(name: "archive-tool", targets: ["archive-tool"]),
        // The C interface (Sources/CExpertArchive/include/expert_archive.h) as libexpert_archive.so,
        // the library the Python package loads.
        .library(name: "expert_archive", type: .dynamic, targets: ["ExpertArchiveC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        // A prefetch hint for the codec's gathers, which Swift cannot express (header only).
        .target(name: "CPrefetch"),
        .target(name: "CVectorKernels"),
        .target(name: "ExpertCodec", dependencies: ["CLZ4", "CPrefetch", "CVectorKernels"]),
        // The one layer of file system calls (EINTR, short reads and writes, errors naming path,
        // operation and errno) and the placing of files beside their destination (StagedFile), in the
        // package only: no product exports it but StopRequest.
        .target(name: "SystemFile"),
        .target(name: "Archive", dependencies: ["ExpertCodec", "SystemFile"]),
        // Realistic generated traces: the demo's default input, test fixtures, benchmark inputs.
        .target(name: "TraceSynth", dependencies: ["ExpertCodec"]),
        // The C interface: its header (a C target, so that Swift implements the very types it
        // declares) and its implementation. The Swift runtime is linked statically: the shared
        // library loads in processes with no Swift toolchain (a Python wheel).
        .target(name: "CExpertArchive"),
        .target(
            name: "ExpertArchiveC",
            dependencies: ["Archive", "CExpertArchive"],
            linkerSettings: [.unsafeFlags(["-static-stdlib"])]
        ),
        .executableTarget(
            name: "archive-tool",
            dependencies: [
                "Archive",
                "NumpyFile",
                "SystemFile",
                "TraceSynth",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // What every test target shares (a temporary directory per test).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "ExpertCodecTests", dependencies: ["TestSupport", "ExpertCodec", "TraceSynth", "NumpyFile"]),
        // The writer and reader processes of the crash and concurrency tests; not a product.
        .executableTarget(name: "archive-crashtest", dependencies: ["Archive", "TraceSynth"]),
        // The recipes of the spec's vectors and the program that writes them (scripts/make-vectors);
        // the tests only read the vectors.
        .target(name: "VectorRecipes", dependencies: ["Archive"], path: "Tests/VectorRecipes"),
        .executableTarget(name: "make-vectors", dependencies: ["ExpertCodec", "Archive", "VectorRecipes"],
                          path: "Tests/make-vectors"),
        .testTarget(name: "ArchiveTests", dependencies: ["TestSupport", "VectorRecipes", "Archive", "TraceSynth"]),
        .target(name: "NumpyFile", dependencies: ["SystemFile"]),
        .testTarget(name: "SystemFileTests", dependencies: ["TestSupport", "SystemFile"]),
        .testTarget(name: "NumpyFileTests", dependencies: ["TestSupport", "NumpyFile", "SystemFile"]),
        .testTarget(name: "ArchiveToolTests", dependencies: ["TestSupport", "Archive", "NumpyFile", "TraceSynth"]),
    ],
    swiftLanguageModes: [.v6]
)

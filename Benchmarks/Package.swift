// swift-tools-version: 6.1
import PackageDescription

// Benchmarks live in a package of their own so the main build stays lean.
let package = Package(
    name: "Benchmarks",
    dependencies: [
        .package(name: "ExpertArchive", path: ".."),
    ],
    targets: [
        // liblz4 itself, to measure `lz4` on the raw int32 array in the same run.
        .systemLibrary(name: "LZ4Reference", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .executableTarget(
            name: "codec-bench",
            dependencies: [
                .product(name: "ExpertCodec", package: "ExpertArchive"),
                .product(name: "TraceSynth", package: "ExpertArchive"),
                .product(name: "NumpyFile", package: "ExpertArchive"),
                "LZ4Reference",
            ]
        ),
        .executableTarget(
            name: "archive-bench",
            dependencies: [
                .product(name: "Archive", package: "ExpertArchive"),
                .product(name: "TraceSynth", package: "ExpertArchive"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

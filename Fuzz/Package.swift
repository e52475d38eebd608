// swift-tools-version: 6.1
import PackageDescription

// libFuzzer targets, in a package of their own so the main build stays lean. Build and run them
// with `scripts/fuzz [seconds-per-target]`; each target defines only `LLVMFuzzerTestOneInput`
// (`-parse-as-library`: libFuzzer's `main` is the entry point).
let fuzzing: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]

let package = Package(
    name: "Fuzz",
    dependencies: [
        .package(name: "ExpertArchive", path: ".."),
    ],
    targets: [
        .target(name: "FuzzSupport"),
        // liblz4 itself, to wrap fuzzed payloads in valid frames.
        .systemLibrary(name: "FuzzLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .executableTarget(
            name: "fuzz-block-decoder",
            dependencies: [.product(name: "ExpertCodec", package: "ExpertArchive"), "FuzzLZ4"],
            swiftSettings: fuzzing
        ),
        .executableTarget(
            name: "fuzz-archive-reader",
            dependencies: [.product(name: "Archive", package: "ExpertArchive"), "FuzzSupport"],
            swiftSettings: fuzzing
        ),
        .executableTarget(
            name: "fuzz-npy-reader",
            dependencies: [.product(name: "NumpyFile", package: "ExpertArchive"), "FuzzSupport"],
            swiftSettings: fuzzing
        ),
    ],
    swiftLanguageModes: [.v6]
)

import CVectorKernels

/// The AVX-512 kernels of `CVectorKernels` (whole columns of byte-wide ids 64 rows at a time,
/// four block checksums side by side, flag bitmaps counted with POPCNT): the package compiles
/// for baseline x86-64, so they are chosen at run time. Where the CPU lacks them (before AVX-512
/// VBMI2: Intel Ice Lake, AMD Zen 4) the Swift kernels decode the same ids.
public enum VectorKernels {
    /// Whether this CPU and its OS run them, unless the environment variable
    /// `EXPERT_ARCHIVE_VECTOR_KERNELS` is `0` when the process first asks.
    public static let available = ek_vector_kernels_available()
}

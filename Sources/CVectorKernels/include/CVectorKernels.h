#ifndef EXPERT_CVECTORKERNELS_H
#define EXPERT_CVECTORKERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Kernels of the block decoder in AVX-512 (F, BW, VBMI, VBMI2) and POPCNT, chosen at run time:
// the package compiles for baseline x86-64, where the Swift word kernels (RepeatRows, BitPlanes)
// do 8 rows at a time. The column kernels take a column of a whole block, 64 byte-wide or 32
// 16-bit ids at a time (the Swift kernels keep ranges that start or end inside a block); the
// others measure columns and compute block checksums.
//
// Bounds: each function reads and writes only the bytes it names, whatever its input says
// (loads and stores are masked to them), so a flag bitmap that disagrees with `kept` yields
// wrong ids in a column the caller has already rejected, never an access out of bounds.

// Whether this CPU and its OS run the kernels below (the OS saves the 512-bit registers), and
// the environment does not turn them off (EXPERT_ARCHIVE_VECTOR_KERNELS=0). Asks each time:
// callers keep the answer (ExpertCodec's VectorKernels.available).
bool ek_vector_kernels_available(void);

// The `count` values of `width` (1 ... 8) bit planes (spec 1.5.3) at `planes`, each plane
// ceil(count / 8) bytes, as bytes. Returns the largest value, for the caller's check against
// the expert count. Reads planes[0 ..< width * ceil(count / 8)]; writes out[0 ..< count].
// Only where ek_vector_kernels_available().
uint8_t ek_load_planes_u8(const uint8_t *planes, size_t width, size_t count, uint8_t *out);

// A repeat column of `rows` rows (spec 1.5.5) from the planes of its `kept` stored values:
// row 0 takes stored value 0 whatever its flag bit; row t > 0 takes out[t - 1] when bit t of
// `flags` is set, else the next stored value. The values never go through memory. Returns the
// largest stored value. Reads flags[0 ..< ceil(rows / 8)] and planes[0 ..< width * ceil(kept / 8)];
// writes out[0 ..< rows]. Only where ek_vector_kernels_available().
uint8_t ek_decode_repeats_u8(const uint8_t *flags, const uint8_t *planes, size_t width, size_t kept, size_t rows,
                             uint8_t *out);

// Every flagged row t of out[1 ..< rows] takes the value of row t - 1, in order (a run of
// flagged rows takes the row before the run); row 0 stays as it is. Reads
// flags[0 ..< ceil(rows / 8)]; reads and writes out[0 ..< rows]. Only where
// ek_vector_kernels_available().
void ek_fill_flagged_u8(const uint8_t *flags, size_t rows, uint8_t *out);

// The three kernels above for 16-bit ids (9 to 16 planes; 32 rows at a time), with the same
// bounds in ids: out[0 ..< count] or out[0 ..< rows] 16-bit ids.
uint16_t ek_load_planes_u16(const uint8_t *planes, size_t width, size_t count, uint16_t *out);
uint16_t ek_decode_repeats_u16(const uint8_t *flags, const uint8_t *planes, size_t width, size_t kept, size_t rows,
                               uint16_t *out);
void ek_fill_flagged_u16(const uint8_t *flags, size_t rows, uint16_t *out);

// Where the bodies of layout-1 columns 0 ..< count end (spec 1.5.5), starting at `cursor` in a
// payload of `size` bytes of `rows` rows and `width`-bit planes, `codes` their coding bytes
// (each <= 4, checked before): the offset after the last, or SIZE_MAX when one does not fit
// (the caller then finds which and why). `constants` counts the constant columns met. Reads
// `codes[0 ..< count]` and, of `payload`, only flag bitmaps inside `size`. Only where
// ek_vector_kernels_available().
size_t ek_measure_columns(const uint8_t *payload, size_t size, const uint8_t *codes, size_t count, size_t cursor,
                          size_t rows, size_t width, size_t *constants);

// XXH32 with seed 0 (the LZ4 frame checksum) of eight buffers at once: hashes[k] of the
// lengths[k] bytes at data[k]. Reads exactly those bytes. Only where ek_vector_kernels_available().
void ek_xxh32_x8(const uint8_t *const data[8], const size_t lengths[8], uint32_t hashes[8]);

#endif

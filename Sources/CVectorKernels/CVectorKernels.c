#include "CVectorKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdatomic.h>

#define EK_TARGET __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt")))

bool ek_vector_kernels_available(void) {
    // The builtins check the OS's XSAVE state too (XCR0), not only CPUID.
    // Threads that ask at once all find the same answer: relaxed order is enough.
    static _Atomic int available = -1;
    int known = atomic_load_explicit(&available, memory_order_relaxed);
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2")
            && __builtin_cpu_supports("popcnt");
        atomic_store_explicit(&available, known, memory_order_relaxed);
    }
    return known;
}

static inline uint64_t low_bits(size_t n) { return n >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << n) - 1; }

// Bytes 1, 2, ..., 64: lane i holds i + 1.
static const uint8_t lanes_from_one[64] __attribute__((aligned(64))) = {
     1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
    49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64,
};

// The flags of rows `first ..< first + count` (first a multiple of 64, count <= 64) as bits
// 0 ..< count: only the bytes holding them are read.
EK_TARGET static inline uint64_t load_flags(const uint8_t *flags, size_t first, size_t count) {
    __m512i bytes = _mm512_maskz_loadu_epi8(low_bits((count + 7) / 8), flags + first / 8);
    return (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(bytes)) & low_bits(count);
}

// Lane i of the result: how many of lanes 0 ... i are unflagged, without a scan. An unflagged
// lane's count is its rank among the unflagged lanes plus one, which expanding 1, 2, 3, ... onto
// them gives; a flagged lane's is i + 1 minus its rank among the flagged ones, found the same way.
EK_TARGET static inline __m512i unflagged_through(uint64_t unflagged, uint64_t live, __m512i lanes) {
    __m512i flagged_rank = _mm512_maskz_expand_epi8(~unflagged & live, lanes);
    __m512i counts = _mm512_sub_epi8(lanes, flagged_rank);
    return _mm512_mask_expand_epi8(counts, unflagged, lanes);
}

// Lane i takes table[k - 1], k the unflagged lanes among 0 ... i, or `before` where k is 0: the
// rows of a chunk from `table`, the values of its unflagged rows in order.
EK_TARGET static inline __m512i spread_rows(uint64_t unflagged, uint64_t live, __m512i lanes, __m512i table, uint8_t before) {
    __m512i counts = unflagged_through(unflagged, live, lanes);
    __m512i picked = _mm512_permutexvar_epi8(_mm512_sub_epi8(counts, _mm512_set1_epi8(1)), table);
    __mmask64 none = _mm512_cmpeq_epi8_mask(counts, _mm512_setzero_si512());
    return _mm512_mask_mov_epi8(picked, none, _mm512_set1_epi8((char)before));
}

// Lane `lane` of `x`.
EK_TARGET static inline uint8_t lane_of(__m512i x, size_t lane) {
    __m512i moved = _mm512_permutexvar_epi8(_mm512_set1_epi8((char)lane), x);
    return (uint8_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(moved));
}

// Values 64q ..< 64q + 64 of `width` planes of `stride` bytes (zero past the planes): lane i
// gets bit b of value 64q + i from bit i of the plane's 8 bytes at 8q, for each plane b.
EK_TARGET static inline __m512i value_chunk(const uint8_t *planes, size_t width, size_t stride, size_t q) {
    size_t start = 8 * q, left = stride > start ? stride - start : 0;
    __m512i values = _mm512_setzero_si512();
    if (left == 0) return values;
    __mmask64 bytes = low_bits(left < 8 ? left : 8);
    for (size_t b = 0; b < width; b++) {
        __m512i plane = _mm512_maskz_loadu_epi8(bytes, planes + b * stride + start);
        uint64_t bits = (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(plane));
        values = _mm512_mask_add_epi8(values, bits, values, _mm512_set1_epi8((char)(1u << b)));
    }
    return values;
}

// The largest of the 64 lanes of `x`.
EK_TARGET static inline uint8_t largest_lane(__m512i x) {
    __m256i m32 = _mm256_max_epu8(_mm512_castsi512_si256(x), _mm512_extracti64x4_epi64(x, 1));
    __m128i m = _mm_max_epu8(_mm256_castsi256_si128(m32), _mm256_extracti128_si256(m32, 1));
    m = _mm_max_epu8(m, _mm_srli_si128(m, 8));
    m = _mm_max_epu8(m, _mm_srli_si128(m, 4));
    m = _mm_max_epu8(m, _mm_srli_si128(m, 2));
    m = _mm_max_epu8(m, _mm_srli_si128(m, 1));
    return (uint8_t)_mm_cvtsi128_si32(m);
}

EK_TARGET uint8_t ek_load_planes_u8(const uint8_t *planes, size_t width, size_t count, uint8_t *out) {
    size_t stride = (count + 7) / 8;
    __m512i largest = _mm512_setzero_si512();
    for (size_t first = 0, q = 0; first < count; first += 64, q++) {
        __m512i values = value_chunk(planes, width, stride, q);
        largest = _mm512_max_epu8(largest, values);
        _mm512_mask_storeu_epi8(out + first, low_bits(count - first), values);
    }
    return largest_lane(largest);
}

EK_TARGET uint8_t ek_decode_repeats_u8(const uint8_t *flags, const uint8_t *planes, size_t width, size_t kept, size_t rows,
                                       uint8_t *out) {
    const __m512i lanes = _mm512_load_si512(lanes_from_one);
    const __m512i from_zero = _mm512_sub_epi8(lanes, _mm512_set1_epi8(1));
    size_t stride = (kept + 7) / 8, chunks = (kept + 63) / 64;
    // The value chunks `low` and the one after it, `high`, hold the next stored values: chunk
    // q of the planes, made once each (`made` so far), in order.
    size_t low = 0, made = 2;
    __m512i low_values = value_chunk(planes, width, stride, 0), high_values = value_chunk(planes, width, stride, 1);
    __m512i largest = _mm512_max_epu8(low_values, high_values);
    size_t used = 0;
    uint8_t before = 0;
    for (size_t first = 0; first < rows; first += 64) {
        size_t count = rows - first < 64 ? rows - first : 64;
        uint64_t live = low_bits(count);
        uint64_t flagged = load_flags(flags, first, count) & (first == 0 ? ~UINT64_C(1) : ~UINT64_C(0));
        uint64_t unflagged = ~flagged & live;
        while (used / 64 > low) {
            low++;
            low_values = high_values;
            high_values = made < chunks ? value_chunk(planes, width, stride, made) : _mm512_setzero_si512();
            largest = _mm512_max_epu8(largest, high_values);
            made++;
        }
        // The 64 stored values from `used` on, across the two chunks.
        __m512i from_used = _mm512_add_epi8(from_zero, _mm512_set1_epi8((char)(used % 64)));
        __m512i table = _mm512_permutex2var_epi8(low_values, from_used, high_values);
        __m512i rows_out = spread_rows(unflagged, live, lanes, table, before);
        _mm512_mask_storeu_epi8(out + first, live, rows_out);
        before = lane_of(rows_out, count - 1);
        used += (size_t)__builtin_popcountll(unflagged);
    }
    // Chunks no row reached (flags that disagree with `kept`) still count for the largest value.
    for (; made < chunks; made++) largest = _mm512_max_epu8(largest, value_chunk(planes, width, stride, made));
    return largest_lane(largest);
}

EK_TARGET void ek_fill_flagged_u8(const uint8_t *flags, size_t rows, uint8_t *out) {
    const __m512i lanes = _mm512_load_si512(lanes_from_one);
    uint8_t before = 0;
    for (size_t first = 0; first < rows; first += 64) {
        size_t count = rows - first < 64 ? rows - first : 64;
        uint64_t live = low_bits(count);
        uint64_t flagged = load_flags(flags, first, count) & (first == 0 ? ~UINT64_C(1) : ~UINT64_C(0));
        uint64_t unflagged = ~flagged & live;
        // The unflagged rows' values in order, spread as a repeat column's stored values are.
        __m512i kept = _mm512_maskz_compress_epi8(unflagged, _mm512_maskz_loadu_epi8(live, out + first));
        __m512i rows_out = spread_rows(unflagged, live, lanes, kept, before);
        _mm512_mask_storeu_epi8(out + first, live, rows_out);
        before = lane_of(rows_out, count - 1);
    }
}

#else

bool ek_vector_kernels_available(void) { return false; }
void ek_fill_flagged_u8(const uint8_t *flags, size_t rows, uint8_t *out) {
    (void)flags; (void)rows; (void)out;
    __builtin_trap();
}
uint8_t ek_load_planes_u8(const uint8_t *planes, size_t width, size_t count, uint8_t *out) {
    (void)planes; (void)width; (void)count; (void)out;
    __builtin_trap();
}
uint8_t ek_decode_repeats_u8(const uint8_t *flags, const uint8_t *planes, size_t width, size_t kept, size_t rows,
                             uint8_t *out) {
    (void)flags; (void)planes; (void)width; (void)kept; (void)rows; (void)out;
    __builtin_trap();
}

#endif

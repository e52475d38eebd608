#include "CVectorKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define EK_TARGET __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt")))

bool ek_vector_kernels_available(void) {
    // EXPERT_ARCHIVE_VECTOR_KERNELS=0 turns them off: to compare, or to rule them out.
    const char *setting = getenv("EXPERT_ARCHIVE_VECTOR_KERNELS");
    if (setting != NULL && strcmp(setting, "0") == 0) return false;
    // The builtins check the OS's XSAVE state too (XCR0), not only CPUID.
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2")
        && __builtin_cpu_supports("popcnt");
}

static inline uint64_t low_bits(size_t n) { return n >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << n) - 1; }

// Bytes 1, 2, ..., 64: lane i holds i + 1.
static const uint8_t lanes_from_one[64] __attribute__((aligned(64))) = {
     1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
    49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64,
};

// The flags of rows `first ..< first + count` (first a multiple of 8, count <= 64) as bits
// 0 ..< count: only the bytes holding them are read.
EK_TARGET static inline uint64_t load_flags(const uint8_t *flags, size_t first, size_t count) {
    __m512i bytes = _mm512_maskz_loadu_epi8(low_bits((count + 7) / 8), flags + first / 8);
    return (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(bytes)) & low_bits(count);
}

// Lane i takes table[k - 1], k the unflagged lanes among 0 ... i, or `before` where k is 0: the
// rows of a chunk from `table`, the values of its unflagged rows in order. `lanes` holds 1, 2,
// 3, ...; k comes without a scan: an unflagged lane's is its rank among the unflagged lanes plus
// one, which expanding `lanes` onto them gives, and a flagged lane's is i + 1 minus its rank
// among the flagged ones, found the same way.
EK_TARGET static inline __m512i spread_rows(uint64_t unflagged, uint64_t live, __m512i lanes, __m512i table, uint8_t before) {
    __m512i flagged_rank = _mm512_maskz_expand_epi8(~unflagged & live, lanes);
    __m512i counts = _mm512_mask_expand_epi8(_mm512_sub_epi8(lanes, flagged_rank), unflagged, lanes);
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

// The same kernels for 16-bit ids (9 to 16 planes), 32 rows at a time (spread_rows16 as spread_rows).

static const uint16_t shorts_from_one[32] __attribute__((aligned(64))) = {
     1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
};

EK_TARGET static inline __m512i spread_rows16(uint32_t unflagged, uint32_t live, __m512i lanes, __m512i table, uint16_t before) {
    __m512i flagged_rank = _mm512_maskz_expand_epi16(~unflagged & live, lanes);
    __m512i counts = _mm512_mask_expand_epi16(_mm512_sub_epi16(lanes, flagged_rank), unflagged, lanes);
    __m512i picked = _mm512_permutexvar_epi16(_mm512_sub_epi16(counts, _mm512_set1_epi16(1)), table);
    __mmask32 none = _mm512_cmpeq_epi16_mask(counts, _mm512_setzero_si512());
    return _mm512_mask_mov_epi16(picked, none, _mm512_set1_epi16((short)before));
}

EK_TARGET static inline uint16_t lane_of16(__m512i x, size_t lane) {
    __m512i moved = _mm512_permutexvar_epi16(_mm512_set1_epi16((short)lane), x);
    return (uint16_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(moved));
}

// Values 32q ..< 32q + 32 of `width` planes of `stride` bytes (zero past the planes), from the
// 4 bytes of each plane at 4q.
EK_TARGET static inline __m512i value_chunk16(const uint8_t *planes, size_t width, size_t stride, size_t q) {
    size_t start = 4 * q, left = stride > start ? stride - start : 0;
    __m512i values = _mm512_setzero_si512();
    if (left == 0) return values;
    __mmask64 bytes = low_bits(left < 4 ? left : 4);
    for (size_t b = 0; b < width; b++) {
        __m512i plane = _mm512_maskz_loadu_epi8(bytes, planes + b * stride + start);
        uint32_t bits = (uint32_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(plane));
        values = _mm512_mask_add_epi16(values, bits, values, _mm512_set1_epi16((short)(1u << b)));
    }
    return values;
}

EK_TARGET static inline uint16_t largest_lane16(__m512i x) {
    __m256i m32 = _mm256_max_epu16(_mm512_castsi512_si256(x), _mm512_extracti64x4_epi64(x, 1));
    __m128i m = _mm_max_epu16(_mm256_castsi256_si128(m32), _mm256_extracti128_si256(m32, 1));
    m = _mm_max_epu16(m, _mm_srli_si128(m, 8));
    m = _mm_max_epu16(m, _mm_srli_si128(m, 4));
    m = _mm_max_epu16(m, _mm_srli_si128(m, 2));
    return (uint16_t)_mm_cvtsi128_si32(m);
}

EK_TARGET uint16_t ek_load_planes_u16(const uint8_t *planes, size_t width, size_t count, uint16_t *out) {
    size_t stride = (count + 7) / 8;
    __m512i largest = _mm512_setzero_si512();
    for (size_t first = 0, q = 0; first < count; first += 32, q++) {
        __m512i values = value_chunk16(planes, width, stride, q);
        largest = _mm512_max_epu16(largest, values);
        _mm512_mask_storeu_epi16(out + first, (__mmask32)low_bits(count - first), values);
    }
    return largest_lane16(largest);
}

EK_TARGET uint16_t ek_decode_repeats_u16(const uint8_t *flags, const uint8_t *planes, size_t width, size_t kept, size_t rows,
                                         uint16_t *out) {
    const __m512i lanes = _mm512_load_si512(shorts_from_one);
    const __m512i from_zero = _mm512_sub_epi16(lanes, _mm512_set1_epi16(1));
    size_t stride = (kept + 7) / 8, chunks = (kept + 31) / 32;
    size_t low = 0, made = 2;
    __m512i low_values = value_chunk16(planes, width, stride, 0), high_values = value_chunk16(planes, width, stride, 1);
    __m512i largest = _mm512_max_epu16(low_values, high_values);
    size_t used = 0;
    uint16_t before = 0;
    for (size_t first = 0; first < rows; first += 32) {
        size_t count = rows - first < 32 ? rows - first : 32;
        uint32_t live = (uint32_t)low_bits(count);
        uint32_t flagged = (uint32_t)load_flags(flags, first, count) & (first == 0 ? ~UINT32_C(1) : ~UINT32_C(0));
        uint32_t unflagged = ~flagged & live;
        while (used / 32 > low) {
            low++;
            low_values = high_values;
            high_values = made < chunks ? value_chunk16(planes, width, stride, made) : _mm512_setzero_si512();
            largest = _mm512_max_epu16(largest, high_values);
            made++;
        }
        __m512i from_used = _mm512_add_epi16(from_zero, _mm512_set1_epi16((short)(used % 32)));
        __m512i table = _mm512_permutex2var_epi16(low_values, from_used, high_values);
        __m512i rows_out = spread_rows16(unflagged, live, lanes, table, before);
        _mm512_mask_storeu_epi16(out + first, live, rows_out);
        before = lane_of16(rows_out, count - 1);
        used += (size_t)__builtin_popcount(unflagged);
    }
    for (; made < chunks; made++) largest = _mm512_max_epu16(largest, value_chunk16(planes, width, stride, made));
    return largest_lane16(largest);
}

EK_TARGET void ek_fill_flagged_u16(const uint8_t *flags, size_t rows, uint16_t *out) {
    const __m512i lanes = _mm512_load_si512(shorts_from_one);
    uint16_t before = 0;
    for (size_t first = 0; first < rows; first += 32) {
        size_t count = rows - first < 32 ? rows - first : 32;
        uint32_t live = (uint32_t)low_bits(count);
        uint32_t flagged = (uint32_t)load_flags(flags, first, count) & (first == 0 ? ~UINT32_C(1) : ~UINT32_C(0));
        uint32_t unflagged = ~flagged & live;
        __m512i kept = _mm512_maskz_compress_epi16(unflagged, _mm512_maskz_loadu_epi16(live, out + first));
        __m512i rows_out = spread_rows16(unflagged, live, lanes, kept, before);
        _mm512_mask_storeu_epi16(out + first, live, rows_out);
        before = lane_of16(rows_out, count - 1);
    }
}

// Set bits among the first `bits` bits at `p` (bit i is bit i % 8 of byte i / 8): a flag
// bitmap's padding bits are not counted, as the Swift counters do not (PrefixBitCounter).
EK_TARGET static inline size_t ones(const uint8_t *p, size_t bits) {
    size_t total = 0, i = 0, bytes = (bits + 7) / 8;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t word;
        __builtin_memcpy(&word, p + i, 8);
        if (i + 8 == bytes) word &= low_bits(bits - 8 * i);
        total += (size_t)__builtin_popcountll(word);
    }
    if (i < bytes) {
        __m512i tail = _mm512_maskz_loadu_epi8(low_bits(bytes - i), p + i);
        uint64_t word = (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(tail)) & low_bits(bits - 8 * i);
        total += (size_t)__builtin_popcountll(word);
    }
    return total;
}

EK_TARGET size_t ek_measure_columns(const uint8_t *payload, size_t size, const uint8_t *codes, size_t count, size_t cursor,
                                    size_t rows, size_t width, size_t *constants) {
    size_t plane = (rows + 7) / 8, planes = width * plane, constant = 0;
    for (size_t c = 0; c < count; c++) {
        switch (codes[c]) {
        case 1: // constant: no body
            constant++;
            break;
        case 0: case 2: // plain, slot delta: `width` planes of every row
            if (size - cursor < planes) return SIZE_MAX;
            cursor += planes;
            break;
        default: { // repeat codings: the flag bitmap, then planes of the unflagged rows
            if (size - cursor < plane) return SIZE_MAX;
            size_t kept = rows - ones(payload + cursor, rows), values = width * ((kept + 7) / 8);
            if (size - cursor - plane < values) return SIZE_MAX;
            cursor += plane + values;
        }
        }
    }
    *constants = constant;
    return cursor;
}

// XXH32 (the xxHash specification, seed 0).
enum { prime1 = 0x9E3779B1u, prime2 = 0x85EBCA77u, prime3 = 0xC2B2AE3Du, prime4 = 0x27D4EB2Fu, prime5 = 0x165667B1u };

static inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static inline uint32_t read32(const uint8_t *p) {
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v; // x86 is little-endian, as XXH32 reads its input
}

// The hash of `length` bytes at `p` whose first `done` bytes (a multiple of 16, 0 when under
// 16 bytes) went through the four lanes `v`.
static uint32_t xxh32_finish(const uint32_t v[4], const uint8_t *p, size_t done, size_t length) {
    uint32_t v1 = v[0], v2 = v[1], v3 = v[2], v4 = v[3];
    size_t offset = done;
    uint32_t h;
    if (length >= 16) {
        for (; offset + 16 <= length; offset += 16) {
            v1 = rotl32(v1 + read32(p + offset) * prime2, 13) * prime1;
            v2 = rotl32(v2 + read32(p + offset + 4) * prime2, 13) * prime1;
            v3 = rotl32(v3 + read32(p + offset + 8) * prime2, 13) * prime1;
            v4 = rotl32(v4 + read32(p + offset + 12) * prime2, 13) * prime1;
        }
        h = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18);
    } else {
        h = prime5;
    }
    h += (uint32_t)length;
    for (; offset + 4 <= length; offset += 4) h = rotl32(h + read32(p + offset) * prime3, 17) * prime4;
    for (; offset < length; offset++) h = rotl32(h + p[offset] * prime5, 11) * prime1;
    h ^= h >> 15; h *= prime2;
    h ^= h >> 13; h *= prime3;
    h ^= h >> 16;
    return h;
}

// One XXH32 round on every lane of `v`: four buffers' four lanes each.
EK_TARGET static inline __m512i xxh32_round(__m512i v, __m512i input) {
    const __m512i p1 = _mm512_set1_epi32((int)prime1), p2 = _mm512_set1_epi32((int)prime2);
    return _mm512_mullo_epi32(_mm512_rol_epi32(_mm512_add_epi32(v, _mm512_mullo_epi32(input, p2)), 13), p1);
}

// Stripe `s` of four buffers, one per 128-bit quarter; a buffer with no stripe `s` gives zeros
// and its quarter's bit in `active` is clear.
EK_TARGET static inline __m512i stripe(const uint8_t *const data[4], const size_t stripes[4], size_t s, __mmask16 *active) {
    __m512i input = _mm512_setzero_si512();
    __mmask16 live = 0;
#define EK_QUARTER(k) \
    if (s < stripes[k]) { \
        input = _mm512_inserti32x4(input, _mm_loadu_si128((const __m128i *)(data[k] + 16 * s)), k); \
        live |= (__mmask16)(0xF << (4 * k)); \
    }
    EK_QUARTER(0) EK_QUARTER(1) EK_QUARTER(2) EK_QUARTER(3)
#undef EK_QUARTER
    *active = live;
    return input;
}

// Eight buffers in two registers of four: each register's rounds are one chain of dependent
// multiplies, and two chains leave the multiplier less idle when the frames are in cache (from
// memory, the loads set the pace). Every stripe of every buffer runs here (a finished buffer's
// lanes are left as they are, so frames of unequal lengths stay in the vectors); each buffer's
// tail of under 16 bytes and its final mix run alone.
EK_TARGET void ek_xxh32_x8(const uint8_t *const data[8], const size_t lengths[8], uint32_t hashes[8]) {
    size_t stripes[8], common = SIZE_MAX, most = 0;
    for (int k = 0; k < 8; k++) {
        stripes[k] = lengths[k] / 16;
        if (stripes[k] < common) common = stripes[k];
        if (stripes[k] > most) most = stripes[k];
    }
    const __m512i start = _mm512_setr_epi32((int)(prime1 + prime2), (int)prime2, 0, (int)(0u - prime1),
                                            (int)(prime1 + prime2), (int)prime2, 0, (int)(0u - prime1),
                                            (int)(prime1 + prime2), (int)prime2, 0, (int)(0u - prime1),
                                            (int)(prime1 + prime2), (int)prime2, 0, (int)(0u - prime1));
    __m512i low = start, high = start;
    size_t s = 0;
    for (; s < common; s++) {
        __mmask16 all;
        low = xxh32_round(low, stripe(data, stripes, s, &all));
        high = xxh32_round(high, stripe(data + 4, stripes + 4, s, &all));
    }
    for (; s < most; s++) {
        __mmask16 active_low, active_high;
        __m512i input_low = stripe(data, stripes, s, &active_low), input_high = stripe(data + 4, stripes + 4, s, &active_high);
        low = _mm512_mask_mov_epi32(low, active_low, xxh32_round(low, input_low));
        high = _mm512_mask_mov_epi32(high, active_high, xxh32_round(high, input_high));
    }
    uint32_t lanes[32] __attribute__((aligned(64)));
    _mm512_store_si512(lanes, low);
    _mm512_store_si512(lanes + 16, high);
    for (int k = 0; k < 8; k++) hashes[k] = xxh32_finish(lanes + 4 * k, data[k], 16 * stripes[k], lengths[k]);
}

#else

bool ek_vector_kernels_available(void) { return false; }
void ek_xxh32_x8(const uint8_t *const data[8], const size_t lengths[8], uint32_t hashes[8]) {
    (void)data; (void)lengths; (void)hashes;
    __builtin_trap();
}
uint16_t ek_load_planes_u16(const uint8_t *planes, size_t width, size_t count, uint16_t *out) {
    (void)planes; (void)width; (void)count; (void)out;
    __builtin_trap();
}
uint16_t ek_decode_repeats_u16(const uint8_t *flags, const uint8_t *planes, size_t width, size_t kept, size_t rows,
                               uint16_t *out) {
    (void)flags; (void)planes; (void)width; (void)kept; (void)rows; (void)out;
    __builtin_trap();
}
void ek_fill_flagged_u16(const uint8_t *flags, size_t rows, uint16_t *out) {
    (void)flags; (void)rows; (void)out;
    __builtin_trap();
}
size_t ek_measure_columns(const uint8_t *payload, size_t size, const uint8_t *codes, size_t count, size_t cursor,
                          size_t rows, size_t width, size_t *constants) {
    (void)payload; (void)size; (void)codes; (void)count; (void)cursor; (void)rows; (void)width; (void)constants;
    __builtin_trap();
}
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

/* The C interface, compiled against its header alone: every call, every dtype, every error code.
 * usage: test_expert_archive DIRECTORY   (a scratch directory the test may fill)
 * Prints one line per failed check and exits 1 if any failed. */
#include "expert_archive.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
static char dir[1024];

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            failures++;                                                     \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

#define LAYERS 4
#define TOPK 2
#define EXPERTS 200
#define PER_ROW (LAYERS * TOPK)

static const char *path_of(const char *name) {
    static char paths[8][1100];
    static int next = 0;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

/* Row r, id i: a value in [0, EXPERTS) that differs by row, layer and slot. */
static int64_t id_at(int64_t row, int i) { return (row * 7 + i * 13) % EXPERTS; }

static int64_t *rows_i64(int64_t first, int64_t count) {
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)(count * PER_ROW));
    for (int64_t r = 0; r < count; r++)
        for (int i = 0; i < PER_ROW; i++) rows[r * PER_ROW + i] = id_at(first + r, i);
    return rows;
}

static unsigned char *file_bytes(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc((size_t)*size + 1);
    if (fread(bytes, 1, (size_t)*size, f) != (size_t)*size) *size = -1;
    fclose(f);
    return bytes;
}

static int same_file(const unsigned char *before, long before_size, const char *path) {
    long size;
    unsigned char *now = file_bytes(path, &size);
    int same = now && size == before_size && memcmp(now, before, (size_t)size) == 0;
    free(now);
    return same;
}

/* Converts `count` int64 ids to `dtype` in `out`. */
static void convert(const int64_t *ids, size_t count, ea_dtype dtype, void *out) {
    for (size_t i = 0; i < count; i++) {
        switch (dtype) {
        case EA_U8: ((uint8_t *)out)[i] = (uint8_t)ids[i]; break;
        case EA_I8: ((int8_t *)out)[i] = (int8_t)ids[i]; break;
        case EA_U16: ((uint16_t *)out)[i] = (uint16_t)ids[i]; break;
        case EA_I16: ((int16_t *)out)[i] = (int16_t)ids[i]; break;
        case EA_U32: ((uint32_t *)out)[i] = (uint32_t)ids[i]; break;
        case EA_I32: ((int32_t *)out)[i] = (int32_t)ids[i]; break;
        case EA_U64: ((uint64_t *)out)[i] = (uint64_t)ids[i]; break;
        case EA_I64: ((int64_t *)out)[i] = ids[i]; break;
        }
    }
}

static int64_t value_at(const void *ids, size_t i, ea_dtype dtype) {
    switch (dtype) {
    case EA_U8: return ((const uint8_t *)ids)[i];
    case EA_I8: return ((const int8_t *)ids)[i];
    case EA_U16: return ((const uint16_t *)ids)[i];
    case EA_I16: return ((const int16_t *)ids)[i];
    case EA_U32: return ((const uint32_t *)ids)[i];
    case EA_I32: return ((const int32_t *)ids)[i];
    case EA_U64: return (int64_t)((const uint64_t *)ids)[i];
    case EA_I64: return ((const int64_t *)ids)[i];
    }
    return -1;
}

static const ea_dtype wide_dtypes[] = {EA_U8, EA_U16, EA_I16, EA_U32, EA_I32, EA_U64, EA_I64};

static void test_round_trip_every_dtype(void) {
    /* Input dtypes: each appends its own batch; EXPERTS = 200 fits u8 but not i8. */
    const char *path = path_of("dtypes.moe");
    const char *keys[] = {"model", "quote\"and\\slash"};
    const char *values[] = {"Qwen3-30B-A3B", "line\nbreak \xc3\xa9"};
    const int32_t dense[] = {1};
    ea_writer *w = NULL;
    ea_error err;
    ea_status s = ea_writer_create(path, LAYERS, TOPK, EXPERTS, dense, 1, EA_CODEC_FAST, 0, keys, values, 2, 0, &w, &err);
    CHECK(s == EA_OK && w, "create: %d %s", s, err.message);
    int64_t position = 0;
    for (size_t d = 0; d < sizeof wide_dtypes / sizeof wide_dtypes[0]; d++) {
        int64_t *ids = rows_i64(position, 5);
        void *typed = malloc(5 * PER_ROW * 8);
        convert(ids, 5 * PER_ROW, wide_dtypes[d], typed);
        ea_append_result res;
        s = ea_writer_append(w, typed, wide_dtypes[d], 5, -1, 0, &res, &err);
        CHECK(s == EA_OK && res.appended == 5 && res.skipped == 0 && res.differing == -1,
              "append dtype %d: %d %s", wide_dtypes[d], s, err.message);
        position += 5;
        free(ids);
        free(typed);
    }
    CHECK(ea_writer_count(w) == position, "count %lld", (long long)ea_writer_count(w));
    /* The writer reads its buffered rows. */
    int32_t from_writer[PER_ROW];
    s = ea_writer_read(w, 3, 4, 0, LAYERS, EA_I32, from_writer, PER_ROW, &err);
    CHECK(s == EA_OK, "writer read: %s", err.message);
    for (int i = 0; i < PER_ROW; i++)
        CHECK(from_writer[i] == (i / TOPK == 1 ? 0 : id_at(3, i)), "writer row 3 id %d: %d", i, from_writer[i]);
    /* Nothing flushed yet: a reader sees no rows. */
    ea_reader *r = NULL;
    s = ea_reader_open(path, &r, &err);
    CHECK(s == EA_OK && ea_reader_count(r) == 0, "reader before flush: %d %s", s, err.message);
    CHECK(ea_writer_flush(w, &err) == EA_OK, "flush: %s", err.message);
    int64_t visible = -1;
    CHECK(ea_reader_refresh(r, &visible, &err) == EA_OK && visible == position, "refresh: %lld", (long long)visible);
    CHECK(ea_writer_close(w, &err) == EA_OK, "close: %s", err.message);
    ea_writer_free(w);

    ea_schema schema;
    CHECK(ea_reader_schema(r, &schema, &err) == EA_OK, "schema: %s", err.message);
    CHECK(schema.layers == LAYERS && schema.topk == TOPK && schema.experts == EXPERTS && schema.bits == 8 &&
              schema.dense_count == 1 && schema.codec == EA_CODEC_FAST && schema.block_rows > 0,
          "schema fields %d %d %d %d %d %d", schema.layers, schema.topk, schema.experts, schema.bits,
          schema.dense_count, schema.codec);
    int32_t dense_out[4] = {-1, -1, -1, -1};
    CHECK(ea_reader_dense_layers(r, dense_out, 4, &err) == EA_OK && dense_out[0] == 1 && dense_out[1] == -1,
          "dense layers %d %d", dense_out[0], dense_out[1]);
    size_t length = 0;
    CHECK(ea_reader_metadata(r, NULL, 0, &length, &err) == EA_OK && length > 0, "metadata length %zu", length);
    char *json = malloc(length + 1);
    CHECK(ea_reader_metadata(r, json, length + 1, &length, &err) == EA_OK, "metadata: %s", err.message);
    CHECK(strcmp(json, "{\"model\": \"Qwen3-30B-A3B\", \"quote\\\"and\\\\slash\": \"line\\nbreak \xc3\xa9\"}") == 0,
          "metadata json %s", json);
    free(json);

    /* Output dtypes, whole rows and every layer range. */
    int64_t *expected = rows_i64(0, position);
    for (int64_t row = 0; row < position; row++)
        for (int slot = 0; slot < TOPK; slot++) expected[row * PER_ROW + 1 * TOPK + slot] = 0; /* dense layer 1 */
    for (size_t d = 0; d < sizeof wide_dtypes / sizeof wide_dtypes[0]; d++) {
        ea_dtype dtype = wide_dtypes[d];
        for (int a = 0; a <= LAYERS; a++) {
            for (int b = a; b <= LAYERS; b++) {
                int64_t start = 2, stop = position - 3;
                size_t count = (size_t)((stop - start) * (b - a) * TOPK);
                void *out = malloc(count * 8 + 8);
                s = ea_reader_read(r, start, stop, a, b, dtype, out, count, &err);
                CHECK(s == EA_OK, "read dtype %d layers %d..<%d: %s", dtype, a, b, err.message);
                int wrong = 0;
                for (int64_t row = start; row < stop; row++)
                    for (int l = a; l < b; l++)
                        for (int k = 0; k < TOPK; k++) {
                            size_t at = (size_t)(((row - start) * (b - a) + (l - a)) * TOPK + k);
                            wrong += value_at(out, at, dtype) != expected[row * PER_ROW + l * TOPK + k];
                        }
                CHECK(wrong == 0, "dtype %d layers %d..<%d: %d ids differ", dtype, a, b, wrong);
                free(out);
            }
        }
    }
    free(expected);

    /* Errors of reads: a dtype too narrow, a bad layer range, a wrong output size, rows past the end. */
    int8_t narrow[PER_ROW];
    CHECK(ea_reader_read(r, 0, 1, 0, LAYERS, EA_I8, narrow, PER_ROW, &err) == EA_ERR_INVALID_ARGUMENT &&
              err.code == EA_ERR_INVALID_ARGUMENT && strstr(err.message, "cannot hold expert ids up to 199"),
          "i8 output: %d %s", err.code, err.message);
    int32_t out[PER_ROW * 2];
    CHECK(ea_reader_read(r, 0, 1, 2, 5, EA_I32, out, 3 * TOPK, &err) == EA_ERR_INVALID_ARGUMENT, "layers past the end");
    CHECK(ea_reader_read(r, 0, 1, 0, LAYERS, EA_I32, out, PER_ROW + 1, &err) == EA_ERR_INVALID_ARGUMENT, "output size");
    CHECK(ea_reader_read(r, 0, 1, 0, LAYERS, 99, out, PER_ROW, &err) == EA_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "unknown dtype code 99"), "unknown dtype: %s", err.message);
    CHECK(ea_reader_read(r, position, position + 2, 0, LAYERS, EA_I32, out, 2 * PER_ROW, &err) == EA_ERR_OUT_OF_RANGE &&
              strstr(err.message, "archive holds"), "past the end: %d %s", err.code, err.message);
    CHECK(ea_reader_read(r, 0, 1, 0, LAYERS, EA_I32, (char *)out + 1, PER_ROW, &err) == EA_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "aligned"), "misaligned output: %s", err.message);
    size_t problems = 99;
    CHECK(ea_reader_verify(r, &problems, &err) == EA_OK && problems == 0, "verify: %zu", problems);
    ea_reader_free(r);
}

static void test_append_rules(void) {
    /* LMDeploy #4599's scenarios: the stored rows are kept, the uncovered tail appended, a gap refused. */
    const char *path = path_of("rules.moe");
    ea_writer *w = NULL;
    ea_error err;
    CHECK(ea_writer_create(path, LAYERS, TOPK, EXPERTS, NULL, 0, EA_CODEC_COMPACT, 16, NULL, NULL, 0, 0, &w, &err) == EA_OK,
          "create: %s", err.message);
    int64_t *a = rows_i64(0, 3), *b = rows_i64(100, 7);
    ea_append_result res;
    CHECK(ea_writer_append(w, a, EA_I64, 3, 0, 0, &res, &err) == EA_OK && res.appended == 3, "rows(3)@0");
    CHECK(ea_writer_append(w, a, EA_I64, 3, 3, 0, &res, &err) == EA_OK && res.appended == 3, "rows(3)@3");
    CHECK(ea_writer_append(w, b, EA_I64, 7, 0, 1, &res, &err) == EA_OK && res.appended == 1 && res.skipped == 6 &&
              res.differing == 6, "rows(7)@0: %lld %lld %lld", (long long)res.appended, (long long)res.skipped,
          (long long)res.differing);
    CHECK(ea_writer_append(w, a, EA_I64, 3, 0, 1, &res, &err) == EA_OK && res.appended == 0 && res.skipped == 3 &&
              res.differing == 0, "covered batch");
    /* Compared overlaps that start past the flushed rows (all still buffered). */
    CHECK(ea_writer_append(w, a + PER_ROW, EA_I64, 2, 1, 1, &res, &err) == EA_OK && res.skipped == 2 && res.differing == 0,
          "buffered overlap: %s", err.message);
    CHECK(ea_writer_append(w, b + 4 * PER_ROW, EA_I64, 3, 4, 1, &res, &err) == EA_OK && res.skipped == 3 && res.differing == 2,
          "buffered overlap, two differ: %lld", (long long)res.differing);
    CHECK(ea_writer_sync(w, &err) == EA_OK, "sync: %s", err.message);
    long size;
    unsigned char *before = file_bytes(path, &size);
    /* A gap: refused with both numbers, nothing stored. */
    CHECK(ea_writer_append(w, a, EA_I64, 2, 9, 0, &res, &err) == EA_ERR_GAP && err.code == EA_ERR_GAP &&
              strstr(err.message, "starts at position 9") && strstr(err.message, "holds 7 rows"),
          "gap: %d %s", err.code, err.message);
    /* An id out of range and a negative id: schema errors naming the position. */
    int64_t bad[PER_ROW * 2];
    memcpy(bad, a, sizeof bad);
    bad[PER_ROW + 3] = EXPERTS;
    CHECK(ea_writer_append(w, bad, EA_I64, 2, 7, 0, &res, &err) == EA_ERR_SCHEMA && strstr(err.message, "200"),
          "id out of range: %d %s", err.code, err.message);
    bad[PER_ROW + 3] = -1;
    CHECK(ea_writer_append(w, bad, EA_I64, 2, 7, 0, &res, &err) == EA_ERR_SCHEMA, "negative id: %s", err.message);
    CHECK(ea_writer_append(w, a, 0, 1, 7, 0, &res, &err) == EA_ERR_INVALID_ARGUMENT, "unknown dtype");
    CHECK(ea_writer_append(w, NULL, EA_I64, 1, 7, 0, &res, &err) == EA_ERR_INVALID_ARGUMENT, "NULL rows");
    CHECK(ea_writer_append(w, a, EA_I64, 1, -5, 0, &res, &err) == EA_ERR_INVALID_ARGUMENT, "negative start");
    CHECK(ea_writer_truncate(w, 8, &err) == EA_ERR_INVALID_ARGUMENT, "truncate past the end: %s", err.message);
    CHECK(ea_writer_flush(w, &err) == EA_OK, "flush");
    CHECK(ea_writer_count(w) == 7, "count after refusals %lld", (long long)ea_writer_count(w));
    CHECK(same_file(before, size, path), "a refused call changed the file");
    free(before);

    /* A second writer is refused while the first holds the archive; the reader sees 7 rows. */
    ea_writer *second = NULL;
    CHECK(ea_writer_open(path, &second, &err) == EA_ERR_LOCKED && second == NULL && strstr(err.message, "another writer"),
          "locked: %d %s", err.code, err.message);
    ea_reader *r = NULL;
    CHECK(ea_reader_open(path, &r, &err) == EA_OK && ea_reader_count(r) == 7, "reader count");
    int64_t got[7 * PER_ROW];
    CHECK(ea_reader_read(r, 0, 7, 0, LAYERS, EA_I64, got, 7 * PER_ROW, &err) == EA_OK, "read: %s", err.message);
    CHECK(memcmp(got, a, sizeof(int64_t) * 3 * PER_ROW) == 0 && memcmp(got + 3 * PER_ROW, a, sizeof(int64_t) * 3 * PER_ROW) == 0 &&
              memcmp(got + 6 * PER_ROW, b + 6 * PER_ROW, sizeof(int64_t) * PER_ROW) == 0, "rows after the scenario");

    /* Truncate is a rollback; the reader sees it at its refresh. */
    CHECK(ea_writer_truncate(w, 4, &err) == EA_OK && ea_writer_count(w) == 4, "truncate: %s", err.message);
    int64_t visible = -1;
    CHECK(ea_reader_refresh(r, &visible, &err) == EA_OK && visible == 4, "refresh after truncate: %lld", (long long)visible);
    CHECK(ea_writer_close(w, &err) == EA_OK, "close");
    CHECK(ea_writer_append(w, a, EA_I64, 1, -1, 0, &res, &err) == EA_ERR_CLOSED && strstr(err.message, "closed"),
          "append after close: %d %s", err.code, err.message);
    CHECK(ea_writer_count(w) == 4, "count after close");
    ea_writer_free(w);

    /* Resume: open continues at the row count. */
    CHECK(ea_writer_open(path, &w, &err) == EA_OK && ea_writer_count(w) == 4, "open: %s", err.message);
    ea_schema schema;
    CHECK(ea_writer_schema(w, &schema, &err) == EA_OK && schema.codec == EA_CODEC_COMPACT && schema.block_rows == 16,
          "writer schema");
    ea_writer_free(w); /* closes */
    free(a);
    free(b);
    ea_reader_free(r);

    /* create over an existing file; a bad schema. */
    CHECK(ea_writer_create(path, LAYERS, TOPK, EXPERTS, NULL, 0, EA_CODEC_FAST, 0, NULL, NULL, 0, 0, &w, &err) == EA_ERR_EXISTS &&
              strstr(err.message, "already exists"), "exists: %d %s", err.code, err.message);
    CHECK(ea_writer_create(path_of("bad.moe"), 0, TOPK, EXPERTS, NULL, 0, EA_CODEC_FAST, 0, NULL, NULL, 0, 0, &w, &err) == EA_ERR_SCHEMA &&
              strstr(err.message, "layers"), "bad schema: %d %s", err.code, err.message);
    CHECK(ea_writer_create(path_of("bad.moe"), LAYERS, TOPK, EXPERTS, NULL, 0, 7, 0, NULL, NULL, 0, 0, &w, &err) == EA_ERR_INVALID_ARGUMENT,
          "bad codec");
    CHECK(ea_writer_create(path, LAYERS, TOPK, 300, NULL, 0, EA_CODEC_FAST, 0, NULL, NULL, 0, 1, &w, &err) == EA_OK,
          "overwrite: %s", err.message);
    ea_writer_free(w);
}

static void test_damage_and_io(void) {
    ea_reader *r = NULL;
    ea_error err;
    const char *missing = path_of("missing.moe");
    CHECK(ea_reader_open(missing, &r, &err) == EA_ERR_IO && err.sys_errno == 2 && strstr(err.message, "missing.moe"),
          "missing file: %d errno %d %s", err.code, err.sys_errno, err.message);
    const char *garbage = path_of("garbage.moe");
    FILE *f = fopen(garbage, "wb");
    for (int i = 0; i < 4096; i++) fputc(i * 31, f);
    fclose(f);
    CHECK(ea_reader_open(garbage, &r, &err) == EA_ERR_DAMAGED && strstr(err.message, "damaged"), "garbage: %d %s", err.code, err.message);

    /* A flipped byte inside a block: verify names it. */
    const char *path = path_of("flip.moe");
    ea_writer *w = NULL;
    CHECK(ea_writer_create(path, LAYERS, TOPK, EXPERTS, NULL, 0, EA_CODEC_FAST, 64, NULL, NULL, 0, 0, &w, &err) == EA_OK, "create");
    int64_t *rows = rows_i64(0, 256);
    CHECK(ea_writer_append(w, rows, EA_I64, 256, 0, 0, NULL, &err) == EA_OK, "append: %s", err.message);
    CHECK(ea_writer_close(w, &err) == EA_OK, "close");
    ea_writer_free(w);
    free(rows);
    long size;
    unsigned char *bytes = file_bytes(path, &size);
    bytes[size / 2] ^= 0x10;
    f = fopen(path, "wb");
    fwrite(bytes, 1, (size_t)size, f);
    fclose(f);
    free(bytes);
    if (ea_reader_open(path, &r, &err) == EA_OK) {
        size_t problems = 0;
        CHECK(ea_reader_verify(r, &problems, &err) == EA_OK && problems >= 1, "verify found %zu", problems);
        size_t length = 0;
        char text[EA_MESSAGE_BYTES];
        CHECK(ea_reader_problem(r, 0, text, sizeof text, &length, &err) == EA_OK && length > 0 && strstr(text, "damaged"),
              "problem text: %s", text);
        CHECK(ea_reader_problem(r, problems, text, sizeof text, &length, &err) == EA_ERR_INVALID_ARGUMENT, "problem index");
        ea_reader_free(r);
    } else {
        CHECK(err.code == EA_ERR_DAMAGED, "open of a flipped file: %d %s", err.code, err.message);
    }
    CHECK(ea_reader_count(NULL) == -1 && ea_writer_count(NULL) == -1, "NULL handles");
    CHECK(ea_reader_refresh(NULL, NULL, &err) == EA_ERR_INVALID_ARGUMENT, "NULL reader");
    CHECK(ea_writer_flush(NULL, NULL) == EA_ERR_INVALID_ARGUMENT, "NULL error pointer is allowed");
    ea_reader_free(NULL);
    ea_writer_free(NULL);
}

struct shared_read {
    ea_reader *reader;
    int64_t rows;
    int wrong;
};

static void *read_all(void *arg) {
    struct shared_read *job = arg;
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(job->rows * PER_ROW));
    ea_error err;
    for (int round = 0; round < 20; round++) {
        if (ea_reader_read(job->reader, 0, job->rows, 0, LAYERS, EA_I32, out, (size_t)(job->rows * PER_ROW), &err) != EA_OK) {
            job->wrong++;
            continue;
        }
        for (int64_t i = 0; i < job->rows * PER_ROW; i++) job->wrong += out[i] != id_at(i / PER_ROW, (int)(i % PER_ROW));
    }
    free(out);
    return NULL;
}

static void test_one_reader_shared_by_threads(void) {
    const char *path = path_of("threads.moe");
    ea_writer *w = NULL;
    ea_error err;
    CHECK(ea_writer_create(path, LAYERS, TOPK, EXPERTS, NULL, 0, EA_CODEC_FAST, 100, NULL, NULL, 0, 0, &w, &err) == EA_OK, "create");
    int64_t *rows = rows_i64(0, 1000);
    CHECK(ea_writer_set_threads(w, 0, &err) == EA_ERR_INVALID_ARGUMENT && strstr(err.message, "at least 1"),
          "0 encoding threads refused: %s", err.message);
    CHECK(ea_writer_set_threads(w, 3, &err) == EA_OK, "3 encoding threads: %s", err.message);
    CHECK(ea_writer_append(w, rows, EA_I64, 1000, 0, 0, NULL, &err) == EA_OK, "append on 3 threads");
    CHECK(ea_writer_close(w, &err) == EA_OK, "close");
    ea_writer_free(w);
    free(rows);
    ea_reader *r = NULL;
    CHECK(ea_reader_open(path, &r, &err) == EA_OK, "open");
    CHECK(ea_reader_set_threads(r, 0, &err) == EA_ERR_INVALID_ARGUMENT && strstr(err.message, "at least 1"),
          "0 decoding threads refused: %s", err.message);
    /* Rows 150..<950 of layers 1..<3: 8 blocks of 100 rows, the first and last in part, in 2 runs. */
    CHECK(ea_reader_set_threads(r, 2, &err) == EA_OK, "2 decoding threads: %s", err.message);
    int16_t part[800 * 2 * TOPK];
    CHECK(ea_reader_read(r, 150, 950, 1, 3, EA_I16, part, 800 * 2 * TOPK, &err) == EA_OK, "threaded read: %s", err.message);
    int wrong = 0;
    for (int64_t row = 150; row < 950; row++)
        for (int i = 0; i < 2 * TOPK; i++) wrong += part[(row - 150) * 2 * TOPK + i] != id_at(row, TOPK + i);
    CHECK(wrong == 0, "threaded read of a layer range: %d wrong ids", wrong);
    /* Every thread below reads through one handle whose reads are themselves split in two. */
    struct shared_read jobs[4];
    pthread_t threads[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (struct shared_read){r, 1000, 0};
        pthread_create(&threads[t], NULL, read_all, &jobs[t]);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(threads[t], NULL);
        CHECK(jobs[t].wrong == 0, "thread %d read %d wrong ids", t, jobs[t].wrong);
    }
    ea_reader_free(r);
}

/* A reader over memory: the bytes ea_reader_copy_archive gives, read in place as the same rows;
 * junk refused by name. */
static void test_archive_in_memory(void) {
    ea_error err;
    ea_writer *w = NULL;
    ea_status s = ea_writer_create(path_of("memory.moe"), LAYERS, TOPK, EXPERTS, NULL, 0, EA_CODEC_FAST, 16, NULL, NULL,
                                   0, 1, &w, &err);
    CHECK(s == EA_OK, "create: %s", err.message);
    int64_t *ids = rows_i64(0, 100);
    CHECK(ea_writer_append(w, ids, EA_I64, 100, 0, 0, NULL, &err) == EA_OK, "append: %s", err.message);
    CHECK(ea_writer_close(w, &err) == EA_OK, "close: %s", err.message);
    ea_writer_free(w);
    ea_reader *file = NULL;
    CHECK(ea_reader_open(path_of("memory.moe"), &file, &err) == EA_OK, "open: %s", err.message);
    size_t length = 0;
    CHECK(ea_reader_copy_archive(file, NULL, 0, &length, &err) == EA_OK && length > 0, "archive length: %s", err.message);
    unsigned char *bytes = malloc(length);
    CHECK(ea_reader_copy_archive(file, bytes, length, &length, &err) == EA_OK, "copy: %s", err.message);
    long size = 0;
    unsigned char *on_disk = file_bytes(path_of("memory.moe"), &size);
    CHECK((long)length == size && memcmp(bytes, on_disk, length) == 0, "the copy of a closed archive is its file");
    ea_reader *memory = NULL;
    CHECK(ea_reader_open_memory(bytes, length, "shipped", &memory, &err) == EA_OK && ea_reader_count(memory) == 100,
          "open memory: %s", err.message);
    int32_t out[100 * PER_ROW];
    CHECK(ea_reader_read(memory, 0, 100, 0, LAYERS, EA_I32, out, 100 * PER_ROW, &err) == EA_OK, "read: %s", err.message);
    int wrong = 0;
    for (int i = 0; i < 100 * PER_ROW; i++) wrong += out[i] != ids[i];
    CHECK(wrong == 0, "%d ids differ", wrong);
    int64_t visible = -1;
    CHECK(ea_reader_refresh(memory, &visible, &err) == EA_OK && visible == 100, "refresh of memory");
    ea_reader *junk = NULL;
    CHECK(ea_reader_open_memory(bytes, 20, "junk", &junk, &err) == EA_ERR_DAMAGED && junk == NULL &&
              strncmp(err.message, "junk: ", 6) == 0, "a cut header: %s", err.message);
    CHECK(ea_reader_open_memory(NULL, 10, NULL, &junk, &err) == EA_ERR_INVALID_ARGUMENT, "NULL bytes");
    ea_reader_free(memory);
    ea_reader_free(file);
    free(bytes);
    free(on_disk);
    free(ids);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
        return 64;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    CHECK(ea_abi_version() == EA_ABI_VERSION, "abi version %d", ea_abi_version());
    CHECK(ea_dtype_size(EA_U8) == 1 && ea_dtype_size(EA_I16) == 2 && ea_dtype_size(EA_I32) == 4 &&
              ea_dtype_size(EA_U64) == 8 && ea_dtype_size(0) == 0, "dtype sizes");
    test_round_trip_every_dtype();
    test_append_rules();
    test_damage_and_io();
    test_one_reader_shared_by_threads();
    test_archive_in_memory();
    if (failures) {
        fprintf(stderr, "test_expert_archive: %d checks failed\n", failures);
        return 1;
    }
    printf("test_expert_archive: all checks passed\n");
    return 0;
}

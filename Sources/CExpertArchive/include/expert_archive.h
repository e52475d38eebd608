#ifndef EXPERT_ARCHIVE_H
#define EXPERT_ARCHIVE_H
/*
 * expert_archive: the C interface of the expert-archive library (libexpert_archive.so).
 *
 * An archive stores routed-expert rows (layers x topk small ids per token) indexed by absolute
 * token position. One writer appends (an advisory lock refuses a second one, in any process);
 * any number of readers, in any process, read what the writer flushed.
 *
 * Conventions
 * - Every call that can fail returns an ea_status (EA_OK = 0) and, when `error` is not NULL,
 *   fills it: its code (the same status), errno for system failures, and the library's
 *   one-line message naming the file and the position at fault (UTF-8, NUL-terminated,
 *   cut at a character boundary if longer than the buffer).
 * - A failed call leaves the archive as it was before the call (nothing stored, nothing lost).
 * - Rows are token-major: row r holds layers * topk ids, row[layer * topk + slot].
 *   Ids cross as one of the integer types of ea_dtype, in native byte order.
 * - Handles are opaque. ea_*_free releases one (a writer not yet closed is closed first,
 *   its errors ignored: call ea_writer_close to see them). Passing NULL to free is allowed.
 *
 * Thread safety
 * - Every call on one handle takes that handle's lock: a handle may be shared between threads,
 *   its calls run one at a time. Different handles are independent and run in parallel
 *   (several readers of one archive in several threads: give each its own handle to read
 *   in parallel). A handle must not be used after, or during, its ea_*_free.
 * - Readers in other processes see a consistent prefix of the rows: whole flushed batches.
 *
 * The shared library links the Swift runtime statically: it needs only libc, libm,
 * libstdc++/libgcc_s and liblz4 at run time.
 */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The interface version; bumped on any incompatible change of this header. */
#define EA_ABI_VERSION 1

typedef int32_t ea_status;
enum {
    EA_OK = 0,
    EA_ERR_GAP = 1,              /* a batch starting past the stored rows: it would leave a gap */
    EA_ERR_SCHEMA = 2,           /* rows or a schema that do not fit: a bad shape, an id out of range */
    EA_ERR_EXISTS = 3,           /* a create over an existing file without overwrite */
    EA_ERR_LOCKED = 4,           /* another writer holds the archive */
    EA_ERR_DAMAGED = 5,          /* the file is damaged or not an archive */
    EA_ERR_IO = 6,               /* a system call failed (error->sys_errno says which errno) */
    EA_ERR_CLOSED = 7,           /* the writer was closed */
    EA_ERR_OUT_OF_RANGE = 8,     /* a read or truncation outside the stored rows */
    EA_ERR_INVALID_ARGUMENT = 9, /* a bad argument: a NULL pointer, a dtype too narrow, a bad layer range */
    EA_ERR_INTERNAL = 10         /* any other failure (the message says what) */
};

/* The integer type of ids handed in or out. */
typedef int32_t ea_dtype;
enum {
    EA_U8 = 1,
    EA_I8 = 2,
    EA_U16 = 3,
    EA_I16 = 4,
    EA_U32 = 5,
    EA_I32 = 6,
    EA_U64 = 7,
    EA_I64 = 8
};

/* The block layout of an archive. */
enum {
    EA_CODEC_FAST = 1,   /* column bit planes + LZ4: fast everywhere */
    EA_CODEC_COMPACT = 2 /* entropy-coded columns: smaller, slower */
};

#define EA_MESSAGE_BYTES 2048

typedef struct ea_error {
    ea_status code;
    int32_t sys_errno;               /* for EA_ERR_IO, else 0 */
    char message[EA_MESSAGE_BYTES];  /* "" for EA_OK */
} ea_error;

typedef struct ea_schema {
    int32_t layers;
    int32_t topk;
    int32_t experts;      /* ids are in [0, experts) */
    int32_t bits;         /* the minimal width of one id */
    int32_t dense_count;  /* dense (non-MoE) layers: stored as nothing, read as 0 */
    int32_t codec;        /* EA_CODEC_* */
    int64_t block_rows;   /* the rows per block the writer aims for */
} ea_schema;

typedef struct ea_append_result {
    int64_t appended;  /* rows of the batch stored: its uncovered tail */
    int64_t skipped;   /* rows of the batch already stored, dropped (the stored ones are kept) */
    int64_t differing; /* of the skipped rows, how many differ from the stored ones; -1 unless compared */
} ea_append_result;

typedef struct ea_writer ea_writer;
typedef struct ea_reader ea_reader;

int32_t ea_abi_version(void);
/* The size in bytes of one id of `dtype`, 0 for an unknown dtype. */
size_t ea_dtype_size(ea_dtype dtype);

/* ---- Writer ---------------------------------------------------------------------------- */

/* Creates an archive at `path` (fails with EA_ERR_EXISTS if it exists, unless `overwrite`).
 * `dense_layers`: `dense_count` layer indices (may be NULL when 0). `codec`: EA_CODEC_*.
 * `block_rows`: 0 for the default. Metadata: `meta_count` UTF-8 key/value pairs. */
ea_status ea_writer_create(const char *path, int32_t layers, int32_t topk, int32_t experts,
                           const int32_t *dense_layers, size_t dense_count, int32_t codec,
                           int64_t block_rows, const char *const *meta_keys,
                           const char *const *meta_values, size_t meta_count, int overwrite,
                           ea_writer **out, ea_error *error);

/* Opens an existing archive to append, resuming at its row count (a torn tail is cut). */
ea_status ea_writer_open(const char *path, ea_writer **out, ea_error *error);

/* Appends `row_count` rows at absolute position `start` (-1: at the current count).
 * start > count: EA_ERR_GAP, nothing stored. Rows before count are kept as stored and the
 * batch's are dropped (with `compare`, the differing ones are counted); the rest is appended.
 * Rows are buffered: ea_writer_flush makes them visible to readers, ea_writer_sync durable.
 * `result` may be NULL. */
ea_status ea_writer_append(ea_writer *writer, const void *rows, ea_dtype dtype, size_t row_count,
                           int64_t start, int compare, ea_append_result *result, ea_error *error);

/* Threads a later append of many whole blocks (a prefill, an import) encodes them on, each
 * block with an encoder of its own (the bytes written are the same for any count), and a later
 * ea_writer_read of many blocks decodes them on, as ea_reader_set_threads. 1, the default,
 * keeps both on the calling thread. `threads` < 1 is refused. */
ea_status ea_writer_set_threads(ea_writer *writer, int32_t threads, ea_error *error);
/* Rows held, buffered ones included; -1 for a NULL writer. */
int64_t ea_writer_count(const ea_writer *writer);
ea_status ea_writer_flush(ea_writer *writer, ea_error *error);
ea_status ea_writer_sync(ea_writer *writer, ea_error *error);
/* Keeps rows [0, rows) and discards the rest, durably: the only way rows are discarded. */
ea_status ea_writer_truncate(ea_writer *writer, int64_t rows, ea_error *error);
/* Flushes, syncs and releases the lock; later calls fail with EA_ERR_CLOSED (count still works). */
ea_status ea_writer_close(ea_writer *writer, ea_error *error);
void ea_writer_free(ea_writer *writer);
ea_status ea_writer_schema(const ea_writer *writer, ea_schema *out, ea_error *error);
/* Decodes rows [start, stop) (buffered rows included), layers [layer_start, layer_stop), into
 * `out`: (stop - start) * (layer_stop - layer_start) * topk ids of `dtype`, token-major.
 * `out_count` is the number of ids `out` holds (checked). */
ea_status ea_writer_read(ea_writer *writer, int64_t start, int64_t stop, int32_t layer_start,
                         int32_t layer_stop, ea_dtype dtype, void *out, size_t out_count,
                         ea_error *error);

/* ---- Reader ---------------------------------------------------------------------------- */

ea_status ea_reader_open(const char *path, ea_reader **out, ea_error *error);
/* Opens a reader of the archive held in memory: `count` bytes at `bytes` (an archive file's
 * bytes, e.g. from ea_reader_copy_archive, received over a network or mapped from an object
 * store), read in place, never copied. The caller owns the memory: it must stay alive and
 * unchanged until ea_reader_free. No file, no lock; ea_reader_refresh finds nothing new.
 * `name` (may be NULL) stands for the path in messages. */
ea_status ea_reader_open_memory(const void *bytes, size_t count, const char *name, ea_reader **out,
                                ea_error *error);
/* The archive as this reader sees it (as of the open or last refresh): the bytes of a file that
 * ea_reader_open_memory reads as the same rows. Sets *length to their count; copies them into
 * `out` only when capacity >= *length, else writes nothing: call with capacity 0 to learn it. */
ea_status ea_reader_copy_archive(ea_reader *reader, void *out, size_t capacity, size_t *length,
                                 ea_error *error);
void ea_reader_free(ea_reader *reader);
/* Rows visible as of the open or the last refresh; -1 for a NULL reader. */
int64_t ea_reader_count(const ea_reader *reader);
ea_status ea_reader_schema(const ea_reader *reader, ea_schema *out, ea_error *error);
/* The dense layer indices, ascending: writes min(capacity, dense_count) of them. */
ea_status ea_reader_dense_layers(const ea_reader *reader, int32_t *out, size_t capacity,
                                 ea_error *error);
ea_status ea_writer_dense_layers(const ea_writer *writer, int32_t *out, size_t capacity,
                                 ea_error *error);
/* The metadata as a JSON object of strings (UTF-8). Sets *length to its byte count (without
 * the NUL); writes it with a NUL only when capacity > *length, else writes nothing: call
 * with capacity 0 to learn the length. */
ea_status ea_reader_metadata(const ea_reader *reader, char *out, size_t capacity, size_t *length,
                             ea_error *error);
ea_status ea_writer_metadata(const ea_writer *writer, char *out, size_t capacity, size_t *length,
                             ea_error *error);
/* As ea_writer_read, for the rows visible to this reader. */
ea_status ea_reader_read(ea_reader *reader, int64_t start, int64_t stop, int32_t layer_start,
                         int32_t layer_stop, ea_dtype dtype, void *out, size_t out_count,
                         ea_error *error);
/* Threads a later ea_reader_read of many blocks is split between (each decodes a contiguous run
 * of at least four blocks into its own part of `out`); 1, the default, decodes on the calling
 * thread alone. The threads are the process's Dispatch pool's, for the length of a read; the
 * handle's lock is held throughout, as for every call. `threads` < 1 is refused. */
ea_status ea_reader_set_threads(ea_reader *reader, int32_t threads, ea_error *error);
/* Sees what a writer flushed (or truncated) since; sets *count (may be NULL) to the rows now visible. */
ea_status ea_reader_refresh(ea_reader *reader, int64_t *count, ea_error *error);
/* Checks every block whole (checksums, positions, ids). Sets *problems to the number of
 * problems found (0: intact); ea_reader_problem reads them until the next verify. */
ea_status ea_reader_verify(ea_reader *reader, size_t *problems, ea_error *error);
/* Problem `index` of the last verify, as ea_reader_metadata returns text. */
ea_status ea_reader_problem(const ea_reader *reader, size_t index, char *out, size_t capacity,
                            size_t *length, ea_error *error);

#ifdef __cplusplus
}
#endif
#endif

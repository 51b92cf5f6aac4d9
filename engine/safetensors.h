/* safetensors files: a validating reader over mmap (or a caller's buffer) and a small writer.
 *
 * Format: u64 little-endian header length N, N bytes of JSON header, then the data buffer. Every
 * header entry is checked before the file is handed out: known dtype, shape product times element
 * size equals the byte range, ranges inside the file, no overlaps, no duplicate names. A file that
 * fails any check is rejected as a whole with a message naming the file, the key and what was
 * expected. */
#ifndef WM_ENGINE_SAFETENSORS_H
#define WM_ENGINE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER_BYTES (100u * 1024u * 1024u) /* same limit as the reference library */

typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32, ST_U32, ST_F32, ST_F64,
    ST_I64, ST_U64, ST_F8_E4M3, ST_F8_E5M2, ST_DTYPE_COUNT
} st_dtype;

typedef struct st_tensor {
    const char *name;
    st_dtype dtype;
    int ndim;                     /* 0 for a scalar */
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data;             /* points into the mapping; valid until st_close */
    size_t nbytes;
    size_t offset;                /* byte offset of data from the start of the file */
} st_tensor;

typedef struct st_file st_file;

/* Maps and validates `path`. On failure returns a negative code, writes a message and *out is
 * NULL. The caller owns *out and frees it with st_close. */
int st_open(const char *path, st_file **out, char *err, size_t errlen);
/* Same checks on a caller-owned buffer (kept, not copied: it must outlive the st_file). `origin`
 * names the buffer in messages. Used by the fuzz target. */
int st_parse(const uint8_t *buf, size_t len, const char *origin, st_file **out, char *err,
             size_t errlen);
void st_close(st_file *f);

const char *st_origin(const st_file *f);
size_t st_count(const st_file *f);
const st_tensor *st_get(const st_file *f, size_t i);     /* in header order */
const st_tensor *st_find(const st_file *f, const char *name); /* NULL if absent */
/* Header-order position of a tensor returned by st_get/st_find of the same file. */
size_t st_index(const st_file *f, const st_tensor *t);
/* Value of a "__metadata__" string entry, NULL if absent. */
const char *st_metadata(const st_file *f, const char *key);

const char *st_dtype_name(st_dtype d);
size_t st_dtype_size(st_dtype d);

/* Converts F32, F16 or BF16 data to float32 (exact for all three). `n` must equal numel.
 * Other dtypes are an error naming the tensor. */
int st_to_f32(const st_tensor *t, float *dst, size_t n, char *err, size_t errlen);

/* Writer: collects float32 tensors (copied) and writes them in one go, to `path`.tmp then renamed,
 * so a crash never leaves a half-written file under the final name. */
typedef struct st_writer st_writer;
st_writer *st_writer_create(void);
int st_writer_add_f32(st_writer *w, const char *name, const int64_t *shape, int ndim,
                      const float *data, char *err, size_t errlen);
int st_writer_set_metadata(st_writer *w, const char *key, const char *value);
int st_writer_save(st_writer *w, const char *path, char *err, size_t errlen);
void st_writer_destroy(st_writer *w);

#endif

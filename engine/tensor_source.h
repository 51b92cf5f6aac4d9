/* A read-only set of named tensors from one weight file, whatever its format: safetensors or a
 * PyTorch `.pth` (zip archive with a pickled state dict, read by engine/pth.c without executing
 * any pickle). The VAE and CLIP loaders use this so they accept both the official `.pth` release
 * files and the Diffusers safetensors. */
#ifndef WM_ENGINE_TENSOR_SOURCE_H
#define WM_ENGINE_TENSOR_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#define TS_MAX_DIMS 8

typedef struct ts_source ts_source;

typedef struct ts_info {
    const char *name;
    const char *dtype;  /* "F32", "F16", "BF16", ... (safetensors spelling) */
    int ndim;
    int64_t shape[TS_MAX_DIMS];
    int64_t numel;
} ts_info;

/* Opens `path`, detecting the format from its first bytes ("PK\3\4": .pth zip; otherwise
 * safetensors). Everything is validated before returning; on error *out is NULL and err names the
 * file and the problem. */
int ts_open(const char *path, ts_source **out, char *err, size_t errlen);
void ts_close(ts_source *s);
const char *ts_origin(const ts_source *s);
const char *ts_format(const ts_source *s); /* "safetensors" or "pth" */
size_t ts_count(const ts_source *s);
/* Tensor i (0 <= i < count), in the file's order. */
int ts_info_at(const ts_source *s, size_t i, ts_info *out);
/* Index of `name`, or -1. */
long ts_find(const ts_source *s, const char *name);
/* Converts tensor i to contiguous row-major float32 (F32, F16, BF16; any strides/storage offset a
 * .pth view has). n must equal numel. */
int ts_read_f32(const ts_source *s, size_t i, float *dst, size_t n, char *err, size_t errlen);

#endif

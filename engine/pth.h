/* PyTorch `.pth` files written by torch.save (the zip serialization of PyTorch >= 1.6): a
 * validating reader that never executes pickle.
 *
 * The file is an uncompressed zip archive (ZIP64 when large) whose members share one top-level
 * folder, the archive name (not always "archive/": it is the stem of the path torch.save was
 * given). `<archive>/data.pkl` is a pickle of the state dict; it is read by a small stack machine
 * that knows only the opcodes and globals a state dict uses (collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2 / _rebuild_parameter[_with_state], the typed storage classes).
 * Any other global (os.system, builtins.eval, ...) or opcode rejects the whole file with a message
 * naming it and its byte offset. Each tensor is a strided view (shape, strides, element offset)
 * of a storage member `<archive>/data/<key>`; every view is checked to lie inside its storage
 * before the file is handed out, so callers can trust the fields below without re-checking.
 *
 * Return codes follow engine/errors.h: ENG_EFORMAT for a malformed or refused file, ENG_EIO for
 * file-system errors, ENG_ENOMEM, ENG_EINVAL for bad arguments, ENG_EWEIGHTS for a dtype that
 * cannot be converted. Messages name the file, the member or key, and the byte offset. */
#ifndef WM_ENGINE_PTH_H
#define WM_ENGINE_PTH_H

#include <stddef.h>
#include <stdint.h>

#define PTH_MAX_DIMS 8

/* Element types of the typed storages (torch.FloatStorage, ...). Names use the safetensors
 * spelling (pth_dtype_name): F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL. */
typedef enum {
    PTH_F32,
    PTH_F16,
    PTH_BF16,
    PTH_F64,
    PTH_I64,
    PTH_I32,
    PTH_I16,
    PTH_I8,
    PTH_U8,
    PTH_BOOL,
    PTH_DTYPE_COUNT
} pth_dtype;

typedef struct pth_tensor {
    const char *name; /* the state-dict key */
    pth_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[PTH_MAX_DIMS];
    int64_t stride[PTH_MAX_DIMS]; /* in elements, >= 0 */
    int64_t storage_offset;       /* in elements */
    int64_t numel;                /* product of shape */
    int contiguous;               /* row-major strides: element i at storage_offset + i */
    const char *storage_key;      /* "0", "1", ... as in the pickle */
    const char *storage_member;   /* "<archive>/data/<key>" */
    int64_t storage_numel;        /* elements in the storage (shared by views of it) */
    const void *storage;          /* its first byte, in the mapping; valid until pth_close */
    uint64_t storage_file_offset; /* byte offset of that first byte in the file */
} pth_tensor;

typedef struct pth_file pth_file;

/* Maps and validates `path`. On failure returns a negative code, writes a message and *out is
 * NULL. The caller owns *out and frees it with pth_close. */
int pth_open(const char *path, pth_file **out, char *err, size_t errlen);
/* Same checks on a caller-owned buffer, kept rather than copied (it must outlive the pth_file).
 * `origin` names the buffer in messages. Used by the fuzz target and the tests. */
int pth_parse(const uint8_t *buf, size_t len, const char *origin, pth_file **out, char *err,
              size_t errlen);
void pth_close(pth_file *f);

const char *pth_origin(const pth_file *f);
/* The archive folder name shared by all members, e.g. "archive" or "Wan2.1_VAE". */
const char *pth_archive(const pth_file *f);
size_t pth_count(const pth_file *f);
const pth_tensor *pth_get(const pth_file *f, size_t i);          /* in the state dict's order */
const pth_tensor *pth_find(const pth_file *f, const char *name); /* NULL if absent */
/* State-dict position of a tensor returned by pth_get/pth_find of the same file. */
size_t pth_index(const pth_file *f, const pth_tensor *t);

const char *pth_dtype_name(pth_dtype d);
size_t pth_dtype_size(pth_dtype d);

/* Copies tensor t into dst as contiguous row-major float32, whatever its strides and storage
 * offset (transposed views, slices, stride-0 broadcasts, views sharing one storage). Exact for
 * F32, F16 and BF16; any other dtype is an error naming the tensor. `n` must equal numel. */
int pth_to_f32(const pth_tensor *t, float *dst, size_t n, char *err, size_t errlen);

#endif

/* libFuzzer target for the safetensors reader: any byte string must either be rejected with a
 * message or yield tensors whose every field is consistent with the buffer. Float tensors are
 * converted so the conversion paths see fuzzed data and offsets too. Invariant violations trap,
 * which libFuzzer and the standalone driver both report as a crash. */
#include "engine/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Conversion is capped so one large corpus file cannot make a run allocate without bound; fuzzed
 * inputs are small, and numel is already bounded by the buffer size. */
#define FUZZ_MAX_CONVERT (1u << 20)

static void require(int cond) {
    if (!cond) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    st_file *f = NULL;
    int rc = st_parse(data, size, "fuzz", &f, err, sizeof err);
    if (rc != 0) {
        require(f == NULL && rc < 0 && strlen(err) > 0);
        return 0;
    }
    require(f != NULL);
    size_t n = st_count(f);
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_get(f, i);
        require(t != NULL && t->name != NULL && t->name[0] != '\0');
        require(st_find(f, t->name) == t);
        require(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS && t->numel >= 0);
        require((uint64_t)t->numel * st_dtype_size(t->dtype) == t->nbytes);
        const uint8_t *p = t->data;
        require(p >= data && t->offset <= size && t->nbytes <= size - t->offset &&
                p == data + t->offset);
        if ((t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) &&
            (uint64_t)t->numel <= FUZZ_MAX_CONVERT) {
            size_t ne = (size_t)t->numel;
            float *out = malloc((ne ? ne : 1) * sizeof(float));
            if (out == NULL) continue;
            require(st_to_f32(t, out, ne, err, sizeof err) == 0);
            if (ne > 0) require(st_to_f32(t, out, ne - 1, err, sizeof err) < 0);
            free(out);
        }
    }
    require(st_get(f, n) == NULL);
    (void)st_metadata(f, "format");
    st_close(f);
    return 0;
}

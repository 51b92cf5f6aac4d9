/* One interface over the two weight-file formats the VAE and CLIP loaders accept: safetensors
 * (engine/safetensors.c) and PyTorch `.pth` zip archives (engine/pth.c). The format is chosen by
 * the file's first bytes, never by its name: "PK\3\4" is a zip (torch.save), anything else is
 * handed to the safetensors reader, except the bare pickle of the legacy torch.save format, which
 * gets a message of its own rather than a confusing safetensors header error. Both readers
 * validate the whole file at open, so everything here is bookkeeping. Return codes are
 * engine/errors.h's (the safetensors reader's -errno codes are mapped). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* the build defines it; this keeps the file buildable alone */
#endif
#include "engine/tensor_source.h"

#include "engine/errors.h"
#include "engine/pth.h"
#include "engine/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ts_source {
    char *origin;
    st_file *st; /* exactly one of st and pth is set */
    pth_file *pth;
};

static int map_st_rc(int rc) {
    if (rc == -ENOMEM) return ENG_ENOMEM;
    if (rc == -EINVAL) return ENG_EFORMAT;
    return ENG_EIO;
}

int ts_open(const char *path, ts_source **out, char *err, size_t errlen) {
    if (out != NULL) *out = NULL;
    if (path == NULL || out == NULL)
        return eng_errorf(err, errlen, ENG_EINVAL, "ts_open: path or out is NULL");
    uint8_t head[9] = {0};
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return eng_errorf(err, errlen, ENG_EIO, "%s: cannot open: %s", path, strerror(errno));
    while (got < sizeof head) {
        ssize_t r = read(fd, head + got, sizeof head - got);
        if (r <= 0) break; /* short files, directories and read errors: the reader says why */
        got += (size_t)r;
    }
    close(fd);
    ts_source *s = calloc(1, sizeof *s);
    size_t pl = strlen(path) + 1;
    if (s != NULL) s->origin = malloc(pl);
    if (s == NULL || s->origin == NULL) {
        free(s);
        return eng_errorf(err, errlen, ENG_ENOMEM, "%s: out of memory", path);
    }
    memcpy(s->origin, path, pl);
    int rc;
    if (got >= 4 && memcmp(head, "PK\3\4", 4) == 0) {
        rc = pth_open(path, &s->pth, err, errlen);
    } else if (got == sizeof head && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5 &&
               head[2] == 0x8a && head[8] != '{') {
        /* PROTO then LONG1: the magic number that opens a legacy torch.save stream. A
         * safetensors header length starting 0x80 would be followed by '{' at byte 8. */
        rc = eng_errorf(err, errlen, ENG_EFORMAT,
                        "%s: legacy torch.save format (PyTorch < 1.6, a bare pickle stream) is "
                        "not supported; re-save it with a current torch.save",
                        path);
    } else {
        rc = st_open(path, &s->st, err, errlen);
        if (rc) rc = map_st_rc(rc);
    }
    if (rc) {
        ts_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void ts_close(ts_source *s) {
    if (s == NULL) return;
    st_close(s->st);
    pth_close(s->pth);
    free(s->origin);
    free(s);
}

const char *ts_origin(const ts_source *s) {
    return s ? s->origin : NULL;
}

const char *ts_format(const ts_source *s) {
    if (s == NULL) return NULL;
    return s->pth ? "pth" : "safetensors";
}

size_t ts_count(const ts_source *s) {
    if (s == NULL) return 0;
    return s->pth ? pth_count(s->pth) : st_count(s->st);
}

int ts_info_at(const ts_source *s, size_t i, ts_info *out) {
    if (s == NULL || out == NULL || i >= ts_count(s)) return ENG_EINVAL;
    memset(out, 0, sizeof *out);
    /* Both readers cap dimensions at 8, as TS_MAX_DIMS does. */
    if (s->pth) {
        const pth_tensor *t = pth_get(s->pth, i);
        out->name = t->name;
        out->dtype = pth_dtype_name(t->dtype);
        out->ndim = t->ndim;
        memcpy(out->shape, t->shape, (size_t)t->ndim * sizeof t->shape[0]);
        out->numel = t->numel;
    } else {
        const st_tensor *t = st_get(s->st, i);
        out->name = t->name;
        out->dtype = st_dtype_name(t->dtype);
        out->ndim = t->ndim;
        memcpy(out->shape, t->shape, (size_t)t->ndim * sizeof t->shape[0]);
        out->numel = t->numel;
    }
    return 0;
}

long ts_find(const ts_source *s, const char *name) {
    if (s == NULL || name == NULL) return -1;
    if (s->pth) {
        const pth_tensor *t = pth_find(s->pth, name);
        return t ? (long)pth_index(s->pth, t) : -1;
    }
    const st_tensor *t = st_find(s->st, name);
    return t ? (long)st_index(s->st, t) : -1;
}

int ts_read_f32(const ts_source *s, size_t i, float *dst, size_t n, char *err, size_t errlen) {
    ts_info info;
    if (s == NULL || ts_info_at(s, i, &info) != 0)
        return eng_errorf(err, errlen, ENG_EINVAL, "ts_read_f32: no tensor %zu in %s", i,
                          s ? s->origin : "(null source)");
    /* Checked here so both formats give the same codes: a caller's size error is EINVAL, a
     * tensor of the wrong type is a weights problem. */
    if ((uint64_t)n != (uint64_t)info.numel)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "%s: tensor '%.200s': destination holds %zu floats, numel is %lld",
                          s->origin, info.name, n, (long long)info.numel);
    if (strcmp(info.dtype, "F32") != 0 && strcmp(info.dtype, "F16") != 0 &&
        strcmp(info.dtype, "BF16") != 0)
        return eng_errorf(err, errlen, ENG_EWEIGHTS,
                          "%s: tensor '%.200s' is %s; only F32, F16 and BF16 can be read as "
                          "float32",
                          s->origin, info.name, info.dtype);
    char why[256];
    int rc = s->pth ? pth_to_f32(pth_get(s->pth, i), dst, n, why, sizeof why)
                    : st_to_f32(st_get(s->st, i), dst, n, why, sizeof why);
    if (rc) return eng_errorf(err, errlen, s->pth ? rc : ENG_EINVAL, "%s: %s", s->origin, why);
    return 0;
}

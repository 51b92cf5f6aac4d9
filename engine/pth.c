/* Reader for PyTorch `.pth` files (torch.save's zip serialization) that never executes pickle.
 *
 * Three layers, each validating everything the next one relies on:
 *  1. zip: the end-of-central-directory record (ZIP64 when present), the central directory, and
 *     each member's data offset taken from its *local* header (torch pads the local extra field
 *     so data is 64-byte aligned; the central copy lacks that padding). Only stored members.
 *  2. pickle: `<archive>/data.pkl` runs on a stack machine that implements only the opcodes a
 *     state dict uses and resolves only a fixed list of globals to built-in behaviours; there is
 *     no path from the file to any code but this file's. Stack, marks, memo, object count and
 *     string lengths are bounded, so hostile input costs at most memory proportional to its size.
 *  3. tensors: every storage the pickle names must be a member of the right byte size, and every
 *     view (offset + extent along its strides) must lie inside its storage.
 * A file passes as a whole or is refused with one message naming the file, the member or key and
 * the byte offset. The CRC-32 of members is not checked: it would mean reading all 4.7 GB of the
 * CLIP file at every load, and the structure checks above do not depend on it.
 *
 * The layout facts come from docs/design (model-vae-clip.md, sections 7.1, 7.2, 7.4). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* the build defines it; this keeps the file buildable alone */
#endif
#include "engine/half.h"
#include "engine/pth.h"

#include "engine/errors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Storage bytes are native little-endian (the byteorder member says so when present) and are
 * loaded with memcpy, which is only right on a little-endian host, as everything we build for is.
 */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pth.c assumes a little-endian host"
#endif

/* ---------------------------------------------------------------------------------------------
 * Limits. Real files are far inside them (the CLIP state dict: 784 tensors, a pickle of about
 * 100 KB, some 20 000 pickle objects); they exist so that a hostile file cannot make the reader
 * allocate or loop without bound. */
#define ZIP_EOCD_LEN        22u
#define ZIP_EOCD_SCAN       (ZIP_EOCD_LEN + 65535u) /* EOCD plus the longest comment */
#define PTH_MAX_PICKLE      (64u << 20)
#define PTH_MAX_OBJECTS     (1u << 22)
#define PTH_MAX_STACK       (1u << 20)
#define PTH_MAX_MARKS       (1u << 16)
#define PTH_MAX_MEMO        (1u << 22)
#define PTH_MAX_STRING      (1u << 20)
#define PTH_MAX_GLOBAL_NAME 256u
#define PTH_MAX_KEY         64u /* storage keys are small decimal numbers */
#define PTH_NAME_SHOWN      200 /* names in messages are cut here so a 1 MB key cannot drown them */

static const char *const dtype_names[PTH_DTYPE_COUNT] = {"F32", "F16", "BF16", "F64", "I64",
                                                         "I32", "I16", "I8",   "U8",  "BOOL"};
static const size_t dtype_sizes[PTH_DTYPE_COUNT] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};

const char *pth_dtype_name(pth_dtype d) {
    return ((unsigned)d < PTH_DTYPE_COUNT) ? dtype_names[d] : "?";
}

size_t pth_dtype_size(pth_dtype d) {
    return ((unsigned)d < PTH_DTYPE_COUNT) ? dtype_sizes[d] : 0;
}

struct pth_file {
    char *origin;
    const char *archive; /* in strings */
    void *map;           /* non-NULL when we own an mmap of map_len bytes */
    size_t map_len;
    pth_tensor *tensors; /* state-dict order */
    size_t count;
    const pth_tensor **by_name; /* sorted by strcmp for pth_find */
    char *strings;              /* one arena for every name */
};

/* ---------------------------------------------------------------------------------------------
 * Parse context and messages */

typedef struct zmember {
    const uint8_t *name; /* in the central directory, not NUL-terminated */
    size_t name_len;
    uint64_t off;  /* data offset in the file */
    uint64_t size; /* data bytes */
    long storage;  /* index into the pickle's storage table, -1 if none yet */
} zmember;

typedef struct ctx {
    const uint8_t *buf;
    size_t len;
    const char *origin;
    char *err;
    size_t errlen;
    zmember *m; /* sorted by name */
    size_t nm;
    const uint8_t *prefix; /* archive folder name (no trailing '/') */
    size_t prefix_len;
    const zmember *pkl;
} ctx;

static int fail(const ctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(const ctx *c, int code, const char *fmt, ...) {
    if (c->err != NULL && c->errlen > 0) {
        int k = snprintf(c->err, c->errlen, "%s: ", c->origin);
        if (k >= 0 && (size_t)k < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return code;
}

/* Length for "%.*s" of a name from the file, capped at PTH_NAME_SHOWN. */
static int shown_len(size_t n) {
    return (int)(n < PTH_NAME_SHOWN ? n : PTH_NAME_SHOWN);
}

static uint16_t rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) {
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

/* ---------------------------------------------------------------------------------------------
 * Zip container */

#define SIG_LOCAL     0x04034b50u
#define SIG_CENTRAL   0x02014b50u
#define SIG_EOCD      0x06054b50u
#define SIG_EOCD64    0x06064b50u
#define SIG_LOCATOR64 0x07064b50u

static int cmp_member(const void *a, const void *b) {
    const zmember *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int r = n ? memcmp(x->name, y->name, n) : 0;
    if (r != 0) return r;
    return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static const zmember *find_member(const ctx *c, const uint8_t *name, size_t len) {
    zmember key = {.name = name, .name_len = len};
    return bsearch(&key, c->m, c->nm, sizeof *c->m, cmp_member);
}

/* Locates the end-of-central-directory record and returns the central directory's place. */
static int zip_find_cd(const ctx *c, uint64_t *cd_off, uint64_t *cd_size, uint64_t *entries) {
    const uint8_t *b = c->buf;
    size_t len = c->len;
    if (len < ZIP_EOCD_LEN)
        return fail(c, ENG_EFORMAT, "file is %zu bytes, too short for a zip archive (truncated?)",
                    len);
    /* The record is 22 bytes plus a comment of up to 65535; its comment length must reach the
     * end of the file exactly, which keeps a stray signature inside the comment from matching. */
    size_t lo = len > ZIP_EOCD_SCAN ? len - ZIP_EOCD_SCAN : 0;
    size_t pos = SIZE_MAX;
    for (size_t p = len - ZIP_EOCD_LEN + 1; p-- > lo;) {
        if (rd32(b + p) == SIG_EOCD && p + ZIP_EOCD_LEN + rd16(b + p + 20) == len) {
            pos = p;
            break;
        }
    }
    if (pos == SIZE_MAX)
        return fail(c, ENG_EFORMAT,
                    "no zip end-of-central-directory record in the last %zu bytes (truncated or "
                    "not a zip archive)",
                    len - lo);
    const uint8_t *e = b + pos;
    *entries = rd16(e + 10);
    *cd_size = rd32(e + 12);
    *cd_off = rd32(e + 16);
    uint64_t limit = pos; /* where the central directory must end */
    bool need64 = *entries == 0xFFFF || *cd_size == 0xFFFFFFFFu || *cd_off == 0xFFFFFFFFu;
    bool has_locator = pos >= 20 && rd32(b + pos - 20) == SIG_LOCATOR64;
    if (has_locator) {
        /* torch writes ZIP64 end records into every file; they are authoritative. */
        const uint8_t *l = b + pos - 20;
        uint64_t z = rd64(l + 8);
        if (rd32(l + 4) != 0 || rd32(l + 16) > 1)
            return fail(c, ENG_EFORMAT,
                        "ZIP64 locator at byte %zu describes a multi-disk archive, which is not "
                        "supported",
                        pos - 20);
        if (z > pos - 20 || pos - 20 - z < 56)
            return fail(c, ENG_EFORMAT,
                        "ZIP64 locator at byte %zu points at byte %" PRIu64
                        ", where no 56-byte ZIP64 end record fits",
                        pos - 20, z);
        const uint8_t *r = b + z;
        if (rd32(r) != SIG_EOCD64)
            return fail(
                c, ENG_EFORMAT,
                "no ZIP64 end-of-central-directory record at byte %" PRIu64 " (bad signature)", z);
        if (rd32(r + 16) != 0 || rd32(r + 20) != 0 || rd64(r + 24) != rd64(r + 32))
            return fail(c, ENG_EFORMAT,
                        "ZIP64 end record at byte %" PRIu64
                        " describes a multi-disk archive, which is not supported",
                        z);
        *entries = rd64(r + 32);
        *cd_size = rd64(r + 40);
        *cd_off = rd64(r + 48);
        limit = z;
    } else if (need64) {
        return fail(c, ENG_EFORMAT,
                    "end-of-central-directory record at byte %zu defers to ZIP64 (a field reads "
                    "0xFFFF...) but there is no ZIP64 locator before it",
                    pos);
    } else if (rd16(e + 4) != 0 || rd16(e + 6) != 0 || rd16(e + 8) != rd16(e + 10)) {
        return fail(c, ENG_EFORMAT,
                    "end-of-central-directory record at byte %zu describes a multi-disk "
                    "archive, which is not supported",
                    pos);
    }
    if (*cd_off > limit || *cd_size > limit - *cd_off)
        return fail(c, ENG_EFORMAT,
                    "central directory (%" PRIu64 " bytes at byte %" PRIu64
                    ") does not end before the end records at byte %" PRIu64 " (truncated?)",
                    *cd_size, *cd_off, limit);
    if (*entries > *cd_size / 46)
        return fail(c, ENG_EFORMAT,
                    "%" PRIu64 " entries cannot fit a central directory of %" PRIu64 " bytes",
                    *entries, *cd_size);
    return 0;
}

/* Reads central-directory entry `i` at cd + *q and fills m. */
static int zip_entry(const ctx *c, uint64_t i, uint64_t cd_off, uint64_t cd_end, uint64_t *q,
                     zmember *m) {
    const uint8_t *b = c->buf;
    uint64_t at = *q;
    if (cd_end - at < 46 || rd32(b + at) != SIG_CENTRAL)
        return fail(c, ENG_EFORMAT,
                    "central directory entry %" PRIu64 " at byte %" PRIu64
                    " is missing or has a bad signature",
                    i, at);
    const uint8_t *e = b + at;
    uint16_t flags = rd16(e + 8), method = rd16(e + 10), nlen = rd16(e + 28), xlen = rd16(e + 30),
             clen = rd16(e + 32), disk = rd16(e + 34);
    uint64_t csize = rd32(e + 20), usize = rd32(e + 24), lho = rd32(e + 42);
    if (cd_end - at - 46 < (uint64_t)nlen + xlen + clen)
        return fail(c, ENG_EFORMAT,
                    "central directory entry %" PRIu64 " at byte %" PRIu64
                    ": name, extra and comment run past the directory",
                    i, at);
    m->name = e + 46;
    m->name_len = nlen;
    m->storage = -1;
    int shown = shown_len(nlen);
    const char *nm = (const char *)m->name;
    if (nlen == 0 || memchr(m->name, 0, nlen) != NULL)
        return fail(c, ENG_EFORMAT,
                    "central directory entry %" PRIu64 " at byte %" PRIu64
                    ": empty member name or a NUL byte in it",
                    i, at);
    /* ZIP64 extended information: 8-byte values, in this order, for exactly the fields whose
     * 32-bit copy is all ones. */
    bool want_u = usize == 0xFFFFFFFFu, want_c = csize == 0xFFFFFFFFu, want_o = lho == 0xFFFFFFFFu,
         want_d = disk == 0xFFFF;
    const uint8_t *x = e + 46 + nlen;
    for (size_t k = 0; k + 4 <= xlen;) {
        uint16_t tag = rd16(x + k), sz = rd16(x + k + 2);
        if (sz > xlen - k - 4)
            return fail(c, ENG_EFORMAT,
                        "member '%.*s': extra field 0x%04x at byte %" PRIu64 " runs past the entry",
                        shown, nm, tag, at + 46 + nlen + k);
        if (tag == 0x0001) {
            const uint8_t *v = x + k + 4;
            size_t left = sz;
            if (want_u) {
                if (left < 8) goto short64;
                usize = rd64(v), v += 8, left -= 8, want_u = false;
            }
            if (want_c) {
                if (left < 8) goto short64;
                csize = rd64(v), v += 8, left -= 8, want_c = false;
            }
            if (want_o) {
                if (left < 8) goto short64;
                lho = rd64(v), v += 8, left -= 8, want_o = false;
            }
            if (want_d) {
                if (left < 4) goto short64;
                disk = rd32(v) ? 1 : 0, want_d = false;
            }
        }
        k += 4u + sz;
    }
    if (want_u || want_c || want_o || want_d) {
    short64:
        return fail(c, ENG_EFORMAT,
                    "member '%.*s': a size or offset defers to ZIP64 but the ZIP64 extra field "
                    "is missing or too short",
                    shown, nm);
    }
    if (disk != 0)
        return fail(c, ENG_EFORMAT, "member '%.*s' lies on another disk of a split archive", shown,
                    nm);
    if (flags & 0x0001u) return fail(c, ENG_EFORMAT, "member '%.*s' is encrypted", shown, nm);
    if (method != 0)
        return fail(c, ENG_EFORMAT,
                    "member '%.*s' is compressed (method %u%s); only stored members (method 0) "
                    "are supported, as torch.save writes them",
                    shown, nm, method, method == 8 ? ", deflate" : "");
    if (csize != usize)
        return fail(c, ENG_EFORMAT,
                    "member '%.*s' is stored but its compressed size %" PRIu64
                    " differs from its size %" PRIu64,
                    shown, nm, csize, usize);
    /* The data starts after the local header's own name and extra field, whose lengths differ
     * from the central copy's (torch's alignment padding lives only there). */
    if (lho > cd_off || cd_off - lho < 30 || rd32(b + lho) != SIG_LOCAL)
        return fail(c, ENG_EFORMAT,
                    "member '%.*s': no local header at byte %" PRIu64 " (bad offset or signature)",
                    shown, nm, lho);
    uint64_t lnlen = rd16(b + lho + 26), lxlen = rd16(b + lho + 28);
    uint64_t data = lho + 30 + lnlen + lxlen;
    if (data > cd_off || lnlen != nlen || memcmp(b + lho + 30, m->name, nlen) != 0)
        return fail(c, ENG_EFORMAT,
                    "member '%.*s': local header at byte %" PRIu64
                    " has another name or runs into the central directory",
                    shown, nm, lho);
    if (usize > cd_off - data)
        return fail(c, ENG_EFORMAT,
                    "member '%.*s': %" PRIu64 " bytes at byte %" PRIu64
                    " run past the start of the central directory at byte %" PRIu64 " (truncated?)",
                    shown, nm, usize, data, cd_off);
    m->off = data;
    m->size = usize;
    *q = at + 46 + nlen + xlen + clen;
    return 0;
}

static int zip_read(ctx *c) {
    uint64_t cd_off = 0, cd_size = 0, entries = 0;
    int rc = zip_find_cd(c, &cd_off, &cd_size, &entries);
    if (rc) return rc;
    c->m = calloc(entries ? (size_t)entries : 1, sizeof *c->m);
    if (c->m == NULL) return fail(c, ENG_ENOMEM, "out of memory for %" PRIu64 " members", entries);
    uint64_t q = cd_off, cd_end = cd_off + cd_size;
    for (uint64_t i = 0; i < entries; i++) {
        rc = zip_entry(c, i, cd_off, cd_end, &q, &c->m[i]);
        if (rc) return rc;
        c->nm++;
    }
    qsort(c->m, c->nm, sizeof *c->m, cmp_member);
    for (size_t i = 1; i < c->nm; i++)
        if (cmp_member(&c->m[i - 1], &c->m[i]) == 0)
            return fail(c, ENG_EFORMAT, "member '%.*s' appears twice in the archive",
                        shown_len(c->m[i].name_len), (const char *)c->m[i].name);
    /* The archive folder is whatever holds data.pkl (pitfall 17: the stem of the path torch.save
     * was given, or "archive" for a file object). */
    static const char tail[] = "/data.pkl";
    const size_t tl = sizeof tail - 1;
    for (size_t i = 0; i < c->nm; i++) {
        const zmember *m = &c->m[i];
        if (m->name_len <= tl || memcmp(m->name + m->name_len - tl, tail, tl) != 0) continue;
        if (memchr(m->name, '/', m->name_len - tl) != NULL) continue;
        if (c->pkl != NULL)
            return fail(c, ENG_EFORMAT,
                        "two archive folders hold a data.pkl ('%.*s' and '%.*s'); expected one",
                        shown_len(c->pkl->name_len), (const char *)c->pkl->name,
                        shown_len(m->name_len), (const char *)m->name);
        c->pkl = m;
    }
    if (c->pkl == NULL)
        return fail(c, ENG_EFORMAT,
                    "no '<archive>/data.pkl' member among the %zu members: not a torch.save file",
                    c->nm);
    c->prefix = c->pkl->name;
    c->prefix_len = c->pkl->name_len - tl;
    /* Storages are native-endian dumps; newer writers record which. Absent means little. */
    for (size_t i = 0; i < c->nm; i++) {
        const zmember *bo = &c->m[i];
        if (bo->name_len == c->prefix_len + 10 && memcmp(bo->name, c->prefix, c->prefix_len) == 0 &&
            memcmp(bo->name + c->prefix_len, "/byteorder", 10) == 0) {
            const uint8_t *v = c->buf + bo->off;
            size_t n = (size_t)bo->size;
            while (n > 0 && (v[n - 1] == '\n' || v[n - 1] == '\r' || v[n - 1] == ' ')) n--;
            if (n == 3 && memcmp(v, "big", 3) == 0)
                return fail(c, ENG_EFORMAT,
                            "member '%.*s/byteorder' says 'big': big-endian storages are not "
                            "supported (re-save the file on a little-endian machine)",
                            (int)c->prefix_len, (const char *)c->prefix);
            if (n != 6 || memcmp(v, "little", 6) != 0)
                return fail(c, ENG_EFORMAT,
                            "member '%.*s/byteorder' holds %zu bytes that are neither 'little' "
                            "nor 'big'",
                            (int)c->prefix_len, (const char *)c->prefix, (size_t)bo->size);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The pickle machine */

enum {
    O_NONE,
    O_BOOL,
    O_INT,
    O_FLOAT,
    O_STR,
    O_TUPLE,
    O_LIST,
    O_DICT,
    O_GLOBAL,
    O_STORAGE,
    O_TENSOR
};
static const char *const kind_names[] = {"None",     "a bool",    "an int",  "a float",
                                         "a str",    "a tuple",   "a list",  "a dict",
                                         "a global", "a storage", "a tensor"};

typedef struct obj {
    uint8_t kind;
    uint32_t n, cap; /* containers: slots used (a dict's key/value pairs take two each) */
    union {
        int64_t i; /* O_BOOL, O_INT */
        double d;
        struct {
            uint32_t off, len; /* into the pickle */
        } s;
        uint32_t *items; /* O_TUPLE, O_LIST, O_DICT */
        int g;           /* O_GLOBAL */
        uint32_t idx;    /* O_STORAGE, O_TENSOR */
    } u;
} obj;

enum { G_ODICT, G_REBUILD_TENSOR, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE, G_STORAGE };

/* Everything a state dict refers to. Resolving a name to one of these ids is all GLOBAL does:
 * nothing is imported or looked up anywhere else. */
static const struct {
    const char *module, *name;
    int id;
} allowed_globals[] = {
    {"collections", "OrderedDict", G_ODICT},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM},
    {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE},
    {"torch", "FloatStorage", G_STORAGE + PTH_F32},
    {"torch", "HalfStorage", G_STORAGE + PTH_F16},
    {"torch", "BFloat16Storage", G_STORAGE + PTH_BF16},
    {"torch", "DoubleStorage", G_STORAGE + PTH_F64},
    {"torch", "LongStorage", G_STORAGE + PTH_I64},
    {"torch", "IntStorage", G_STORAGE + PTH_I32},
    {"torch", "ShortStorage", G_STORAGE + PTH_I16},
    {"torch", "CharStorage", G_STORAGE + PTH_I8},
    {"torch", "ByteStorage", G_STORAGE + PTH_U8},
    {"torch", "BoolStorage", G_STORAGE + PTH_BOOL},
};
#define N_ALLOWED (sizeof allowed_globals / sizeof allowed_globals[0])

static const char *global_name(int id) {
    for (size_t i = 0; i < N_ALLOWED; i++)
        if (allowed_globals[i].id == id) return allowed_globals[i].name;
    return "?";
}

typedef struct vstorage {
    uint32_t key_off, key_len; /* into the pickle */
    pth_dtype dtype;
    int64_t numel;
    const zmember *member;
} vstorage;

typedef struct vtensor {
    uint32_t storage;
    int ndim;
    int64_t shape[PTH_MAX_DIMS], stride[PTH_MAX_DIMS];
    int64_t offset, numel;
} vtensor;

typedef struct vm {
    ctx *c;
    const uint8_t *p; /* data.pkl */
    size_t n;
    size_t at; /* byte offset of the opcode being run, for messages */
    uint8_t op;
    obj *o;
    size_t no, co;
    uint32_t *stack;
    size_t sp, cs;
    size_t *marks;
    size_t nmarks, cmarks;
    uint32_t *memo; /* UINT32_MAX: unset */
    size_t cmemo, memo_count;
    vstorage *st;
    size_t nst, cst;
    vtensor *t;
    size_t nt, ct;
    uint8_t *name_buf; /* "<archive>/data/<key>" scratch */
} vm;

/* Names for messages, including the opcodes that are refused. */
static const char *op_name(uint8_t op) {
    // clang-format off
    switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return NULL;
    }
    // clang-format on
}

static int verr(const vm *v, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int verr(const vm *v, int code, const char *fmt, ...) {
    const ctx *c = v->c;
    if (c->err != NULL && c->errlen > 0) {
        const char *on = op_name(v->op);
        int k = snprintf(c->err, c->errlen, "%s: %.*s byte %zu%s%s%s: ", c->origin,
                         shown_len(c->pkl->name_len), (const char *)c->pkl->name, v->at,
                         on ? " (" : "", on ? on : "", on ? ")" : "");
        if (k >= 0 && (size_t)k < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return code;
}

/* Grows *arr (element size es) to hold at least `need` elements, doubling, within `limit`. */
static int grow(void **arr, size_t *cap, size_t need, size_t es, size_t limit) {
    if (need <= *cap) return 0;
    if (need > limit) return -1;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    if (nc > limit) nc = limit;
    void *p = realloc(*arr, nc * es);
    if (p == NULL) return -2;
    *arr = p;
    *cap = nc;
    return 0;
}

static int grow_err(const vm *v, int g, const char *what, size_t limit) {
    if (g == -1)
        return verr(v, ENG_EFORMAT, "more than %zu %s: over the reader's limit", limit, what);
    return verr(v, ENG_ENOMEM, "out of memory for %s", what);
}

static int new_obj(vm *v, int kind, uint32_t *out) {
    int g = grow((void **)&v->o, &v->co, v->no + 1, sizeof *v->o, PTH_MAX_OBJECTS);
    if (g) return grow_err(v, g, "pickle objects", PTH_MAX_OBJECTS);
    obj *o = &v->o[v->no];
    memset(o, 0, sizeof *o);
    o->kind = (uint8_t)kind;
    *out = (uint32_t)v->no++;
    return 0;
}

static int push(vm *v, uint32_t x) {
    int g = grow((void **)&v->stack, &v->cs, v->sp + 1, sizeof *v->stack, PTH_MAX_STACK);
    if (g) return grow_err(v, g, "stack entries", PTH_MAX_STACK);
    v->stack[v->sp++] = x;
    return 0;
}

static int push_new(vm *v, int kind, obj **o) {
    uint32_t x = 0;
    int rc = new_obj(v, kind, &x);
    if (!rc) rc = push(v, x);
    if (!rc && o != NULL) *o = &v->o[x];
    return rc;
}

/* The stack as Python's unpickler sees it: only what was pushed since the last MARK. */
static size_t floor_of(const vm *v) {
    return v->nmarks ? v->marks[v->nmarks - 1] : 0;
}

static int pop(vm *v, uint32_t *x) {
    if (v->sp <= floor_of(v)) return verr(v, ENG_EFORMAT, "stack underflow");
    *x = v->stack[--v->sp];
    return 0;
}

static int top(vm *v, uint32_t *x) {
    if (v->sp <= floor_of(v)) return verr(v, ENG_EFORMAT, "stack underflow");
    *x = v->stack[v->sp - 1];
    return 0;
}

static int pop_mark(vm *v, size_t *start) {
    if (v->nmarks == 0) return verr(v, ENG_EFORMAT, "no MARK to close");
    *start = v->marks[--v->nmarks];
    return 0;
}

/* Operand bytes after the opcode, or an error if the pickle ends first. */
static int operand(vm *v, size_t *pos, size_t k, const uint8_t **out) {
    if (v->n - *pos < k)
        return verr(v, ENG_EFORMAT, "operand of %zu bytes runs past the end (truncated pickle)", k);
    *out = v->p + *pos;
    *pos += k;
    return 0;
}

static int make_tuple(vm *v, size_t start) {
    size_t k = v->sp - start;
    uint32_t *items = NULL;
    if (k > 0) {
        items = malloc(k * sizeof *items);
        if (items == NULL) return verr(v, ENG_ENOMEM, "out of memory for a tuple of %zu", k);
        memcpy(items, v->stack + start, k * sizeof *items);
    }
    v->sp = start;
    obj *o;
    int rc = push_new(v, O_TUPLE, &o);
    if (rc) {
        free(items);
        return rc;
    }
    o->u.items = items;
    o->n = o->cap = (uint32_t)k;
    return 0;
}

/* Appends k slots to a list or dict's item array. */
static int add_items(vm *v, obj *o, const uint32_t *x, size_t k) {
    if (k == 0) return 0; /* APPENDS/SETITEMS right after MARK: items may still be NULL */
    size_t cap = o->cap;
    /* Every item was pushed by an opcode of >= 1 byte, so a container never holds more items
     * than the pickle has bytes (at most PTH_MAX_PICKLE). */
    int g = grow((void **)&o->u.items, &cap, (size_t)o->n + k, sizeof(uint32_t), PTH_MAX_PICKLE);
    if (g) return grow_err(v, g, "container items", PTH_MAX_PICKLE);
    o->cap = (uint32_t)cap;
    memcpy(o->u.items + o->n, x, k * sizeof *x);
    o->n += (uint32_t)k;
    return 0;
}

static int resolve_global(vm *v, const uint8_t *mod, size_t ml, const uint8_t *name, size_t nl) {
    for (size_t i = 0; i < N_ALLOWED; i++) {
        if (strlen(allowed_globals[i].module) == ml && strlen(allowed_globals[i].name) == nl &&
            memcmp(allowed_globals[i].module, mod, ml) == 0 &&
            memcmp(allowed_globals[i].name, name, nl) == 0) {
            obj *o;
            int rc = push_new(v, O_GLOBAL, &o);
            if (!rc) o->u.g = allowed_globals[i].id;
            return rc;
        }
    }
    /* Printed with non-printable bytes replaced, since this text comes from the file. */
    char shown[2 * PTH_MAX_GLOBAL_NAME + 2];
    size_t k = 0;
    for (size_t i = 0; i < ml + 1 + nl && k + 1 < sizeof shown; i++) {
        uint8_t ch = i < ml ? mod[i] : i == ml ? '.' : name[i - ml - 1];
        shown[k++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    shown[k] = '\0';
    if (ml == 5 && memcmp(mod, "torch", 5) == 0 && nl > 7 &&
        memcmp(name + nl - 7, "Storage", 7) == 0)
        return verr(v, ENG_EFORMAT,
                    "storage type '%s' is not supported (only Float, Half, BFloat16, Double, "
                    "Long, Int, Short, Char, Byte and Bool storages are)",
                    shown);
    return verr(v, ENG_EFORMAT,
                "global '%s' is refused: a state dict only uses collections.OrderedDict, "
                "torch._utils._rebuild_tensor_v2/_rebuild_parameter and torch.*Storage "
                "(nothing was imported or executed)",
                shown);
}

static bool is_str(const vm *v, uint32_t x, const char *s) {
    const obj *o = &v->o[x];
    size_t l = strlen(s);
    return o->kind == O_STR && o->u.s.len == l && memcmp(v->p + o->u.s.off, s, l) == 0;
}

/* BINPERSID: ('storage', storage type, key, location, numel) names member <archive>/data/<key>. */
static int persistent_load(vm *v, uint32_t pid) {
    const obj *t = &v->o[pid];
    if (t->kind != O_TUPLE || t->n != 5 || !is_str(v, t->u.items[0], "storage"))
        return verr(v, ENG_EFORMAT,
                    "persistent id is %s%s, expected the tuple ('storage', type, key, location, "
                    "numel)",
                    kind_names[t->kind], t->kind == O_TUPLE ? " of another shape" : "");
    const obj *ty = &v->o[t->u.items[1]], *key = &v->o[t->u.items[2]], *loc = &v->o[t->u.items[3]],
              *num = &v->o[t->u.items[4]];
    if (ty->kind != O_GLOBAL || ty->u.g < G_STORAGE)
        return verr(v, ENG_EFORMAT, "persistent id: storage type is %s, expected torch.*Storage",
                    ty->kind == O_GLOBAL ? global_name(ty->u.g) : kind_names[ty->kind]);
    if (key->kind != O_STR || key->u.s.len == 0 || key->u.s.len > PTH_MAX_KEY)
        return verr(v, ENG_EFORMAT, "persistent id: storage key is %s, expected a short str",
                    key->kind == O_STR ? "an empty or long str" : kind_names[key->kind]);
    const uint8_t *ks = v->p + key->u.s.off;
    for (uint32_t i = 0; i < key->u.s.len; i++) {
        uint8_t ch = ks[i];
        /* Keys are numbers; refusing anything else keeps '/' and '..' out of member names. */
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              ch == '_'))
            return verr(v, ENG_EFORMAT,
                        "persistent id: storage key has byte 0x%02x; expected letters, digits "
                        "or '_'",
                        ch);
    }
    if (loc->kind != O_STR)
        return verr(v, ENG_EFORMAT, "persistent id: location is %s, expected a str like 'cpu'",
                    kind_names[loc->kind]);
    if (num->kind != O_INT || num->u.i < 0)
        return verr(v, ENG_EFORMAT,
                    "persistent id: storage size is %s, expected a non-negative int",
                    num->kind == O_INT ? "negative" : kind_names[num->kind]);
    pth_dtype dt = (pth_dtype)(ty->u.g - G_STORAGE);
    ctx *c = v->c;
    size_t nl = c->prefix_len;
    memcpy(v->name_buf, c->prefix, nl);
    memcpy(v->name_buf + nl, "/data/", 6);
    memcpy(v->name_buf + nl + 6, ks, key->u.s.len);
    nl += 6 + key->u.s.len;
    zmember *m = (zmember *)find_member(c, v->name_buf, nl);
    if (m == NULL)
        return verr(v, ENG_EFORMAT,
                    "storage '%.*s' (torch.%s) needs member '%.*s', which is not in the archive",
                    (int)key->u.s.len, (const char *)ks, global_name(ty->u.g), shown_len(nl),
                    (const char *)v->name_buf);
    uint64_t bytes;
    bool over = __builtin_mul_overflow((uint64_t)num->u.i, (uint64_t)dtype_sizes[dt], &bytes);
    if (over || bytes != m->size) {
        char want[32];
        snprintf(want, sizeof want, over ? "over 2^64" : "%" PRIu64, bytes);
        return verr(v, ENG_EFORMAT,
                    "storage '%.*s': size mismatch: the pickle declares %" PRId64
                    " elements of %s (%s bytes) but member '%.*s' holds %" PRIu64 " bytes",
                    (int)key->u.s.len, (const char *)ks, num->u.i, dtype_names[dt], want,
                    shown_len(nl), (const char *)v->name_buf, m->size);
    }
    if (m->storage >= 0) {
        /* Views of one storage repeat its persistent id; it must say the same each time. */
        const vstorage *s = &v->st[m->storage];
        if (s->dtype != dt || s->numel != num->u.i)
            return verr(v, ENG_EFORMAT,
                        "storage '%.*s' is declared again as %" PRId64 " x %s, first as %" PRId64
                        " x %s",
                        (int)key->u.s.len, (const char *)ks, num->u.i, dtype_names[dt], s->numel,
                        dtype_names[s->dtype]);
    } else {
        int g = grow((void **)&v->st, &v->cst, v->nst + 1, sizeof *v->st, PTH_MAX_OBJECTS);
        if (g) return grow_err(v, g, "storages", PTH_MAX_OBJECTS);
        v->st[v->nst] = (vstorage){.key_off = key->u.s.off,
                                   .key_len = key->u.s.len,
                                   .dtype = dt,
                                   .numel = num->u.i,
                                   .member = m};
        m->storage = (long)v->nst++;
    }
    obj *o;
    int rc = push_new(v, O_STORAGE, &o);
    if (!rc) o->u.idx = (uint32_t)m->storage;
    return rc;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks
 * [, metadata]): a strided view, checked to lie inside its storage. */
static int rebuild_tensor(vm *v, const obj *args) {
    if (args->n != 6 && args->n != 7)
        return verr(v, ENG_EFORMAT, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %u", args->n);
    const uint32_t *a = args->u.items;
    const obj *st = &v->o[a[0]], *off = &v->o[a[1]], *sz = &v->o[a[2]], *sd = &v->o[a[3]],
              *rg = &v->o[a[4]], *hooks = &v->o[a[5]];
    if (st->kind != O_STORAGE)
        return verr(v, ENG_EFORMAT, "_rebuild_tensor_v2: argument 1 is %s, expected a storage",
                    kind_names[st->kind]);
    if (off->kind != O_INT || off->u.i < 0)
        return verr(v, ENG_EFORMAT,
                    "_rebuild_tensor_v2: storage offset is %s, expected a non-negative int",
                    off->kind == O_INT ? "negative" : kind_names[off->kind]);
    if (sz->kind != O_TUPLE || sd->kind != O_TUPLE || sz->n != sd->n || sz->n > PTH_MAX_DIMS)
        return verr(v, ENG_EFORMAT,
                    "_rebuild_tensor_v2: size and stride must be tuples of equal length <= %d "
                    "(got %s of %u and %s of %u)",
                    PTH_MAX_DIMS, kind_names[sz->kind], sz->kind == O_TUPLE ? sz->n : 0,
                    kind_names[sd->kind], sd->kind == O_TUPLE ? sd->n : 0);
    if ((rg->kind != O_BOOL && rg->kind != O_INT) || hooks->kind != O_DICT)
        return verr(v, ENG_EFORMAT,
                    "_rebuild_tensor_v2: requires_grad is %s and backward_hooks %s, expected a "
                    "bool and a dict",
                    kind_names[rg->kind], kind_names[hooks->kind]);
    if (args->n == 7 && v->o[a[6]].kind != O_DICT && v->o[a[6]].kind != O_NONE)
        return verr(v, ENG_EFORMAT, "_rebuild_tensor_v2: metadata is %s, expected a dict or None",
                    kind_names[v->o[a[6]].kind]);
    vtensor t = {.storage = st->u.idx, .ndim = (int)sz->n, .offset = off->u.i, .numel = 1};
    int64_t last = off->u.i; /* storage index of the view's last element */
    for (int d = 0; d < t.ndim; d++) {
        const obj *e = &v->o[sz->u.items[d]], *s = &v->o[sd->u.items[d]];
        if (e->kind != O_INT || s->kind != O_INT || e->u.i < 0 || s->u.i < 0)
            return verr(v, ENG_EFORMAT,
                        "_rebuild_tensor_v2: size/stride of dimension %d must be non-negative "
                        "ints",
                        d);
        t.shape[d] = e->u.i;
        t.stride[d] = s->u.i;
        int64_t span;
        if (__builtin_mul_overflow(t.numel, e->u.i, &t.numel))
            return verr(v, ENG_EFORMAT, "_rebuild_tensor_v2: element count overflows");
        if (e->u.i > 0 && (__builtin_mul_overflow(e->u.i - 1, s->u.i, &span) ||
                           __builtin_add_overflow(last, span, &last)))
            return verr(v, ENG_EFORMAT, "_rebuild_tensor_v2: view extent overflows");
    }
    const vstorage *s = &v->st[t.storage];
    /* An empty view touches nothing, but its offset must still be inside (or at the end of) the
     * storage, as torch requires. */
    if (t.numel == 0 ? t.offset > s->numel : last >= s->numel) {
        char dims[PTH_MAX_DIMS * 48] = "";
        size_t k = 0;
        for (int d = 0; d < t.ndim && k < sizeof dims; d++)
            k += (size_t)snprintf(dims + k, sizeof dims - k, "%s%" PRId64 "/%" PRId64,
                                  d ? ", " : "", t.shape[d], t.stride[d]);
        return verr(v, ENG_EFORMAT,
                    "view at offset %" PRId64 " with size/stride (%s) reaches element %" PRId64
                    " of storage '%.*s', which has %" PRId64 " elements",
                    t.offset, dims, t.numel == 0 ? t.offset : last, (int)s->key_len,
                    (const char *)v->p + s->key_off, s->numel);
    }
    int g = grow((void **)&v->t, &v->ct, v->nt + 1, sizeof *v->t, PTH_MAX_OBJECTS);
    if (g) return grow_err(v, g, "tensors", PTH_MAX_OBJECTS);
    v->t[v->nt] = t;
    obj *o;
    int rc = push_new(v, O_TENSOR, &o);
    if (!rc) o->u.idx = (uint32_t)v->nt++;
    return rc;
}

static int reduce(vm *v) {
    uint32_t fa = 0, fc = 0;
    int rc = pop(v, &fa);
    if (!rc) rc = pop(v, &fc);
    if (rc) return rc;
    const obj *args = &v->o[fa], *fn = &v->o[fc];
    if (fn->kind != O_GLOBAL)
        return verr(v, ENG_EFORMAT, "callable is %s, not a global", kind_names[fn->kind]);
    if (args->kind != O_TUPLE)
        return verr(v, ENG_EFORMAT, "arguments are %s, not a tuple", kind_names[args->kind]);
    switch (fn->u.g) {
    case G_ODICT: {
        if (args->n != 0)
            return verr(v, ENG_EFORMAT, "OrderedDict called with %u arguments, expected none",
                        args->n);
        return push_new(v, O_DICT, NULL);
    }
    case G_REBUILD_TENSOR:
        return rebuild_tensor(v, args);
    case G_REBUILD_PARAM:
    case G_REBUILD_PARAM_STATE: {
        /* An nn.Parameter is its data tensor; requires_grad, hooks and state do not matter to a
         * reader of weights. */
        uint32_t want = fn->u.g == G_REBUILD_PARAM ? 3 : 4;
        if (args->n != want || v->o[args->u.items[0]].kind != O_TENSOR)
            return verr(v, ENG_EFORMAT, "%s takes (tensor, ...) with %u arguments",
                        global_name(fn->u.g), want);
        return push(v, args->u.items[0]);
    }
    default:
        return verr(v, ENG_EFORMAT, "torch.%s is not callable here", global_name(fn->u.g));
    }
}

static int memo_put(vm *v, uint64_t idx) {
    uint32_t x = 0;
    int rc = top(v, &x);
    if (rc) return rc;
    /* Writers number memo entries from 0 upwards, so an index beyond the pickle's length is
     * never honest; refusing it bounds the table by the input size. */
    if (idx >= PTH_MAX_MEMO || idx > v->n)
        return verr(v, ENG_EFORMAT, "memo index %" PRIu64 " is out of range", idx);
    size_t old = v->cmemo;
    int g = grow((void **)&v->memo, &v->cmemo, (size_t)idx + 1, sizeof *v->memo, PTH_MAX_MEMO);
    if (g) return grow_err(v, g, "memo entries", PTH_MAX_MEMO);
    for (size_t i = old; i < v->cmemo; i++) v->memo[i] = UINT32_MAX;
    if (v->memo[idx] == UINT32_MAX) v->memo_count++;
    v->memo[idx] = x;
    return 0;
}

static int memo_get(vm *v, uint64_t idx) {
    if (idx >= v->cmemo || v->memo[idx] == UINT32_MAX)
        return verr(v, ENG_EFORMAT, "memo index %" PRIu64 " was never stored", idx);
    return push(v, v->memo[idx]);
}

static int push_int(vm *v, int64_t i) {
    obj *o;
    int rc = push_new(v, O_INT, &o);
    if (!rc) o->u.i = i;
    return rc;
}

static int push_str(vm *v, size_t off, size_t len) {
    if (len > PTH_MAX_STRING)
        return verr(v, ENG_EFORMAT, "string of %zu bytes is over the reader's limit of %u", len,
                    PTH_MAX_STRING);
    obj *o;
    int rc = push_new(v, O_STR, &o);
    if (!rc) o->u.s.off = (uint32_t)off, o->u.s.len = (uint32_t)len;
    return rc;
}

/* One string operand: a u8 or u32 length, then that many bytes. */
static int read_str(vm *v, size_t *pos, size_t lenbytes) {
    const uint8_t *q = NULL;
    int rc = operand(v, pos, lenbytes, &q);
    if (rc) return rc;
    size_t len = lenbytes == 1 ? q[0] : rd32(q);
    if (len > PTH_MAX_STRING)
        return verr(v, ENG_EFORMAT, "string of %zu bytes is over the reader's limit of %u", len,
                    PTH_MAX_STRING);
    size_t off = *pos;
    rc = operand(v, pos, len, &q);
    return rc ? rc : push_str(v, off, len);
}

/* GLOBAL's operands: "module\nname\n". */
static int read_line(vm *v, size_t *pos, const uint8_t **s, size_t *len) {
    size_t lim = v->n - *pos < PTH_MAX_GLOBAL_NAME + 1 ? v->n - *pos : PTH_MAX_GLOBAL_NAME + 1;
    const uint8_t *nl = memchr(v->p + *pos, '\n', lim);
    if (nl == NULL)
        return verr(v, ENG_EFORMAT, "no newline within %zu bytes after the global's name", lim);
    *s = v->p + *pos;
    *len = (size_t)(nl - *s);
    *pos += *len + 1;
    return 0;
}

static int run_op(vm *v, size_t *pos, bool *stop) {
    /* Initialised only to quiet gcc: every error path returns before a use. */
    const uint8_t *q = NULL;
    uint32_t x = 0, y = 0;
    size_t start = 0;
    int rc = 0;
    obj *o = NULL;
    switch (v->op) {
    case 0x80: /* PROTO */
        if ((rc = operand(v, pos, 1, &q))) return rc;
        if (v->at != 0 || q[0] < 2 || q[0] > 5)
            return verr(v, ENG_EFORMAT, "protocol %u at byte %zu; expected 2..5 at byte 0", q[0],
                        v->at);
        return 0;
    case 0x95: /* FRAME: framing only, the bytes that follow are ordinary opcodes */
        return operand(v, pos, 8, &q);
    case '(':
        if (v->nmarks == PTH_MAX_MARKS)
            return verr(v, ENG_EFORMAT, "more than %u open MARKs", PTH_MAX_MARKS);
        if (grow((void **)&v->marks, &v->cmarks, v->nmarks + 1, sizeof *v->marks, PTH_MAX_MARKS))
            return verr(v, ENG_ENOMEM, "out of memory for marks");
        v->marks[v->nmarks++] = v->sp;
        return 0;
    case ')':
        return make_tuple(v, v->sp);
    case 't':
        if ((rc = pop_mark(v, &start))) return rc;
        return make_tuple(v, start);
    case 0x85:
    case 0x86:
    case 0x87: {
        size_t k = (size_t)(v->op - 0x84);
        if (v->sp - floor_of(v) < k) return verr(v, ENG_EFORMAT, "stack underflow");
        return make_tuple(v, v->sp - k);
    }
    case ']':
        return push_new(v, O_LIST, NULL);
    case '}':
        return push_new(v, O_DICT, NULL);
    case 'a':
        if ((rc = pop(v, &x)) || (rc = top(v, &y))) return rc;
        if (v->o[y].kind != O_LIST)
            return verr(v, ENG_EFORMAT, "APPEND to %s", kind_names[v->o[y].kind]);
        return add_items(v, &v->o[y], &x, 1);
    case 'e':
        if ((rc = pop_mark(v, &start))) return rc;
        if (start <= floor_of(v) || v->o[v->stack[start - 1]].kind != O_LIST)
            return verr(v, ENG_EFORMAT, "APPENDS without a list below the MARK");
        rc = add_items(v, &v->o[v->stack[start - 1]], v->stack + start, v->sp - start);
        v->sp = start;
        return rc;
    case 's': {
        uint32_t val = 0, key = 0;
        if ((rc = pop(v, &val)) || (rc = pop(v, &key)) || (rc = top(v, &y))) return rc;
        if (v->o[y].kind != O_DICT)
            return verr(v, ENG_EFORMAT, "SETITEM on %s", kind_names[v->o[y].kind]);
        uint32_t kv[2] = {key, val};
        return add_items(v, &v->o[y], kv, 2);
    }
    case 'u':
        if ((rc = pop_mark(v, &start))) return rc;
        if (start <= floor_of(v) || v->o[v->stack[start - 1]].kind != O_DICT)
            return verr(v, ENG_EFORMAT, "SETITEMS without a dict below the MARK");
        if ((v->sp - start) % 2)
            return verr(v, ENG_EFORMAT, "SETITEMS with an odd number (%zu) of items",
                        v->sp - start);
        rc = add_items(v, &v->o[v->stack[start - 1]], v->stack + start, v->sp - start);
        v->sp = start;
        return rc;
    case 'X':
        return read_str(v, pos, 4);
    case 0x8c: /* SHORT_BINUNICODE */
    case 'U':  /* SHORT_BINSTRING */
        return read_str(v, pos, 1);
    case 'K':
        if ((rc = operand(v, pos, 1, &q))) return rc;
        return push_int(v, q[0]);
    case 'M':
        if ((rc = operand(v, pos, 2, &q))) return rc;
        return push_int(v, rd16(q));
    case 'J':
        if ((rc = operand(v, pos, 4, &q))) return rc;
        return push_int(v, (int32_t)rd32(q));
    case 0x8a: { /* LONG1: little-endian two's complement of n bytes */
        if ((rc = operand(v, pos, 1, &q))) return rc;
        size_t k = q[0];
        if (k > 8) return verr(v, ENG_EFORMAT, "integer of %zu bytes does not fit 64 bits", k);
        if ((rc = operand(v, pos, k, &q))) return rc;
        uint64_t u = 0;
        for (size_t i = 0; i < k; i++) u |= (uint64_t)q[i] << (8 * i);
        if (k > 0 && k < 8 && (q[k - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * k);
        return push_int(v, (int64_t)u);
    }
    case 'G': { /* BINFLOAT: big-endian double */
        if ((rc = operand(v, pos, 8, &q))) return rc;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = (u << 8) | q[i];
        if ((rc = push_new(v, O_FLOAT, &o))) return rc;
        memcpy(&o->u.d, &u, sizeof u);
        return 0;
    }
    case 0x88:
    case 0x89:
        if ((rc = push_new(v, O_BOOL, &o))) return rc;
        o->u.i = v->op == 0x88;
        return 0;
    case 'N':
        return push_new(v, O_NONE, NULL);
    case 'q':
        if ((rc = operand(v, pos, 1, &q))) return rc;
        return memo_put(v, q[0]);
    case 'r':
        if ((rc = operand(v, pos, 4, &q))) return rc;
        return memo_put(v, rd32(q));
    case 0x94: /* MEMOIZE: the next free index, as Python counts it */
        return memo_put(v, v->memo_count);
    case 'h':
        if ((rc = operand(v, pos, 1, &q))) return rc;
        return memo_get(v, q[0]);
    case 'j':
        if ((rc = operand(v, pos, 4, &q))) return rc;
        return memo_get(v, rd32(q));
    case 'c': {
        const uint8_t *mod = NULL, *name = NULL;
        size_t ml = 0, nl = 0;
        if ((rc = read_line(v, pos, &mod, &ml)) || (rc = read_line(v, pos, &name, &nl))) return rc;
        return resolve_global(v, mod, ml, name, nl);
    }
    case 0x93: /* STACK_GLOBAL: module and name from the stack */
        if ((rc = pop(v, &y)) || (rc = pop(v, &x))) return rc;
        if (v->o[x].kind != O_STR || v->o[y].kind != O_STR)
            return verr(v, ENG_EFORMAT, "module and name are %s and %s, expected two str",
                        kind_names[v->o[x].kind], kind_names[v->o[y].kind]);
        return resolve_global(
            v, v->p + v->o[x].u.s.off,
            v->o[x].u.s.len < PTH_MAX_GLOBAL_NAME ? v->o[x].u.s.len : PTH_MAX_GLOBAL_NAME,
            v->p + v->o[y].u.s.off,
            v->o[y].u.s.len < PTH_MAX_GLOBAL_NAME ? v->o[y].u.s.len : PTH_MAX_GLOBAL_NAME);
    case 'R':
        return reduce(v);
    case 'Q':
        if ((rc = pop(v, &x))) return rc;
        return persistent_load(v, x);
    case 'b': { /* BUILD: only the OrderedDict's _metadata attribute, which is ignored */
        if ((rc = pop(v, &x)) || (rc = top(v, &y))) return rc;
        int sk = v->o[x].kind;
        if (v->o[y].kind != O_DICT || (sk != O_DICT && sk != O_TUPLE && sk != O_NONE))
            return verr(v, ENG_EFORMAT,
                        "BUILD of %s with %s; only a dict's attributes are "
                        "accepted",
                        kind_names[v->o[y].kind], kind_names[sk]);
        return 0;
    }
    case '.':
        if (v->nmarks != 0 || v->sp != 1)
            return verr(v, ENG_EFORMAT,
                        "STOP with %zu stack entries and %zu open MARKs; "
                        "expected exactly one object",
                        v->sp, v->nmarks);
        if (*pos != v->n) return verr(v, ENG_EFORMAT, "%zu bytes follow STOP", v->n - *pos);
        *stop = true;
        return 0;
    default: {
        const char *on = op_name(v->op);
        if (on != NULL)
            return verr(v, ENG_EFORMAT,
                        "opcode %s (0x%02x) is refused: it is not used by a state dict "
                        "(nothing was executed)",
                        on, v->op);
        return verr(v, ENG_EFORMAT, "unknown opcode 0x%02x", v->op);
    }
    }
}

static void vm_free(vm *v) {
    for (size_t i = 0; i < v->no; i++) {
        int k = v->o[i].kind;
        if (k == O_TUPLE || k == O_LIST || k == O_DICT) free(v->o[i].u.items);
    }
    free(v->o);
    free(v->stack);
    free(v->marks);
    free(v->memo);
    free(v->st);
    free(v->t);
    free(v->name_buf);
}

/* Runs data.pkl and turns the resulting dict into f's tensors. */
static int load_pickle(ctx *c, pth_file *f) {
    vm v = {.c = c, .p = c->buf + c->pkl->off, .n = (size_t)c->pkl->size};
    if (c->pkl->size > PTH_MAX_PICKLE)
        return fail(c, ENG_EFORMAT, "'%.*s' is %" PRIu64 " bytes, over the reader's limit of %u",
                    (int)c->pkl->name_len, (const char *)c->pkl->name, c->pkl->size,
                    PTH_MAX_PICKLE);
    if (v.n < 2 || v.p[0] != 0x80)
        return fail(c, ENG_EFORMAT, "'%.*s' does not start with a pickle PROTO opcode",
                    (int)c->pkl->name_len, (const char *)c->pkl->name);
    v.name_buf = malloc(c->prefix_len + 6 + PTH_MAX_KEY);
    if (v.name_buf == NULL) return fail(c, ENG_ENOMEM, "out of memory");
    int rc = 0;
    bool stop = false;
    size_t pos = 0;
    while (!rc && !stop) {
        if (pos >= v.n) {
            rc = fail(c, ENG_EFORMAT, "%.*s byte %zu: the pickle ends without STOP (truncated)",
                      shown_len(c->pkl->name_len), (const char *)c->pkl->name, pos);
            break;
        }
        v.at = pos;
        v.op = v.p[pos++];
        rc = run_op(&v, &pos, &stop);
    }
    const obj *d = rc ? NULL : &v.o[v.stack[0]];
    if (!rc && d->kind != O_DICT)
        rc = verr(&v, ENG_EFORMAT, "the pickle holds %s, expected a state dict",
                  kind_names[d->kind]);
    /* Strings: archive name, then per storage "<archive>/data/<key>" and "<key>", then names. */
    size_t bytes = c->prefix_len + 1;
    for (size_t i = 0; !rc && i < v.nst; i++) bytes += 2 * (c->prefix_len + 7 + v.st[i].key_len);
    for (uint32_t i = 0; !rc && i < d->n / 2; i++) {
        const obj *k = &v.o[d->u.items[2 * i]], *val = &v.o[d->u.items[2 * i + 1]];
        if (k->kind != O_STR) {
            rc = fail(c, ENG_EFORMAT, "state dict entry %u has %s as its key, expected a str", i,
                      kind_names[k->kind]);
        } else if (memchr(v.p + k->u.s.off, 0, k->u.s.len) != NULL) {
            rc = fail(c, ENG_EFORMAT, "state dict key %u has a NUL byte", i);
        } else if (val->kind != O_TENSOR) {
            rc = fail(c, ENG_EFORMAT, "state dict key '%.*s' holds %s, expected a tensor",
                      shown_len(k->u.s.len), (const char *)v.p + k->u.s.off, kind_names[val->kind]);
        }
        bytes += rc ? 0 : (size_t)k->u.s.len + 1;
    }
    if (!rc) {
        f->count = d->n / 2;
        f->tensors = calloc(f->count ? f->count : 1, sizeof *f->tensors);
        f->by_name = calloc(f->count ? f->count : 1, sizeof *f->by_name);
        f->strings = malloc(bytes);
        if (!f->tensors || !f->by_name || !f->strings) rc = fail(c, ENG_ENOMEM, "out of memory");
    }
    if (!rc) {
        char *s = f->strings;
        memcpy(s, c->prefix, c->prefix_len);
        s[c->prefix_len] = '\0';
        f->archive = s;
        s += c->prefix_len + 1;
        const char **member_names = calloc(v.nst ? v.nst : 1, 2 * sizeof(char *));
        if (member_names == NULL) rc = fail(c, ENG_ENOMEM, "out of memory");
        for (size_t i = 0; !rc && i < v.nst; i++) {
            const vstorage *st = &v.st[i];
            member_names[2 * i] = s;
            s += sprintf(s, "%s/data/%.*s", f->archive, (int)st->key_len,
                         (const char *)v.p + st->key_off) +
                 1;
            member_names[2 * i + 1] = s;
            memcpy(s, v.p + st->key_off, st->key_len);
            s[st->key_len] = '\0';
            s += st->key_len + 1;
        }
        for (size_t i = 0; !rc && i < f->count; i++) {
            const obj *k = &v.o[d->u.items[2 * i]];
            const vtensor *vt = &v.t[v.o[d->u.items[2 * i + 1]].u.idx];
            const vstorage *st = &v.st[vt->storage];
            pth_tensor *t = &f->tensors[i];
            memcpy(s, v.p + k->u.s.off, k->u.s.len);
            s[k->u.s.len] = '\0';
            t->name = s;
            s += k->u.s.len + 1;
            t->dtype = st->dtype;
            t->ndim = vt->ndim;
            memcpy(t->shape, vt->shape, sizeof t->shape);
            memcpy(t->stride, vt->stride, sizeof t->stride);
            t->storage_offset = vt->offset;
            t->numel = vt->numel;
            /* Row-major over the dimensions that matter (size-1 dimensions may carry any
             * stride, as torch's own is_contiguous allows). */
            int64_t expect = 1; /* products of trailing sizes: at most numel, no overflow */
            t->contiguous = 1;
            for (int dd = t->ndim - 1; dd >= 0 && t->numel > 0; dd--) {
                if (t->shape[dd] != 1 && t->stride[dd] != expect) t->contiguous = 0;
                expect *= t->shape[dd];
            }
            t->storage_member = member_names[2 * vt->storage];
            t->storage_key = member_names[2 * vt->storage + 1];
            t->storage_numel = st->numel;
            t->storage = c->buf + st->member->off;
            t->storage_file_offset = st->member->off;
            f->by_name[i] = t;
        }
        free(member_names);
    }
    vm_free(&v);
    return rc;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp((*(const pth_tensor *const *)a)->name, (*(const pth_tensor *const *)b)->name);
}

void pth_close(pth_file *f) {
    if (f == NULL) return;
    if (f->map != NULL) munmap(f->map, f->map_len);
    free(f->tensors);
    free(f->by_name);
    free(f->strings);
    free(f->origin);
    free(f);
}

int pth_parse(const uint8_t *buf, size_t len, const char *origin, pth_file **out, char *err,
              size_t errlen) {
    if (out != NULL) *out = NULL;
    if (origin == NULL) origin = "(buffer)";
    ctx c = {.buf = buf, .len = len, .origin = origin, .err = err, .errlen = errlen};
    if (out == NULL || (buf == NULL && len != 0))
        return fail(&c, ENG_EINVAL, "pth_parse: buffer or out is NULL");
    if (len < 4 || memcmp(buf, "PK\3\4", 4) != 0) {
        if (len >= 2 && buf[0] == 0x80 && buf[1] >= 2 && buf[1] <= 5)
            return fail(&c, ENG_EFORMAT,
                        "a bare pickle stream: the legacy torch.save format (PyTorch < 1.6) is not "
                        "supported; re-save it with a current torch.save");
        return fail(&c, ENG_EFORMAT,
                    "does not start with a zip local header (PK\\3\\4): not a torch.save file");
    }
    pth_file *f = calloc(1, sizeof *f);
    if (f == NULL) return fail(&c, ENG_ENOMEM, "out of memory");
    size_t ol = strlen(origin) + 1;
    f->origin = malloc(ol);
    int rc = f->origin ? 0 : fail(&c, ENG_ENOMEM, "out of memory");
    if (!rc) memcpy(f->origin, origin, ol);
    if (!rc) rc = zip_read(&c);
    if (!rc) rc = load_pickle(&c, f);
    if (!rc) {
        qsort(f->by_name, f->count, sizeof *f->by_name, cmp_by_name);
        for (size_t i = 1; i < f->count; i++)
            if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0) {
                rc = fail(&c, ENG_EFORMAT, "state dict key '%.*s' appears twice", PTH_NAME_SHOWN,
                          f->by_name[i]->name);
                break;
            }
    }
    free(c.m);
    if (rc) {
        pth_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int pth_open(const char *path, pth_file **out, char *err, size_t errlen) {
    if (out != NULL) *out = NULL;
    if (out == NULL || path == NULL)
        return eng_errorf(err, errlen, ENG_EINVAL, "pth_open: path or out is NULL");
    /* O_NONBLOCK so that a FIFO given by mistake fails at the S_ISREG check instead of hanging. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return eng_errorf(err, errlen, ENG_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return eng_errorf(err, errlen, ENG_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return eng_errorf(err, errlen, ENG_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return eng_errorf(err, errlen, ENG_EIO, "%s: %lld bytes, too large to map", path,
                          (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    if (len < 4) { /* mmap refuses length 0; a file this short is refused from its size alone */
        uint8_t head[4] = {0};
        ssize_t r = read(fd, head, len);
        close(fd);
        return pth_parse(head, r > 0 ? (size_t)r : 0, path, out, err, errlen);
    }
    /* The mapping stays valid after close. MAP_PRIVATE does not protect against another process
     * truncating the file (SIGBUS on access); weights are replaced by rename, not rewritten. */
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return eng_errorf(err, errlen, ENG_EIO, "%s: cannot mmap %zu bytes: %s", path, len,
                          strerror(e));
    pth_file *f = NULL;
    int rc = pth_parse(map, len, path, &f, err, errlen);
    if (rc) {
        munmap(map, len);
        return rc;
    }
    f->map = map;
    f->map_len = len;
    *out = f;
    return 0;
}

const char *pth_origin(const pth_file *f) {
    return f ? f->origin : NULL;
}
const char *pth_archive(const pth_file *f) {
    return f ? f->archive : NULL;
}
size_t pth_count(const pth_file *f) {
    return f ? f->count : 0;
}

const pth_tensor *pth_get(const pth_file *f, size_t i) {
    return (f != NULL && i < f->count) ? &f->tensors[i] : NULL;
}

size_t pth_index(const pth_file *f, const pth_tensor *t) {
    return (size_t)(t - f->tensors);
}

const pth_tensor *pth_find(const pth_file *f, const char *name) {
    if (f == NULL || name == NULL) return NULL;
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(name, f->by_name[mid]->name);
        if (r == 0) return f->by_name[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Conversion (F16 through engine/half.h, header only, so pth.c still builds alone for the fuzz
 * target). */

/* Element `i` of the storage; storages sit at any file offset, hence memcpy. */
static inline float load_elem(const uint8_t *base, pth_dtype dt, int64_t i) {
    float f;
    uint16_t h;
    uint32_t bits;
    switch (dt) {
    case PTH_F32:
        memcpy(&f, base + 4 * i, sizeof f);
        return f;
    case PTH_F16:
        memcpy(&h, base + 2 * i, sizeof h);
        return wm_f16_to_f32(h);
    default: /* PTH_BF16 */
        memcpy(&h, base + 2 * i, sizeof h);
        bits = (uint32_t)h << 16;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
}

int pth_to_f32(const pth_tensor *t, float *dst, size_t n, char *err, size_t errlen) {
    if (t == NULL || (dst == NULL && n != 0))
        return eng_errorf(err, errlen, ENG_EINVAL, "pth_to_f32: tensor or destination is NULL");
    if ((uint64_t)n != (uint64_t)t->numel)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "tensor '%.*s': destination holds %zu floats, expected numel %" PRId64,
                          PTH_NAME_SHOWN, t->name, n, t->numel);
    if (t->dtype != PTH_F32 && t->dtype != PTH_F16 && t->dtype != PTH_BF16)
        return eng_errorf(err, errlen, ENG_EWEIGHTS,
                          "tensor '%.*s': dtype %s cannot be read as float32 (only F32, F16 and "
                          "BF16 can)",
                          PTH_NAME_SHOWN, t->name, pth_dtype_name(t->dtype));
    if (n == 0) return 0;
    const uint8_t *base = t->storage;
    if (t->contiguous) {
        if (t->dtype == PTH_F32) {
            memcpy(dst, base + 4 * t->storage_offset, n * sizeof(float));
        } else {
            for (size_t i = 0; i < n; i++)
                dst[i] = load_elem(base, t->dtype, t->storage_offset + (int64_t)i);
        }
        return 0;
    }
    /* Any strided view: walk the outer dimensions like an odometer, the last one inline. Every
     * index was checked against the storage at parse time. ndim >= 1 here: a scalar is
     * contiguous. */
    int nd = t->ndim;
    int64_t idx[PTH_MAX_DIMS] = {0};
    int64_t inner = t->shape[nd - 1], istride = t->stride[nd - 1], base_i = t->storage_offset;
    size_t o = 0;
    for (;;) {
        for (int64_t j = 0; j < inner; j++)
            dst[o++] = load_elem(base, t->dtype, base_i + j * istride);
        int d = nd - 2;
        for (; d >= 0; d--) {
            base_i += t->stride[d];
            if (++idx[d] < t->shape[d]) break;
            base_i -= t->stride[d] * t->shape[d];
            idx[d] = 0;
        }
        if (d < 0) break;
    }
    return 0;
}

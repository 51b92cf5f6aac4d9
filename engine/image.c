/* Start images and output frames. Decoding goes through libpng and libjpeg(-turbo) with every error
 * contained (their setjmp/longjmp error paths end in this file, never in exit()), the size checked
 * from the header before any pixel buffer exists, and truncation treated as an error rather than
 * silently padded. img_prepare reproduces the reference's start-image preparation
 * (model-vae-clip.md 4.1): PIL's crop-box rounding and PIL's antialiased bilinear resampling
 * (Pillow's libImaging/Resample.c, 8-bit path) re-implemented from its definition, so the same
 * photo gives the model the same bytes as the Python reference. The frame sink writes PNG files
 * and, when the ffmpeg program exists, pipes the same frames to it for an MP4.
 *
 * Return codes follow engine/errors.h: ENG_EINVAL for bad arguments, ENG_EFORMAT for data that is
 * not a supported, intact, small-enough image, ENG_EIO for file and process errors, ENG_ENOMEM. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* the build defines it; this keeps the file buildable alone */
#endif
#include "engine/image.h"

#include "engine/errors.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <png.h>
/* jpeglib.h needs stdio.h and stddef.h first. */
#include <jerror.h>
#include <jpeglib.h>

extern char **environ;

/* Neither side may exceed this, whatever max_pixels allows: it bounds row sizes and the resampler's
 * coefficient tables, and no real start image comes near it. */
#define IMG_MAX_SIDE 16384
/* Progressive JPEGs may carry any number of scans, each a full pass over the coefficients: a tiny
 * file can cost minutes of CPU. Real encoders write about ten. */
#define IMG_JPEG_MAX_SCANS 1000
/* PIL's fixed-point resampler: 32-bit accumulators, 8 bits of result, 2 bits of headroom. */
#define RS_PRECISION_BITS (32 - 8 - 2)

/* ---------------------------------------------------------------------------------------------- */
/* Shared checks                                                                                  */

static int check_size(const char *origin, const char *fmt, unsigned long w, unsigned long h,
                      size_t max_pixels, char *err, size_t errlen) {
    if (w == 0 || h == 0 || w > IMG_MAX_SIDE || h > IMG_MAX_SIDE)
        return eng_errorf(err, errlen, ENG_EFORMAT,
                          "%s: %s image is %lux%lu; each side must be 1..%d pixels", origin, fmt, w,
                          h, IMG_MAX_SIDE);
    if ((unsigned long long)w * h > max_pixels)
        return eng_errorf(err, errlen, ENG_EFORMAT,
                          "%s: %s image is %lux%lu = %llu pixels, over the limit of %zu", origin,
                          fmt, w, h, (unsigned long long)w * h, max_pixels);
    return 0;
}

static void clear_image(img_rgb8 *img) {
    img->width = img->height = 0;
    img->pixels = NULL;
}

void img_free(img_rgb8 *img) {
    if (img == NULL) return;
    free(img->pixels);
    clear_image(img);
}

/* ---------------------------------------------------------------------------------------------- */
/* PNG                                                                                            */

/* Everything the libpng run touches lives here, outside the function that calls setjmp, so values
 * written between setjmp and a longjmp are still valid when the error path frees them. */
typedef struct png_job {
    const uint8_t *data;
    size_t len, pos;
    bool truncated;
    const char *origin;
    size_t max_pixels;
    png_structp png;
    png_infop info;
    uint8_t *pixels;
    png_bytep *rows;
    int width, height;
    char libmsg[200]; /* libpng's own error text */
    char *err;
    size_t errlen;
} png_job;

static void png_error_cb(png_structp png, png_const_charp msg) {
    png_job *j = png_get_error_ptr(png);
    snprintf(j->libmsg, sizeof j->libmsg, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings concern ancillary data we ignore anyway; libpng's default prints them to stderr. */
static void png_warning_cb(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void png_read_cb(png_structp png, png_bytep out, size_t n) {
    png_job *j = png_get_io_ptr(png);
    if (n > j->len - j->pos) {
        j->truncated = true;
        png_error(png, "data ends early");
    }
    memcpy(out, j->data + j->pos, n);
    j->pos += n;
}

/* Transformations to RGB8: palette and low-bit grey expanded, 16-bit reduced by keeping the high
 * byte (what PIL does for 16-bit RGB), alpha (including palette tRNS, which palette expansion turns
 * into alpha) dropped without compositing, grey replicated, interlace passes merged. */
static void png_request_rgb8(png_structp png, int depth, int ctype, int interlace) {
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    png_set_strip_alpha(png);
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    if (interlace != PNG_INTERLACE_NONE) (void)png_set_interlace_handling(png);
}

/* Returns 0, 1 after a libpng error (message in j->libmsg), or a negative code with j->err set. */
static int png_run(png_job *j) {
    if (setjmp(png_jmpbuf(j->png))) return 1;
    png_set_read_fn(j->png, j, png_read_cb);
    /* Ancillary chunks (text, ICC profiles, gamma, ...) do not change the pixels PIL hands over;
     * skipping them also skips their decompression and their allocations. */
    png_set_keep_unknown_chunks(j->png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    /* Our own size check gives the message; libpng's default 1e6 limit would pre-empt it. */
    png_set_user_limits(j->png, 0x7fffffffu, 0x7fffffffu);
    png_read_info(j->png, j->info);

    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0, interlace = 0;
    png_get_IHDR(j->png, j->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    int rc = check_size(j->origin, "PNG", w, h, j->max_pixels, j->err, j->errlen);
    if (rc != 0) return rc;
    png_request_rgb8(j->png, depth, ctype, interlace);
    png_read_update_info(j->png, j->info);
    if (png_get_channels(j->png, j->info) != 3 || png_get_bit_depth(j->png, j->info) != 8 ||
        png_get_rowbytes(j->png, j->info) != (size_t)w * 3)
        return eng_errorf(j->err, j->errlen, ENG_EFORMAT,
                          "%s: PNG colour type %d at %d bits did not convert to RGB8", j->origin,
                          ctype, depth);

    j->width = (int)w;
    j->height = (int)h;
    j->pixels = malloc((size_t)w * h * 3);
    j->rows = malloc((size_t)h * sizeof *j->rows);
    if (j->pixels == NULL || j->rows == NULL)
        return eng_errorf(j->err, j->errlen, ENG_ENOMEM, "%s: no memory for a %ux%u PNG image",
                          j->origin, (unsigned)w, (unsigned)h);
    for (png_uint_32 y = 0; y < h; y++) j->rows[y] = j->pixels + (size_t)y * w * 3;
    png_read_image(j->png, j->rows);
    /* Reading up to IEND makes a file cut after its last IDAT an error too. */
    png_read_end(j->png, NULL);
    return 0;
}

static int decode_png(const uint8_t *data, size_t len, const char *origin, size_t max_pixels,
                      img_rgb8 *out, char *err, size_t errlen) {
    png_job j = {.data = data,
                 .len = len,
                 .origin = origin,
                 .max_pixels = max_pixels,
                 .err = err,
                 .errlen = errlen};
    j.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &j, png_error_cb, png_warning_cb);
    if (j.png != NULL) j.info = png_create_info_struct(j.png);
    if (j.png == NULL || j.info == NULL) {
        png_destroy_read_struct(&j.png, NULL, NULL);
        return eng_errorf(err, errlen, ENG_ENOMEM, "%s: cannot create a libpng reader", origin);
    }
    int rc = png_run(&j);
    if (rc == 1) {
        rc = eng_errorf(err, errlen, ENG_EFORMAT, "%s: PNG %s at byte %zu of %zu: %s", origin,
                        j.truncated ? "truncated" : "invalid", j.pos, len, j.libmsg);
    }
    png_destroy_read_struct(&j.png, &j.info, NULL);
    free(j.rows);
    if (rc != 0) {
        free(j.pixels);
        return rc;
    }
    out->width = j.width;
    out->height = j.height;
    out->pixels = j.pixels;
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* JPEG                                                                                           */

typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    struct jpeg_progress_mgr progress;
    jmp_buf jmp;
    const uint8_t *data;
    size_t len;
    const char *origin;
    size_t max_pixels;
    uint8_t *pixels;
    int width, height;
    char libmsg[JMSG_LENGTH_MAX + 64];
    char *err;
    size_t errlen;
} jpeg_job;

static void jpeg_fail(j_common_ptr c) {
    jpeg_job *j = c->client_data;
    c->err->format_message(c, j->libmsg);
    longjmp(j->jmp, 1);
}

/* libjpeg reports damaged data as warnings and carries on with grey blocks; truncation even gets a
 * fake end marker. Those become errors here so a broken upload is refused rather than half-grey.
 * Other warnings (stray bytes between markers, odd JFIF versions) are common in real files and
 * harmless, and are ignored like PIL ignores them. */
static void jpeg_message(j_common_ptr c, int level) {
    if (level >= 0) return; /* trace output */
    switch (c->err->msg_code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
        jpeg_fail(c);
        break;
    default:
        c->err->num_warnings++;
        break;
    }
}

static void jpeg_progress(j_common_ptr c) {
    jpeg_job *j = c->client_data;
    if (j->cinfo.input_scan_number > IMG_JPEG_MAX_SCANS) {
        snprintf(j->libmsg, sizeof j->libmsg, "more than %d scans", IMG_JPEG_MAX_SCANS);
        longjmp(j->jmp, 1);
    }
}

static int jpeg_choose_output(jpeg_job *j) {
    switch (j->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
        j->cinfo.out_color_space = JCS_RGB; /* libjpeg-turbo expands grey to RGB itself */
        return 0;
    case JCS_CMYK:
    case JCS_YCCK:
        return eng_errorf(j->err, j->errlen, ENG_EFORMAT,
                          "%s: JPEG is CMYK (print colour space); convert it to RGB first",
                          j->origin);
    default:
        return eng_errorf(j->err, j->errlen, ENG_EFORMAT,
                          "%s: JPEG has an unsupported colour space (%d components)", j->origin,
                          j->cinfo.num_components);
    }
}

/* Returns 0, 1 after a libjpeg error (message in j->libmsg), or a negative code with j->err set. */
static int jpeg_run(jpeg_job *j) {
    if (setjmp(j->jmp)) return 1;
    jpeg_create_decompress(&j->cinfo);
    j->cinfo.client_data = j;
    j->cinfo.progress = &j->progress;
    jpeg_mem_src(&j->cinfo, j->data, (unsigned long)j->len);
    (void)jpeg_read_header(&j->cinfo, TRUE);

    int rc = check_size(j->origin, "JPEG", j->cinfo.image_width, j->cinfo.image_height,
                        j->max_pixels, j->err, j->errlen);
    if (rc == 0) rc = jpeg_choose_output(j);
    if (rc != 0) return rc;
    (void)jpeg_start_decompress(&j->cinfo);
    size_t w = j->cinfo.output_width, h = j->cinfo.output_height;
    if (j->cinfo.output_components != 3 || w != j->cinfo.image_width || h != j->cinfo.image_height)
        return eng_errorf(j->err, j->errlen, ENG_EFORMAT, "%s: JPEG did not decode to %ux%u RGB",
                          j->origin, j->cinfo.image_width, j->cinfo.image_height);
    j->width = (int)w;
    j->height = (int)h;
    j->pixels = malloc(w * h * 3);
    if (j->pixels == NULL)
        return eng_errorf(j->err, j->errlen, ENG_ENOMEM, "%s: no memory for a %zux%zu JPEG image",
                          j->origin, w, h);
    while (j->cinfo.output_scanline < h) {
        JSAMPROW row = j->pixels + (size_t)j->cinfo.output_scanline * w * 3;
        (void)jpeg_read_scanlines(&j->cinfo, &row, 1);
    }
    (void)jpeg_finish_decompress(&j->cinfo);
    return 0;
}

static int decode_jpeg(const uint8_t *data, size_t len, const char *origin, size_t max_pixels,
                       img_rgb8 *out, char *err, size_t errlen) {
    if (len > ULONG_MAX)
        return eng_errorf(err, errlen, ENG_EFORMAT, "%s: JPEG data too long", origin);
    jpeg_job j;
    memset(&j, 0, sizeof j);
    j.data = data;
    j.len = len;
    j.origin = origin;
    j.max_pixels = max_pixels;
    j.err = err;
    j.errlen = errlen;
    j.cinfo.err = jpeg_std_error(&j.jerr);
    j.jerr.error_exit = jpeg_fail;
    j.jerr.emit_message = jpeg_message;
    j.progress.progress_monitor = jpeg_progress;
    /* client_data must be set before jpeg_create_decompress can fail. */
    j.cinfo.client_data = &j;
    int rc = jpeg_run(&j);
    if (rc == 1) {
        size_t left = j.cinfo.src != NULL ? j.cinfo.src->bytes_in_buffer : 0;
        rc = eng_errorf(err, errlen, ENG_EFORMAT, "%s: JPEG invalid at byte %zu of %zu: %s", origin,
                        len - left, len, j.libmsg);
    }
    jpeg_destroy_decompress(&j.cinfo);
    if (rc != 0) {
        free(j.pixels);
        return rc;
    }
    out->width = j.width;
    out->height = j.height;
    out->pixels = j.pixels;
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Format detection and loading                                                                   */

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* Names a few formats people upload by mistake, so the message says what the file is. */
static const char *other_format(const uint8_t *d, size_t n) {
    if (n >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0)) return "GIF";
    if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0) return "WebP";
    if (n >= 2 && memcmp(d, "BM", 2) == 0) return "BMP";
    if (n >= 4 && (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0)) return "TIFF";
    if (n >= 12 && memcmp(d + 4, "ftyp", 4) == 0) return "HEIF/AVIF or MP4";
    return NULL;
}

int img_decode(const uint8_t *data, size_t len, const char *origin, size_t max_pixels,
               img_rgb8 *out, char *err, size_t errlen) {
    if (origin == NULL) origin = "image";
    if (out == NULL || (data == NULL && len > 0))
        return eng_errorf(err, errlen, ENG_EINVAL, "%s: img_decode needs data and an output",
                          origin);
    clear_image(out);
    if (len >= sizeof png_magic && memcmp(data, png_magic, sizeof png_magic) == 0)
        return decode_png(data, len, origin, max_pixels, out, err, errlen);
    if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return decode_jpeg(data, len, origin, max_pixels, out, err, errlen);
    const char *other = other_format(data, len);
    if (other != NULL)
        return eng_errorf(err, errlen, ENG_EFORMAT,
                          "%s: is a %s file; only PNG and JPEG images are supported", origin,
                          other);
    if (len == 0) return eng_errorf(err, errlen, ENG_EFORMAT, "%s: empty, not an image", origin);
    uint8_t head[4] = {0};
    memcpy(head, data, len < 4 ? len : 4);
    return eng_errorf(err, errlen, ENG_EFORMAT,
                      "%s: not a PNG or JPEG image (starts with %02x %02x %02x %02x)", origin,
                      head[0], head[1], head[2], head[3]);
}

int img_load(const char *path, size_t max_pixels, img_rgb8 *out, char *err, size_t errlen) {
    if (path == NULL || out == NULL)
        return eng_errorf(err, errlen, ENG_EINVAL, "img_load needs a path and an output");
    clear_image(out);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return eng_errorf(err, errlen, ENG_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return eng_errorf(err, errlen, ENG_EIO, "%s: not a regular file", path);
    }
    /* A compressed image is never much larger than its raw 16-bit RGBA pixels; a bigger file is
     * refused before it is read into memory. */
    unsigned long long cap = max_pixels > (ULLONG_MAX >> 4)
                                 ? ULLONG_MAX
                                 : (unsigned long long)max_pixels * 8 + (1u << 20);
    if ((unsigned long long)st.st_size > cap) {
        fclose(fp);
        return eng_errorf(err, errlen, ENG_EFORMAT,
                          "%s: file of %lld bytes is too large for an image of at most %zu pixels",
                          path, (long long)st.st_size, max_pixels);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        fclose(fp);
        return eng_errorf(err, errlen, ENG_ENOMEM, "%s: no memory for %zu bytes", path, len);
    }
    size_t got = fread(buf, 1, len, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad || got != len) {
        free(buf);
        return eng_errorf(err, errlen, ENG_EIO, "%s: read %zu of %zu bytes", path, got, len);
    }
    int rc = img_decode(buf, len, path, max_pixels, out, err, errlen);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Preparation: PIL crop + PIL bilinear resize                                                    */

/* Python's round() of n/2 for n >= 0: halves go to the even neighbour. */
static long round_half_even_div2(long n) {
    long q = n / 2;
    if (n % 2 == 0) return q;
    return (q % 2 == 0) ? q : q + 1;
}

/* The reference's _resizecrop: keep the side that is too short for the target aspect, truncate the
 * other (int() of a float quotient of integers is the integer quotient: the float is never within
 * rounding of the next integer), then PIL rounds each float box coordinate on its own, so an odd
 * cut can shrink or grow the crop by a pixel. The float comparison h/w > th/tw is the exact
 * rational comparison for these sizes, hence integer cross-multiplication. */
static void crop_box(long w, long h, long tw, long th, long box[4]) {
    long new_w, new_h;
    if (h * tw > th * w) {
        new_w = w;
        new_h = w * th / tw;
    } else {
        new_h = h;
        new_w = h * tw / th;
    }
    box[0] = round_half_even_div2(w - new_w);
    box[1] = round_half_even_div2(h - new_h);
    box[2] = round_half_even_div2(w + new_w);
    box[3] = round_half_even_div2(h + new_h);
}

/* One axis of PIL's resampling: output pixel i reads taps [first[i], first[i] + count[i]) with
 * fixed-point weights k[i * ksize ...]. */
typedef struct rs_axis {
    int ksize;
    int *first, *count;
    int32_t *k;
} rs_axis;

static void rs_axis_free(rs_axis *a) {
    free(a->first);
    free(a->count);
    free(a->k);
    memset(a, 0, sizeof *a);
}

static double rs_triangle(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Weights for output pixel i, computed the way Pillow's precompute_coeffs does (same operations in
 * the same order, so the doubles and hence the rounded fixed-point weights are identical): the
 * triangle is widened by the scale when shrinking, sampled at pixel centres, normalised to sum 1,
 * then scaled to 2^22 and rounded half away from zero. */
static void rs_axis_pixel(rs_axis *a, int in_size, double scale, double filterscale, double support,
                          int i, double *tmp) {
    double center = 0.0 + (i + 0.5) * scale; /* the box starts at 0.0 after the crop */
    double ss = 1.0 / filterscale, ww = 0.0;
    int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
    if (lo < 0) lo = 0;
    if (hi > in_size) hi = in_size;
    int n = hi - lo;
    for (int x = 0; x < n; x++) {
        tmp[x] = rs_triangle((x + lo - center + 0.5) * ss);
        ww += tmp[x];
    }
    int32_t *k = a->k + (size_t)i * a->ksize;
    for (int x = 0; x < a->ksize; x++) {
        double v = (x < n && ww != 0.0) ? tmp[x] / ww : (x < n ? tmp[x] : 0.0);
        k[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << RS_PRECISION_BITS)
                               : 0.5 + v * (1 << RS_PRECISION_BITS));
    }
    a->first[i] = lo;
    a->count[i] = n;
}

static int rs_axis_init(rs_axis *a, int in_size, int out_size) {
    memset(a, 0, sizeof *a);
    /* Pillow computes the span in float (box coordinates) before widening to double. */
    double scale = (double)((float)in_size - 0.0f) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale; /* bilinear: support 1 */
    a->ksize = (int)ceil(support) * 2 + 1;
    a->first = malloc((size_t)out_size * sizeof *a->first);
    a->count = malloc((size_t)out_size * sizeof *a->count);
    a->k = malloc((size_t)out_size * (size_t)a->ksize * sizeof *a->k);
    double *tmp = malloc((size_t)a->ksize * sizeof *tmp);
    if (a->first == NULL || a->count == NULL || a->k == NULL || tmp == NULL) {
        free(tmp);
        rs_axis_free(a);
        return ENG_ENOMEM;
    }
    for (int i = 0; i < out_size; i++)
        rs_axis_pixel(a, in_size, scale, filterscale, support, i, tmp);
    free(tmp);
    return 0;
}

/* Pillow's clip8: the accumulator already holds the rounding half; the shift floors. */
static uint8_t rs_clip8(int32_t v) {
    if (v < 0) return 0;
    v >>= RS_PRECISION_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* A view of 8-bit RGB pixels with a row stride, so the crop needs no copy. */
typedef struct rgb_view {
    const uint8_t *p;
    size_t stride;
    int w, h;
} rgb_view;

/* Horizontal pass over rows [y0, y0 + rows) of `in` into `out` (out_w x rows, packed). The int32
 * accumulator cannot overflow: the weights are non-negative and sum to 2^22 plus at most half a
 * unit per tap, so 255 * sum + 2^21 stays below 2^31 for any ksize this file allows. */
static void rs_horizontal(const rgb_view *in, int y0, int rows, const rs_axis *ax, int out_w,
                          uint8_t *out) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *src = in->p + (size_t)(y0 + y) * in->stride;
        uint8_t *dst = out + (size_t)y * out_w * 3;
        for (int x = 0; x < out_w; x++) {
            const int32_t *k = ax->k + (size_t)x * ax->ksize;
            const uint8_t *s = src + (size_t)ax->first[x] * 3;
            int32_t s0 = 1 << (RS_PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int t = 0; t < ax->count[x]; t++) {
                s0 += s[3 * t + 0] * k[t];
                s1 += s[3 * t + 1] * k[t];
                s2 += s[3 * t + 2] * k[t];
            }
            dst[3 * x + 0] = rs_clip8(s0);
            dst[3 * x + 1] = rs_clip8(s1);
            dst[3 * x + 2] = rs_clip8(s2);
        }
    }
}

/* Vertical pass; `first` indices are relative to in's first row. */
static void rs_vertical(const rgb_view *in, const rs_axis *ay, int out_h, uint8_t *out) {
    for (int y = 0; y < out_h; y++) {
        const int32_t *k = ay->k + (size_t)y * ay->ksize;
        uint8_t *dst = out + (size_t)y * in->w * 3;
        for (int x = 0; x < in->w; x++) {
            const uint8_t *s = in->p + (size_t)ay->first[y] * in->stride + (size_t)x * 3;
            int32_t s0 = 1 << (RS_PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int t = 0; t < ay->count[y]; t++) {
                const uint8_t *q = s + (size_t)t * in->stride;
                s0 += q[0] * k[t];
                s1 += q[1] * k[t];
                s2 += q[2] * k[t];
            }
            dst[3 * x + 0] = rs_clip8(s0);
            dst[3 * x + 1] = rs_clip8(s1);
            dst[3 * x + 2] = rs_clip8(s2);
        }
    }
}

static void copy_view(const rgb_view *in, uint8_t *out) {
    for (int y = 0; y < in->h; y++)
        memcpy(out + (size_t)y * in->w * 3, in->p + (size_t)y * in->stride, (size_t)in->w * 3);
}

/* PIL's ImagingResampleInner for an RGB image and a full box: horizontal pass over just the rows
 * the vertical pass reads, then the vertical pass; a pass whose size does not change is skipped,
 * and with neither it is a copy. `out` is out_w x out_h packed RGB. */
static int resample(const rgb_view *in, int out_w, int out_h, uint8_t *out) {
    bool need_h = out_w != in->w, need_v = out_h != in->h;
    if (!need_h && !need_v) {
        copy_view(in, out);
        return 0;
    }
    rs_axis ax = {0}, ay = {0};
    uint8_t *tmp = NULL;
    int rc = rs_axis_init(&ay, in->h, out_h);
    if (rc == 0 && need_h) rc = rs_axis_init(&ax, in->w, out_w);
    if (rc != 0) goto done;
    rgb_view src = *in;
    if (need_h) {
        int y_first = ay.first[0];
        int y_last = ay.first[out_h - 1] + ay.count[out_h - 1];
        int rows = y_last - y_first;
        if (!need_v) rows = in->h, y_first = 0;
        tmp = malloc((size_t)out_w * (size_t)rows * 3);
        if (tmp == NULL) {
            rc = ENG_ENOMEM;
            goto done;
        }
        rs_horizontal(in, y_first, rows, &ax, out_w, need_v ? tmp : out);
        if (!need_v) goto done;
        for (int i = 0; i < out_h; i++) ay.first[i] -= y_first;
        src = (rgb_view){tmp, (size_t)out_w * 3, out_w, rows};
    }
    rs_vertical(&src, &ay, out_h, out);
done:
    free(tmp);
    rs_axis_free(&ax);
    rs_axis_free(&ay);
    return rc;
}

/* torchvision's ToTensor then Normalize(0.5, 0.5), in float32 as the reference does. */
static void to_planes(const uint8_t *rgb, int w, int h, float *planes) {
    size_t plane = (size_t)w * h;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            float x = (float)rgb[3 * i + c] / 255.0f;
            planes[(size_t)c * plane + i] = (x - 0.5f) / 0.5f;
        }
}

int img_prepare(const img_rgb8 *src, int out_w, int out_h, float *planes, char *err,
                size_t errlen) {
    if (src == NULL || src->pixels == NULL || planes == NULL || src->width <= 0 ||
        src->height <= 0 || src->width > IMG_MAX_SIDE || src->height > IMG_MAX_SIDE)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "img_prepare: needs an image with sides 1..%d and an output buffer",
                          IMG_MAX_SIDE);
    if (out_w <= 0 || out_h <= 0 || out_w > IMG_MAX_SIDE || out_h > IMG_MAX_SIDE)
        return eng_errorf(err, errlen, ENG_EINVAL, "img_prepare: output size %dx%d not in 1..%d",
                          out_w, out_h, IMG_MAX_SIDE);
    long box[4];
    crop_box(src->width, src->height, out_w, out_h, box);
    int cw = (int)(box[2] - box[0]), ch = (int)(box[3] - box[1]);
    if (cw <= 0 || ch <= 0)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "img_prepare: centre crop of a %dx%d image to aspect %d:%d is empty",
                          src->width, src->height, out_w, out_h);
    size_t stride = (size_t)src->width * 3;
    rgb_view crop = {src->pixels + (size_t)box[1] * stride + (size_t)box[0] * 3, stride, cw, ch};
    uint8_t *rgb = malloc((size_t)out_w * out_h * 3);
    if (rgb == NULL)
        return eng_errorf(err, errlen, ENG_ENOMEM, "img_prepare: no memory for %dx%d", out_w,
                          out_h);
    int rc = resample(&crop, out_w, out_h, rgb);
    if (rc == 0) to_planes(rgb, out_w, out_h, planes);
    free(rgb);
    if (rc != 0)
        return eng_errorf(err, errlen, rc, "img_prepare: no memory to resize %dx%d to %dx%d", cw,
                          ch, out_w, out_h);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* PNG writing                                                                                    */

typedef struct png_wjob {
    const char *path;
    FILE *fp;
    png_structp png;
    png_infop info;
    const uint8_t *rgb;
    int width, height;
    char libmsg[200];
} png_wjob;

static void png_werror_cb(png_structp png, png_const_charp msg) {
    png_wjob *j = png_get_error_ptr(png);
    snprintf(j->libmsg, sizeof j->libmsg, "%s", msg);
    png_longjmp(png, 1);
}

static int png_write_run(png_wjob *j) {
    if (setjmp(png_jmpbuf(j->png))) return 1;
    png_init_io(j->png, j->fp);
    /* Frames are written as they are generated: fast compression matters more than the last few
     * percent of size. */
    png_set_compression_level(j->png, 1);
    png_set_IHDR(j->png, j->info, (png_uint_32)j->width, (png_uint_32)j->height, 8,
                 PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(j->png, j->info);
    for (int y = 0; y < j->height; y++) png_write_row(j->png, j->rgb + (size_t)y * j->width * 3);
    png_write_end(j->png, NULL);
    return 0;
}

int img_write_png(const char *path, const uint8_t *rgb, int width, int height, char *err,
                  size_t errlen) {
    if (path == NULL || rgb == NULL || width <= 0 || height <= 0 || width > IMG_MAX_SIDE ||
        height > IMG_MAX_SIDE)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "img_write_png: needs a path, pixels and sides 1..%d (got %dx%d)",
                          IMG_MAX_SIDE, width, height);
    png_wjob j = {.path = path, .rgb = rgb, .width = width, .height = height};
    j.fp = fopen(path, "wb");
    if (j.fp == NULL)
        return eng_errorf(err, errlen, ENG_EIO, "%s: cannot create: %s", path, strerror(errno));
    j.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &j, png_werror_cb, png_warning_cb);
    if (j.png != NULL) j.info = png_create_info_struct(j.png);
    int rc;
    if (j.png == NULL || j.info == NULL)
        rc = eng_errorf(err, errlen, ENG_ENOMEM, "%s: cannot create a libpng writer", path);
    else if (png_write_run(&j) != 0)
        rc = eng_errorf(err, errlen, ENG_EIO, "%s: writing PNG failed: %s", path, j.libmsg);
    else
        rc = 0;
    png_destroy_write_struct(&j.png, &j.info);
    if (fclose(j.fp) != 0 && rc == 0)
        rc = eng_errorf(err, errlen, ENG_EIO, "%s: write failed: %s", path, strerror(errno));
    if (rc != 0) (void)unlink(path); /* no half-written frame left behind */
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Frame sink                                                                                     */

struct img_frame_sink {
    char *dir;
    char *mp4_path;
    char *log_path; /* ffmpeg's stderr, quoted in the failure message */
    int width, height, fps;
    unsigned long frames;
    pid_t ffmpeg;       /* 0 when no ffmpeg runs */
    int pipe_fd;        /* -1 once closed */
    char pipe_msg[160]; /* set when ffmpeg stopped reading */
};

/* mkdir -p: each missing component is created; an existing non-directory is an error. */
static int make_dirs(const char *dir, char *err, size_t errlen) {
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (p == NULL) return eng_errorf(err, errlen, ENG_ENOMEM, "%s: no memory", dir);
    memcpy(p, dir, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            rc = eng_errorf(err, errlen, ENG_EIO, "%s: cannot create folder: %s", p,
                            strerror(errno));
        p[i] = c;
    }
    free(p);
    struct stat st;
    if (rc == 0 && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        rc = eng_errorf(err, errlen, ENG_EIO, "%s: not a folder", dir);
    return rc;
}

static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s != NULL) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

static void sink_free(img_frame_sink *s) {
    if (s == NULL) return;
    if (s->pipe_fd >= 0) close(s->pipe_fd);
    free(s->dir);
    free(s->mp4_path);
    free(s->log_path);
    free(s);
}

/* Starts ffmpeg reading raw RGB frames on its stdin. Returns 0 with s->ffmpeg = 0 when no ffmpeg
 * program is on PATH (the MP4 is optional), 0 with the pipe open when it started. */
static int spawn_ffmpeg(img_frame_sink *s, char *err, size_t errlen) {
    char size[32], rate[16];
    snprintf(size, sizeof size, "%dx%d", s->width, s->height);
    snprintf(rate, sizeof rate, "%d", s->fps);
    char *argv[] = {"ffmpeg",   "-hide_banner", "-loglevel", "error",     "-y",      "-f",
                    "rawvideo", "-pix_fmt",     "rgb24",     "-s",        size,      "-r",
                    rate,       "-i",           "-",         "-c:v",      "libx264", "-pix_fmt",
                    "yuv420p",  "-crf",         "18",        s->mp4_path, NULL};
    int fds[2];
    if (pipe(fds) != 0)
        return eng_errorf(err, errlen, ENG_EIO, "ffmpeg for %s: pipe: %s", s->mp4_path,
                          strerror(errno));
    /* Our end must not leak into other children: a second holder of the write end would keep
     * ffmpeg waiting for input forever. The child's stdin is a dup2 copy, which drops the flag. */
    (void)fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, s->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    /* A server that ignores SIGPIPE or blocks signals must not hand that on to ffmpeg. */
    sigset_t none, pipe_only;
    sigemptyset(&none);
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &pipe_only);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    int rc = posix_spawnp(&pid, "ffmpeg", &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(fds[0]);
    if (rc != 0) {
        close(fds[1]);
        (void)unlink(s->log_path);
        if (rc == ENOENT) return 0;
        return eng_errorf(err, errlen, ENG_EIO, "cannot start ffmpeg for %s: %s", s->mp4_path,
                          strerror(rc));
    }
    s->ffmpeg = pid;
    s->pipe_fd = fds[1];
    return 0;
}

int img_sink_open(const char *dir, const char *mp4_path, int width, int height, int fps,
                  img_frame_sink **out, char *err, size_t errlen) {
    if (out == NULL || dir == NULL || dir[0] == '\0' || width <= 0 || height <= 0 ||
        width > IMG_MAX_SIDE || height > IMG_MAX_SIDE || fps <= 0 || fps > 1000)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "img_sink_open: needs a folder, sides 1..%d and fps 1..1000 (got %dx%d "
                          "at %d)",
                          IMG_MAX_SIDE, width, height, fps);
    *out = NULL;
    if (mp4_path != NULL && (width % 2 != 0 || height % 2 != 0))
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "%s: an H.264 yuv420p MP4 needs even sides, got %dx%d", mp4_path, width,
                          height);
    int rc = make_dirs(dir, err, errlen);
    if (rc != 0) return rc;
    img_frame_sink *s = calloc(1, sizeof *s);
    if (s == NULL) return eng_errorf(err, errlen, ENG_ENOMEM, "img_sink_open: no memory");
    s->pipe_fd = -1;
    s->width = width;
    s->height = height;
    s->fps = fps;
    s->dir = strdup(dir);
    if (mp4_path != NULL) {
        s->mp4_path = strdup(mp4_path);
        s->log_path = join_path(dir, "ffmpeg.log");
    }
    if (s->dir == NULL || (mp4_path != NULL && (s->mp4_path == NULL || s->log_path == NULL))) {
        sink_free(s);
        return eng_errorf(err, errlen, ENG_ENOMEM, "img_sink_open: no memory");
    }
    if (mp4_path != NULL && (rc = spawn_ffmpeg(s, err, errlen)) != 0) {
        sink_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* write() that turns a reader's exit into EPIPE instead of killing the process, without touching
 * the process-wide SIGPIPE disposition: SIGPIPE is blocked in this thread for the call and a
 * SIGPIPE raised by it is consumed before unblocking. Returns 0 or an errno value. */
static int write_all_nosigpipe(int fd, const uint8_t *p, size_t n) {
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    (void)sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE) == 1;
    (void)pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int e = 0;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            e = errno;
            break;
        }
        p += w;
        n -= (size_t)w;
    }
    if (e == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    return e;
}

int img_sink_write(img_frame_sink *s, const uint8_t *rgb, char *err, size_t errlen) {
    if (s == NULL || rgb == NULL)
        return eng_errorf(err, errlen, ENG_EINVAL, "img_sink_write: needs a sink and pixels");
    char name[40];
    snprintf(name, sizeof name, "frame_%06lu.png", s->frames);
    char *path = join_path(s->dir, name);
    if (path == NULL) return eng_errorf(err, errlen, ENG_ENOMEM, "img_sink_write: no memory");
    int rc = img_write_png(path, rgb, s->width, s->height, err, errlen);
    free(path);
    if (rc != 0) return rc;
    if (s->pipe_fd >= 0) {
        /* A broken MP4 does not stop the PNG frames; img_sink_close reports it. */
        int e = write_all_nosigpipe(s->pipe_fd, rgb, (size_t)s->width * s->height * 3);
        if (e != 0) {
            snprintf(s->pipe_msg, sizeof s->pipe_msg, "ffmpeg stopped reading at frame %lu (%s)",
                     s->frames, strerror(e));
            close(s->pipe_fd);
            s->pipe_fd = -1;
        }
    }
    s->frames++;
    return 0;
}

/* The last non-empty line of ffmpeg's log, for the failure message. */
static void last_log_line(const char *path, char *line, size_t cap) {
    line[0] = '\0';
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return;
    char buf[512];
    long size = (fseek(fp, 0, SEEK_END) == 0) ? ftell(fp) : -1;
    long start = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    size_t n = 0;
    if (size > 0 && fseek(fp, start, SEEK_SET) == 0) n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = 0;
    char *nl = strrchr(buf, '\n');
    snprintf(line, cap, "%s", nl != NULL ? nl + 1 : buf);
}

static int wait_child(pid_t pid, int *status) {
    for (;;) {
        if (waitpid(pid, status, 0) == pid) return 0;
        if (errno != EINTR) return errno;
    }
}

/* Waits for ffmpeg and says whether the MP4 is good. */
static int finish_ffmpeg(img_frame_sink *s, char *err, size_t errlen) {
    if (s->pipe_fd >= 0) close(s->pipe_fd); /* EOF: ffmpeg finishes the file */
    s->pipe_fd = -1;
    int status = 0, e = wait_child(s->ffmpeg, &status);
    if (e != 0)
        return eng_errorf(err, errlen, ENG_EIO, "ffmpeg for %s: waitpid: %s", s->mp4_path,
                          strerror(e));
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    char how[48], said[256];
    if (WIFEXITED(status))
        snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
    else
        snprintf(how, sizeof how, "was killed by signal %d",
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    last_log_line(s->log_path, said, sizeof said);
    if (ok && s->pipe_msg[0] == '\0') {
        struct stat st;
        if (stat(s->log_path, &st) == 0 && st.st_size == 0) (void)unlink(s->log_path);
        return 0;
    }
    return eng_errorf(err, errlen, ENG_EIO, "ffmpeg writing %s %s%s%s%s%s (log: %s)", s->mp4_path,
                      how, s->pipe_msg[0] ? "; " : "", s->pipe_msg, said[0] ? "; it said: " : "",
                      said, s->log_path);
}

int img_sink_close(img_frame_sink *s, int *mp4_written, char *err, size_t errlen) {
    if (mp4_written != NULL) *mp4_written = 0;
    if (s == NULL) return eng_errorf(err, errlen, ENG_EINVAL, "img_sink_close: no sink");
    int rc = 0;
    if (s->ffmpeg > 0) {
        rc = finish_ffmpeg(s, err, errlen);
        if (rc == 0 && mp4_written != NULL) *mp4_written = 1;
    }
    sink_free(s);
    return rc;
}

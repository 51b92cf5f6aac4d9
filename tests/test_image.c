/* Tests for engine/image.c. Every image is made here by encoding random (not flat) pixels with
 * libpng and libjpeg, so the decoder is compared with what the encoder was given: PNG must round
 * trip exactly in every colour type and bit depth, JPEG within a stated mean error. Broken,
 * foreign, truncated and oversized inputs must be refused with a message. img_prepare is compared
 * with a plain double-precision implementation of PIL's crop and triangle-filter resize written
 * here from the definition (not from image.c's structure), with crop boxes worked out by hand, and
 * with outputs of Pillow itself (stored below) for bit-exact parity with the reference. The frame
 * sink is checked with fake ffmpeg programs (a recorder and a failing one), with ffmpeg
 * absent, and with the real ffmpeg when one is installed.
 *
 * `test_image --write-corpus DIR` writes the fuzz seed corpus (tests/fuzz/corpus/image). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "engine/image.h"

#include "tests/test_util.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <png.h>
#include <jpeglib.h>

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void buf_put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL) abort();
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static uint8_t *xmalloc(size_t n) {
    uint8_t *p = malloc(n ? n : 1);
    if (p == NULL) abort();
    return p;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(tu_next(&s) >> 56);
}

/* ---------------------------------------------------------------------------------------------- */
/* Encoders                                                                                       */

static void png_buf_write(png_structp png, png_bytep d, size_t n) {
    buf_put(png_get_io_ptr(png), d, n);
}
static void png_buf_flush(png_structp png) {
    (void)png;
}

/* Encodes unpacked samples (one byte per sample below 8 bits, two big-endian bytes at 16). */
static buf encode_png(int w, int h, int ctype, int depth, int interlace, const uint8_t *samples,
                      const png_color *palette, int n_palette, const uint8_t *trans, int n_trans) {
    buf out = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (png == NULL || info == NULL || setjmp(png_jmpbuf(png))) abort();
    png_set_write_fn(png, &out, png_buf_write, png_buf_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype, interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette != NULL) png_set_PLTE(png, info, palette, n_palette);
    if (trans != NULL) png_set_tRNS(png, info, trans, n_trans, NULL);
    png_write_info(png, info);
    if (depth < 8) png_set_packing(png);
    int ch = ctype == PNG_COLOR_TYPE_RGB          ? 3
             : ctype == PNG_COLOR_TYPE_RGBA       ? 4
             : ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                  : 1;
    size_t row = (size_t)w * ch * (depth == 16 ? 2 : 1);
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)samples + (size_t)y * row;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return out;
}

static buf encode_jpeg(int w, int h, int comps, J_COLOR_SPACE cs, int quality, bool progressive,
                       const uint8_t *px) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *mem = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &mem, &size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)px + (size_t)c.next_scanline * w * comps;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    buf out = {0};
    buf_put(&out, mem, size);
    free(mem);
    return out;
}

/* Smooth random content (sums of random waves plus a little noise): JPEG's target material, so the
 * error bound tests the decoder rather than the encoder's handling of pure noise. */
static void smooth_image(uint8_t *px, int w, int h, int comps, uint64_t seed) {
    uint64_t s = seed;
    double f[4][4];
    for (int c = 0; c < comps; c++)
        for (int k = 0; k < 4; k++) f[c][k] = tu_uniform(&s) * (k < 2 ? 0.2 : 6.28);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < comps; c++) {
                double v = 128 + 60 * sin(x * f[c][0] + f[c][2]) + 50 * cos(y * f[c][1] + f[c][3]) +
                           4 * (tu_uniform(&s) - 0.5);
                px[((size_t)y * w + x) * comps + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

static uint32_t crc32_png(const uint8_t *d, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= d[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put_be32(buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    buf_put(b, x, 4);
}

static void put_chunk(buf *b, const char *type, const uint8_t *d, uint32_t n) {
    put_be32(b, n);
    size_t at = b->n;
    buf_put(b, type, 4);
    if (n) buf_put(b, d, n);
    put_be32(b, crc32_png(b->p + at, n + 4));
}

/* A PNG whose IHDR claims w x h RGB, followed by a small IDAT and IEND: enough for the header to be
 * read, nowhere near enough data for the claimed size. */
static buf crafted_png(uint32_t w, uint32_t h) {
    buf b = {0};
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    buf_put(&b, sig, 8);
    uint8_t ihdr[13] = {(uint8_t)(w >> 24),
                        (uint8_t)(w >> 16),
                        (uint8_t)(w >> 8),
                        (uint8_t)w,
                        (uint8_t)(h >> 24),
                        (uint8_t)(h >> 16),
                        (uint8_t)(h >> 8),
                        (uint8_t)h,
                        8,
                        2,
                        0,
                        0,
                        0};
    put_chunk(&b, "IHDR", ihdr, 13);
    static const uint8_t idat[10] = {0x78, 0x9c, 0x63, 0, 0, 0, 0, 0, 0, 0};
    put_chunk(&b, "IDAT", idat, 10);
    put_chunk(&b, "IEND", NULL, 0);
    return b;
}

/* ---------------------------------------------------------------------------------------------- */
/* Decoding                                                                                       */

typedef struct png_case {
    const char *name;
    int w, h, ctype, depth, interlace;
} png_case;

static int channels_of(int ctype) {
    switch (ctype) {
    case PNG_COLOR_TYPE_RGB:
        return 3;
    case PNG_COLOR_TYPE_RGBA:
        return 4;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        return 2;
    default:
        return 1;
    }
}

/* The RGB8 an image with these samples must decode to: alpha dropped, grey replicated, low bit
 * depths scaled to 0..255, 16-bit reduced to the high byte, palette looked up. */
static void expected_rgb(const png_case *pc, const uint8_t *samples, const png_color *pal,
                         uint8_t *rgb) {
    int ch = channels_of(pc->ctype), bps = pc->depth == 16 ? 2 : 1;
    for (size_t i = 0; i < (size_t)pc->w * pc->h; i++) {
        const uint8_t *s = samples + i * ch * bps;
        uint8_t v[4];
        for (int c = 0; c < ch; c++) {
            int x = s[c * bps]; /* high byte at 16 bits */
            if (pc->depth < 8 && pc->ctype != PNG_COLOR_TYPE_PALETTE)
                x = x * 255 / ((1 << pc->depth) - 1);
            v[c] = (uint8_t)x;
        }
        uint8_t *o = rgb + i * 3;
        if (pc->ctype == PNG_COLOR_TYPE_PALETTE) {
            o[0] = pal[v[0]].red, o[1] = pal[v[0]].green, o[2] = pal[v[0]].blue;
        } else if (ch <= 2) {
            o[0] = o[1] = o[2] = v[0];
        } else {
            o[0] = v[0], o[1] = v[1], o[2] = v[2];
        }
    }
}

static buf make_png_case(const png_case *pc, uint64_t seed, uint8_t **expect) {
    int ch = channels_of(pc->ctype), bps = pc->depth == 16 ? 2 : 1;
    size_t n = (size_t)pc->w * pc->h * ch * bps;
    uint8_t *samples = xmalloc(n);
    fill_random(samples, n, seed);
    png_color pal[256];
    uint8_t trans[256];
    int n_pal = 0;
    if (pc->depth < 8) { /* keep sample values within the bit depth */
        int levels = 1 << pc->depth;
        if (pc->ctype == PNG_COLOR_TYPE_PALETTE && levels > 4) levels -= 3; /* unused entries */
        for (size_t i = 0; i < n; i++) samples[i] = (uint8_t)(samples[i] % levels);
    }
    if (pc->ctype == PNG_COLOR_TYPE_PALETTE) {
        n_pal = 1 << (pc->depth < 8 ? pc->depth : 8);
        uint8_t rnd[768];
        fill_random(rnd, sizeof rnd, seed ^ 0x5a5a);
        for (int i = 0; i < n_pal; i++)
            pal[i] = (png_color){rnd[3 * i], rnd[3 * i + 1], rnd[3 * i + 2]};
        for (int i = 0; i < n_pal; i++) trans[i] = (uint8_t)(i * 37);
        if (pc->depth == 8) /* indices may use every entry */
            for (size_t i = 0; i < n; i++) samples[i] = (uint8_t)(samples[i] % n_pal);
    }
    buf b = encode_png(pc->w, pc->h, pc->ctype, pc->depth, pc->interlace, samples,
                       n_pal ? pal : NULL, n_pal, n_pal ? trans : NULL, n_pal ? n_pal / 2 : 0);
    *expect = xmalloc((size_t)pc->w * pc->h * 3);
    expected_rgb(pc, samples, pal, *expect);
    free(samples);
    return b;
}

static size_t count_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

static void test_png_round_trips(void) {
    static const png_case cases[] = {
        {"RGB8", 37, 23, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE},
        {"RGBA8", 31, 17, PNG_COLOR_TYPE_RGBA, 8, PNG_INTERLACE_NONE},
        {"grey8", 29, 19, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE},
        {"grey+alpha8", 13, 11, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE},
        {"grey1", 21, 9, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE},
        {"grey2", 22, 9, PNG_COLOR_TYPE_GRAY, 2, PNG_INTERLACE_NONE},
        {"grey4", 23, 9, PNG_COLOR_TYPE_GRAY, 4, PNG_INTERLACE_NONE},
        {"palette8+tRNS", 33, 21, PNG_COLOR_TYPE_PALETTE, 8, PNG_INTERLACE_NONE},
        {"palette4+tRNS", 35, 13, PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_NONE},
        {"palette1", 19, 7, PNG_COLOR_TYPE_PALETTE, 1, PNG_INTERLACE_NONE},
        {"RGB16", 27, 15, PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_NONE},
        {"RGBA16", 25, 14, PNG_COLOR_TYPE_RGBA, 16, PNG_INTERLACE_NONE},
        {"grey16", 24, 13, PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_NONE},
        {"grey+alpha16", 20, 12, PNG_COLOR_TYPE_GRAY_ALPHA, 16, PNG_INTERLACE_NONE},
        {"RGB8 interlaced", 37, 29, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7},
        {"RGBA16 interlaced", 17, 19, PNG_COLOR_TYPE_RGBA, 16, PNG_INTERLACE_ADAM7},
        {"palette2 interlaced", 9, 10, PNG_COLOR_TYPE_PALETTE, 2, PNG_INTERLACE_ADAM7},
        {"grey8 interlaced 1x1", 1, 1, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_ADAM7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const png_case *pc = &cases[i];
        uint8_t *expect;
        buf b = make_png_case(pc, 1000 + i, &expect);
        img_rgb8 img;
        char err[512] = "";
        int rc = img_decode(b.p, b.n, pc->name, IMG_MAX_PIXELS, &img, err, sizeof err);
        size_t n = (size_t)pc->w * pc->h * 3;
        size_t diff = rc == 0 && img.width == pc->w && img.height == pc->h
                          ? count_diff(img.pixels, expect, n)
                          : n;
        tu_check(rc == 0 && diff == 0,
                 "PNG %s %dx%d (%zu bytes): rc %d, %dx%d, %zu of %zu bytes "
                 "differ from the encoded pixels %s",
                 pc->name, pc->w, pc->h, b.n, rc, img.width, img.height, diff, n, err);
        img_free(&img);
        free(expect);
        free(b.p);
    }
}

static void test_jpeg(void) {
    struct {
        const char *name;
        int w, h, comps;
        J_COLOR_SPACE cs;
        bool progressive;
    } cases[] = {
        {"baseline 4:2:0 RGB", 96, 64, 3, JCS_RGB, false},
        {"progressive RGB", 75, 41, 3, JCS_RGB, true},
        {"greyscale", 64, 48, 1, JCS_GRAYSCALE, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int w = cases[i].w, h = cases[i].h, comps = cases[i].comps;
        uint8_t *px = xmalloc((size_t)w * h * comps);
        smooth_image(px, w, h, comps, 77 + i);
        buf b = encode_jpeg(w, h, comps, cases[i].cs, 95, cases[i].progressive, px);
        img_rgb8 img;
        char err[512] = "";
        int rc = img_decode(b.p, b.n, cases[i].name, IMG_MAX_PIXELS, &img, err, sizeof err);
        double sum = 0;
        int maxd = 0;
        bool grey_ok = true;
        if (rc == 0 && img.width == w && img.height == h) {
            for (size_t p = 0; p < (size_t)w * h; p++)
                for (int c = 0; c < 3; c++) {
                    int d = abs(img.pixels[3 * p + c] - px[p * comps + (comps == 1 ? 0 : c)]);
                    sum += d;
                    if (d > maxd) maxd = d;
                }
            if (comps == 1)
                for (size_t p = 0; p < (size_t)w * h; p++)
                    grey_ok &= img.pixels[3 * p] == img.pixels[3 * p + 1] &&
                               img.pixels[3 * p] == img.pixels[3 * p + 2];
        } else {
            sum = INFINITY;
        }
        double mae = sum / ((double)w * h * 3);
        tu_check(rc == 0 && mae <= 1.5 && grey_ok,
                 "JPEG q95 %s %dx%d (%zu bytes): rc %d, mean abs error %.3f (bound 1.5), max %d%s "
                 "%s",
                 cases[i].name, w, h, b.n, rc, mae, maxd,
                 comps == 1 ? (grey_ok ? ", R=G=B" : ", R/G/B differ") : "", err);
        img_free(&img);
        free(px);
        free(b.p);
    }
    /* CMYK: refused with a message that says so. */
    uint8_t *px = xmalloc(16 * 16 * 4);
    fill_random(px, 16 * 16 * 4, 5);
    buf b = encode_jpeg(16, 16, 4, JCS_CMYK, 90, false, px);
    img_rgb8 img;
    char err[512] = "";
    int rc = img_decode(b.p, b.n, "cmyk.jpg", IMG_MAX_PIXELS, &img, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "CMYK") != NULL && img.pixels == NULL,
             "CMYK JPEG refused: rc %d, \"%s\"", rc, err);
    free(px);
    free(b.p);
}

static void expect_refused(const uint8_t *d, size_t n, size_t max_pixels, const char *what,
                           const char *must_say) {
    img_rgb8 img;
    char err[512] = "";
    int rc = img_decode(d, n, what, max_pixels, &img, err, sizeof err);
    bool said = must_say == NULL || strstr(err, must_say) != NULL;
    tu_check(rc < 0 && img.pixels == NULL && err[0] != '\0' && said,
             "%s refused: rc %d, \"%s\"%s%s", what, rc, err, must_say ? " (must say: " : "",
             must_say ? must_say : "");
    if (rc == 0) img_free(&img);
}

static void test_refusals(void) {
    uint8_t *expect;
    png_case pc = {"RGB8", 64, 48, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE};
    buf png = make_png_case(&pc, 9, &expect);
    free(expect);
    uint8_t *px = xmalloc(64 * 48 * 3);
    smooth_image(px, 64, 48, 3, 10);
    buf jpg = encode_jpeg(64, 48, 3, JCS_RGB, 95, false, px);
    buf pjpg = encode_jpeg(64, 48, 3, JCS_RGB, 95, true, px);
    free(px);
    char what[96];

    /* Truncation anywhere, including just before IEND's CRC and before JPEG's end marker. */
    size_t png_cuts[] = {8, 20, 40, png.n / 2, png.n - 13, png.n - 12, png.n - 1};
    for (size_t i = 0; i < sizeof png_cuts / sizeof png_cuts[0]; i++) {
        snprintf(what, sizeof what, "PNG cut to %zu of %zu bytes", png_cuts[i], png.n);
        expect_refused(png.p, png_cuts[i], IMG_MAX_PIXELS, what, NULL);
    }
    size_t jpg_cuts[] = {3, 100, jpg.n / 2, jpg.n - 2};
    for (size_t i = 0; i < sizeof jpg_cuts / sizeof jpg_cuts[0]; i++) {
        snprintf(what, sizeof what, "JPEG cut to %zu of %zu bytes", jpg_cuts[i], jpg.n);
        expect_refused(jpg.p, jpg_cuts[i], IMG_MAX_PIXELS, what, NULL);
    }
    snprintf(what, sizeof what, "progressive JPEG cut to %zu of %zu bytes", pjpg.n * 2 / 3, pjpg.n);
    expect_refused(pjpg.p, pjpg.n * 2 / 3, IMG_MAX_PIXELS, what, NULL);

    /* A flipped bit inside the PNG's IDAT fails its CRC. */
    buf bad = {0};
    buf_put(&bad, png.p, png.n);
    bad.p[60] ^= 0x10;
    expect_refused(bad.p, bad.n, IMG_MAX_PIXELS, "PNG with a flipped IDAT bit", "CRC");
    free(bad.p);

    /* Not images. */
    uint8_t garbage[300];
    fill_random(garbage, sizeof garbage, 3);
    garbage[0] = 0x42;
    expect_refused(garbage, sizeof garbage, IMG_MAX_PIXELS, "random bytes", "not a PNG or JPEG");
    expect_refused(garbage, 0, IMG_MAX_PIXELS, "empty data", "empty");
    expect_refused((const uint8_t *)"GIF89a\x01\x00\x01\x00", 10, IMG_MAX_PIXELS, "a GIF", "GIF");
    expect_refused((const uint8_t *)"\xff\xd8\xff", 3, IMG_MAX_PIXELS, "bare JPEG magic", NULL);
    expect_refused(png.p, 8, IMG_MAX_PIXELS, "bare PNG signature", NULL);
    uint8_t jgarbage[300];
    memcpy(jgarbage, garbage, sizeof jgarbage);
    jgarbage[0] = 0xff, jgarbage[1] = 0xd8, jgarbage[2] = 0xff;
    expect_refused(jgarbage, sizeof jgarbage, IMG_MAX_PIXELS, "JPEG magic then garbage", NULL);

    /* Sizes: checked from the header, before any pixel buffer (the data cannot back the claim, so
     * a size message rather than a truncation message shows where it stopped). */
    buf huge = crafted_png(100000, 100000);
    expect_refused(huge.p, huge.n, (size_t)-1, "PNG claiming 100000x100000", "100000x100000");
    free(huge.p);
    buf wide = crafted_png(20000, 1);
    expect_refused(wide.p, wide.n, (size_t)-1, "PNG claiming 20000x1 (side limit)", "20000x1");
    free(wide.p);
    buf zero = crafted_png(0, 10);
    expect_refused(zero.p, zero.n, IMG_MAX_PIXELS, "PNG claiming width 0", NULL);
    free(zero.p);
    buf bj = {0};
    buf_put(&bj, jpg.p, jpg.n);
    for (size_t i = 2; i + 8 < bj.n; i++)
        if (bj.p[i] == 0xff && bj.p[i + 1] == 0xc0) { /* SOF0: len, precision, height, width */
            bj.p[i + 5] = 0xfd, bj.p[i + 6] = 0xe8, bj.p[i + 7] = 0xfd, bj.p[i + 8] = 0xe8;
            break;
        }
    expect_refused(bj.p, bj.n, (size_t)-1, "JPEG claiming 65000x65000", "65000x65000");
    free(bj.p);

    /* max_pixels is a limit, inclusive. */
    img_rgb8 img;
    char err[512] = "";
    int rc = img_decode(png.p, png.n, "PNG 64x48", 64 * 48, &img, err, sizeof err);
    tu_check(rc == 0, "PNG 64x48 accepted with max_pixels 3072: rc %d %s", rc, err);
    img_free(&img);
    expect_refused(png.p, png.n, 64 * 48 - 1, "PNG 64x48 with max_pixels 3071", "3071");
    rc = img_decode(jpg.p, jpg.n, "JPEG 64x48", 64 * 48, &img, err, sizeof err);
    tu_check(rc == 0, "JPEG 64x48 accepted with max_pixels 3072: rc %d %s", rc, err);
    img_free(&img);
    expect_refused(jpg.p, jpg.n, 64 * 48 - 1, "JPEG 64x48 with max_pixels 3071", "3071");
    free(png.p);
    free(jpg.p);
    free(pjpg.p);
}

/* ---------------------------------------------------------------------------------------------- */
/* img_prepare against a double-precision reference                                               */

/* One resampling pass along an axis, straight from the definition: output sample o covers the
 * input interval around centre (o + 0.5) * scale; each input sample i (centre i + 0.5) weighs
 * tri((i + 0.5 - centre) / fs), fs = max(scale, 1); weights normalised; result rounded to 8 bits
 * (PIL keeps an 8-bit image between the passes). Element (line l, index i, channel c) of `in` is
 * in[l * in_line + i * in_step + c]. */
static void ref_pass(const uint8_t *in, int in_n, int lines, size_t in_step, size_t in_line,
                     int out_n, uint8_t *out, size_t out_step, size_t out_line) {
    double scale = (double)in_n / out_n, fs = scale > 1 ? scale : 1;
    for (int l = 0; l < lines; l++)
        for (int o = 0; o < out_n; o++) {
            double centre = (o + 0.5) * scale, sw = 0, sv[3] = {0, 0, 0};
            int lo = (int)floor(centre - fs) - 1, hi = (int)ceil(centre + fs) + 1;
            for (int i = lo < 0 ? 0 : lo; i <= hi && i < in_n; i++) {
                double wgt = 1.0 - fabs(i + 0.5 - centre) / fs;
                if (wgt <= 0) continue;
                sw += wgt;
                for (int c = 0; c < 3; c++)
                    sv[c] += wgt * in[(size_t)l * in_line + (size_t)i * in_step + c];
            }
            for (int c = 0; c < 3; c++) {
                double v = floor(sv[c] / sw + 0.5);
                out[(size_t)l * out_line + (size_t)o * out_step + c] = (uint8_t)(v < 0     ? 0
                                                                                 : v > 255 ? 255
                                                                                           : v);
            }
        }
}

/* Crop box[0..3] of src, then horizontal and vertical passes. */
static uint8_t *ref_prepare(const img_rgb8 *src, const long box[4], int ow, int oh) {
    int cw = (int)(box[2] - box[0]), ch = (int)(box[3] - box[1]);
    size_t stride = (size_t)src->width * 3;
    const uint8_t *crop = src->pixels + (size_t)box[1] * stride + (size_t)box[0] * 3;
    uint8_t *tmp = xmalloc((size_t)ow * ch * 3), *out = xmalloc((size_t)ow * oh * 3);
    ref_pass(crop, cw, ch, 3, stride, ow, tmp, 3, (size_t)ow * 3);
    ref_pass(tmp, ch, ow, (size_t)ow * 3, 3, oh, out, (size_t)ow * 3, 3);
    free(tmp);
    return out;
}

/* The reference's _resizecrop in floating point, as Python evaluates it; rint() rounds halves to
 * even like Python's round() in the default rounding mode. */
static void ref_crop_box(int w, int h, int ow, int oh, long box[4]) {
    int nw, nh;
    if ((double)h / w > (double)oh / ow) {
        nw = w;
        nh = (int)((double)nw * oh / ow);
    } else {
        nh = h;
        nw = (int)((double)nh * ow / oh);
    }
    box[0] = (long)rint((w - nw) / 2.0);
    box[1] = (long)rint((h - nh) / 2.0);
    box[2] = (long)rint((w + nw) / 2.0);
    box[3] = (long)rint((h + nh) / 2.0);
}

static img_rgb8 random_image(int w, int h, uint64_t seed) {
    img_rgb8 img = {w, h, xmalloc((size_t)w * h * 3)};
    fill_random(img.pixels, (size_t)w * h * 3, seed);
    return img;
}

/* Runs img_prepare and turns its planes back into packed u8 (exact: x = 2u/255 - 1). Returns NULL
 * (and prints) on error; *exact_float says every value equalled (float)u / 255 * 2 - 1 bit for bit.
 */
static uint8_t *prepare_u8(const img_rgb8 *src, int ow, int oh, bool *exact_float) {
    size_t plane = (size_t)ow * oh;
    float *planes = malloc(plane * 3 * sizeof *planes);
    char err[512] = "";
    int rc = img_prepare(src, ow, oh, planes, err, sizeof err);
    if (rc != 0) {
        printf("     img_prepare %dx%d -> %dx%d failed: %s\n", src->width, src->height, ow, oh,
               err);
        free(planes);
        return NULL;
    }
    uint8_t *out = xmalloc(plane * 3);
    bool exact = true;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            float x = planes[(size_t)c * plane + i];
            long u = lrintf((x + 1.0f) * 127.5f);
            u = u < 0 ? 0 : u > 255 ? 255 : u;
            out[3 * i + c] = (uint8_t)u;
            exact &= x == (float)u / 255.0f * 2.0f - 1.0f;
        }
    free(planes);
    if (exact_float) *exact_float = exact;
    return out;
}

static void compare_u8(const uint8_t *a, const uint8_t *b, size_t n, int *maxd, size_t *n_off,
                       double *mean) {
    *maxd = 0;
    *n_off = 0;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs(a[i] - b[i]);
        if (d > *maxd) *maxd = d;
        *n_off += d != 0;
        s += d;
    }
    *mean = s / (double)n;
}

static void test_prepare_identity(void) {
    img_rgb8 src = random_image(640, 352, 21);
    bool exact = false;
    uint8_t *u = prepare_u8(&src, 640, 352, &exact);
    size_t diff = u ? count_diff(u, src.pixels, 640 * 352 * 3) : 1;
    tu_check(u && diff == 0 && exact,
             "(a) 640x352 input passes through: %zu values differ, every value == u8/255*2-1 "
             "bit for bit: %s",
             diff, exact ? "yes" : "no");
    free(u);
    /* 640x400: the centre crop is 640x352, so the result is exactly rows 24..375. */
    img_rgb8 tall = random_image(640, 400, 22);
    u = prepare_u8(&tall, 640, 352, NULL);
    diff = u ? count_diff(u, tall.pixels + (size_t)24 * 640 * 3, 640 * 352 * 3) : 1;
    tu_check(u && diff == 0, "(a) 640x400 -> crop rows 24..375 copied exactly: %zu differ", diff);
    free(u);
    free(tall.pixels);
    free(src.pixels);
}

static void test_prepare_crops(void) {
    /* Boxes worked out by hand from model-vae-clip.md 4.1 (left, top, right, bottom). */
    static const struct {
        int w, h;
        long box[4];
        const char *why;
    } cases[] = {
        {1920, 1080, {0, 12, 1920, 1068}, "new_h = 1920*352/640 = 1056"},
        {1080, 1920, {0, 663, 1080, 1257}, "new_h = 594, top 1326/2"},
        {641, 353, {0, 0, 641, 352}, "new_h = int(352.55) = 352; 0.5 -> 0, 352.5 -> 352"},
        {1000, 1000, {0, 225, 1000, 775}, "new_h = 550"},
        {2000,
         705,
         {360, 0, 1640, 705},
         "new_w = int(1281.8) = 1281; 359.5 -> 360, 1640.5 -> 1640"},
        {2001, 700, {364, 0, 1636, 700}, "new_w = 1272; 364.5 -> 364, 1636.5 -> 1636"},
        {1282, 705, {0, 0, 1282, 705}, "new_w = 1281; 0.5 -> 0, 1281.5 -> 1282: crop grows"},
        {1280, 704, {0, 0, 1280, 704}, "exact aspect: h/w == 352/640 takes the else branch"},
        {3, 2, {0, 0, 3, 2}, "new_h = int(1.65) = 1; 0.5 -> 0, 1.5 -> 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int w = cases[i].w, h = cases[i].h;
        long rb[4];
        ref_crop_box(w, h, 640, 352, rb);
        bool ref_agrees = memcmp(rb, cases[i].box, sizeof rb) == 0;
        img_rgb8 src = random_image(w, h, 100 + i);
        uint8_t *got = prepare_u8(&src, 640, 352, NULL);
        uint8_t *want = ref_prepare(&src, cases[i].box, 640, 352);
        /* The same resize of a box one pixel off, to show the comparison can tell boxes apart. */
        long off[4];
        memcpy(off, cases[i].box, sizeof off);
        if (off[0] > 0)
            off[0]--;
        else if (off[1] > 0)
            off[1]--;
        else if (off[2] < w)
            off[2]++;
        else if (off[3] < h)
            off[3]++;
        else
            off[2]--;
        uint8_t *other = ref_prepare(&src, off, 640, 352);
        int maxd = 255, maxo;
        size_t n_off = 0, n_o;
        double mean = 0, mean_o;
        size_t n = 640 * 352 * 3;
        if (got) compare_u8(got, want, n, &maxd, &n_off, &mean);
        compare_u8(other, want, n, &maxo, &n_o, &mean_o);
        tu_check(got && maxd <= 1 && ref_agrees && (n_o == 0 || mean_o > 10 * mean),
                 "(b) %dx%d: box (%ld,%ld,%ld,%ld) [%s]; float reference box agrees: %s; "
                 "img_prepare vs resize of that box: max diff %d, %zu of %zu off by 1; box one "
                 "pixel off: mean diff %.2f vs %.4f",
                 w, h, cases[i].box[0], cases[i].box[1], cases[i].box[2], cases[i].box[3],
                 cases[i].why, ref_agrees ? "yes" : "NO", maxd, n_off, n, mean_o, mean);
        free(got);
        free(want);
        free(other);
        free(src.pixels);
    }
    /* A crop that rounds to nothing is an error, not an empty resize. */
    img_rgb8 thin = random_image(1, 4, 7);
    float planes[16 * 9 * 3];
    char err[512] = "";
    int rc = img_prepare(&thin, 16, 9, planes, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "empty") != NULL,
             "(b) 1x4 to 16:9: crop height int(0.56) = 0 refused: rc %d, \"%s\"", rc, err);
    free(thin.pixels);
}

static void test_prepare_resampler(void) {
    static const struct {
        int w, h, ow, oh;
    } cases[] = {
        {1280, 704, 640, 352},  {1000, 700, 640, 352}, {320, 176, 640, 352}, {640, 353, 640, 352},
        {700, 1000, 64, 36},    {3, 2, 640, 352},      {97, 61, 40, 23},     {5, 7, 11, 13},
        {4000, 2200, 640, 352}, {641, 352, 640, 352},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int w = cases[i].w, h = cases[i].h, ow = cases[i].ow, oh = cases[i].oh;
        img_rgb8 src = random_image(w, h, 300 + i);
        if (i % 2 == 1) smooth_image(src.pixels, w, h, 3, 300 + i); /* and smooth content */
        long box[4];
        ref_crop_box(w, h, ow, oh, box);
        uint8_t *got = prepare_u8(&src, ow, oh, NULL);
        uint8_t *want = ref_prepare(&src, box, ow, oh);
        int maxd = 255;
        size_t n_off = 0, n = (size_t)ow * oh * 3;
        double mean = 0;
        if (got) compare_u8(got, want, n, &maxd, &n_off, &mean);
        tu_check(got && maxd <= 1,
                 "(c) %dx%d -> crop %ldx%ld -> %dx%d (%s): max diff %d (bound 1 LSB), %zu of %zu "
                 "values off by 1",
                 w, h, box[2] - box[0], box[3] - box[1], ow, oh, i % 2 ? "smooth" : "noise", maxd,
                 n_off, n);
        free(got);
        free(want);
        free(src.pixels);
    }
}

/* Pillow's own output, for parity with the reference itself: Pillow 9.4.0 (Debian 12's python3-pil)
 * running the reference's _resizecrop and then .resize((ow, oh), Image.BILINEAR) on images filled
 * like fill_random(seed) (splitmix64, top byte). Stored as FNV-1a 64 of the RGB output, and in full
 * for the smallest case. To regenerate: build the same bytes in Python, apply the two steps, hash.
 */
static const char pil_37x23_to_16x9[] = "93ba7087898697746e8c507693758d839f935fa9ba8597a091826e7681"
                                        "879978b1585d947c7c579ca2848ab4657985a1"
                                        "90bf7798956f8f696e8b6f90777b835278866180857d5d7872688e7b6b"
                                        "908173975c73908d7a887c6d7fa3697f947286"
                                        "6480a0905f8d7a76699bae706b9a926b887c84569b69777c7f7eb09071"
                                        "967f70a6a1968c86869d79725d5fbca56dae81"
                                        "6f918963858b7e89806d9773558d7a6859856e85ae88919a858190898d"
                                        "88626e8f918f896a7f7b8997887dbba156a0ca"
                                        "808a707a7ab48864a082707c897895806c7f7d8da284856c9784768785"
                                        "7d71686c937b7f9499818da2938aa465509589"
                                        "9090546c678c728f8b886f9d8777744f7d8257956d637b619d7e79a471"
                                        "9a90788c8f987770a07e7786978d7266785e9d"
                                        "8d9084936197716b866e6d957f92a57b6586768e6960797c726e848959"
                                        "77667f7e7b7b59668c8a6e94984e585f54957e"
                                        "85826a898e6f70886e7d799177a36f7a888c818c6e77888e8f7e916e65"
                                        "77708d7a56635a658c77a791917c887da49a60"
                                        "745d8b967998aa667a908e8269877199908a909d5f73919fa165925265"
                                        "7b816b9184928278867b8195709085767c8586";

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void test_prepare_pillow(void) {
    static const struct {
        int w, h, ow, oh;
        uint64_t seed, fnv;
    } cases[] = {
        {37, 23, 16, 9, 901, 0x58fff79192c17bbbull},
        {9, 7, 20, 11, 902, 0x76f9240230aa324aull},
        {1000, 700, 640, 352, 903, 0x04a9e49462353baeull},
        {1920, 1080, 640, 352, 904, 0xe823e9cba7a9b057ull},
        {641, 353, 640, 352, 905, 0x25a53d8b448bc331ull},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        img_rgb8 src = random_image(cases[i].w, cases[i].h, cases[i].seed);
        uint8_t *got = prepare_u8(&src, cases[i].ow, cases[i].oh, NULL);
        size_t n = (size_t)cases[i].ow * cases[i].oh * 3;
        uint64_t h = got ? fnv1a64(got, n) : 0;
        char detail[96] = "";
        if (got && i == 0) {
            size_t diff = 0;
            for (size_t k = 0; k < n; k++) {
                unsigned v;
                sscanf(pil_37x23_to_16x9 + 2 * k, "%2x", &v);
                diff += got[k] != v;
            }
            snprintf(detail, sizeof detail, "; %zu of %zu bytes differ from the stored output",
                     diff, n);
        }
        tu_check(h == cases[i].fnv,
                 "(pillow) %dx%d -> %dx%d bit-exact with Pillow 9.4: FNV %016llx, Pillow's "
                 "%016llx%s",
                 cases[i].w, cases[i].h, cases[i].ow, cases[i].oh, (unsigned long long)h,
                 (unsigned long long)cases[i].fnv, detail);
        free(got);
        free(src.pixels);
    }
}

static void test_prepare_constant(void) {
    static const struct {
        int w, h;
        uint8_t rgb[3];
    } cases[] = {
        {1000, 700, {17, 128, 255}},
        {300, 200, {0, 1, 254}},
        {4000, 2200, {255, 255, 255}},
        {641, 353, {99, 3, 200}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        img_rgb8 src = {cases[i].w, cases[i].h, xmalloc((size_t)cases[i].w * cases[i].h * 3)};
        for (size_t p = 0; p < (size_t)src.width * src.height; p++)
            memcpy(src.pixels + 3 * p, cases[i].rgb, 3);
        uint8_t *got = prepare_u8(&src, 640, 352, NULL);
        size_t bad = 0;
        for (size_t p = 0; got && p < 640 * 352; p++)
            bad += memcmp(got + 3 * p, cases[i].rgb, 3) != 0;
        tu_check(got && bad == 0, "(d) constant (%d,%d,%d) %dx%d -> 640x352: %zu pixels changed",
                 cases[i].rgb[0], cases[i].rgb[1], cases[i].rgb[2], src.width, src.height, bad);
        free(got);
        free(src.pixels);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Files, frame sink                                                                              */

static char tmp_root[256];

static void rm_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        if (d != NULL) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static bool write_file(const char *path, const void *d, size_t n, int mode) {
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) return false;
    bool ok = fwrite(d, 1, n, fp) == n;
    ok &= fclose(fp) == 0;
    if (ok && mode) ok = chmod(path, (mode_t)mode) == 0;
    return ok;
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return NULL;
    buf b = {0};
    uint8_t tmp[65536];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, fp)) > 0) buf_put(&b, tmp, r);
    fclose(fp);
    *n = b.n;
    if (b.p == NULL) b.p = xmalloc(1);
    return b.p;
}

static void test_files(void) {
    char path[512];
    img_rgb8 src = random_image(45, 31, 41);
    char err[512] = "";
    snprintf(path, sizeof path, "%s/written.png", tmp_root);
    int rc = img_write_png(path, src.pixels, 45, 31, err, sizeof err);
    img_rgb8 back = {0};
    int rc2 = rc == 0 ? img_load(path, IMG_MAX_PIXELS, &back, err, sizeof err) : -1;
    size_t diff = rc2 == 0 && back.width == 45 && back.height == 31
                      ? count_diff(back.pixels, src.pixels, 45 * 31 * 3)
                      : 1;
    tu_check(rc == 0 && rc2 == 0 && diff == 0,
             "img_write_png then img_load 45x31: rc %d/%d, %zu bytes differ %s", rc, rc2, diff,
             err);
    img_free(&back);
    snprintf(path, sizeof path, "%s/no/such/folder/x.png", tmp_root);
    rc = img_write_png(path, src.pixels, 45, 31, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "no/such/folder") != NULL,
             "img_write_png into a missing folder: rc %d, \"%s\"", rc, err);
    rc = img_load(path, IMG_MAX_PIXELS, &back, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "x.png") != NULL, "img_load of a missing file: rc %d, \"%s\"",
             rc, err);
    free(src.pixels);
}

#define SINK_W 64
#define SINK_H 48
#define SINK_N 5

static uint8_t *sink_frames(void) {
    size_t fb = (size_t)SINK_W * SINK_H * 3;
    uint8_t *f = xmalloc(fb * SINK_N);
    fill_random(f, fb * SINK_N, 51);
    return f;
}

/* Opens a sink into dir, writes the frames, closes; returns close's rc. */
static int run_sink(const char *dir, const char *mp4, const uint8_t *frames, int *mp4_written,
                    char *err, size_t errlen, int delay_ms) {
    img_frame_sink *s = NULL;
    err[0] = '\0';
    int rc = img_sink_open(dir, mp4, SINK_W, SINK_H, 16, &s, err, errlen);
    if (rc != 0) return rc;
    if (delay_ms) { /* let a failing fake ffmpeg exit first, so writes meet a closed pipe */
        struct timespec ts = {0, delay_ms * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < SINK_N && rc == 0; i++)
        rc = img_sink_write(s, frames + (size_t)i * SINK_W * SINK_H * 3, err, errlen);
    char err2[512] = "";
    int rc2 = img_sink_close(s, mp4_written, err2, sizeof err2);
    if (rc == 0 && rc2 != 0) snprintf(err, errlen, "%s", err2);
    return rc ? rc : rc2;
}

static size_t frames_match(const char *dir, const uint8_t *frames) {
    size_t good = 0;
    for (int i = 0; i < SINK_N; i++) {
        char path[512], err[512];
        snprintf(path, sizeof path, "%s/frame_%06d.png", dir, i);
        img_rgb8 img;
        if (img_load(path, IMG_MAX_PIXELS, &img, err, sizeof err) == 0 && img.width == SINK_W &&
            img.height == SINK_H &&
            memcmp(img.pixels, frames + (size_t)i * SINK_W * SINK_H * 3, SINK_W * SINK_H * 3) == 0)
            good++;
        img_free(&img);
    }
    return good;
}

static bool ffmpeg_on_path(const char *path_var) {
    char *copy = strdup(path_var ? path_var : "");
    bool found = false;
    for (char *save = NULL, *d = strtok_r(copy, ":", &save); d && !found;
         d = strtok_r(NULL, ":", &save)) {
        char p[1024];
        snprintf(p, sizeof p, "%s/ffmpeg", d);
        found = access(p, X_OK) == 0;
    }
    free(copy);
    return found;
}

static void test_sink(void) {
    uint8_t *frames = sink_frames();
    char *orig_path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
    char dir[512], mp4[512], bin[512], err[1024] = "";
    int written = -1;

    /* No MP4 asked: PNGs only, into a folder created with its parents. */
    snprintf(dir, sizeof dir, "%s/a/b/frames", tmp_root);
    int rc = run_sink(dir, NULL, frames, &written, err, sizeof err, 0);
    size_t good = frames_match(dir, frames);
    tu_check(rc == 0 && written == 0 && good == SINK_N,
             "sink without MP4: rc %d, mp4_written %d, %zu of %d PNGs decode back exactly %s", rc,
             written, good, SINK_N, err);

    /* A fake ffmpeg that records its arguments and stdin: the pipe carries the raw frames. */
    snprintf(bin, sizeof bin, "%s/fake_ok", tmp_root);
    mkdir(bin, 0755);
    char script[512];
    snprintf(script, sizeof script, "%s/ffmpeg", bin);
    const char *rec = "#!/bin/sh\nfor a in \"$@\"; do out=\"$a\"; done\n"
                      "printf '%s\\n' \"$@\" > \"$out.args\"\nexec /bin/cat > \"$out\"\n";
    write_file(script, rec, strlen(rec), 0755);
    setenv("PATH", bin, 1);
    snprintf(dir, sizeof dir, "%s/rec", tmp_root);
    snprintf(mp4, sizeof mp4, "%s/rec.mp4", tmp_root);
    rc = run_sink(dir, mp4, frames, &written, err, sizeof err, 0);
    size_t n = 0, na = 0;
    uint8_t *raw = read_file(mp4, &n);
    char args_path[600];
    snprintf(args_path, sizeof args_path, "%s.args", mp4);
    uint8_t *args = read_file(args_path, &na);
    size_t want = (size_t)SINK_N * SINK_W * SINK_H * 3;
    bool same = raw && n == want && memcmp(raw, frames, want) == 0;
    bool args_ok = args && na > 0 && (args[na - 1] = 0, true) &&
                   strstr((char *)args, "rawvideo\n-pix_fmt\nrgb24\n-s\n64x48\n-r\n16\n-i\n-\n") &&
                   strstr((char *)args, "libx264\n-pix_fmt\nyuv420p\n-crf\n18\n");
    tu_check(rc == 0 && written == 1 && same && args_ok && frames_match(dir, frames) == SINK_N,
             "sink with a recording fake ffmpeg: rc %d, mp4_written %d, pipe carried %zu bytes "
             "(want %zu, identical: %s), arguments as specified: %s %s",
             rc, written, n, want, same ? "yes" : "no", args_ok ? "yes" : "no", err);
    free(raw);
    free(args);

    /* A fake ffmpeg that fails at once: no crash from SIGPIPE, a message with its exit status and
     * what it printed, PNGs still written. */
    snprintf(bin, sizeof bin, "%s/fake_fail", tmp_root);
    mkdir(bin, 0755);
    snprintf(script, sizeof script, "%s/ffmpeg", bin);
    const char *fail = "#!/bin/sh\necho 'fake ffmpeg: libx264 not available' >&2\nexit 3\n";
    write_file(script, fail, strlen(fail), 0755);
    setenv("PATH", bin, 1);
    snprintf(dir, sizeof dir, "%s/fail", tmp_root);
    snprintf(mp4, sizeof mp4, "%s/fail.mp4", tmp_root);
    rc = run_sink(dir, mp4, frames, &written, err, sizeof err, 200);
    struct sigaction sa;
    sigaction(SIGPIPE, NULL, &sa);
    tu_check(rc != 0 && written == 0 && strstr(err, "status 3") &&
                 strstr(err, "libx264 not available") && frames_match(dir, frames) == SINK_N &&
                 sa.sa_handler == SIG_DFL,
             "sink with a failing fake ffmpeg: rc %d, mp4_written %d, SIGPIPE disposition left "
             "default: %s, \"%s\"",
             rc, written, sa.sa_handler == SIG_DFL ? "yes" : "no", err);

    /* No ffmpeg on PATH: PNGs only, not an error. */
    snprintf(bin, sizeof bin, "%s/empty_bin", tmp_root);
    mkdir(bin, 0755);
    setenv("PATH", bin, 1);
    snprintf(dir, sizeof dir, "%s/noff", tmp_root);
    snprintf(mp4, sizeof mp4, "%s/noff.mp4", tmp_root);
    rc = run_sink(dir, mp4, frames, &written, err, sizeof err, 0);
    tu_check(rc == 0 && written == 0 && access(mp4, F_OK) != 0 &&
                 frames_match(dir, frames) == SINK_N,
             "sink with no ffmpeg on PATH: rc %d, mp4_written %d, no MP4 file: %s %s", rc, written,
             access(mp4, F_OK) != 0 ? "yes" : "no", err);
    setenv("PATH", orig_path, 1);

    /* The real ffmpeg, when installed. */
    if (ffmpeg_on_path(orig_path)) {
        snprintf(dir, sizeof dir, "%s/real", tmp_root);
        snprintf(mp4, sizeof mp4, "%s/real.mp4", tmp_root);
        rc = run_sink(dir, mp4, frames, &written, err, sizeof err, 0);
        uint8_t *m = read_file(mp4, &n);
        bool is_mp4 = m && n > 12 && memcmp(m + 4, "ftyp", 4) == 0;
        tu_check(rc == 0 && written == 1 && is_mp4,
                 "sink with the real ffmpeg: rc %d, mp4_written %d, %zu-byte file with an MP4 "
                 "ftyp box: %s %s",
                 rc, written, n, is_mp4 ? "yes" : "no", err);
        free(m);
    } else {
        printf("skip real ffmpeg: no ffmpeg program on PATH (the fake ones above cover the "
               "pipe, the failure report and the absent case)\n");
    }

    /* Odd sizes cannot become yuv420p: refused up front rather than by ffmpeg later. */
    img_frame_sink *s = NULL;
    rc = img_sink_open(dir, mp4, 63, 48, 16, &s, err, sizeof err);
    tu_check(rc < 0 && s == NULL, "sink 63x48 with an MP4 refused: rc %d, \"%s\"", rc, err);
    free(orig_path);
    free(frames);
}

/* ---------------------------------------------------------------------------------------------- */
/* Fuzz seed corpus                                                                               */

static int write_corpus(const char *dir) {
    uint8_t *expect;
    png_case pal = {"palette", 8, 6, PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_ADAM7};
    buf a = make_png_case(&pal, 1, &expect);
    free(expect);
    png_case ga = {"ga16", 5, 4, PNG_COLOR_TYPE_GRAY_ALPHA, 16, PNG_INTERLACE_NONE};
    buf b = make_png_case(&ga, 2, &expect);
    free(expect);
    uint8_t px[16 * 16 * 3];
    smooth_image(px, 16, 16, 3, 3);
    buf c = encode_jpeg(16, 16, 3, JCS_RGB, 75, true, px);
    char path[1024];
    bool ok = true;
    snprintf(path, sizeof path, "%s/palette4_interlaced.png", dir);
    ok &= write_file(path, a.p, a.n, 0);
    snprintf(path, sizeof path, "%s/grey_alpha16.png", dir);
    ok &= write_file(path, b.p, b.n, 0);
    snprintf(path, sizeof path, "%s/progressive.jpg", dir);
    ok &= write_file(path, c.p, c.n, 0);
    printf("corpus: %zu, %zu, %zu bytes into %s: %s\n", a.n, b.n, c.n, dir, ok ? "ok" : "FAILED");
    free(a.p);
    free(b.p);
    free(c.p);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) return write_corpus(argv[2]);
    const char *t = getenv("TMPDIR");
    snprintf(tmp_root, sizeof tmp_root, "%s/wm_test_image_XXXXXX", t && t[0] ? t : "/tmp");
    if (mkdtemp(tmp_root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_png_round_trips();
    test_jpeg();
    test_refusals();
    test_prepare_identity();
    test_prepare_crops();
    test_prepare_resampler();
    test_prepare_constant();
    test_prepare_pillow();
    test_files();
    test_sink();
    rm_tree(tmp_root);
    return tu_finish("test_image");
}

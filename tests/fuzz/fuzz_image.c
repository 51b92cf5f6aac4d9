/* libFuzzer target for image decoding: any byte string must either be refused with a message and
 * no image, or decode to an image within the size limit whose every pixel can be read. Decoded
 * images also go through img_prepare at a size taken from the input, which reaches the crop and
 * resampler edge cases (empty crops, extreme scale factors). Mutated PNGs nearly always fail their
 * chunk CRCs first, so each PNG input is decoded a second time with the CRCs recomputed; that lets
 * mutations reach the chunk parsers and the zlib data. Invariant violations trap, which libFuzzer
 * and the standalone driver (fuzz_main.c) both report as a crash. */
#include "engine/image.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Small, so every accepted input decodes and resizes in well under a millisecond or so. */
#define FUZZ_MAX_PIXELS (256u * 256u)

static void require(int cond) {
    if (!cond) __builtin_trap();
}

static void check_prepare(const img_rgb8 *img, const uint8_t *data, size_t size) {
    int ow = 1 + (size > 0 ? data[size - 1] % 48 : 0);
    int oh = 1 + (size > 1 ? data[size - 2] % 48 : 0);
    float *planes = malloc((size_t)ow * oh * 3 * sizeof *planes);
    if (planes == NULL) return;
    char err[256] = "";
    if (img_prepare(img, ow, oh, planes, err, sizeof err) == 0) {
        for (size_t i = 0; i < (size_t)ow * oh * 3; i++)
            require(planes[i] >= -1.0f && planes[i] <= 1.0f);
    } else {
        require(err[0] != '\0');
    }
    free(planes);
}

static void check_decode(const uint8_t *data, size_t size) {
    img_rgb8 img;
    char err[512];
    err[0] = '\0';
    int rc = img_decode(data, size, "fuzz", FUZZ_MAX_PIXELS, &img, err, sizeof err);
    if (rc != 0) {
        require(rc < 0 && err[0] != '\0' && img.pixels == NULL);
        return;
    }
    require(img.pixels != NULL && img.width > 0 && img.height > 0);
    require((size_t)img.width * (size_t)img.height <= FUZZ_MAX_PIXELS);
    unsigned sum = 0; /* reads every byte, so ASan checks the buffer's size */
    for (size_t i = 0; i < (size_t)img.width * img.height * 3; i++) sum += img.pixels[i];
    require(sum <= 255u * FUZZ_MAX_PIXELS * 3);
    check_prepare(&img, data, size);
    img_free(&img);
    require(img.pixels == NULL);
}

static uint32_t crc32_png(const uint8_t *d, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= d[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

/* Rewrites the CRC of every complete chunk; returns whether anything changed. */
static int fix_png_crcs(uint8_t *d, size_t n) {
    int changed = 0;
    size_t at = 8;
    while (at + 12 <= n) {
        uint32_t len = (uint32_t)d[at] << 24 | (uint32_t)d[at + 1] << 16 |
                       (uint32_t)d[at + 2] << 8 | d[at + 3];
        if (len > n - at - 12) break;
        uint32_t crc = crc32_png(d + at + 4, (size_t)len + 4);
        uint8_t *p = d + at + 8 + len;
        uint8_t want[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8),
                           (uint8_t)crc};
        if (memcmp(p, want, 4) != 0) {
            memcpy(p, want, 4);
            changed = 1;
        }
        at += (size_t)len + 12;
    }
    return changed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_decode(data, size);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size > 8 && memcmp(data, sig, 8) == 0) {
        uint8_t *copy = malloc(size);
        if (copy == NULL) return 0;
        memcpy(copy, data, size);
        if (fix_png_crcs(copy, size)) check_decode(copy, size);
        free(copy);
    }
    return 0;
}

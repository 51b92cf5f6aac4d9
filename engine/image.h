/* Start images and output frames: PNG/JPEG decoding with size limits, the reference's
 * centre-crop-and-resize to the model's resolution, conversion to [-1, 1] planes, and writing frames
 * as PNG files and (when the ffmpeg program is installed) an MP4. */
#ifndef WM_ENGINE_IMAGE_H
#define WM_ENGINE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct img_rgb8 {
    int width, height;
    uint8_t *pixels; /* [height][width][3], owned */
} img_rgb8;

/* Decompression-bomb guard: images larger than this many pixels are refused before decoding. */
#define IMG_MAX_PIXELS (64u * 1024u * 1024u)

/* Decodes PNG or JPEG (detected from the bytes) into RGB8 (alpha dropped, grey expanded,
 * 16-bit reduced). Refuses other formats, truncated or corrupt data, and images over max_pixels
 * (checked from the header, before allocating). `origin` names the data in messages. */
int img_decode(const uint8_t *data, size_t len, const char *origin, size_t max_pixels,
               img_rgb8 *out, char *err, size_t errlen);
int img_load(const char *path, size_t max_pixels, img_rgb8 *out, char *err, size_t errlen);
void img_free(img_rgb8 *img);

/* The reference's start-image preparation (model-vae-clip.md 4.1): centre-crop to the aspect
 * out_w:out_h (PIL box rounding), then PIL-style bilinear resize with antialias to out_w x out_h.
 * Result: float planes [3][out_h][out_w] in [-1, 1] (x = u8/255*2-1 after the 8-bit resize). */
int img_prepare(const img_rgb8 *src, int out_w, int out_h, float *planes, char *err,
                size_t errlen);

int img_write_png(const char *path, const uint8_t *rgb, int width, int height, char *err,
                  size_t errlen);

/* Frame sink: writes frame_%06d.png into a folder and, when `mp4_path` is non-NULL and the ffmpeg
 * program is found, pipes the same frames into ffmpeg for an H.264 MP4 at `fps`. */
typedef struct img_frame_sink img_frame_sink;
int img_sink_open(const char *dir, const char *mp4_path, int width, int height, int fps,
                  img_frame_sink **out, char *err, size_t errlen);
int img_sink_write(img_frame_sink *s, const uint8_t *rgb, char *err, size_t errlen);
/* Finishes the MP4 (if any). Returns non-zero if ffmpeg failed; *mp4_written says whether it was
 * made. */
int img_sink_close(img_frame_sink *s, int *mp4_written, char *err, size_t errlen);

#endif

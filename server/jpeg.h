/* JPEG encoding off the loop: libjpeg-turbo's TurboJPEG API on a small dedicated pool of threads,
 * one tjhandle and one worst-case output buffer per thread, so encoding allocates nothing once
 * warm. The engine worker submits whole blocks; the pool's threads take their frames one at a time
 * (a block's frames encode in parallel), and the thread that finishes a block's last frame calls
 * `done` (on that pool thread). */
#ifndef WM_SERVER_JPEG_H
#define WM_SERVER_JPEG_H

#include <stddef.h>
#include <stdint.h>

#include "server/block.h"
#include "server/pacing.h"

typedef struct srv_jpeg_encoder srv_jpeg_encoder;

/* quality 1..100; chroma 4:2:0. */
int srv_jpeg_encoder_create(int quality, srv_jpeg_encoder **out, char *err, size_t errlen);
void srv_jpeg_encoder_destroy(srv_jpeg_encoder *e);
/* Encodes RGB8 [h][w][3] into out's buffer (grown if needed). */
int srv_jpeg_encode(srv_jpeg_encoder *e, const uint8_t *rgb, int width, int height, srv_frame *out,
                    char *err, size_t errlen);
/* Worst-case size of one encoded frame (TurboJPEG's bound): the per-frame memory bound. */
size_t srv_jpeg_max_size(int width, int height);

typedef struct srv_jpeg_pool srv_jpeg_pool;
typedef void (*srv_jpeg_done_fn)(void *user, srv_block *b);

int srv_jpeg_pool_create(int threads, int quality, srv_jpeg_done_fn done, void *user,
                         srv_jpeg_pool **out, char *err, size_t errlen);
/* Queues b (its nframes RGB frames); never blocks. The queue is bounded by the number of blocks in
 * existence (the worker's pool). b->jpeg_left and jpeg_failed are set here. */
void srv_jpeg_pool_submit(srv_jpeg_pool *p, srv_block *b);
int srv_jpeg_pool_queued_frames(srv_jpeg_pool *p);
/* Encodes whatever is queued, then stops and joins the threads. */
void srv_jpeg_pool_destroy(srv_jpeg_pool *p);

#endif

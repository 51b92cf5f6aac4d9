/* One generated block on its way from the engine worker to the clients: the decoded RGB frames,
 * their JPEG encodings, the input the block reflects and the time of every stage. Blocks are
 * allocated once per worker (a fixed pool sized for every slot plus slack) and recycled: the worker
 * fills one, the JPEG pool encodes it, the loop moves its frames into the session's ring (swapping
 * buffers) and returns it to the worker. `next` links a block into whichever queue holds it. */
#ifndef WM_SERVER_BLOCK_H
#define WM_SERVER_BLOCK_H

#include <stdatomic.h>
#include <stdint.h>

#include "engine/engine.h"
#include "server/input.h"
#include "server/pacing.h"

typedef struct srv_block {
    struct srv_block *next;
    uint64_t session;
    uint32_t generation;
    int nframes, width, height;
    uint8_t *rgb; /* [ENG_MAX_FRAMES_PER_BLOCK][height][width][3] */
    srv_frame frames[ENG_MAX_FRAMES_PER_BLOCK];
    atomic_int jpeg_left; /* frames still being encoded */
    atomic_int jpeg_failed;
    uint64_t block_index; /* the engine's block number in the session (restarts on reset) */
    uint64_t first_frame; /* session frame number of frames[0] */
    srv_input_sample input;
    /* monotonic ns: the session became due, its actions were taken, the engine started, DiT
     * done, VAE done, handed to JPEG, all frames encoded */
    uint64_t t_due, t_sample, t_start, t_dit, t_vae, t_jpeg_submit, t_jpeg_done;
} srv_block;

#endif

/* Rotary position embeddings of the DiT (model-dit.md section 5), CPU reference.
 *
 * Main 3-D RoPE: each head's dh values are dh/2 interleaved complex pairs; the first
 * (dh - 4*(dh/6))/2 pairs rotate with the temporal position, the next dh/6 with the patch row, the
 * last dh/6 with the patch column. Angles and rotation in float64 as in the reference.
 * Action RoPE: dh values, only the first rot_dims (8) rotate, with the latent-frame position, in
 * float32 arithmetic as in the reference. */
#ifndef WM_ENGINE_CPU_ROPE_H
#define WM_ENGINE_CPU_ROPE_H

#include <stddef.h>

typedef struct rope3d_dims {
    int t_pairs, h_pairs, w_pairs; /* 22, 21, 21 for dh = 128 */
} rope3d_dims;

rope3d_dims rope3d_split(int dh);
/* Frequency of pair p (0 .. dh/2-1) of the main RoPE. */
double rope3d_freq(int dh, int p);

/* Rotates the rows of one latent frame (grid_h * grid_w tokens, row-major, stride ld) in place:
 * token n = hh * grid_w + ww gets positions (pos_t, hh, ww). */
void rope3d_apply_frame(float *x, int ld, int grid_h, int grid_w, int heads, int dh, double pos_t);
/* Rotates only the temporal pairs of `rows` rows by pos_delta: rope3d(p) followed by this with
 * -d equals rope3d(p - d) in exact arithmetic. Used to rebase cached keys. */
void rope3d_shift_temporal(float *x, int ld, size_t rows, int heads, int dh, double pos_delta);

/* Action-module RoPE on `rows` rows (stride ld), all at position pos. */
void rope_action_apply(float *x, int ld, size_t rows, int heads, int dh, int rot_dims, float theta,
                       float pos);

#endif

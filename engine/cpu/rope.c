/* Rotary position embeddings, CPU reference (see rope.h). */
#include "engine/cpu/rope.h"

#include <math.h>

rope3d_dims rope3d_split(int dh) {
    rope3d_dims d;
    d.h_pairs = d.w_pairs = dh / 6;
    d.t_pairs = dh / 2 - 2 * (dh / 6);
    return d;
}

/* rope_params(len, dim) of the reference: 1 / 10000^(2j / dim), in float64, for each of the three
 * axis tables, dim = 2 * (pairs of that axis). */
double rope3d_freq(int dh, int p) {
    rope3d_dims d = rope3d_split(dh);
    int j, dim;
    if (p < d.t_pairs)
        j = p, dim = 2 * d.t_pairs;
    else if (p < d.t_pairs + d.h_pairs)
        j = p - d.t_pairs, dim = 2 * d.h_pairs;
    else
        j = p - d.t_pairs - d.h_pairs, dim = 2 * d.w_pairs;
    return 1.0 / pow(10000.0, (double)(2 * j) / (double)dim);
}

static void rotate_pair(float *x, double angle) {
    double c = cos(angle), s = sin(angle);
    double a = x[0], b = x[1];
    x[0] = (float)(a * c - b * s);
    x[1] = (float)(a * s + b * c);
}

void rope3d_apply_frame(float *x, int ld, int grid_h, int grid_w, int heads, int dh, double pos_t) {
    const rope3d_dims d = rope3d_split(dh);
    const int n = grid_h * grid_w;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n; t++) {
        const double pos_h = t / grid_w, pos_w = t % grid_w;
        float *row = x + (size_t)t * (size_t)ld;
        for (int p = 0; p < dh / 2; p++) {
            double pos = p < d.t_pairs ? pos_t : p < d.t_pairs + d.h_pairs ? pos_h : pos_w;
            double angle = pos * rope3d_freq(dh, p);
            for (int h = 0; h < heads; h++) rotate_pair(row + h * dh + 2 * p, angle);
        }
    }
}

void rope3d_shift_temporal(float *x, int ld, size_t rows, int heads, int dh, double pos_delta) {
    const rope3d_dims d = rope3d_split(dh);
#pragma omp parallel for schedule(static)
    for (size_t t = 0; t < rows; t++) {
        float *row = x + t * (size_t)ld;
        for (int p = 0; p < d.t_pairs; p++) {
            double angle = pos_delta * rope3d_freq(dh, p);
            for (int h = 0; h < heads; h++) rotate_pair(row + h * dh + 2 * p, angle);
        }
    }
}

void rope_action_apply(float *x, int ld, size_t rows, int heads, int dh, int rot_dims, float theta,
                       float pos) {
    float c[32], s[32];
    const int pairs = rot_dims / 2;
    for (int j = 0; j < pairs && j < 32; j++) {
        /* get_1d_rotary_pos_embed: float32 frequencies, float32 angle, float32 cos/sin */
        float freq = 1.0f / powf(theta, (float)(2 * j) / (float)rot_dims);
        float angle = pos * freq;
        c[j] = cosf(angle);
        s[j] = sinf(angle);
    }
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * (size_t)ld;
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < pairs && j < 32; j++) {
                float *e = row + h * dh + 2 * j;
                float a = e[0], b = e[1];
                float x0 = a * c[j], x1 = b * c[j];
                float r0 = -b * s[j], r1 = a * s[j];
                e[0] = x0 + r0;
                e[1] = x1 + r1;
            }
    }
}

/* FLOP and byte counts of engine/flops.h: walks the same layer lists the CPU VAE executes
 * (vae_net_build), and the DiT formulas of model-dit.md 9. */
#include "engine/flops.h"

#include <string.h>

#include "engine/vae/vae_internal.h"

void eng_dit_forward_cost(const eng_config *c, int window_frames, eng_dit_cost *out) {
    const double F = c->frames_per_block, S = eng_tokens_per_frame(c), L = F * S;
    const double Lk = (double)window_frames * S, D = c->dim, FF = c->ffn_dim;
    const double nl = c->num_layers, na = eng_num_action_layers(c);
    const double Hm = c->mouse_hidden, Hk = c->keyboard_hidden, P = eng_action_window(c);
    const double patch_in = (double)c->in_dim * c->patch[0] * c->patch[1] * c->patch[2];
    const double patch_out = (double)c->out_dim * c->patch[0] * c->patch[1] * c->patch[2];
    memset(out, 0, sizeof *out);
    out->embed = 2 * L * patch_in * D + 2 * L * D * patch_out + 2 * F * (c->freq_dim * D + 7 * D * D);
    out->proj = nl * 6 * 2 * L * D * D;
    out->self_attn = nl * 4 * L * Lk * D;
    out->cross_attn = nl * 4 * L * c->clip_tokens * D;
    out->ffn = nl * 4 * L * D * FF;
    if (c->enable_mouse) {
        const double U = D + c->mouse_dim_in * P; /* hidden state + the mouse window */
        /* MLP U -> Hm -> Hm, t_qkv Hm -> 3Hm, proj_mouse Hm -> D; the core: per token position,
         * the block's frames attend over the window's cached mouse keys */
        out->mouse = na * (2 * L * (U * Hm + Hm * Hm + 3 * Hm * Hm + Hm * D) + 4 * L * Lk / S * Hm);
    }
    if (c->enable_keyboard) {
        /* mouse_attn_q D -> Hk, proj_keyboard Hk -> D per token; the per-video-frame embedding
         * and the kv projection of each latent frame's P embeddings; the core attends to one
         * keyboard token per window frame */
        const double E = c->kb_embed_dim;
        out->keyboard = na * (2 * L * (D * Hk + Hk * D) + 2 * F * P * (c->keyboard_dim_in * E + E * E) +
                              2 * F * P * E * 2 * Hk + 4 * L * window_frames * Hk);
    }
    out->total = out->embed + out->proj + out->self_attn + out->cross_attn + out->ffn + out->mouse +
                 out->keyboard;
    /* weights: every per-token matrix once; caches: window K/V read, the block's K/V written */
    const double per_layer = 4 * D * D + 2 * D * D + 2 * D * FF;
    double wparams = nl * per_layer + patch_in * D + patch_out * D;
    if (c->enable_mouse) wparams += na * ((D + c->mouse_dim_in * P) * Hm + 4 * Hm * Hm + Hm * D);
    if (c->enable_keyboard) wparams += na * (2 * D * Hk + P * c->kb_embed_dim * 2 * Hk);
    out->weight_bytes = 2 * wparams;
    out->cache_bytes = 2 * nl * 2 * D * (Lk + L) + (c->enable_mouse ? 2 * na * 2 * Hm * (Lk + L) : 0);
}

/* ---- VAE ------------------------------------------------------------------------------------- */

static double conv_flops(double cin, double cout, double taps, double positions) {
    return 2 * cin * cout * taps * positions;
}

static double resblock_flops(const vae_item *it, double pos) {
    double f = conv_flops(it->cin, it->cout, 27, pos) + conv_flops(it->cout, it->cout, 27, pos);
    if (it->cin != it->cout) f += conv_flops(it->cin, it->cout, 1, pos);
    return f;
}

/* per frame: q/k/v and output projections, QK^T and PV over the frame's n = H*W tokens */
static double attention_flops(double c, double frames, double n) {
    return frames * (conv_flops(c, 3 * c, 1, n) + conv_flops(c, c, 1, n) + 4 * n * n * c);
}

double eng_vae_decode_flops(const vae_config *c, int nlat, int first, int lat_h, int lat_w) {
    vae_net enc, dec;
    if (vae_net_build(c, &enc, &dec, NULL, 0) || nlat < 1) return 0.0;
    double T = nlat, H = lat_h, W = lat_w;
    double f = conv_flops(c->z_dim, c->z_dim, 1, T * H * W) +
               conv_flops(dec.in_ch, dec.in_dim, 27, T * H * W);
    for (int i = 0; i < dec.nitems; i++) {
        const vae_item *it = &dec.items[i];
        switch (it->kind) {
        case VAE_ITEM_RB: f += resblock_flops(it, T * H * W); break;
        case VAE_ITEM_ATTN: f += attention_flops(it->cin, T, H * W); break;
        case VAE_ITEM_UP3D:
        case VAE_ITEM_UP2D:
            if (it->kind == VAE_ITEM_UP3D) { /* time_conv (3,1,1) cin -> 2 cin, then 2x frames */
                const double tin = first ? T - 1 : T; /* the session's first frame passes */
                f += conv_flops(it->cin, 2.0 * it->cin, 3, tin * H * W);
                T = first ? 2 * T - 1 : 2 * T;
            }
            H *= 2, W *= 2; /* nearest x2, conv 3x3 cin -> cin / 2 */
            f += conv_flops(it->cin, it->cin / 2, 9, T * H * W);
            break;
        default: return 0.0; /* no down-sampling in a decoder */
        }
    }
    return f + conv_flops(dec.head_ch, dec.out_ch, 27, T * H * W);
}

double eng_vae_encode_flops(const vae_config *c, int nframes, int first, int height, int width) {
    vae_net enc, dec;
    if (vae_net_build(c, &enc, &dec, NULL, 0) || nframes < 1) return 0.0;
    double T = nframes, H = height, W = width;
    double f = conv_flops(enc.in_ch, enc.in_dim, 27, T * H * W);
    for (int i = 0; i < enc.nitems; i++) {
        const vae_item *it = &enc.items[i];
        switch (it->kind) {
        case VAE_ITEM_RB: f += resblock_flops(it, T * H * W); break;
        case VAE_ITEM_ATTN: f += attention_flops(it->cin, T, H * W); break;
        case VAE_ITEM_DOWN2D:
        case VAE_ITEM_DOWN3D:
            H = (double)((int)(H - 2) / 2 + 1), W = (double)((int)(W - 2) / 2 + 1);
            f += conv_flops(it->cin, it->cout, 9, T * H * W);
            if (it->kind == VAE_ITEM_DOWN3D && !first) { /* time_conv (3,1,1) stride 2 */
                T /= 2;
                f += conv_flops(it->cin, it->cout, 3, T * H * W);
            }
            break;
        default: return 0.0;
        }
    }
    /* head conv to 2 z and the quant conv (conv1) */
    return f + conv_flops(enc.head_ch, enc.out_ch, 27, T * H * W) +
           conv_flops(enc.out_ch, enc.out_ch, 1, T * H * W);
}

double eng_clip_encode_flops(const clip_config *c) {
    const double n = clip_tokens(c), D = c->width, p = c->patch;
    const double block = 2 * n * D * 3 * D + 2 * n * D * D + 2 * 2 * n * D * c->mlp + 4 * n * n * D;
    return 2 * (n - 1) * 3 * p * p * D + c->layers_used * block;
}

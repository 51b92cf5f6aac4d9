/* The cost model of engine/flops.h against the tables of the specs, which were derived from the
 * official code independently: model-dit.md 9 (per-forward totals and components) and
 * model-vae-clip.md 8 (decoder, encoder, CLIP). A count off by a layer, a frame or a factor of
 * two misses these bounds by far more than their 0.5%. */
#include <math.h>
#include <stdio.h>

#include "engine/flops.h"

static int n_checks, n_failed;

static void near(const char *what, double got, double want, double rel) {
    const double e = fabs(got - want) / want;
    const int ok = e <= rel;
    printf("%s %-44s %12.2f GFLOP, spec %12.2f (rel %.1e, bound %.0e)\n", ok ? "ok  " : "FAIL",
           what, got * 1e-9, want * 1e-9, e, rel);
    n_checks++, n_failed += !ok;
}

static void dit(void) {
    eng_config c;
    eng_dit_cost k;
    char err[256];
    /* spec totals include ~5 GFLOP of elementwise work that the model leaves out: 0.2% */
    const struct { eng_variant v; int window; double total; const char *name; } cases[] = {
        {ENG_VARIANT_UNIVERSAL, 6, 10.14e12, "universal steady forward"},
        {ENG_VARIANT_UNIVERSAL, 3, 8.86e12, "universal block-0 forward"},
        {ENG_VARIANT_GTA_DRIVE, 4, 9.28e12, "gta_drive steady forward"},
        {ENG_VARIANT_TEMPLERUN, 6, 9.56e12, "templerun steady forward"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (eng_config_preset(&c, "full", cases[i].v, err, sizeof err)) {
            printf("FAIL preset: %s\n", err);
            n_checks++, n_failed++;
            continue;
        }
        int window = cases[i].window;
        if (window > c.local_attn_size) window = c.local_attn_size;
        eng_dit_forward_cost(&c, window, &k);
        near(cases[i].name, k.total, cases[i].total, 2.5e-3);
    }
    eng_config_preset(&c, "full", ENG_VARIANT_UNIVERSAL, err, sizeof err);
    eng_dit_forward_cost(&c, 6, &k);
    near("self-attention q,k,v,o + cross q,o", k.proj, 1494.85e9 + 747.42e9, 1e-3);
    near("self-attention core", k.self_attn, 2569.27e9, 1e-3);
    near("cross-attention core", k.cross_attn, 125.06e9, 1e-3);
    near("FFN", k.ffn, 4359.98e9, 1e-3);
    /* mouse MLP + t_qkv + three projections of which two are mouse-side, plus half the cores */
    near("mouse + keyboard branches", k.mouse + k.keyboard,
         209.57e9 + 249.14e9 + 373.71e9 + 0.29e9 + 1.95e9, 5e-3);
    /* weights used per forward: 1,457,008,960 parameters (model-dit.md 9) */
    const double wp = k.weight_bytes / 2;
    const int ok = fabs(wp - 1457008960.0) / 1457008960.0 < 2e-3;
    printf("%s weights per forward %.0f parameters, spec 1457008960\n", ok ? "ok  " : "FAIL", wp);
    n_checks++, n_failed += !ok;
}

static void vae_and_clip(void) {
    vae_config v;
    clip_config cc;
    char err[256];
    vae_config_preset(&v, "full", err, sizeof err);
    near("VAE decode, steady 3 latents at 44x80", eng_vae_decode_flops(&v, 3, 0, 44, 80),
         22887e9, 5e-3);
    near("VAE decode, first 3 latents", eng_vae_decode_flops(&v, 3, 1, 44, 80), 17698e9, 5e-3);
    near("VAE encode, start image", eng_vae_encode_flops(&v, 1, 1, 352, 640), 1518.7e9, 5e-3);
    near("VAE encode, later 4-frame chunk", eng_vae_encode_flops(&v, 4, 0, 352, 640), 4527.2e9,
         5e-3);
    clip_config_preset(&cc, "full", err, sizeof err);
    near("CLIP encode, 31 blocks", eng_clip_encode_flops(&cc), 324e9, 5e-3);
}

int main(void) {
    dit();
    vae_and_clip();
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}

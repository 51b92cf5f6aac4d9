/* Configs and weights: config.json parsing and its errors; the parameter table against the counts
 * of model-dit.md 2.5; synthetic weights' determinism; loading checkpoints written by this test's
 * own safetensors writer (independent of engine/safetensors.c's writer) under the official,
 * bare and Diffusers names, in F32 and BF16, sharded and at reduced depth; every loader error
 * with a crafted bad file; and model-directory resolution through eng_model_open. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/model_internal.h"
#include "engine/weights.h"
#include "test_util.h"

static char tmpdir[256];

/* ---- config.json ------------------------------------------------------------------------------
 */

/* The official universal config's fields (values from model-dit.md section 1). */
static const char *universal_json =
    "{\"_class_name\": \"CausalWanModel\", \"_diffusers_version\": \"0.35.0.dev0\",\n"
    " \"action_config\": {\"blocks\": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14], \"enable_keyboard\": "
    "true,\n"
    "   \"enable_mouse\": true, \"heads_num\": 16, \"hidden_size\": 128, \"img_hidden_size\": "
    "1536,\n"
    "   \"keyboard_dim_in\": 4, \"keyboard_hidden_dim\": 1024, \"mouse_dim_in\": 2,\n"
    "   \"mouse_hidden_dim\": 1024, \"mouse_qk_dim_list\": [8, 28, 28], \"patch_size\": [1, 2, "
    "2],\n"
    "   \"qk_norm\": true, \"qkv_bias\": false, \"rope_dim_list\": [8, 28, 28], \"rope_theta\": "
    "256,\n"
    "   \"vae_time_compression_ratio\": 4, \"windows_size\": 3},\n"
    " \"dim\": 1536, \"eps\": 1e-06, \"ffn_dim\": 8960, \"freq_dim\": 256, \"in_dim\": 36,\n"
    " \"inject_sample_info\": false, \"local_attn_size\": 6, \"model_type\": \"i2v\",\n"
    " \"num_heads\": 12, \"num_layers\": 30, \"out_dim\": 16, \"sink_size\": 0, \"text_len\": 512}";

/* universal_json with `from` replaced by `to` (first occurrence). */
static char *edited(const char *from, const char *to) {
    const char *at = strstr(universal_json, from);
    size_t n = strlen(universal_json) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    size_t head = (size_t)(at - universal_json);
    memcpy(out, universal_json, head);
    strcpy(out + head, to);
    strcat(out, at + strlen(from));
    return out;
}

static void expect_config_error(const char *what, const char *json, int variant,
                                const char *needle) {
    eng_config c;
    char err[512] = "";
    int rc = eng_config_parse_json(&c, json, strlen(json), "config.json", variant, err, sizeof err);
    tu_check(rc < 0 && strstr(err, needle), "config %s: rejected, message names '%s': %s", what,
             needle, err);
}

static void test_config(void) {
    eng_config c, p;
    char err[512] = "";
    int rc = eng_config_parse_json(&c, universal_json, strlen(universal_json), "u.json", -1, err,
                                   sizeof err);
    eng_config_preset(&p, "full", ENG_VARIANT_UNIVERSAL, NULL, 0);
    int same = !rc && c.dim == p.dim && c.num_layers == 30 && c.head_dim == 128 &&
               c.local_attn_size == 6 && c.keyboard_dim_in == 4 && c.enable_mouse &&
               c.action_layer[14] && !c.action_layer[15] && c.num_steps == 3 && c.eps == 1e-6f &&
               c.variant == ENG_VARIANT_UNIVERSAL && c.mouse_dim_in == 2;
    tu_check(same, "official universal config parses to the universal preset's shapes %s", err);

    char *gta = edited("\"keyboard_dim_in\": 4", "\"keyboard_dim_in\": 2");
    char *gta2 = edited("\"local_attn_size\": 6", "\"local_attn_size\": 4");
    free(gta);
    gta = strdup(gta2);
    {
        char *t = strstr(gta, "\"keyboard_dim_in\": 4");
        t[strlen("\"keyboard_dim_in\": ")] = '2';
    }
    rc = eng_config_parse_json(&c, gta, strlen(gta), "g.json", -1, err, sizeof err);
    tu_check(!rc && c.variant == ENG_VARIANT_GTA_DRIVE && c.local_attn_size == 4 &&
                 c.num_steps == 3,
             "gta_drive config: variant inferred from keyboard_dim_in 2, window 4");
    char *tr = edited("\"enable_mouse\": true", "\"enable_mouse\": false");
    {
        char *t = strstr(tr, "\"keyboard_dim_in\": 4");
        t[strlen("\"keyboard_dim_in\": ")] = '7';
    }
    rc = eng_config_parse_json(&c, tr, strlen(tr), "t.json", -1, err, sizeof err);
    tu_check(!rc && c.variant == ENG_VARIANT_TEMPLERUN && c.num_steps == 4 &&
                 c.denoising_steps[1] == 750 && c.mouse_dim_in == 0,
             "templerun config: no mouse, 4 sampler steps 1000/750/500/250");

    char *unk = edited("\"dim\": 1536", "\"dim\": 1536, \"dim_typo\": 3");
    expect_config_error("with an unknown key", unk, -1, "dim_typo");
    char *sink = edited("\"sink_size\": 0", "\"sink_size\": 2");
    expect_config_error("with sink_size 2", sink, -1, "sink_size");
    char *img = edited("\"img_hidden_size\": 1536", "\"img_hidden_size\": 1024");
    expect_config_error("with img_hidden_size != dim", img, -1, "img_hidden_size");
    char *qkv = edited("\"qkv_bias\": false", "\"qkv_bias\": true");
    expect_config_error("with qkv_bias true", qkv, -1, "qkv_bias");
    char *frac = edited("\"num_layers\": 30", "\"num_layers\": 30.5");
    expect_config_error("with fractional num_layers", frac, -1, "num_layers");
    expect_config_error("asked for the wrong variant", universal_json, ENG_VARIANT_TEMPLERUN,
                        "templerun");
    expect_config_error("that is not JSON", "{\"dim\": 1536,", -1, "not valid JSON");
    char *heads = edited("\"num_heads\": 12", "\"num_heads\": 7");
    expect_config_error("with dim not divisible by heads", heads, -1, "heads");
    rc = eng_config_parse_json(&c, "{\"_class_name\": \"MatrixGameWanModel\"}", 37, "d.json", -1,
                               err, sizeof err);
    tu_check(rc == ENG_ECONFIG_FOREIGN, "a Diffusers config is recognised as foreign (%s)", err);
    free(gta), free(gta2), free(tr), free(unk), free(sink), free(img), free(qkv), free(frac),
        free(heads);
}

/* ---- parameter table ---------------------------------------------------------------------------
 */

static int count_tensors(void *user, const eng_param *p) {
    (void)p;
    (*(int *)user)++;
    return 0;
}

static void test_param_counts(void) {
    const struct {
        eng_variant v;
        int64_t params;
        int tensors;
    } want[] = {
        {ENG_VARIANT_UNIVERSAL, 1619242304, 1114},
        {ENG_VARIANT_GTA_DRIVE, 1619238464, 1114},
        {ENG_VARIANT_TEMPLERUN, 1508715584, 964},
    };
    for (int i = 0; i < 3; i++) {
        eng_config c;
        eng_config_preset(&c, "full", want[i].v, NULL, 0);
        eng_weights *w = calloc(1, sizeof *w);
        w->cfg = c;
        int n = 0;
        weights_visit(w, count_tensors, &n);
        int64_t p = weights_count_params(&c);
        tu_check(p == want[i].params && n == want[i].tensors,
                 "%s: %lld parameters in %d tensors (model-dit.md 2.5: %lld in %d)",
                 eng_variant_name(want[i].v), (long long)p, n, (long long)want[i].params,
                 want[i].tensors);
        free(w);
    }
}

/* ---- synthetic weights ----------------------------------------------------------------------- */

static void test_synthetic(void) {
    eng_config c3, c2;
    eng_config_preset(&c3, "tiny", ENG_VARIANT_UNIVERSAL, NULL, 0);
    c2 = c3;
    c2.num_layers = 2;
    eng_weights a, b, d;
    char err[256];
    weights_init_synthetic(&a, &c3, 5, err, sizeof err);
    weights_init_synthetic(&b, &c3, 5, err, sizeof err);
    weights_init_synthetic(&d, &c2, 5, err, sizeof err);
    tu_check(a.arena_floats == b.arena_floats && !memcmp(a.arena, b.arena, a.arena_floats * 4),
             "synthetic weights: same seed gives identical %zu values", a.arena_floats);
    size_t nq = (size_t)c3.dim * c3.dim;
    tu_check(!memcmp(a.layers[1].q_w, d.layers[1].q_w, nq * 4) &&
                 !memcmp(a.patch_w, d.patch_w, 4 * 36 * 4),
             "a tensor's values depend on its name, not on which other tensors exist");
    weights_free(&b);
    weights_init_synthetic(&b, &c3, 6, err, sizeof err);
    tu_check(memcmp(a.layers[0].q_w, b.layers[0].q_w, nq * 4) != 0,
             "another seed gives other values");
    double mean = 0, sq = 0;
    for (size_t i = 0; i < nq; i++)
        mean += a.layers[0].q_w[i], sq += (double)a.layers[0].q_w[i] * a.layers[0].q_w[i];
    double sd = sqrt(sq / nq), want = 1.0 / sqrt(3.0 * c3.dim);
    tu_check(fabs(mean / nq) < 0.01 && fabs(sd - want) < 0.1 * want,
             "linear weights are U(-1/sqrt(fan_in), 1/sqrt(fan_in)): sd %.4f (expect %.4f)", sd,
             want);
    weights_free(&a), weights_free(&b), weights_free(&d);
}

/* ---- an independent safetensors writer
 * ----------------------------------------------------------- */

typedef enum { W_F32, W_BF16, W_I32 } wdtype;

typedef struct wtensor {
    char name[128];
    int ndim;
    int64_t shape[5];
    const float *data;
    int64_t numel;
    wdtype dt;
} wtensor;

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFF + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static int write_st(const char *path, const wtensor *t, int n) {
    size_t cap = 1 << 20, len = 0, off = 0;
    char *hdr = malloc(cap);
    len += (size_t)snprintf(hdr + len, cap - len, "{");
    for (int i = 0; i < n; i++) {
        size_t es = t[i].dt == W_BF16 ? 2 : 4, bytes = (size_t)t[i].numel * es;
        len += (size_t)snprintf(hdr + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                i ? "," : "", t[i].name,
                                t[i].dt == W_F32    ? "F32"
                                : t[i].dt == W_BF16 ? "BF16"
                                                    : "I32");
        for (int d = 0; d < t[i].ndim; d++)
            len += (size_t)snprintf(hdr + len, cap - len, "%s%lld", d ? "," : "",
                                    (long long)t[i].shape[d]);
        len += (size_t)snprintf(hdr + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off,
                                off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while ((len + 8) % 8) hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint64_t n64 = len;
    fwrite(&n64, 8, 1, f);
    fwrite(hdr, 1, len, f);
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < t[i].numel; j++) {
            if (t[i].dt == W_BF16) {
                uint16_t h = to_bf16(t[i].data[j]);
                fwrite(&h, 2, 1, f);
            } else if (t[i].dt == W_I32) {
                int32_t v = (int32_t)t[i].data[j];
                fwrite(&v, 4, 1, f);
            } else {
                fwrite(&t[i].data[j], 4, 1, f);
            }
        }
    free(hdr);
    return fclose(f);
}

typedef struct collect {
    wtensor *t;
    int n;
    eng_name_scheme scheme;
} collect;

static int collect_visitor(void *user, const eng_param *p) {
    collect *c = user;
    wtensor *t = &c->t[c->n++];
    weights_map_name(c->scheme, p->name, t->name, sizeof t->name);
    t->ndim = p->ndim;
    memcpy(t->shape, p->shape, sizeof t->shape);
    t->numel = p->numel;
    t->data = *p->slot;
    t->dt = W_F32;
    return 0;
}

/* The tensors of w under a naming scheme, as writer entries. */
static wtensor *tensors_of(eng_weights *w, eng_name_scheme scheme, int *n) {
    collect c = {calloc(2048, sizeof(wtensor)), 0, scheme};
    weights_visit(w, collect_visitor, &c);
    *n = c.n;
    return c.t;
}

static int find_entry(wtensor *t, int n, const char *suffix) {
    for (int i = 0; i < n; i++) {
        size_t a = strlen(t[i].name), b = strlen(suffix);
        if (a >= b && !strcmp(t[i].name + a - b, suffix)) return i;
    }
    return -1;
}

static void path_in_tmp(char *dst, size_t len, const char *name) {
    snprintf(dst, len, "%s/%s", tmpdir, name);
}

static int load(const eng_config *c, const char *path, int allow_extra, eng_weights *out, char *err,
                size_t errlen) {
    const char *paths[1] = {path};
    return weights_load_safetensors(out, c, paths, 1, allow_extra, err, errlen);
}

static void expect_load_error(const char *what, const eng_config *c, wtensor *t, int n,
                              int allow_extra, const char *needle) {
    char path[512], err[1024] = "";
    path_in_tmp(path, sizeof path, "bad.safetensors");
    write_st(path, t, n);
    eng_weights w;
    int rc = load(c, path, allow_extra, &w, err, sizeof err);
    tu_check(rc < 0 && strstr(err, needle) && strstr(err, "bad.safetensors"),
             "load %s: refused naming '%s': %s", what, needle, err);
    if (!rc) weights_free(&w);
}

static void test_loading(void) {
    eng_config c;
    eng_config_preset(&c, "tiny", ENG_VARIANT_UNIVERSAL, NULL, 0);
    eng_weights ref, got;
    char err[1024] = "", path[512];
    weights_init_synthetic(&ref, &c, 3, err, sizeof err);
    const eng_name_scheme schemes[] = {ENG_NAMES_OFFICIAL, ENG_NAMES_OFFICIAL_BARE,
                                       ENG_NAMES_DIFFUSERS};
    const char *scheme_names[] = {"official (model.*)", "bare official", "Diffusers"};
    for (int s = 0; s < 3; s++) {
        int n;
        wtensor *t = tensors_of(&ref, schemes[s], &n);
        path_in_tmp(path, sizeof path, "good.safetensors");
        write_st(path, t, n);
        int rc = load(&c, path, 0, &got, err, sizeof err);
        tu_check(!rc && got.arena_floats == ref.arena_floats &&
                     !memcmp(got.arena, ref.arena, ref.arena_floats * 4),
                 "%s names, F32: loaded weights bit-equal to the written ones %s", scheme_names[s],
                 rc ? err : "");
        if (!rc) weights_free(&got);
        free(t);
    }
    int n;
    wtensor *t = tensors_of(&ref, ENG_NAMES_OFFICIAL, &n);
    /* BF16: values come back as the bf16 rounding of the originals */
    for (int i = 0; i < n; i++) t[i].dt = W_BF16;
    path_in_tmp(path, sizeof path, "bf16.safetensors");
    write_st(path, t, n);
    int rc = load(&c, path, 0, &got, err, sizeof err), ok = !rc;
    for (size_t i = 0; ok && i < ref.arena_floats; i++) {
        uint32_t u = (uint32_t)to_bf16(ref.arena[i]) << 16;
        float f;
        memcpy(&f, &u, 4);
        ok &= got.arena[i] == f;
    }
    tu_check(ok, "BF16 checkpoint: every value equals the bf16 rounding of the original %s",
             rc ? err : "");
    if (!rc) weights_free(&got);
    for (int i = 0; i < n; i++) t[i].dt = W_F32;
    /* sharded: two files */
    {
        char p1[512], p2[512];
        path_in_tmp(p1, sizeof p1, "shard-1.safetensors");
        path_in_tmp(p2, sizeof p2, "shard-2.safetensors");
        write_st(p1, t, n / 2);
        write_st(p2, t + n / 2, n - n / 2);
        const char *paths[2] = {p1, p2};
        rc = weights_load_safetensors(&got, &c, paths, 2, 0, err, sizeof err);
        tu_check(!rc && !memcmp(got.arena, ref.arena, ref.arena_floats * 4),
                 "sharded checkpoint (2 files) loads bit-equal %s", rc ? err : "");
        if (!rc) weights_free(&got);
    }
    /* reduced depth: the 3-layer file at 2 layers */
    {
        eng_config c2 = c;
        c2.num_layers = 2;
        path_in_tmp(path, sizeof path, "good.safetensors");
        write_st(path, t, n);
        rc = load(&c2, path, 1, &got, err, sizeof err);
        tu_check(!rc && !memcmp(got.layers[1].ffn2_w, ref.layers[1].ffn2_w,
                                (size_t)c.dim * c.ffn_dim * 4),
                 "reduced depth: first 2 of 3 layers load when extra layers are allowed %s",
                 rc ? err : "");
        if (!rc) weights_free(&got);
        expect_load_error("with extra layers not allowed", &c2, t, n, 0,
                          "unexpected tensor 'model.blocks.2.");
    }
    /* missing, unexpected, wrong shape, wrong dtype, non-finite */
    int i_bias = find_entry(t, n, "blocks.1.ffn.2.bias");
    wtensor keep = t[i_bias];
    t[i_bias] = t[n - 1];
    expect_load_error("with a missing key", &c, t, n - 1, 0,
                      "missing tensor 'model.blocks.1.ffn.2.bias'");
    t[i_bias] = keep;
    wtensor *plus = calloc((size_t)n + 1, sizeof *plus);
    memcpy(plus, t, (size_t)n * sizeof *plus);
    plus[n] = t[0];
    snprintf(plus[n].name, sizeof plus[n].name, "model.blocks.0.self_attn.extra.weight");
    expect_load_error("with an unexpected key", &c, plus, n + 1, 0,
                      "unexpected tensor 'model.blocks.0.self_attn.extra.weight'");
    free(plus);
    int iq = find_entry(t, n, "blocks.0.self_attn.q.weight");
    t[iq].shape[0] = 32, t[iq].shape[1] = 128;
    expect_load_error("with a wrong shape", &c, t, n, 0,
                      "has shape [32, 128]; the config expects [64, 64]");
    t[iq].shape[0] = 64, t[iq].shape[1] = 64;
    int inq = find_entry(t, n, "blocks.0.self_attn.norm_q.weight");
    t[inq].dt = W_I32;
    expect_load_error("with an integer tensor", &c, t, n, 0, "dtype I32");
    t[inq].dt = W_F32;
    float *poisoned = malloc((size_t)t[inq].numel * 4);
    memcpy(poisoned, t[inq].data, (size_t)t[inq].numel * 4);
    poisoned[5] = NAN;
    const float *orig = t[inq].data;
    t[inq].data = poisoned;
    expect_load_error("with a NaN in a norm gain", &c, t, n, 0,
                      "'model.blocks.0.self_attn.norm_q.weight' has a non-finite value");
    t[inq].data = orig;
    free(poisoned);
    /* truncated file and a header length past the end */
    path_in_tmp(path, sizeof path, "bad.safetensors");
    write_st(path, t, n);
    struct stat stt;
    stat(path, &stt);
    if (truncate(path, stt.st_size - 100)) perror("truncate");
    rc = load(&c, path, 0, &got, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "bad.safetensors"), "truncated file refused: %s", err);
    write_st(path, t, n);
    FILE *f = fopen(path, "r+b");
    uint64_t huge = (uint64_t)stt.st_size;
    fwrite(&huge, 8, 1, f);
    fclose(f);
    rc = load(&c, path, 0, &got, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "bad.safetensors"), "header length past the end refused: %s",
             err);
    free(t);
    weights_free(&ref);
}

/* ---- model directories ------------------------------------------------------------------------
 */

static void test_model_dirs(void) {
    eng_config c;
    eng_config_preset(&c, "tiny", ENG_VARIANT_GTA_DRIVE, NULL, 0);
    eng_weights ref;
    char err[1024] = "", dir[512], sub[600], path[700];
    weights_init_synthetic(&ref, &c, 4, err, sizeof err);
    snprintf(dir, sizeof dir, "%s/release", tmpdir);
    snprintf(sub, sizeof sub, "%s/gta_distilled_model", dir);
    mkdir(dir, 0755), mkdir(sub, 0755);
    int n;
    wtensor *t = tensors_of(&ref, ENG_NAMES_OFFICIAL, &n);
    snprintf(path, sizeof path, "%s/gta_keyboard2dim.safetensors", sub);
    write_st(path, t, n);
    /* the official config.json plus the "wmserve" block for the tiny model's non-release sizes */
    snprintf(path, sizeof path, "%s/config.json", sub);
    FILE *f = fopen(path, "w");
    fprintf(
        f,
        "{\"action_config\": {\"blocks\": [0, 1], \"enable_keyboard\": true, \"enable_mouse\": "
        "true,"
        " \"heads_num\": 2, \"hidden_size\": 16, \"img_hidden_size\": 64, \"keyboard_dim_in\": 2,"
        " \"keyboard_hidden_dim\": 64, \"mouse_dim_in\": 2, \"mouse_hidden_dim\": 64,"
        " \"mouse_qk_dim_list\": [8, 12, 12], \"rope_theta\": 256,"
        " \"vae_time_compression_ratio\": 4, \"windows_size\": 3},"
        " \"dim\": 64, \"eps\": 1e-06, \"ffn_dim\": 128, \"freq_dim\": 256, \"in_dim\": 36,"
        " \"local_attn_size\": 4, \"model_type\": \"i2v\", \"num_heads\": 2, \"num_layers\": 3,"
        " \"out_dim\": 16, \"sink_size\": 0,"
        " \"wmserve\": {\"latent_height\": 8, \"latent_width\": 16, \"clip_dim\": 48}}");
    fclose(f);
    eng_model *m = NULL;
    int rc = eng_model_open(dir, NULL, &m, err, sizeof err);
    tu_check(!rc && eng_model_config(m)->variant == ENG_VARIANT_GTA_DRIVE &&
                 !memcmp(eng_model_weights(m)->arena, ref.arena, ref.arena_floats * 4),
             "official release layout (gta_distilled_model/ + config.json) opens as gta_drive: %s",
             rc ? err : eng_model_describe(m));
    eng_model_close(m);
    eng_model_options o = {.variant = ENG_VARIANT_UNIVERSAL};
    rc = eng_model_open(dir, &o, &m, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "base_distilled_model/base_distill.safetensors"),
             "asking that folder for universal names the file it lacks: %s", err);
    rc = eng_model_open("/nonexistent/wm-model", NULL, &m, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "/nonexistent/wm-model"), "missing model path: %s", err);
    snprintf(path, sizeof path, "%s/empty", tmpdir);
    mkdir(path, 0755);
    rc = eng_model_open(path, NULL, &m, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "no weights found"), "folder without weights: %s", err);
    o.variant = -1, o.num_layers = 9;
    rc = eng_model_open("synthetic:tiny", &o, &m, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "only 3"), "--layers beyond the model: %s", err);
    rc = eng_model_open("synthetic:huge", NULL, &m, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "huge"), "unknown synthetic size: %s", err);
    free(t);
    weights_free(&ref);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/wm-test-weights-XXXXXX");
    if (!mkdtemp(tmpdir)) return perror("mkdtemp"), 1;
    test_config();
    test_param_counts();
    test_synthetic();
    test_loading();
    test_model_dirs();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) printf("note: could not remove %s\n", tmpdir);
    return tu_finish("test_weights");
}

/* Opening a model: resolving a model spec (synthetic, file or directory in one of the known
 * layouts) to a config and a set of safetensors files, then loading or generating the weights,
 * then choosing the backend (backend_select.c) and, for CUDA, uploading the DiT and CLIP
 * (backend_cuda.c) and the VAE (backend_vae.c). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/clip.h"
#include "engine/engine.h"
#include "engine/model_internal.h"
#include "engine/vae.h"
#include "engine/safetensors.h"
#include "engine/weights.h"

#include <cjson/cJSON.h>

#define MAX_SHARDS 64
#define PATH_LEN   4096

struct eng_model {
    eng_weights w;
    vae_weights *vae;   /* NULL when the checkpoint has no VAE */
    int vae_parts;      /* VAE_PART_* loaded */
    clip_weights *clip; /* NULL when the checkpoint has no CLIP */
    int backend;        /* ENG_BACKEND_CPU or ENG_BACKEND_CUDA */
    eng_gpu_model *gpu; /* CUDA: the DiT and CLIP on the device */
    eng_vae *vaeb;      /* the VAE on its backend, NULL without a VAE */
    char desc[3 * PATH_LEN + 512];
};

const eng_config *eng_model_config(const eng_model *m) {
    return &m->w.cfg;
}
const eng_weights *eng_model_weights(const eng_model *m) {
    return &m->w;
}
const vae_weights *eng_model_vae(const eng_model *m) {
    return m->vae;
}
const clip_weights *eng_model_clip(const eng_model *m) {
    return m->clip;
}
const char *eng_model_describe(const eng_model *m) {
    return m->desc;
}
int eng_model_backend(const eng_model *m) {
    return m->backend;
}

int eng_model_device_memory(const eng_model *m, size_t *free_bytes, size_t *total_bytes, char *err,
                            size_t errlen) {
    *free_bytes = *total_bytes = 0;
    if (m->backend != ENG_BACKEND_CUDA)
        return eng_errorf(err, errlen, ENG_ESTATE, "the model computes on the CPU");
    return eng_gpu_memory(free_bytes, total_bytes, err, errlen);
}
eng_gpu_model *eng_model_gpu(const eng_model *m) {
    return m->gpu;
}
eng_vae *eng_model_vae_backend(const eng_model *m) {
    return m->vaeb;
}

void eng_model_video_size(const eng_model *m, int *width, int *height) {
    *width = 8 * m->w.cfg.lat_w;
    *height = 8 * m->w.cfg.lat_h;
}
int eng_model_has_decoder(const eng_model *m) {
    return m->vae && (m->vae_parts & VAE_PART_DECODER);
}
int eng_model_has_encoders(const eng_model *m) {
    return m->vae && (m->vae_parts & VAE_PART_ENCODER) && m->clip;
}

void eng_model_close(eng_model *m) {
    if (!m) return;
    eng_vae_destroy(m->vaeb);
    eng_gpu_model_destroy(m->gpu);
    weights_free(&m->w);
    vae_weights_free(m->vae);
    clip_weights_free(m->clip);
    free(m);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}
static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}
static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The weight files of a checkpoint: paths[] (owned by the caller's buffer). */
typedef struct weight_files {
    char paths[MAX_SHARDS][PATH_LEN];
    int n;
} weight_files;

static int add_path(weight_files *wf, const char *dir, const char *name, char *err, size_t errlen) {
    if (wf->n >= MAX_SHARDS)
        return eng_errorf(err, errlen, ENG_EINVAL, "%s: more than %d weight shards", dir,
                          MAX_SHARDS);
    int w = dir ? snprintf(wf->paths[wf->n], PATH_LEN, "%s/%s", dir, name)
                : snprintf(wf->paths[wf->n], PATH_LEN, "%s", name);
    if (w < 0 || w >= PATH_LEN)
        return eng_errorf(err, errlen, ENG_EINVAL, "path too long: %s", name);
    wf->n++;
    return 0;
}

/* A sharded checkpoint's index: {"weight_map": {tensor: file}}; the distinct files, in order. */
static int read_index(const char *dir, const char *index, weight_files *wf, char *err,
                      size_t errlen) {
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, index);
    FILE *f = fopen(path, "rb");
    if (!f) return eng_errorf(err, errlen, ENG_EIO, "%s: cannot open", path);
    static char buf[8 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    int big = !feof(f);
    fclose(f);
    if (big) return eng_errorf(err, errlen, ENG_EFORMAT, "%s: index larger than 8 MB", path);
    cJSON *root = cJSON_ParseWithLength(buf, n);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    int rc = cJSON_IsObject(map)
                 ? 0
                 : eng_errorf(err, errlen, ENG_EFORMAT,
                              "%s: not a safetensors index (no weight_map object)", path);
    for (const cJSON *it = map ? map->child : NULL; it && !rc; it = it->next) {
        if (!cJSON_IsString(it) || strchr(it->valuestring, '/') || it->valuestring[0] == '.') {
            rc = eng_errorf(err, errlen, ENG_EFORMAT,
                            "%s: weight_map['%s'] is not a plain file name", path, it->string);
            break;
        }
        int seen = 0;
        for (int i = 0; i < wf->n; i++)
            seen |= ends_with(wf->paths[i], it->valuestring) &&
                    wf->paths[i][strlen(wf->paths[i]) - strlen(it->valuestring) - 1] == '/';
        if (!seen) rc = add_path(wf, dir, it->valuestring, err, errlen);
    }
    cJSON_Delete(root);
    return rc;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(a, b);
}

/* Every *.safetensors of a folder (via its index when there is one). */
static int scan_folder(const char *dir, weight_files *wf, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) return eng_errorf(err, errlen, ENG_EIO, "%s: cannot open directory", dir);
    char names[MAX_SHARDS][256];
    int n = 0, rc = 0;
    char index[256] = "";
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (ends_with(e->d_name, ".safetensors.index.json"))
            snprintf(index, sizeof index, "%s", e->d_name);
        else if (ends_with(e->d_name, ".safetensors") && n < MAX_SHARDS)
            snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);
    if (index[0]) return read_index(dir, index, wf, err, errlen);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    for (int i = 0; i < n && !rc; i++) rc = add_path(wf, dir, names[i], err, errlen);
    return rc;
}

static const char *const official_files[ENG_VARIANT_COUNT] = {
    "base_distilled_model/base_distill.safetensors",
    "gta_distilled_model/gta_keyboard2dim.safetensors",
    "templerun_distilled_model/templerun_7dim_onlykey.safetensors",
};

/* Config candidates next to the weights, then the code repository's layout. */
static int find_config(const char *root, const char *weights_dir, int variant, char *out) {
    char cand[3][PATH_LEN];
    snprintf(cand[0], PATH_LEN, "%s/config.json", weights_dir);
    snprintf(cand[1], PATH_LEN, "%s/config.json", root);
    snprintf(cand[2], PATH_LEN, "%s/configs/distilled_model/%s/config.json", root,
             variant >= 0 ? eng_variant_name((eng_variant)variant) : "universal");
    for (int i = 0; i < 3; i++)
        if (is_file(cand[i])) return snprintf(out, PATH_LEN, "%s", cand[i]), 1;
    return 0;
}

/* The variant a checkpoint holds, from its first action block's tensors. */
static int infer_variant_from_weights(const weight_files *wf, char *err, size_t errlen) {
    for (int i = 0; i < wf->n; i++) {
        st_file *f = NULL;
        int rc = st_open(wf->paths[i], &f, err, errlen);
        if (rc) return rc;
        int v = -1;
        for (size_t t = 0; t < st_count(f) && v < 0; t++) {
            const st_tensor *x = st_get(f, t);
            if (ends_with(x->name, "blocks.0.action_model.keyboard_embed.0.weight") &&
                x->ndim == 2) {
                int has_mouse = 0;
                for (size_t u = 0; u < st_count(f); u++)
                    has_mouse |= strstr(st_get(f, u)->name, "mouse_mlp") != NULL;
                v = !has_mouse         ? ENG_VARIANT_TEMPLERUN
                    : x->shape[1] == 2 ? ENG_VARIANT_GTA_DRIVE
                                       : ENG_VARIANT_UNIVERSAL;
            }
        }
        st_close(f);
        if (v >= 0) return v;
    }
    return eng_errorf(err, errlen, ENG_EWEIGHTS,
                      "%s: no blocks.0.action_model.keyboard_embed.0.weight; cannot tell the "
                      "variant (pass --variant)",
                      wf->paths[0]);
}

/* Resolves a directory or file spec to weight files, a config and a description. */
static int resolve_checkpoint(const char *spec, int variant, weight_files *wf, eng_config *cfg,
                              char *desc, size_t desclen, char *err, size_t errlen) {
    char wdir[PATH_LEN], root[PATH_LEN], layout[32];
    int rc = 0;
    memset(wf, 0, sizeof *wf);
    snprintf(root, sizeof root, "%s", spec);
    if (is_file(spec) && ends_with(spec, ".safetensors")) {
        rc = add_path(wf, NULL, spec, err, errlen);
        snprintf(wdir, sizeof wdir, "%s", spec);
        char *slash = strrchr(wdir, '/');
        if (slash)
            *slash = 0;
        else
            snprintf(wdir, sizeof wdir, ".");
        snprintf(root, sizeof root, "%s", wdir);
        snprintf(layout, sizeof layout, "file");
    } else if (!is_dir(spec)) {
        return eng_errorf(err, errlen, ENG_EIO,
                          "model '%s': no such directory or .safetensors file (or use "
                          "synthetic:tiny / synthetic:full)",
                          spec);
    } else {
        int found = -1, nfound = 0;
        for (int v = 0; v < ENG_VARIANT_COUNT; v++) {
            char p[PATH_LEN];
            snprintf(p, sizeof p, "%s/%s", spec, official_files[v]);
            if (is_file(p) && (variant < 0 || variant == v)) found = v, nfound++;
        }
        char tdir[PATH_LEN];
        snprintf(tdir, sizeof tdir, "%s/transformer", spec);
        if (nfound > 1)
            return eng_errorf(err, errlen, ENG_EINVAL,
                              "%s holds several variants; choose one with --variant", spec);
        if (nfound == 1) {
            rc = add_path(wf, spec, official_files[found], err, errlen);
            snprintf(wdir, sizeof wdir, "%s/%s", spec, official_files[found]);
            *strrchr(wdir, '/') = 0;
            snprintf(layout, sizeof layout, "official release");
            if (variant < 0) variant = found;
        } else if (is_dir(tdir)) {
            rc = scan_folder(tdir, wf, err, errlen);
            snprintf(wdir, sizeof wdir, "%s", tdir);
            snprintf(layout, sizeof layout, "Diffusers");
        } else {
            rc = scan_folder(spec, wf, err, errlen);
            snprintf(wdir, sizeof wdir, "%s", spec);
            snprintf(layout, sizeof layout, "folder");
        }
        if (!rc && wf->n == 0) {
            if (variant >= 0)
                return eng_errorf(
                    err, errlen, ENG_EIO,
                    "%s: no weights for %s (expected %s/%s, transformer/*.safetensors "
                    "or *.safetensors)",
                    spec, eng_variant_name((eng_variant)variant), spec, official_files[variant]);
            return eng_errorf(err, errlen, ENG_EIO,
                              "%s: no weights found (expected one of %s, %s, %s under it, "
                              "transformer/*.safetensors or *.safetensors)",
                              spec, official_files[0], official_files[1], official_files[2]);
        }
    }
    if (rc) return rc;
    char cpath[PATH_LEN];
    const char *config_note = "built-in preset";
    int have_cfg = 0;
    if (find_config(root, wdir, variant, cpath)) {
        rc = eng_config_load_json(cfg, cpath, variant, err, errlen);
        if (rc == ENG_ECONFIG_FOREIGN)
            rc = 0, config_note = "built-in preset (foreign config.json)";
        else if (rc)
            return rc;
        else
            have_cfg = 1, config_note = cpath;
    }
    if (!have_cfg) {
        if (variant < 0) variant = infer_variant_from_weights(wf, err, errlen);
        if (variant < 0) return variant;
        rc = eng_config_preset(cfg, "full", (eng_variant)variant, err, errlen);
        if (rc) return rc;
    }
    snprintf(desc, desclen, "%s (%s layout, %d file%s, config: %s)", spec, layout, wf->n,
             wf->n == 1 ? "" : "s", config_note);
    return 0;
}

static int apply_options(eng_config *cfg, const eng_model_options *o, char *err, size_t errlen) {
    if (o->num_layers > 0) {
        if (o->num_layers > cfg->num_layers)
            return eng_errorf(err, errlen, ENG_EINVAL, "--layers %d: the model has only %d",
                              o->num_layers, cfg->num_layers);
        for (int i = o->num_layers; i < ENG_MAX_LAYERS; i++) cfg->action_layer[i] = 0;
        cfg->num_layers = o->num_layers;
    }
    if (o->rope_pos_limit > 0) cfg->rope_pos_limit = o->rope_pos_limit;
    return eng_config_validate(cfg, err, errlen);
}

/* Synthetic VAE and CLIP of the DiT's size ("tiny" or "full"). */
static int synthetic_encoders(eng_model *m, const char *size, uint64_t seed, char *err,
                              size_t errlen) {
    vae_config vc;
    clip_config cc;
    int rc = vae_config_preset(&vc, size, err, errlen);
    if (!rc) rc = vae_weights_synthetic(&vc, seed, &m->vae, err, errlen);
    if (!rc) rc = clip_config_preset(&cc, size, err, errlen);
    if (!rc) rc = clip_weights_synthetic(&cc, seed, &m->clip, err, errlen);
    m->vae_parts = VAE_PART_DECODER | VAE_PART_ENCODER;
    return rc;
}

/* First existing file among candidates under root; "" if none. */
static const char *first_file(const char *root, const char *const *names, int n, char *buf) {
    for (int i = 0; i < n; i++) {
        snprintf(buf, PATH_LEN, "%s/%s", root, names[i]);
        if (is_file(buf)) return buf;
    }
    return "";
}

/* The VAE and CLIP files of a checkpoint directory (official release or Diffusers layout).
 * Absent files leave the model without pixels (reported in the description); present files must
 * load. */
static int load_encoders(eng_model *m, const char *spec, char *note, size_t notelen, char *err,
                         size_t errlen) {
    static const char *const vae_names[] = {"Wan2.1_VAE.pth",
                                            "vae/diffusion_pytorch_model.safetensors"};
    static const char *const clip_names[] = {
        "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",
        "image_encoder/model.safetensors"};
    char vbuf[PATH_LEN], cbuf[PATH_LEN];
    const char *vpath = is_dir(spec) ? first_file(spec, vae_names, 2, vbuf) : "";
    const char *cpath = is_dir(spec) ? first_file(spec, clip_names, 2, cbuf) : "";
    int rc = 0;
    if (vpath[0]) {
        vae_config vc;
        rc = vae_config_preset(&vc, "full", err, errlen);
        if (!rc)
            rc = vae_weights_load(&vc, vpath, VAE_PART_DECODER | VAE_PART_ENCODER, &m->vae, err,
                                  errlen);
        m->vae_parts = VAE_PART_DECODER | VAE_PART_ENCODER;
    }
    if (!rc && cpath[0]) {
        clip_config cc;
        rc = clip_config_preset(&cc, "full", err, errlen);
        if (!rc) rc = clip_weights_load(&cc, cpath, &m->clip, err, errlen);
    }
    snprintf(note, notelen, "VAE: %s; CLIP: %s", vpath[0] ? vpath : "none (no frames)",
             cpath[0] ? cpath : "none (no start images)");
    return rc;
}

/* The backend (chosen before loading, so a refusal is quick): the DiT and CLIP on the device for
 * CUDA (AUTO falls back to the CPU when the CUDA code does not support the config), then the VAE on
 * its backend; *why gets the description. */
static int open_backend(eng_model *m, int automatic, char *why, size_t whylen, char *err,
                        size_t errlen) {
    int rc = 0;
    if (m->backend == ENG_BACKEND_CUDA) {
        char msg[1024];
        rc = eng_gpu_model_create(&m->w, m->clip, &m->gpu, msg, sizeof msg);
        if (rc == ENG_EINVAL && automatic) {
            m->backend = ENG_BACKEND_CPU;
            snprintf(why, whylen, "cpu (auto: the CUDA backend cannot run this model: %s)", msg);
            rc = 0;
        } else if (rc) {
            return eng_errorf(err, errlen, rc, "backend %s: %s", why, msg);
        } else {
            size_t n = strlen(why);
            snprintf(why + n, whylen - n, ", %.2f GB on the device",
                     (double)eng_gpu_model_device_bytes(m->gpu) * 1e-9);
        }
    }
    if (!rc && m->vae)
        rc = eng_vae_create(m->vae, m->backend, m->gpu ? eng_gpu_model_stream(m->gpu) : NULL,
                            &m->vaeb, err, errlen);
    if (!rc && m->vaeb) {
        size_t n = strlen(why);
        snprintf(why + n, whylen - n, "; VAE on %s", eng_vae_where(m->vaeb));
    }
    return rc;
}

int eng_model_open(const char *spec, const eng_model_options *opt, eng_model **out, char *err,
                   size_t errlen) {
    *out = NULL;
    eng_model_options o = {.variant = -1};
    if (opt) o = *opt;
    if (o.variant >= ENG_VARIANT_COUNT)
        return eng_errorf(err, errlen, ENG_EINVAL, "unknown variant %d", o.variant);
    eng_model *m = calloc(1, sizeof *m);
    if (!m) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    eng_config cfg;
    char why[512] = "";
    int automatic = 0;
    int rc =
        eng_backend_resolve(o.backend, NULL, &m->backend, &automatic, why, sizeof why, err, errlen);
    if (rc) {
        free(m);
        return rc;
    }
    if (strncmp(spec, "synthetic:", 10) == 0) {
        eng_variant v = o.variant >= 0 ? (eng_variant)o.variant : ENG_VARIANT_UNIVERSAL;
        rc = eng_config_preset(&cfg, spec + 10, v, err, errlen);
        if (!rc) rc = apply_options(&cfg, &o, err, errlen);
        if (!rc) rc = weights_init_synthetic(&m->w, &cfg, o.weight_seed, err, errlen);
        if (!rc) rc = synthetic_encoders(m, spec + 10, o.weight_seed, err, errlen);
        snprintf(m->desc, sizeof m->desc, "%s (synthetic weights, seed %llu)", spec,
                 (unsigned long long)o.weight_seed);
    } else {
        weight_files *wf = malloc(sizeof *wf);
        char desc[PATH_LEN + 128];
        rc = wf ? resolve_checkpoint(spec, o.variant, wf, &cfg, desc, sizeof desc, err, errlen)
                : eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
        if (!rc) rc = apply_options(&cfg, &o, err, errlen);
        if (!rc) {
            const char *paths[MAX_SHARDS];
            for (int i = 0; i < wf->n; i++) paths[i] = wf->paths[i];
            rc = weights_load_safetensors(&m->w, &cfg, paths, wf->n, o.num_layers > 0, err, errlen);
        }
        char note[2 * PATH_LEN] = "";
        if (!rc) rc = load_encoders(m, spec, note, sizeof note, err, errlen);
        if (!rc) snprintf(m->desc, sizeof m->desc, "%s; %s", desc, note);
        free(wf);
    }
    if (!rc) rc = open_backend(m, automatic, why, sizeof why, err, errlen);
    if (rc) {
        eng_model_close(m);
        return rc;
    }
    size_t len = strlen(m->desc);
    snprintf(m->desc + len, sizeof m->desc - len, ": %s, %d layers, %.2f M parameters; backend %s",
             eng_variant_name(m->w.cfg.variant), m->w.cfg.num_layers,
             (double)m->w.arena_floats * 1e-6, why);
    *out = m;
    return 0;
}

/* wmgen: runs one world-model session offline and writes what it generated.
 *
 * The user's tool for generating a clip from a script of actions, and the project's hook for
 * parity checks: it can take every noise tensor and the conditioning from files, and dump every
 * forward's input and output and the hidden states of one forward for layer-by-layer comparison
 * with another implementation. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/engine.h"
#include "engine/image.h"
#include "engine/safetensors.h"

typedef struct wmgen_opts {
    const char *model, *variant, *cond_path, *image_path, *actions_path, *noise_path, *out_dir;
    int blocks, layers, rope_limit, dump_forwards, dump_noise, quiet, frames, mp4, fps;
    int64_t hidden_block;
    int hidden_step;
    uint64_t seed, weight_seed, cond_seed, actions_seed;
    uint32_t session_id;
} wmgen_opts;

static double wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: wmgen --model SPEC --out DIR [options]\n"
        "\n"
        "Runs a Matrix-Game-2.0 session on the CPU reference backend and writes its latents.\n"
        "\n"
        "model:\n"
        "  --model SPEC          synthetic:tiny | synthetic:full | checkpoint directory | "
        ".safetensors\n"
        "  --variant NAME        universal | gta_drive | templerun (default: from the checkpoint;\n"
        "                        universal for synthetic models)\n"
        "  --layers N            run only the first N transformer blocks (reduced depth)\n"
        "  --weight-seed N       seed of synthetic weights (default 0)\n"
        "  --rope-limit N        rebase RoPE positions before they reach N latent frames (default "
        "1024)\n"
        "session:\n"
        "  --image FILE          start from a PNG/JPEG: cropped and resized to the model's video "
        "size\n"
        "                        as the reference does, VAE-encoded for cond_concat and "
        "CLIP-encoded\n"
        "                        for visual_context (needs a model with VAE and CLIP)\n"
        "  --cond FILE|synthetic:N\n"
        "                        safetensors with cond_concat [20,N,H,W] and visual_context "
        "[257,C]\n"
        "                        (a leading batch dimension of 1 is accepted), or synthetic\n"
        "                        conditioning from seed N (default synthetic:0)\n"
        "  --actions FILE|random:N\n"
        "                        action script (engine/ACTIONS.md), or a random script from seed "
        "N\n"
        "                        (default random:0)\n"
        "  --blocks N            blocks of 3 latent frames to generate (default 4)\n"
        "  --seed N              noise seed (default 0)\n"
        "  --session-id N        noise stream of this session (default 0)\n"
        "  --noise FILE          take noise from FILE instead of the generator: tensor 'noise'\n"
        "                        [16,N,H,W] is sliced for each block's initial noise (like the\n"
        "                        reference), 'b{n}.noise0' overrides it per block, and "
        "'b{n}.noise{k}'\n"
        "                        (k >= 1) is the re-noising draw before step k+1 of block n\n"
        "output (in --out DIR):\n"
        "  latents.safetensors   'latents' [16, 3*blocks, H, W] and 'b{n}.x0' per block\n"
        "  frames/               frame_%%06d.png, every decoded video frame (when the model has a "
        "VAE)\n"
        "  video.mp4             the same frames as H.264 when the ffmpeg program is installed\n"
        "  --no-frames           latents only: skip the VAE decode\n"
        "  --no-mp4              PNG frames only\n"
        "  --fps N               frame rate of the MP4 (default 25)\n"
        "  --dump-forwards       forwards.safetensors: 'b{n}.s{k}.x' input and 'b{n}.s{k}.v' "
        "output of\n"
        "                        every forward (k = steps is the context pass)\n"
        "  --dump-hidden N:K     hidden.safetensors: 'b{N}.s{K}.layer{i}' [3*S, D] after each "
        "block\n"
        "  --dump-noise          noise.safetensors: every noise tensor used, named as for --noise\n"
        "  --quiet               no per-block table\n"
        "  -h, --help            this text\n");
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-') return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    uint64_t v;
    if (parse_u64(s, &v) || v < (uint64_t)lo || v > (uint64_t)hi) return -1;
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, wmgen_opts *o) {
    enum {
        O_VARIANT = 256,
        O_LAYERS,
        O_WSEED,
        O_ROPE,
        O_COND,
        O_ACTIONS,
        O_BLOCKS,
        O_SEED,
        O_SID,
        O_NOISE,
        O_OUT,
        O_DFWD,
        O_DHID,
        O_DNOISE,
        O_QUIET,
        O_MODEL,
        O_IMAGE,
        O_NOFRAMES,
        O_NOMP4,
        O_FPS
    };
    static const struct option longopts[] = {{"model", required_argument, 0, O_MODEL},
                                             {"variant", required_argument, 0, O_VARIANT},
                                             {"layers", required_argument, 0, O_LAYERS},
                                             {"weight-seed", required_argument, 0, O_WSEED},
                                             {"rope-limit", required_argument, 0, O_ROPE},
                                             {"cond", required_argument, 0, O_COND},
                                             {"actions", required_argument, 0, O_ACTIONS},
                                             {"blocks", required_argument, 0, O_BLOCKS},
                                             {"seed", required_argument, 0, O_SEED},
                                             {"session-id", required_argument, 0, O_SID},
                                             {"noise", required_argument, 0, O_NOISE},
                                             {"out", required_argument, 0, O_OUT},
                                             {"dump-forwards", no_argument, 0, O_DFWD},
                                             {"dump-hidden", required_argument, 0, O_DHID},
                                             {"dump-noise", no_argument, 0, O_DNOISE},
                                             {"quiet", no_argument, 0, O_QUIET},
                                             {"image", required_argument, 0, O_IMAGE},
                                             {"no-frames", no_argument, 0, O_NOFRAMES},
                                             {"no-mp4", no_argument, 0, O_NOMP4},
                                             {"fps", required_argument, 0, O_FPS},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->blocks = 4, o->hidden_block = -1, o->frames = 1, o->mp4 = 1, o->fps = 25;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        int bad = 0;
        uint64_t u = 0;
        switch (c) {
        case O_MODEL:
            o->model = optarg;
            break;
        case O_VARIANT:
            o->variant = optarg;
            break;
        case O_LAYERS:
            bad = parse_int(optarg, 1, ENG_MAX_LAYERS, &o->layers);
            break;
        case O_WSEED:
            bad = parse_u64(optarg, &o->weight_seed);
            break;
        case O_ROPE:
            bad = parse_int(optarg, 1, 1 << 30, &o->rope_limit);
            break;
        case O_COND:
            if (strncmp(optarg, "synthetic:", 10) == 0)
                bad = parse_u64(optarg + 10, &o->cond_seed);
            else
                o->cond_path = optarg;
            break;
        case O_ACTIONS:
            if (strncmp(optarg, "random:", 7) == 0)
                bad = parse_u64(optarg + 7, &o->actions_seed);
            else
                o->actions_path = optarg;
            break;
        case O_BLOCKS:
            bad = parse_int(optarg, 1, 1 << 20, &o->blocks);
            break;
        case O_SEED:
            bad = parse_u64(optarg, &o->seed);
            break;
        case O_SID:
            bad = parse_u64(optarg, &u) || u > 0xFFFFFFFFu;
            o->session_id = (uint32_t)u;
            break;
        case O_NOISE:
            o->noise_path = optarg;
            break;
        case O_OUT:
            o->out_dir = optarg;
            break;
        case O_DFWD:
            o->dump_forwards = 1;
            break;
        case O_DHID: {
            long long n;
            int k, used = 0;
            bad = sscanf(optarg, "%lld:%d%n", &n, &k, &used) != 2 || optarg[used] || n < 0 || k < 0;
            o->hidden_block = n, o->hidden_step = k;
            break;
        }
        case O_DNOISE:
            o->dump_noise = 1;
            break;
        case O_QUIET:
            o->quiet = 1;
            break;
        case O_IMAGE:
            o->image_path = optarg;
            break;
        case O_NOFRAMES:
            o->frames = 0;
            break;
        case O_NOMP4:
            o->mp4 = 0;
            break;
        case O_FPS:
            bad = parse_int(optarg, 1, 240, &o->fps);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
        if (bad) {
            const char *opt = "?";
            for (const struct option *lo = longopts; lo->name; lo++)
                if (lo->val == c) opt = lo->name;
            fprintf(stderr, "wmgen: invalid value '%s' for --%s\n", optarg, opt);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "wmgen: unexpected argument '%s' (see --help)\n", argv[optind]);
        return -1;
    }
    if (o->image_path && o->cond_path) {
        fprintf(stderr, "wmgen: --image and --cond both give the conditioning; choose one\n");
        return -1;
    }
    if (!o->model || !o->out_dir) {
        fprintf(stderr, "wmgen: --model and --out are required (see --help)\n");
        return -1;
    }
    return 0;
}

/* ---- conditioning and noise files ---------------------------------------------------------- */

/* Finds `name` with shape `want` (last ndim dims; a leading 1 is allowed), or -1 with a message. */
static const st_tensor *find_shaped(st_file *f, const char *name, const int64_t *want, int ndim,
                                    int free_dim, char *err, size_t errlen) {
    const st_tensor *t = st_find(f, name);
    if (!t) {
        snprintf(err, errlen, "%s: no tensor '%s'", st_origin(f), name);
        return NULL;
    }
    int lead = t->ndim - ndim;
    int ok = (lead == 0 || (lead == 1 && t->shape[0] == 1));
    for (int i = 0; ok && i < ndim; i++)
        ok = i == free_dim ? t->shape[lead + i] >= 1 : t->shape[lead + i] == want[i];
    if (!ok) {
        snprintf(err, errlen, "%s: tensor '%s' has the wrong shape (%d dims; expected %d)",
                 st_origin(f), name, t->ndim, ndim);
        return NULL;
    }
    return t;
}

typedef struct conditioning {
    float *cond, *clip, *image;
    int frames;
} conditioning;

/* --image: the start image prepared to the model's video size (planes in [-1, 1]). */
static int load_image(const char *path, eng_model *m, conditioning *cd, char *err, size_t errlen) {
    int vw, vh;
    eng_model_video_size(m, &vw, &vh);
    img_rgb8 img = {0};
    int rc = img_load(path, IMG_MAX_PIXELS, &img, err, errlen);
    if (rc) return rc;
    cd->image = malloc(3 * (size_t)vw * vh * sizeof(float));
    rc = cd->image ? img_prepare(&img, vw, vh, cd->image, err, errlen)
                   : eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    img_free(&img);
    return rc;
}

static int load_conditioning(const wmgen_opts *o, const eng_config *c, conditioning *cd, char *err,
                             size_t errlen) {
    const size_t HW = (size_t)c->lat_h * c->lat_w;
    const size_t nclip = (size_t)c->clip_tokens * c->clip_dim;
    if (!o->cond_path) {
        cd->frames = 3 * o->blocks;
        cd->cond = malloc(20 * (size_t)cd->frames * HW * sizeof(float));
        cd->clip = malloc(nclip * sizeof(float));
        if (!cd->cond || !cd->clip) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
        return eng_synthetic_conditioning(c, o->cond_seed, cd->frames, cd->cond, cd->clip);
    }
    st_file *f = NULL;
    int rc = st_open(o->cond_path, &f, err, errlen);
    if (rc) return rc;
    const int64_t wc[4] = {20, 0, c->lat_h, c->lat_w}, wv[2] = {c->clip_tokens, c->clip_dim};
    const st_tensor *tc = find_shaped(f, "cond_concat", wc, 4, 1, err, errlen);
    const st_tensor *tv = tc ? find_shaped(f, "visual_context", wv, 2, -1, err, errlen) : NULL;
    rc = tv ? 0 : ENG_EFORMAT;
    if (!rc) {
        cd->frames = (int)tc->shape[tc->ndim - 3];
        cd->cond = malloc((size_t)tc->numel * sizeof(float));
        cd->clip = malloc((size_t)tv->numel * sizeof(float));
        rc = cd->cond && cd->clip ? 0 : eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    }
    if (!rc) rc = st_to_f32(tc, cd->cond, (size_t)tc->numel, err, errlen);
    if (!rc) rc = st_to_f32(tv, cd->clip, (size_t)tv->numel, err, errlen);
    st_close(f);
    return rc;
}

typedef struct noise_source {
    st_file *file;
    const eng_config *cfg;
} noise_source;

static int noise_from_file(void *user, int64_t block, int k, float *dst, size_t n, char *err,
                           size_t errlen);

/* ---- outputs ----------------------------------------------------------------------------------
 */

typedef struct dumps {
    st_writer *forwards, *hidden, *noise;
    noise_source *noise_src;
    int failed;
    char err[512];
} dumps;

static void trace_fn(void *user, const char *name, const float *data, int ndim,
                     const int64_t *shape) {
    dumps *d = user;
    st_writer *w = strstr(name, ".layer")   ? d->hidden
                   : strstr(name, ".noise") ? d->noise
                                            : d->forwards;
    if (!w || d->failed) return;
    if (st_writer_add_f32(w, name, shape, ndim, data, d->err, sizeof d->err)) d->failed = 1;
}

static int session_noise(void *user, int64_t block, int k, float *dst, size_t n, char *err,
                         size_t errlen) {
    dumps *d = user;
    return d->noise_src ? noise_from_file(d->noise_src, block, k, dst, n, err, errlen) : 0;
}

static int noise_from_file(void *user, int64_t block, int k, float *dst, size_t n, char *err,
                           size_t errlen) {
    noise_source *ns = user;
    const eng_config *c = ns->cfg;
    char name[48];
    snprintf(name, sizeof name, "b%lld.noise%d", (long long)block, k);
    const st_tensor *t = st_find(ns->file, name);
    if (t) {
        if ((size_t)t->numel != n)
            return eng_errorf(err, errlen, ENG_EFORMAT, "%s: '%s' has %lld values, expected %zu",
                              st_origin(ns->file), name, (long long)t->numel, n);
        return st_to_f32(t, dst, n, err, errlen) ? ENG_EFORMAT : 1;
    }
    const st_tensor *all = k == 0 ? st_find(ns->file, "noise") : NULL;
    if (!all)
        return eng_errorf(err, errlen, ENG_EFORMAT, "%s: no tensor '%s'%s", st_origin(ns->file),
                          name, k == 0 ? " and no 'noise'" : "");
    /* [1?, 16, N, H, W]: this block's frames 3b .. 3b+2 */
    const size_t HW = (size_t)c->lat_h * c->lat_w, T = (size_t)c->frames_per_block;
    const int64_t frames = all->ndim >= 4 ? all->shape[all->ndim - 3] : 0;
    if (all->ndim < 4 || all->shape[all->ndim - 4] != 16 ||
        (size_t)all->shape[all->ndim - 2] != (size_t)c->lat_h ||
        (size_t)all->shape[all->ndim - 1] != (size_t)c->lat_w || frames < (int64_t)T * (block + 1))
        return eng_errorf(err, errlen, ENG_EFORMAT,
                          "%s: 'noise' must be [16, N, %d, %d] with N >= %lld", st_origin(ns->file),
                          c->lat_h, c->lat_w, (long long)(T * (size_t)(block + 1)));
    float *full = malloc((size_t)all->numel * sizeof(float));
    if (!full) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    int rc = st_to_f32(all, full, (size_t)all->numel, err, errlen);
    for (size_t ch = 0; ch < 16 && !rc; ch++)
        memcpy(dst + ch * T * HW, full + (ch * (size_t)frames + T * (size_t)block) * HW,
               T * HW * sizeof(float));
    free(full);
    return rc ? rc : 1;
}

static int save_writer(st_writer *w, const char *dir, const char *file, char *err, size_t errlen) {
    if (!w) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return st_writer_save(w, path, err, errlen);
}

/* ---- main ---------------------------------------------------------------------------------------
 */

static int run(const wmgen_opts *o, char *err, size_t errlen) {
    eng_model_options mo = {.variant = -1,
                            .num_layers = o->layers,
                            .weight_seed = o->weight_seed,
                            .rope_pos_limit = o->rope_limit};
    if (o->variant && (mo.variant = eng_variant_parse(o->variant)) < 0)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "unknown variant '%s' (universal, gta_drive, templerun)", o->variant);
    if (mkdir(o->out_dir, 0755) && errno != EEXIST)
        return eng_errorf(err, errlen, ENG_EIO, "%s: %s", o->out_dir, strerror(errno));
    eng_model *m = NULL;
    int rc = eng_model_open(o->model, &mo, &m, err, errlen);
    if (rc) return rc;
    const eng_config *c = eng_model_config(m);
    if (!o->quiet) {
        char blas[256];
        eng_cpu_backend_describe(blas, sizeof blas);
        printf("model: %s\ncpu: %s\n", eng_model_describe(m), blas);
    }

    conditioning cd = {0};
    eng_action_script script = {0};
    noise_source ns = {0};
    dumps d = {0};
    eng_session *s = NULL;
    float *lat = NULL, *all = NULL;
    st_writer *out = st_writer_create();
    rc = !out            ? ENG_ENOMEM
         : o->image_path ? load_image(o->image_path, m, &cd, err, errlen)
                         : load_conditioning(o, c, &cd, err, errlen);
    if (!rc)
        rc = o->actions_path
                 ? eng_actions_load(o->actions_path, c, &script, err, errlen)
                 : eng_actions_random(c, o->actions_seed, (size_t)12 * o->blocks, &script);
    if (!rc && o->noise_path) {
        ns.cfg = c;
        rc = st_open(o->noise_path, &ns.file, err, errlen);
        d.noise_src = &ns;
    }
    if (!rc) {
        d.forwards = o->dump_forwards ? st_writer_create() : NULL;
        d.hidden = o->hidden_block >= 0 ? st_writer_create() : NULL;
        d.noise = o->dump_noise ? st_writer_create() : NULL;
        const int tracing = d.forwards || d.hidden || d.noise;
        eng_session_params sp = {.seed = o->seed,
                                 .session_id = o->session_id,
                                 .cond = cd.cond,
                                 .cond_frames = cd.frames,
                                 .clip = cd.clip,
                                 .image = cd.image,
                                 .trace = tracing ? trace_fn : NULL,
                                 .trace_hidden_block = o->hidden_block,
                                 .trace_hidden_step = o->hidden_step,
                                 .noise = session_noise,
                                 .user = &d};
        rc = eng_session_create(m, &sp, &s, err, errlen);
    }
    const size_t HW = (size_t)c->lat_h * c->lat_w, T = (size_t)c->frames_per_block;
    const size_t nblk = 16 * T * HW;
    int vw, vh, decode = o->frames && eng_model_has_decoder(m), nframes_total = 0;
    eng_model_video_size(m, &vw, &vh);
    img_frame_sink *sink = NULL;
    uint8_t *rgb = NULL;
    if (!rc) {
        lat = malloc(nblk * sizeof(float));
        all = malloc(nblk * (size_t)o->blocks * sizeof(float));
        if (!lat || !all) rc = eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    }
    if (!rc && decode) {
        char fdir[4096], mp4[4096];
        snprintf(fdir, sizeof fdir, "%s/frames", o->out_dir);
        snprintf(mp4, sizeof mp4, "%s/video.mp4", o->out_dir);
        rgb = malloc((size_t)ENG_MAX_FRAMES_PER_BLOCK * vw * vh * 3);
        rc = rgb ? img_sink_open(fdir, o->mp4 ? mp4 : NULL, vw, vh, o->fps, &sink, err, errlen)
                 : eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    } else if (!rc && o->frames && !o->quiet) {
        printf("note: %s has no VAE decoder: writing latents only\n", o->model);
    }
    if (!rc && !o->quiet) {
        printf("%6s %10s", "block", "total_ms");
        for (int k = 0; k < c->num_steps; k++) printf("   step%d_ms", k + 1);
        printf(" context_ms%s\n", decode ? "  decode_ms frames" : "");
    }
    int64_t video_frame = 0;
    for (int b = 0; b < o->blocks && !rc; b++) {
        int n = eng_session_block_video_frames(s);
        eng_action_frame acts[16];
        for (int i = 0; i < n; i++) acts[i] = eng_actions_at(&script, (size_t)(video_frame + i));
        video_frame += n;
        eng_block_timings tm;
        rc = eng_session_run_block(s, acts, n, lat, &tm, err, errlen);
        if (rc) break;
        if (d.failed) rc = eng_errorf(err, errlen, ENG_EIO, "%s", d.err);
        double dec_ms = 0;
        int nf = 0;
        if (!rc && decode) {
            double t0 = wall_ms();
            rc = eng_session_decode(s, lat, rgb, &nf, err, errlen);
            dec_ms = wall_ms() - t0;
            for (int i = 0; i < nf && !rc; i++)
                rc = img_sink_write(sink, rgb + (size_t)i * vw * vh * 3, err, errlen);
            nframes_total += nf;
        }
        for (size_t ch = 0; ch < 16; ch++)
            memcpy(all + (ch * (size_t)o->blocks * T + (size_t)b * T) * HW, lat + ch * T * HW,
                   T * HW * sizeof(float));
        char name[32];
        snprintf(name, sizeof name, "b%d.x0", b);
        int64_t shape[4] = {16, (int64_t)T, c->lat_h, c->lat_w};
        if (!rc) rc = st_writer_add_f32(out, name, shape, 4, lat, err, errlen);
        if (!o->quiet) {
            printf("%6d %10.1f", b, tm.total_ms);
            for (int k = 0; k <= c->num_steps; k++) printf(" %10.1f", tm.forward_ms[k]);
            if (decode) printf(" %10.1f %6d", dec_ms, nf);
            printf("\n");
        }
    }
    if (!rc) {
        int64_t shape[4] = {16, (int64_t)T * o->blocks, c->lat_h, c->lat_w};
        rc = st_writer_add_f32(out, "latents", shape, 4, all, err, errlen);
    }
    if (!rc) rc = save_writer(out, o->out_dir, "latents.safetensors", err, errlen);
    if (!rc) rc = save_writer(d.forwards, o->out_dir, "forwards.safetensors", err, errlen);
    if (!rc) rc = save_writer(d.hidden, o->out_dir, "hidden.safetensors", err, errlen);
    if (!rc) rc = save_writer(d.noise, o->out_dir, "noise.safetensors", err, errlen);
    if (sink) {
        int mp4_written = 0, src = img_sink_close(sink, &mp4_written, err, errlen);
        if (!rc) rc = src;
        if (!rc && !o->quiet)
            printf("wrote %d frames to %s/frames/%s\n", nframes_total, o->out_dir,
                   mp4_written ? " and video.mp4"
                   : o->mp4    ? " (no ffmpeg program: no MP4)"
                               : "");
    }
    if (!rc && !o->quiet)
        printf("wrote %s/latents.safetensors (%d blocks)\n", o->out_dir, o->blocks);
    st_writer_destroy(out);
    st_writer_destroy(d.forwards);
    st_writer_destroy(d.hidden);
    st_writer_destroy(d.noise);
    if (ns.file) st_close(ns.file);
    eng_session_destroy(s);
    eng_actions_free(&script);
    free(cd.cond), free(cd.clip), free(cd.image), free(lat), free(all), free(rgb);
    eng_model_close(m);
    return rc;
}

int main(int argc, char **argv) {
    eng_cpu_threads_setup(argv);
    wmgen_opts o;
    if (parse_args(argc, argv, &o)) return 2;
    char err[1024] = "";
    int rc = run(&o, err, sizeof err);
    if (rc) {
        fprintf(stderr, "wmgen: %s\n", err[0] ? err : eng_strerror(rc));
        return 1;
    }
    return 0;
}

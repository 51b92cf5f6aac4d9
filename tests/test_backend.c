/* The backend switch (engine.h eng_backend, engine/backend_select.c): names parsed strictly; the
 * choice from the options, then WM_BACKEND, then AUTO; AUTO without a usable GPU picks the CPU and
 * says why in eng_model_describe; WM_BACKEND=cuda without one fails eng_model_open with a message
 * that names the request and the probe's reason; bad values are refused. Every check follows
 * what eng_gpu_probe finds, so the test holds on a GPU host too (there the CUDA branches run: the
 * model opens on CUDA and a session runs a block and decodes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/model_internal.h"
#include "test_util.h"

static const char *fake_env_value;
static const char *fake_getenv(const char *name) {
    return strcmp(name, "WM_BACKEND") == 0 ? fake_env_value : NULL;
}

static int contains(const char *s, const char *sub) {
    return s && sub && strstr(s, sub) != NULL;
}

static void test_parse(void) {
    static const char *const good[] = {"auto", "cpu", "cuda"};
    static const int want[] = {ENG_BACKEND_AUTO, ENG_BACKEND_CPU, ENG_BACKEND_CUDA};
    for (int i = 0; i < 3; i++) {
        const int b = eng_backend_parse(good[i]);
        tu_check(b == want[i] && strcmp(eng_backend_name(b), good[i]) == 0,
                 "parse '%s' -> %d, name back '%s'", good[i], b, eng_backend_name(b));
    }
    static const char *const bad[] = {"", "gpu", "CPU", "Cuda", "cuda ", " cpu", "default", "0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        tu_check(eng_backend_parse(bad[i]) == -1, "parse '%s' refused", bad[i]);
    tu_check(eng_backend_parse(NULL) == -1, "parse NULL refused");
    tu_check(strcmp(eng_backend_name(99), "?") == 0 && strcmp(eng_backend_name(-1), "?") == 0,
             "name of an unknown value is '?'");
}

/* resolve with WM_BACKEND = env (NULL: unset) and the options' request. */
static int last_automatic;
static int resolve(int requested, const char *env, int *out, char *why, char *err) {
    fake_env_value = env;
    *out = -1, why[0] = err[0] = 0;
    last_automatic = -1;
    return eng_backend_resolve(requested, fake_getenv, out, &last_automatic, why, 512, err, 512);
}

static void test_resolve(int have_gpu, const char *probe) {
    char why[512], err[512];
    int b, rc;

    rc = resolve(ENG_BACKEND_DEFAULT, NULL, &b, why, err);
    if (have_gpu)
        tu_check(!rc && b == ENG_BACKEND_CUDA && contains(why, "auto"),
                 "unset WM_BACKEND, GPU present: cuda (%s)", why);
    else
        tu_check(!rc && b == ENG_BACKEND_CPU && contains(why, "cpu (auto") && contains(why, probe),
                 "unset WM_BACKEND, no GPU: cpu, says why: '%s'", why);

    rc = resolve(ENG_BACKEND_DEFAULT, "auto", &b, why, err);
    tu_check(!rc && b == (have_gpu ? ENG_BACKEND_CUDA : ENG_BACKEND_CPU) && last_automatic == 1,
             "WM_BACKEND=auto: chosen automatically: %s", why);

    rc = resolve(ENG_BACKEND_DEFAULT, "cpu", &b, why, err);
    tu_check(!rc && b == ENG_BACKEND_CPU && contains(why, "cpu (WM_BACKEND=cpu)") &&
                 last_automatic == 0,
             "WM_BACKEND=cpu: '%s', not automatic", why);

    rc = resolve(ENG_BACKEND_DEFAULT, "cuda", &b, why, err);
    if (have_gpu)
        tu_check(!rc && b == ENG_BACKEND_CUDA, "WM_BACKEND=cuda, GPU present: '%s'", why);
    else
        tu_check(rc == ENG_EINVAL && contains(err, "cuda") && contains(err, "WM_BACKEND=cuda") &&
                     contains(err, "not available") && contains(err, probe),
                 "WM_BACKEND=cuda, no GPU: refused: '%s'", err);

    static const char *const bad[] = {"gpu", "", "CUDA", "cpu,cuda"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rc = resolve(ENG_BACKEND_DEFAULT, bad[i], &b, why, err);
        char want[64];
        snprintf(want, sizeof want, "WM_BACKEND='%s'", bad[i]);
        tu_check(rc == ENG_EINVAL && contains(err, want) && contains(err, "cpu, cuda or auto"),
                 "WM_BACKEND='%s' refused: '%s'", bad[i], err);
    }

    /* the options win over the environment, which is then not read */
    rc = resolve(ENG_BACKEND_CPU, "cuda", &b, why, err);
    tu_check(!rc && b == ENG_BACKEND_CPU && contains(why, "cpu (requested)"),
             "options CPU beat WM_BACKEND=cuda: '%s'", why);
    rc = resolve(ENG_BACKEND_AUTO, "bogus", &b, why, err);
    tu_check(!rc, "options AUTO ignore a bad WM_BACKEND: '%s'", rc ? err : why);
    rc = resolve(ENG_BACKEND_CUDA, "cpu", &b, why, err);
    tu_check(have_gpu ? (!rc && b == ENG_BACKEND_CUDA)
                      : (rc == ENG_EINVAL && contains(err, "cuda (requested)")),
             "options CUDA beat WM_BACKEND=cpu: '%s'", rc ? err : why);
    static const int bad_opt[] = {-1, 4, 100};
    for (int i = 0; i < 3; i++) {
        rc = resolve(bad_opt[i], NULL, &b, why, err);
        tu_check(rc == ENG_EINVAL && contains(err, "backend"), "options backend %d refused: '%s'",
                 bad_opt[i], err);
    }
}

/* eng_model_open under WM_BACKEND (the real environment), then one block and its decode. */
static void test_open(int have_gpu) {
    char err[1024];
    eng_model *m = NULL;
    eng_model_options o = {.variant = -1, .weight_seed = 3};

    unsetenv("WM_BACKEND");
    int rc = eng_model_open("synthetic:tiny", &o, &m, err, sizeof err);
    const char *d = m ? eng_model_describe(m) : "";
    if (have_gpu)
        tu_check(!rc && eng_model_backend(m) == ENG_BACKEND_CUDA && contains(d, "backend cuda"),
                 "open, WM_BACKEND unset, GPU present: '%s'", rc ? err : d);
    else
        tu_check(!rc && eng_model_backend(m) == ENG_BACKEND_CPU && contains(d, "backend cpu (auto"),
                 "open, WM_BACKEND unset, no GPU: cpu, described as '%s'", rc ? err : d);
    if (!rc) {
        /* a block and its decode on whatever backend was chosen */
        const eng_config *c = eng_model_config(m);
        const size_t HW = (size_t)c->lat_h * (size_t)c->lat_w;
        float *cond = calloc(20 * 4 * HW, sizeof(float));
        float *clip = calloc((size_t)c->clip_tokens * (size_t)c->clip_dim, sizeof(float));
        float *lat = calloc(16 * 3 * HW, sizeof(float));
        int vw, vh;
        eng_model_video_size(m, &vw, &vh);
        uint8_t *rgb = calloc((size_t)ENG_MAX_FRAMES_PER_BLOCK * (size_t)vw * (size_t)vh * 3, 1);
        eng_session *s = NULL;
        eng_session_params p = {
            .seed = 5, .cond = cond, .cond_frames = 4, .clip = clip, .trace_hidden_block = -1};
        eng_action_frame act[ENG_MAX_FRAMES_PER_BLOCK];
        memset(act, 0, sizeof act);
        int n = 0;
        rc = !cond || !clip || !lat || !rgb || eng_synthetic_conditioning(c, 1, 4, cond, clip) ||
             eng_session_create(m, &p, &s, err, sizeof err) ||
             eng_session_run_block(s, act, eng_session_block_video_frames(s), lat, NULL, err,
                                   sizeof err) ||
             eng_session_decode(s, lat, rgb, &n, err, sizeof err);
        double sum = 0;
        for (size_t i = 0; i < 16 * 3 * HW; i++) sum += (double)lat[i] * lat[i];
        tu_check(!rc && n == 9 && sum > 0 && s && eng_session_backend(s) == eng_model_backend(m),
                 "block 0 on the model's backend (%s): %d frames, ||latents||^2 = %.3g%s%s",
                 s ? eng_backend_name(eng_session_backend(s)) : "-", n, sum, rc ? ": " : "",
                 rc ? err : "");
        eng_session_destroy(s);
        free(cond), free(clip), free(lat), free(rgb);
    }
    eng_model_close(m);

    m = NULL;
    setenv("WM_BACKEND", "cuda", 1);
    rc = eng_model_open("synthetic:tiny", &o, &m, err, sizeof err);
    if (have_gpu)
        tu_check(!rc && eng_model_backend(m) == ENG_BACKEND_CUDA, "open, WM_BACKEND=cuda: %s",
                 rc ? err : eng_model_describe(m));
    else
        tu_check(rc == ENG_EINVAL && !m && contains(err, "cuda") && contains(err, "not available"),
                 "open, WM_BACKEND=cuda, no GPU: fails: '%s'", err);
    eng_model_close(m);

    m = NULL;
    setenv("WM_BACKEND", "fast", 1);
    rc = eng_model_open("synthetic:tiny", &o, &m, err, sizeof err);
    tu_check(rc == ENG_EINVAL && !m && contains(err, "WM_BACKEND='fast'"),
             "open, WM_BACKEND=fast: fails: '%s'", err);

    o.backend = ENG_BACKEND_CPU; /* the options win: the bad variable is not read */
    rc = eng_model_open("synthetic:tiny", &o, &m, err, sizeof err);
    tu_check(!rc && eng_model_backend(m) == ENG_BACKEND_CPU &&
                 contains(eng_model_describe(m), "backend cpu (requested)"),
             "open, options CPU with WM_BACKEND=fast: '%s'", rc ? err : eng_model_describe(m));
    eng_model_close(m);
    unsetenv("WM_BACKEND");
}

int main(void) {
    char probe[256];
    const int have_gpu = eng_gpu_probe(probe, sizeof probe);
    printf("eng_gpu_probe: %s: %s\n", have_gpu ? "device" : "none", probe);
    test_parse();
    test_resolve(have_gpu, probe);
    test_open(have_gpu);
    return tu_finish("test_backend");
}

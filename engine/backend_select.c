/* Choosing a model's backend: the options' request, else WM_BACKEND, else AUTO; AUTO takes CUDA
 * when this build has it and a device answers (eng_gpu_probe), else the CPU reference, and says
 * why in the line that eng_model_describe shows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/errors.h"
#include "engine/model_internal.h"

static const char *const names[] = {"default", "auto", "cpu", "cuda"};

int eng_backend_parse(const char *name) {
    if (!name) return -1;
    for (int b = ENG_BACKEND_AUTO; b <= ENG_BACKEND_CUDA; b++)
        if (strcmp(name, names[b]) == 0) return b;
    return -1;
}

const char *eng_backend_name(int backend) {
    return backend >= ENG_BACKEND_DEFAULT && backend <= ENG_BACKEND_CUDA ? names[backend] : "?";
}

int eng_backend_resolve(int requested, const char *(*getenv_fn)(const char *), int *out,
                        int *automatic, char *why, size_t whylen, char *err, size_t errlen) {
    if (automatic) *automatic = 0;
    char origin[32] = "requested"; /* by the caller's options */
    if (requested == ENG_BACKEND_DEFAULT) {
        const char *env = getenv_fn ? getenv_fn("WM_BACKEND") : getenv("WM_BACKEND");
        requested = ENG_BACKEND_AUTO;
        if (env) {
            requested = eng_backend_parse(env);
            snprintf(origin, sizeof origin, "WM_BACKEND=%s", eng_backend_name(requested));
            if (requested < 0)
                return eng_errorf(err, errlen, ENG_EINVAL,
                                  "WM_BACKEND='%s': expected cpu, cuda or auto", env);
        }
    }
    if (requested < ENG_BACKEND_AUTO || requested > ENG_BACKEND_CUDA)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "backend %d: expected ENG_BACKEND_AUTO, _CPU or _CUDA", requested);
    if (requested == ENG_BACKEND_CPU) {
        *out = ENG_BACKEND_CPU;
        snprintf(why, whylen, "cpu (%s)", origin);
        return 0;
    }
    char info[256];
    const int have = eng_gpu_probe(info, sizeof info);
    if (requested == ENG_BACKEND_CUDA && !have)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "backend cuda (%s) is not available: %s; use the cpu or auto backend",
                          origin, info);
    *out = have ? ENG_BACKEND_CUDA : ENG_BACKEND_CPU;
    if (automatic) *automatic = requested == ENG_BACKEND_AUTO;
    if (requested == ENG_BACKEND_CUDA)
        snprintf(why, whylen, "cuda (%s) on %s", origin, info);
    else
        snprintf(why, whylen, "%s (auto, %s: %s)", have ? "cuda" : "cpu",
                 have ? "device found" : "no CUDA device", info);
    return 0;
}

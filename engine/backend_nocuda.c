/* The device interface of model_internal.h in a build without CUDA (CMake WM_CUDA=OFF or no nvcc):
 * there is never a device, so AUTO picks the CPU and CUDA is refused before any of these run. */
#include <stdio.h>

#include "engine/errors.h"
#include "engine/model_internal.h"

#define NO_CUDA "this build has no CUDA backend (configured without nvcc or with WM_CUDA=OFF)"

int eng_gpu_probe(char *info, size_t infolen) {
    snprintf(info, infolen, "%s", NO_CUDA);
    return 0;
}

int eng_gpu_model_create(const eng_weights *w, const clip_weights *clip, eng_gpu_model **out,
                         char *err, size_t errlen) {
    (void)w, (void)clip;
    *out = NULL;
    return eng_errorf(err, errlen, ENG_EINVAL, "%s", NO_CUDA);
}
void eng_gpu_model_destroy(eng_gpu_model *g) {
    (void)g;
}
size_t eng_gpu_model_device_bytes(const eng_gpu_model *g) {
    (void)g;
    return 0;
}
int eng_gpu_memory(size_t *free_bytes, size_t *total_bytes, char *err, size_t errlen) {
    *free_bytes = *total_bytes = 0;
    return eng_errorf(err, errlen, ENG_ESTATE, "%s", NO_CUDA);
}
void *eng_gpu_model_stream(const eng_gpu_model *g) {
    (void)g;
    return NULL;
}
int eng_gpu_has_clip(const eng_gpu_model *g) {
    (void)g;
    return 0;
}
int eng_gpu_clip_encode(eng_gpu_model *g, const float *image, int height, int width, float *tokens,
                        char *err, size_t errlen) {
    (void)g, (void)image, (void)height, (void)width, (void)tokens;
    return eng_errorf(err, errlen, ENG_EINVAL, "%s", NO_CUDA);
}
int eng_gpu_session_create(eng_gpu_model *g, uint64_t seed, uint32_t session_id,
                           eng_gpu_session **out, char *err, size_t errlen) {
    (void)g, (void)seed, (void)session_id;
    *out = NULL;
    return eng_errorf(err, errlen, ENG_EINVAL, "%s", NO_CUDA);
}
void eng_gpu_session_destroy(eng_gpu_session *s) {
    (void)s;
}
int eng_gpu_session_reset(eng_gpu_session *s, char *err, size_t errlen) {
    (void)s;
    return eng_errorf(err, errlen, ENG_EINVAL, "%s", NO_CUDA);
}
int eng_gpu_session_prepare_cross(eng_gpu_session *s, const float *clip, char *err, size_t errlen) {
    (void)s, (void)clip;
    return eng_errorf(err, errlen, ENG_EINVAL, "%s", NO_CUDA);
}
int eng_gpu_session_run_block(eng_gpu_session *s, const float *cond, const float *mouse_win,
                              const float *kb_win, float *latents_out, eng_block_timings *timings,
                              char *err, size_t errlen) {
    (void)s, (void)cond, (void)mouse_win, (void)kb_win, (void)latents_out, (void)timings;
    return eng_errorf(err, errlen, ENG_EINVAL, "%s", NO_CUDA);
}

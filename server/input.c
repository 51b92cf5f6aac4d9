/* Input accumulation, actions and rate limiting: see input.h. */
#include "server/input.h"

#include <math.h>
#include <string.h>

void srv_input_apply(srv_input_state *s, const proto_input *in, uint64_t now_ns) {
    s->keys = in->keys;
    if (isfinite(in->mouse_dy)) s->mouse_dy += in->mouse_dy;
    if (isfinite(in->mouse_dx)) s->mouse_dx += in->mouse_dx;
    /* Sums are clamped as they grow so a long stream of motion cannot overflow to infinity. */
    if (s->mouse_dy > 1e6f) s->mouse_dy = 1e6f;
    if (s->mouse_dy < -1e6f) s->mouse_dy = -1e6f;
    if (s->mouse_dx > 1e6f) s->mouse_dx = 1e6f;
    if (s->mouse_dx < -1e6f) s->mouse_dx = -1e6f;
    s->seq = in->seq;
    s->client_ms = in->client_ms;
    s->recv_ns = now_ns;
    s->messages++;
}

void srv_input_take(srv_input_state *s, srv_input_sample *out) {
    out->keys = s->keys;
    out->mouse_dy = s->mouse_dy;
    out->mouse_dx = s->mouse_dx;
    out->seq = s->seq;
    out->client_ms = s->client_ms;
    out->recv_ns = s->recv_ns;
    s->mouse_dy = 0;
    s->mouse_dx = 0;
}

static float clampf(float v, float lim) {
    return v > lim ? lim : v < -lim ? -lim : v;
}

void srv_actions_fill(const eng_config *cfg, const srv_input_sample *s, int n,
                      eng_action_frame *out) {
    eng_action_frame a;
    memset(&a, 0, sizeof a);
    int kdim = cfg->keyboard_dim_in < ENG_MAX_KDIM ? cfg->keyboard_dim_in : ENG_MAX_KDIM;
    for (int k = 0; k < kdim && k < 32; k++) a.keyboard[k] = (s->keys >> k) & 1u ? 1.0f : 0.0f;
    if (cfg->enable_mouse) {
        a.mouse[0] = clampf(s->mouse_dy, SRV_MOUSE_MAX);
        a.mouse[1] = clampf(s->mouse_dx, SRV_MOUSE_MAX);
    }
    for (int i = 0; i < n; i++) out[i] = a;
}

void srv_rate_init(srv_rate *r, uint32_t limit_per_s) {
    r->limit = limit_per_s ? limit_per_s : 1;
    r->count = 0;
    r->window_ns = 0;
}

int srv_rate_hit(srv_rate *r, uint64_t now_ns) {
    if (!r->count || now_ns - r->window_ns >= 1000000000ull) {
        r->window_ns = now_ns;
        r->count = 0;
    }
    if (r->count < UINT32_MAX) r->count++;
    if ((uint64_t)r->count > 4ull * r->limit) return SRV_RATE_FATAL;
    return r->count > r->limit ? SRV_RATE_DROP : SRV_RATE_OK;
}

/* libFuzzer target for the protocol decoder: any byte string must either be rejected with a known
 * code and a message naming where, or decode to a message that the encoder accepts, whose byte
 * fields lie inside the input, and whose canonical re-encoding decodes to the same message and
 * encodes to the same bytes again. Invariant violations trap, which libFuzzer and the standalone
 * driver (fuzz_main.c) both report as a crash. */
#include "proto/proto.h"
#include "../proto_text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_BYTES 4096 /* byte-field limit, so TOO_LARGE is reachable */

static void require(int cond) {
    if (!cond) __builtin_trap();
}

static void require_in(proto_bytes b, const uint8_t *data, size_t size) {
    require(b.len == 0 ||
            (b.data >= data && b.len <= size && b.data - data <= (ptrdiff_t)(size - b.len)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    proto_msg m;
    char err[256];
    int rc = proto_decode(data, size, FUZZ_MAX_BYTES, &m, err, sizeof err);
    if (rc != 0) {
        require(rc < 0 && -rc >= PROTO_ERR_BAD_MESSAGE && -rc <= PROTO_ERR_INTERNAL);
        require(strcmp(proto_error_name(rc), "unknown") != 0);
        require(strlen(err) > 0 && strchr(err, ':') != NULL);
        return 0;
    }
    require(m.type > 0 && m.type < PROTO_TYPE_COUNT);
    if (m.type == PROTO_JOIN) require_in(m.u.join.image, data, size);
    if (m.type == PROTO_FRAME) require_in(m.u.frame.jpeg, data, size);

    proto_buf b1 = {0}, b2 = {0};
    require(proto_encode(&m, &b1) == 0);
    proto_msg m2;
    require(proto_decode(b1.data, b1.len, FUZZ_MAX_BYTES, &m2, err, sizeof err) == 0);
    char *t1 = pt_render_str(&m), *t2 = pt_render_str(&m2);
    require(t1 != NULL && t2 != NULL && strcmp(t1, t2) == 0);
    require(proto_encode(&m2, &b2) == 0);
    require(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    free(t1);
    free(t2);
    proto_buf_free(&b1);
    proto_buf_free(&b2);
    return 0;
}

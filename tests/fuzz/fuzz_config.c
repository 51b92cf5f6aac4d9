/* libFuzzer target for the checkpoint config.json reader (engine/config.c): any byte string is
 * either refused with a negative code and a message naming the file, or yields a config that
 * passes eng_config_validate and whose derived sizes are consistent. Read for every variant
 * (-1: from the file) so each preset path is exercised. Violations trap. */
#include <stdint.h>
#include <string.h>

#include "engine/config.h"

static void require(int cond) {
    if (!cond) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int v = -1; v < ENG_VARIANT_COUNT; v++) {
        eng_config c;
        char err[512] = "";
        const int rc = eng_config_parse_json(&c, (const char *)data, size, "fuzz.json", v, err,
                                             sizeof err);
        if (rc != 0) {
            require(rc < 0);
            require(strstr(err, "fuzz.json") != NULL);
            continue;
        }
        char err2[256];
        require(eng_config_validate(&c, err2, sizeof err2) == 0);
        require(c.num_layers > 0 && c.dim == c.num_heads * c.head_dim);
        require(eng_tokens_per_frame(&c) > 0 && c.frames_per_block > 0);
        require(c.local_attn_size >= c.frames_per_block);
        require(eng_num_action_layers(&c) <= c.num_layers);
    }
    return 0;
}

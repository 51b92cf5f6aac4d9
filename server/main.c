/* wmserve: parse flags and environment, set up logging, run the server (or mint a token). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/engine.h"
#include "server/config.h"
#include "server/log.h"
#include "server/server.h"
#include "server/token.h"

static const char *env(const char *name) {
    return getenv(name);
}

/* --make-token S: a signed token valid for S seconds from now, on stdout. */
static int make_token(const srv_config *cfg) {
    uint8_t secret[SRV_SECRET_MAX];
    size_t len = 0;
    char err[512], tok[SRV_TOKEN_MAX];
    if (!cfg->token_secret_file[0]) {
        fprintf(stderr, "wmserve: --make-token needs --token-secret FILE\n");
        return 2;
    }
    if (srv_token_secret_load(cfg->token_secret_file, secret, &len, err, sizeof err)) {
        fprintf(stderr, "wmserve: %s\n", err);
        return 2;
    }
    if (srv_token_make(secret, len, (int64_t)time(NULL) + cfg->make_token_s, tok, sizeof tok)) {
        fprintf(stderr, "wmserve: cannot make the token\n");
        return 1;
    }
    printf("%s\n", tok);
    return 0;
}

int main(int argc, char **argv) {
    /* Idle OpenMP threads must sleep, not spin against OpenBLAS, the JPEG pool and the loop; and
     * OpenBLAS gets its AVX kernels on CPUs it does not recognise. Re-executes once if needed. */
    eng_cpu_threads_setup(argv);
    srv_config cfg;
    char err[512];
    int rc = srv_config_parse(&cfg, argc, argv, env, stdout, err, sizeof err);
    if (rc > 0) return 0;
    if (rc < 0) {
        fprintf(stderr, "wmserve: %s\n", err);
        return 2;
    }
    if (cfg.make_token_s > 0) return make_token(&cfg);
    srv_log_setup((srv_log_level)cfg.log_level, (srv_log_format)cfg.log_format, stderr);
    /* Writes to a vanished peer must fail with EPIPE, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    return srv_server_main(&cfg);
}

/* wmserve: parse flags and environment, set up logging, run the server. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "server/config.h"
#include "server/log.h"
#include "server/server.h"

static const char *env(const char *name) {
    return getenv(name);
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
    srv_log_setup((srv_log_level)cfg.log_level, (srv_log_format)cfg.log_format, stderr);
    /* Writes to a vanished peer must fail with EPIPE, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    return srv_server_main(&cfg);
}

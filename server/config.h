/* Server configuration: defaults, then environment variables (WMSERVE_*), then command-line flags,
 * each validated with a message naming the flag. srv_config_usage prints every option with its
 * default and its environment variable. */
#ifndef WM_SERVER_CONFIG_H
#define WM_SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SRV_PATH_MAX 4096

typedef struct srv_config {
    int port; /* 0: any free port (logged in the "listening" line) */
    char bind[256];
    char model[SRV_PATH_MAX];
    char variant[64];     /* "": the model's */
    uint64_t weight_seed; /* synthetic models */
    int fps;
    int jpeg_quality;
    int jpeg_threads; /* 0: automatic */
    int max_sessions; /* 0: from the backend and model */
    int max_queue;
    int idle_timeout_s;
    char token[256];               /* "": no token needed */
    char scenes_dir[SRV_PATH_MAX]; /* "": the built-in scene */
    char web_dir[SRV_PATH_MAX];
    int buffer_frames;    /* per-client frame ring */
    double slow_client_s; /* hard limit for a client not reading */
    uint32_t max_upload_bytes;
    uint32_t max_image_pixels;
    uint32_t max_input_hz;
    int log_level;  /* srv_log_level */
    int log_format; /* srv_log_format */
    int backend;    /* eng_backend: ENG_BACKEND_AUTO, _CPU or _CUDA */
    /* access (server/access.c, server/token.c) */
    char allowed_origins[1024];           /* "": same host as the Host header; "*": any */
    char token_secret_file[SRV_PATH_MAX]; /* "": no signed tokens */
    int make_token_s;                     /* > 0: print a signed token valid that long, exit */
    int max_conns_per_ip;                 /* 0: no limit */
    int trust_forwarded_for;              /* client address from X-Forwarded-For */
    /* test-only fault injection (engine_worker.c) */
    uint64_t fault_block_fail; /* the N-th engine block fails (0: none) */
    uint64_t fault_session;    /* every block of this session id fails (0: none) */
} srv_config;

void srv_config_defaults(srv_config *c);

typedef const char *(*srv_getenv_fn)(const char *name);

/* Returns 0 (run), 1 (--help or --version was printed to out), or -1 with a message in err. */
int srv_config_parse(srv_config *c, int argc, char **argv, srv_getenv_fn getenv_fn, FILE *out,
                     char *err, size_t errlen);
void srv_config_usage(FILE *out);

#endif

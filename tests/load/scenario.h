/* wmload scenarios: what the load test does, read from a JSON file (format and examples in
 * tests/load/README.md). The reader is strict like the engine's: an unknown key, a wrong type or an
 * out-of-range value is an error that names the field ("mix.idle: must be a number >= 0").
 *
 * A scenario describes a population of players: how many (N), how they arrive (open-loop: Poisson
 * or at a fixed interval, seeded), how long the run lasts, what each kind of player does (scripted
 * input from an action script, idle, a reader that pauses reading, join/leave churn, periodic
 * resets), the join options and the service level a run must meet. Command-line flags of wmload
 * override some fields (see wmload --help). */
#ifndef WM_LOAD_SCENARIO_H
#define WM_LOAD_SCENARIO_H

#include <stddef.h>
#include <stdint.h>

#define WL_MAX_SWEEP 256
#define WL_PATH_MAX  1024

typedef enum wl_kind {
    WL_SCRIPTED = 0, /* input at input_hz from the action script */
    WL_IDLE,         /* joined, sends no input (pings only) */
    WL_SLOW,         /* scripted, but stops reading the socket for pause_s at a time */
    WL_CHURN,        /* scripted, leaves after a while and joins again on a new connection */
    WL_RESET,        /* scripted, sends reset every every_s */
    WL_KIND_COUNT
} wl_kind;
const char *wl_kind_name(wl_kind k); /* "scripted", "idle", "slow_reader", "churn", "reset" */

typedef struct wl_service_level {
    double min_fps;         /* every checked session delivers at least this many frames/s */
    double max_p99_ms;      /* p99 of input-to-frame latency, all checked sessions together */
    double min_on_deadline; /* share (0..1) of blocks whose first frame met the viewer deadline */
    double max_first_frame_ms; /* every checked session's first frame within this after its join */
    double min_session_s;      /* play windows shorter than this are not checked for fps */
} wl_service_level;

typedef struct wl_scenario {
    char name[64];
    char dir[WL_PATH_MAX]; /* folder of the scenario file: relative paths are resolved from it */
    char host[256];
    int port;
    char ws_path[256];
    int players;
    double duration_s;
    int arrival_poisson;    /* 1: exponential gaps of mean 1/rate; 0: fixed interval 1/rate */
    double arrival_rate_hz; /* 0: everybody at t = 0 */
    uint64_t seed;          /* arrivals, random scripts, churn lengths */
    double input_hz;        /* input messages per second per player */
    char variant[64], scene[64], token[256];
    int has_join_seed; /* player i joins with seed join_seed + i */
    uint64_t join_seed;
    char actions[WL_PATH_MAX]; /* action script (engine/ACTIONS.md); "" = a random one per player */
    int actions_loop;          /* start the script over at its end (else hold the last frame) */
    double mix[WL_KIND_COUNT]; /* relative weights of the player kinds */
    double churn_session_s, churn_gap_s;
    int churn_random; /* session length exponential with mean churn_session_s (else fixed) */
    double reset_every_s;
    double slow_start_s, slow_pause_s, slow_read_s; /* slow_read_s 0: pause once */
    int slow_rcvbuf; /* SO_RCVBUF of slow readers' sockets, bytes; 0 = the kernel's default */
    double viewer_fps, viewer_buffer_ms; /* viewer_fps 0: the server's joined.fps */
    double ping_s;
    wl_service_level sl;
    int sweep_n[WL_MAX_SWEEP], sweep_count; /* sizes --sweep tries, in order */
    double settle_s;                        /* pause between sweep runs */
} wl_scenario;

/* Fills the defaults (documented in README.md). */
void wl_scenario_defaults(wl_scenario *s);
/* Reads a scenario file over the defaults. 0, or -1 with a message naming the file and field. */
int wl_scenario_load(const char *path, wl_scenario *s, char *err, size_t errlen);
/* Parses ws://host[:port][/path] into s. 0 or -1. */
int wl_scenario_set_url(wl_scenario *s, const char *url, char *err, size_t errlen);
/* Parses "1:64", "1:64:2" or "1,2,4,8" into the sweep list. 0 or -1. */
int wl_scenario_set_sweep(wl_scenario *s, const char *spec, char *err, size_t errlen);
/* How many players of each kind make up n players: the weights scaled to n, rounded by largest
 * remainder (ties to the kind listed first), so the counts always add up to n. */
void wl_mix_counts(const wl_scenario *s, int n, int counts[WL_KIND_COUNT]);
/* Resolves a path given in the scenario (relative to its folder). */
void wl_scenario_path(const wl_scenario *s, const char *rel, char *out, size_t outlen);

#endif

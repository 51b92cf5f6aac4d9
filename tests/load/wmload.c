/* wmload: the scripted-player load tester of wmserve. It runs N players from a scenario file
 * (tests/load/README.md) against a running server on one libwebsockets context, measures what each
 * player sees (connects, first frame, delivered fps, inter-arrival, input-to-frame latency, a
 * simulated 25 fps viewer's deadlines and stalls, drops, errors) and checks a service level; with
 * --sweep it raises N until the service level fails and prints the largest N that held. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <libwebsockets.h>

#include "engine/actions.h"
#include "engine/config.h"
#include "tests/load/report.h"
#include "tests/load/run.h"
#include "tests/load/scenario.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    g_stop = 1;
    signal(sig, SIG_DFL); /* a second one ends the process */
}

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: wmload [options] [SCENARIO.json]\n"
        "\n"
        "Runs scripted players against a running wmserve and reports what they saw: connects\n"
        "and connect time, time to first frame, delivered fps per session and in aggregate,\n"
        "frame inter-arrival, input-to-frame latency, the share of blocks on deadline and the\n"
        "stalls of a simulated 25 fps viewer, drops and errors; as a table on stdout and,\n"
        "with --json, as JSON. The scenario format is in tests/load/README.md; without one the\n"
        "defaults apply (1 scripted player, 20 s).\n"
        "\n"
        "server\n"
        "  -u, --url URL             ws://HOST[:PORT][/PATH] (default: the scenario's, else\n"
        "                            ws://127.0.0.1:8080/ws)\n"
        "      --host HOST, --port N override one part of it\n"
        "      --token TOKEN         join token (or env WMLOAD_TOKEN)\n"
        "players\n"
        "  -n, --players N           number of players (scenario: players)\n"
        "  -d, --duration S          seconds per run (scenario: duration_s)\n"
        "      --input-hz HZ         input messages per second per player (scenario: input_hz)\n"
        "      --seed N              arrivals, random scripts, churn lengths (arrival.seed)\n"
        "sweep\n"
        "      --sweep[=SPEC]        run N = each size in turn, stop at the first that fails\n"
        "                            the service level, print the largest N that held. SPEC:\n"
        "                            FROM:TO[:STEP] or N1,N2,... (default: the scenario's\n"
        "                            sweep, else 1:64)\n"
        "      --settle S            pause between sweep runs (default 2)\n"
        "      --keep-going          run every size even after one failed (a curve); the\n"
        "                            largest N that held is still the last before the first\n"
        "                            failure\n"
        "      --require-n N         sweep exit status 0 only when the largest N held >= N\n"
        "                            (default 1)\n"
        "service level (scenario: service_level)\n"
        "      --min-fps X           every session delivers >= X fps (default 24)\n"
        "      --max-p99-ms X        p99 input-to-frame latency <= X ms (default 1000)\n"
        "      --min-on-deadline X   share of blocks on deadline >= X, 0..1 (default 0.99)\n"
        "      --max-first-frame-ms X  first frame within X ms of joining (default 5000)\n"
        "      --min-session-s X     sessions shorter than X s are not checked for fps (5)\n"
        "output\n"
        "      --json FILE           write the JSON report to FILE ('-': stdout)\n"
        "      --per-session         a line per session in the table\n"
        "      --trace FILE          CSV, one line per frame: arrival, viewer due time, latency,\n"
        "                            the server's block and queue time (for plots)\n"
        "  -q, --quiet               only the summary table (no per-run detail)\n"
        "  -h, --help                this text\n"
        "\n"
        "Exit status: 0 when the run met the service level (a sweep: when the largest N that\n"
        "held is >= --require-n), 1 when not, 2 on a usage or scenario error or when no\n"
        "connection to the server could be established.\n");
}

static int parse_double(const char *s, double lo, double hi, double *out) {
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (errno || e == s || *e || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) && errno == EINTR && !g_stop) {
    }
}

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_TOKEN,
    OPT_INPUT_HZ,
    OPT_SEED,
    OPT_SWEEP,
    OPT_SETTLE,
    OPT_REQUIRE_N,
    OPT_MIN_FPS,
    OPT_MAX_P99,
    OPT_MIN_ONDL,
    OPT_MAX_FF,
    OPT_MIN_SESSION,
    OPT_JSON,
    OPT_PER_SESSION,
    OPT_KEEP_GOING,
    OPT_TRACE,
};

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"url", required_argument, 0, 'u'},
        {"host", required_argument, 0, OPT_HOST},
        {"port", required_argument, 0, OPT_PORT},
        {"token", required_argument, 0, OPT_TOKEN},
        {"players", required_argument, 0, 'n'},
        {"duration", required_argument, 0, 'd'},
        {"input-hz", required_argument, 0, OPT_INPUT_HZ},
        {"seed", required_argument, 0, OPT_SEED},
        {"sweep", optional_argument, 0, OPT_SWEEP},
        {"settle", required_argument, 0, OPT_SETTLE},
        {"require-n", required_argument, 0, OPT_REQUIRE_N},
        {"min-fps", required_argument, 0, OPT_MIN_FPS},
        {"max-p99-ms", required_argument, 0, OPT_MAX_P99},
        {"min-on-deadline", required_argument, 0, OPT_MIN_ONDL},
        {"max-first-frame-ms", required_argument, 0, OPT_MAX_FF},
        {"min-session-s", required_argument, 0, OPT_MIN_SESSION},
        {"json", required_argument, 0, OPT_JSON},
        {"per-session", no_argument, 0, OPT_PER_SESSION},
        {"keep-going", no_argument, 0, OPT_KEEP_GOING},
        {"trace", required_argument, 0, OPT_TRACE},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    /* Flags are applied over the scenario file, so collect them first. */
    const char *url = NULL, *host = NULL, *token = getenv("WMLOAD_TOKEN"), *json = NULL;
    const char *sweep_spec = NULL, *trace_path = NULL;
    int sweep = 0, per_session = 0, quiet = 0, require_n = 1, keep_going = 0;
    double v, players = -1, duration = -1, input_hz = -1, seed = -1, port = -1, settle = -1;
    double min_fps = -1, max_p99 = -1, min_ondl = -1, max_ff = -1, min_session = -1;
    int c;
    while ((c = getopt_long(argc, argv, "u:n:d:qh", opts, NULL)) != -1) {
        double *dst = NULL, lo = 0, hi = 1e9;
        switch (c) {
        case 'u':
            url = optarg;
            continue;
        case OPT_HOST:
            host = optarg;
            continue;
        case OPT_TOKEN:
            token = optarg;
            continue;
        case OPT_TRACE:
            trace_path = optarg;
            continue;
        case OPT_JSON:
            json = optarg;
            continue;
        case OPT_SWEEP:
            sweep = 1;
            sweep_spec = optarg;
            continue;
        case OPT_KEEP_GOING:
            keep_going = 1;
            continue;
        case OPT_PER_SESSION:
            per_session = 1;
            continue;
        case 'q':
            quiet = 1;
            continue;
        case 'h':
            usage(stdout);
            return 0;
        case OPT_PORT:
            dst = &port, lo = 1, hi = 65535;
            break;
        case 'n':
            dst = &players, lo = 1, hi = 100000;
            break;
        case 'd':
            dst = &duration, lo = 0.1, hi = 86400;
            break;
        case OPT_INPUT_HZ:
            dst = &input_hz, hi = 1000;
            break;
        case OPT_SEED:
            dst = &seed, hi = 9007199254740992.0;
            break;
        case OPT_SETTLE:
            dst = &settle, hi = 3600;
            break;
        case OPT_REQUIRE_N: {
            double r;
            if (parse_double(optarg, 0, 100000, &r) || r != floor(r)) {
                fprintf(stderr, "wmload: --require-n: expected a whole number, got '%s'\n", optarg);
                return 2;
            }
            require_n = (int)r;
            continue;
        }
        case OPT_MIN_FPS:
            dst = &min_fps, hi = 1000;
            break;
        case OPT_MAX_P99:
            dst = &max_p99;
            break;
        case OPT_MIN_ONDL:
            dst = &min_ondl, hi = 1;
            break;
        case OPT_MAX_FF:
            dst = &max_ff;
            break;
        case OPT_MIN_SESSION:
            dst = &min_session, hi = 1e6;
            break;
        default:
            usage(stderr);
            return 2;
        }
        if (parse_double(optarg, lo, hi, &v) ||
            ((dst == &players || dst == &port || dst == &seed) && v != floor(v))) {
            const char *name = "?";
            for (const struct option *o = opts; o->name; o++)
                if (o->val == c) name = o->name;
            fprintf(stderr, "wmload: --%s: expected a %snumber in [%g, %g], got '%s'\n", name,
                    dst == &players || dst == &port || dst == &seed ? "whole " : "", lo, hi,
                    optarg);
            return 2;
        }
        *dst = v;
    }
    if (argc - optind > 1) {
        fprintf(stderr, "wmload: one scenario file at most (got %d arguments)\n", argc - optind);
        return 2;
    }
    const char *scenario_file = optind < argc ? argv[optind] : NULL;

    static wl_scenario s;
    char err[1024];
    wl_scenario_defaults(&s);
    if (scenario_file && wl_scenario_load(scenario_file, &s, err, sizeof err)) {
        fprintf(stderr, "wmload: %s\n", err);
        return 2;
    }
    if (url && wl_scenario_set_url(&s, url, err, sizeof err)) {
        fprintf(stderr, "wmload: --url %s\n", err);
        return 2;
    }
    if (host) snprintf(s.host, sizeof s.host, "%s", host);
    if (port > 0) s.port = (int)port;
    if (token) snprintf(s.token, sizeof s.token, "%s", token);
    if (players > 0) s.players = (int)players;
    if (duration > 0) s.duration_s = duration;
    if (input_hz >= 0) s.input_hz = input_hz;
    if (seed >= 0) s.seed = (uint64_t)seed;
    if (settle >= 0) s.settle_s = settle;
    if (min_fps >= 0) s.sl.min_fps = min_fps;
    if (max_p99 >= 0) s.sl.max_p99_ms = max_p99;
    if (min_ondl >= 0) s.sl.min_on_deadline = min_ondl;
    if (max_ff >= 0) s.sl.max_first_frame_ms = max_ff;
    if (min_session >= 0) s.sl.min_session_s = min_session;
    if (sweep_spec && wl_scenario_set_sweep(&s, sweep_spec, err, sizeof err)) {
        fprintf(stderr, "wmload: %s\n", err);
        return 2;
    }

    /* The action script is read for the variant the scenario joins (universal when it names
     * none); its keys are mapped to the server's key bits by name once joined. */
    int variant = s.variant[0] ? eng_variant_parse(s.variant) : ENG_VARIANT_UNIVERSAL;
    if (variant < 0) {
        fprintf(stderr, "wmload: join.variant '%s': unknown (universal, gta_drive, templerun)\n",
                s.variant);
        return 2;
    }
    eng_config cfg;
    if (eng_config_preset(&cfg, "tiny", (eng_variant)variant, err, sizeof err)) {
        fprintf(stderr, "wmload: %s\n", err);
        return 2;
    }
    eng_action_script script = {0};
    int have_script = 0;
    if (s.actions[0]) {
        char path[WL_PATH_MAX];
        wl_scenario_path(&s, s.actions, path, sizeof path);
        if (eng_actions_load(path, &cfg, &script, err, sizeof err)) {
            fprintf(stderr, "wmload: actions: %s\n", err);
            return 2;
        }
        have_script = 1;
    }

    raise_fd_limit();
    lws_set_log_level(LLL_ERR, NULL); /* lws's notices would interleave with the report */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    FILE *trace = NULL;
    if (trace_path) {
        trace = fopen(trace_path, "w");
        if (!trace) {
            fprintf(stderr, "wmload: --trace %s: %s\n", trace_path, strerror(errno));
            return 2;
        }
        fputs(WL_TRACE_HEADER, trace);
    }
    int n_sizes = sweep ? s.sweep_count : 1;
    wl_run_report *runs = calloc((size_t)n_sizes, sizeof *runs);
    if (!runs) {
        fprintf(stderr, "wmload: out of memory\n");
        return 2;
    }
    int n_runs = 0, largest = 0, no_connection = 0, failed_once = 0;
    for (int i = 0; i < n_sizes && !g_stop; i++) {
        int n = sweep ? s.sweep_n[i] : s.players;
        if (i && s.settle_s > 0) sleep_s(s.settle_s); /* let the server free the last run's slots */
        if (g_stop) break;
        fprintf(stderr, "wmload: N=%d for %.1f s against ws://%s:%d%s ...\n", n, s.duration_s,
                s.host, s.port, s.ws_path);
        wl_run_report *rr = &runs[n_runs];
        if (wl_run(&s, n, &cfg, have_script ? &script : NULL, trace, &g_stop, &rr->res, err,
                   sizeof err)) {
            fprintf(stderr, "wmload: %s\n", err);
            wl_result_free(&rr->res);
            break;
        }
        n_runs++;
        wl_report_finish(&s, rr);
        if (!quiet) wl_report_table(stdout, &s, rr, per_session);
        fflush(stdout);
        if (rr->all.attempted && !rr->all.established) {
            fprintf(stderr, "wmload: no connection to ws://%s:%d%s could be established (%s)\n",
                    s.host, s.port, s.ws_path,
                    rr->res.n_sessions ? rr->res.sessions[0].close_reason : "?");
            no_connection = 1;
            break;
        }
        if (!rr->verdict.passed) {
            failed_once = 1;
            if (!keep_going) break;
        } else if (!failed_once) {
            largest = n;
        }
    }
    if (sweep || quiet) wl_report_sweep_table(stdout, &s, runs, n_runs, sweep, largest);

    int passed;
    if (sweep)
        passed = largest >= require_n && largest > 0;
    else
        passed = n_runs == 1 && runs[0].verdict.passed;
    int status = no_connection || n_runs == 0 ? 2 : passed ? 0 : 1;
    if (json && wl_report_json(json, scenario_file, &s, runs, n_runs, sweep, largest, passed, err,
                               sizeof err)) {
        fprintf(stderr, "wmload: %s\n", err);
        status = 2;
    }
    if (trace && fclose(trace)) {
        fprintf(stderr, "wmload: --trace %s: write error\n", trace_path);
        status = 2;
    }
    for (int i = 0; i < n_runs; i++) wl_result_free(&runs[i].res);
    free(runs);
    eng_actions_free(&script);
    return status;
}

/* wmload's output: a readable table per run (and one line per N for a sweep) on a FILE, and the
 * machine-readable JSON report (field list in tests/load/README.md, checked by
 * tests/load/check_report.c). */
#ifndef WM_LOAD_REPORT_H
#define WM_LOAD_REPORT_H

#include <stdio.h>

#include "tests/load/run.h"

/* One finished run with its summaries and verdict. */
typedef struct wl_run_report {
    wl_result res;
    wl_summary checked;                /* every kind but slow readers: the service level's */
    wl_summary all;                    /* every session */
    wl_summary by_kind[WL_KIND_COUNT]; /* per kind that had players */
    wl_verdict verdict;
} wl_run_report;

/* Summarizes and evaluates rr->res (fills the rest of rr). */
void wl_report_finish(const wl_scenario *s, wl_run_report *rr);

/* The detailed table of one run. per_session: also one line per session. */
void wl_report_table(FILE *f, const wl_scenario *s, wl_run_report *rr, int per_session);
/* The sweep's summary: one line per N, then the largest N that held. */
void wl_report_sweep_table(FILE *f, const wl_scenario *s, wl_run_report *runs, int n_runs,
                           int sweep, int largest_held);

/* The JSON report of every run; 0 or -1 (err set). sweep: whether this was a sweep;
 * largest_held: its result (0 = none held). */
int wl_report_json(const char *path, const char *scenario_file, const wl_scenario *s,
                   wl_run_report *runs, int n_runs, int sweep, int largest_held, int passed,
                   char *err, size_t errlen);

#endif

/* One wmload run: N scripted players against a server, all on one libwebsockets context driven by
 * one thread (tests/ws_client.h), and the measurements they take. wl_run plays the scenario for
 * its duration and returns one record per session (a connection: churn players make several);
 * wl_summarize aggregates the sessions that pass a filter, and wl_evaluate checks the service
 * level. report.h prints the result.
 *
 * Clocks: every time is milliseconds of CLOCK_MONOTONIC since the run started; input.ms carries the
 * same clock, so input-to-frame latency = arrival of the first frame echoing a new seq - that
 * input's ms needs no clock synchronisation.
 *
 * The simulated viewer (viewer_fps, by default the server's joined.fps = 25; per playing segment: a
 * session's frames from its first frame, or from the first frame after a reset): it starts playing
 * frame n0 (the segment's first) at its arrival + viewer_buffer_ms and then wants frame n at play0
 * + (n - n0) * 1000 / viewer_fps. A frame that arrives after that due time is a stall: the picture
 * freezes until it comes, then the viewer buffers viewer_buffer_ms again (as at the start) and
 * plays on, so the playout clock moves back by lateness + buffer. A block is
 * on deadline when the first of its frames to arrive was not late; the first block of each segment
 * sets the clock and is not counted. When a session ends (leave, end of run, close) with a frame
 * overdue, that is one more stall (until the end) and every block that should have begun meanwhile
 * counts as missed. A reset ends its segment without this: the server drops the unsent frames on
 * purpose.
 *
 * Ownership: wl_result_free releases what wl_run allocated. */
#ifndef WM_LOAD_RUN_H
#define WM_LOAD_RUN_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/actions.h"
#include "tests/load/scenario.h"
#include "tests/load/stats.h"

#define WL_MAX_ERROR_CODE  31 /* error codes counted individually; larger ones are counted as 0 */
#define WL_MAX_CLOSE_CODES 16
/* --trace: times in ms since the run began; due_ms and latency_ms empty (nan) when not defined. */
#define WL_TRACE_HEADER                                                                            \
    "n_players,session,player,kind,frame,block,seq,arrival_ms,due_ms,latency_ms,blk_ms,q_ms\n"

typedef struct wl_close_count {
    int code; /* websocket close code; 0 = never opened */
    uint64_t count;
} wl_close_count;

typedef struct wl_session {
    int player;
    wl_kind kind;
    int nth; /* 0 for a player's first session, 1.. for churn reconnects */
    uint64_t sid;
    /* ms since the run started; NaN when it did not happen */
    double t_connect, t_open, t_join, t_queued, t_joined, t_first_frame, t_end, t_close;
    int established, connect_failed, queued;
    int close_code;   /* 0 while open or when it never opened */
    int closed_early; /* closed by the server (or the network) before the run ended, not after a
                         leave */
    char close_reason[96];
    int fatal_code; /* code of a fatal error message received, 0 if none */
    uint64_t frames, gaps, out_of_order, blocks, blocks_on_time, stalls;
    double stall_ms, play_ms, max_inter_ms;
    uint32_t resets, inputs_sent, bad_messages, segments;
    uint32_t errors[WL_MAX_ERROR_CODE + 1];
    uint64_t srv_sent, srv_dropped; /* from the latest stats message */
    uint64_t bytes;
    double fps; /* frames / play_ms, set when the session ends */
    st_samples inter_ms, latency_ms, reset_first_frame_ms, blk_ms, rtt_ms;
    /* segment state while running */
    int seg_active, awaiting_rejoin;
    double seg_first, seg_last, play0, t_reset_sent, viewer_fps;
    uint64_t seg_n0, last_n, cur_blk;
    uint32_t max_seq;
} wl_session;

typedef struct wl_result {
    int n_players;
    int kind_counts[WL_KIND_COUNT];
    double duration_ms;   /* planned */
    double run_ms;        /* until the end of the run was declared (shorter when interrupted) */
    double input_hz;      /* per player, after clamping to the server's max_hz */
    char server_name[64]; /* from welcome */
    uint32_t server_fps;  /* from joined */
    wl_session *sessions;
    size_t n_sessions, cap_sessions;
    int interrupted;
    char warnings[8][160];
    int n_warnings;
} wl_result;

/* What a group of sessions did (all percentiles in ms unless named otherwise). */
typedef struct wl_summary {
    int sessions, checked_sessions; /* checked: play window >= min_session_s (fps statistics) */
    uint64_t attempted, established, failed, queued;
    st_summary connect_ms, first_frame_ms, reset_first_frame_ms, inter_ms, latency_ms,
        server_block_ms, rtt_ms, fps; /* fps: per checked session */
    uint64_t inter_hist[ST_HIST_BUCKETS], latency_hist[ST_HIST_BUCKETS];
    double fps_aggregate; /* sum of the sessions' delivered fps */
    uint64_t frames, blocks, blocks_on_time, stalls;
    double on_deadline_share, stall_ms;
    uint64_t server_dropped, client_gaps, out_of_order, bad_messages, inputs_sent, resets;
    uint64_t errors[WL_MAX_ERROR_CODE + 1];
    uint64_t fatal_sessions; /* sessions ended by a fatal error */
    uint64_t closed_early;   /* sessions the server closed before the run ended, unasked */
    wl_close_count closes[WL_MAX_CLOSE_CODES];
    int n_closes;
    double rx_mbit_s;
    int first_frame_late; /* sessions over max_first_frame_ms (or without a first frame) */
} wl_summary;

typedef struct wl_verdict {
    int passed;
    int n_reasons;
    char reasons[8][200];
} wl_verdict;

/* Runs `n_players` players of scenario s. script: the action script (loaded for cfg's variant) or
 * NULL for a random one per player. trace: when not NULL, one CSV line per frame counted (header
 * WL_TRACE_HEADER). *stop set (e.g. by SIGINT) ends the run early. 0, or -1 with
 * err (out of memory, lws context). */
int wl_run(const wl_scenario *s, int n_players, const eng_config *cfg,
           const eng_action_script *script, FILE *trace, volatile sig_atomic_t *stop,
           wl_result *out, char *err, size_t errlen);
void wl_result_free(wl_result *r);

/* Aggregates the sessions of r for which keep(session, arg) is true (NULL: all). */
typedef int (*wl_filter)(const wl_session *x, const void *arg);
void wl_summarize(const wl_scenario *s, wl_result *r, wl_filter keep, const void *arg,
                  wl_summary *out);
/* The sessions the service level is about: every kind except slow readers. */
int wl_filter_checked(const wl_session *x, const void *arg);
/* Sessions of one kind (arg: a wl_kind *). */
int wl_filter_kind(const wl_session *x, const void *arg);

/* Service level of the checked sessions (sm from wl_filter_checked):
 *   every checked session's delivered fps >= min_fps;
 *   p99 input-to-frame latency <= max_p99_ms (when there are latency samples);
 *   share of blocks on deadline >= min_on_deadline;
 *   every session's first frame within max_first_frame_ms of its join;
 *   no failed connection and no session ended by a fatal error or an unexpected close (slow
 *   readers are exempt: being cut off with slow_consumer is the server doing its job). */
void wl_evaluate(const wl_scenario *s, const wl_result *r, const wl_summary *sm,
                 const wl_summary *all, wl_verdict *v);

#endif

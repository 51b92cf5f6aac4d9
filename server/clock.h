/* Clocks. Monotonic nanoseconds for every interval the server measures or schedules (pacing,
 * deadlines, histograms) and, in milliseconds, for the times it puts on the wire; wall-clock
 * milliseconds only for log timestamps. */
#ifndef WM_SERVER_CLOCK_H
#define WM_SERVER_CLOCK_H

#include <stdint.h>
#include <time.h>

#define SRV_NS_PER_MS 1000000ull
#define SRV_NS_PER_S  1000000000ull

static inline uint64_t srv_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * SRV_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static inline double srv_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* The server clock on the wire (frame.sms, pong.sms): monotonic milliseconds, arbitrary origin. */
static inline double srv_mono_ms(void) {
    return (double)srv_now_ns() * 1e-6;
}

static inline double srv_ns_to_ms(uint64_t ns) {
    return (double)ns * 1e-6;
}
static inline double srv_ns_to_s(uint64_t ns) {
    return (double)ns * 1e-9;
}

#endif

/* End-to-end smoke test of the real server: starts `wmserve` (argv[1]) on a free loopback port with
 * the synthetic tiny model, one slot and a one-place queue, then checks with real HTTP and
 * websocket clients:
 *   HTTP:  /healthz is 200 JSON "ok"; /metrics is Prometheus text; the web folder is served with
 *          its content type; '..', hidden files and a symlink out of the web root are refused.
 *   play:  hello -> welcome; join -> joined; >= 24 frames, each a JPEG (SOI ... EOI), numbered in
 *          order; inputs sent at 25 Hz come back as frames' input_seq with their client_ms.
 *   admission: a second player is queued (position 1), a third gets server_full (close 4007);
 *          the first leaves (close 1000), the queued one is promoted and gets frames; reset gives
 *          joined again and frames restarting at 0.
 *   uploads: a corrupt image -> bad_image (non-fatal); a PNG -> accepted (queued here).
 *   bad input: input before join -> not_joined and the connection stays usable (ping -> pong);
 *          garbage bytes, a text message, or a first message other than hello -> bad_message and
 *          close 4001.
 *   shutdown: SIGTERM -> the playing client gets shutting_down and close 1001; the server exits 0.
 *   limits (a second server): join without the token -> unauthorized (4008); inputs over max_hz ->
 *          rate_limited, over 4 x max_hz in a second -> fatal (4010); a message over max_msg ->
 *          too_large (4009); a silent connection -> idle_timeout (4012).
 * Every check prints what it compared. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <libwebsockets.h>

#include "tests/test_util.h"
#include "tests/ws_client.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The server process and its log -----------------------------------------------------------------
 */

typedef struct server_proc {
    pid_t pid;
    int log_fd; /* read end of its stderr */
    char line[4096];
    size_t line_len;
    int port;
} server_proc;

/* Echoes the server's log lines (prefixed) and picks the port from the "listening" line. */
static void pump_log(server_proc *sp) {
    char buf[4096];
    for (;;) {
        ssize_t n = read(sp->log_fd, buf, sizeof buf);
        if (n <= 0) return;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n' && sp->line_len < sizeof sp->line - 1) {
                sp->line[sp->line_len++] = buf[i];
                continue;
            }
            sp->line[sp->line_len] = '\0';
            printf("  [server] %s\n", sp->line);
            const char *p = strstr(sp->line, " listening ");
            const char *q = p ? strstr(p, " port=") : NULL;
            if (q) sp->port = atoi(q + 6);
            sp->line_len = 0;
        }
    }
}

static int start_server(server_proc *sp, char **argv) {
    int fds[2];
    if (pipe(fds)) return -1;
    sp->pid = fork();
    if (sp->pid < 0) return -1;
    if (sp->pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        perror("execv");
        _exit(127);
    }
    close(fds[1]);
    sp->log_fd = fds[0];
    fcntl(sp->log_fd, F_SETFL, O_NONBLOCK);
    double t0 = now_s();
    while (!sp->port && now_s() - t0 < 30) {
        struct pollfd pf = {sp->log_fd, POLLIN, 0};
        poll(&pf, 1, 100);
        pump_log(sp);
        int st;
        if (waitpid(sp->pid, &st, WNOHANG) == sp->pid) {
            pump_log(sp);
            sp->pid = 0;
            return -1;
        }
    }
    return sp->port ? 0 : -1;
}

static const char *find_nocase(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] && tolower((unsigned char)p[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n) return p;
    }
    return NULL;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A blocking HTTP/1.0 GET over a raw socket (the request line is sent as given, unnormalised). */
static int http_get(int port, const char *path, char *body, size_t bodylen, char *ctype,
                    size_t ctlen) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    static char resp[1 << 20];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, resp + got, sizeof resp - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    resp[got] = '\0';
    int status = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1) return -1;
    const char *hdr_end = strstr(resp, "\r\n\r\n");
    const char *b = hdr_end ? hdr_end + 4 : resp + got;
    snprintf(body, bodylen, "%s", b);
    ctype[0] = '\0';
    const char *ct = find_nocase(resp, "\r\ncontent-type: ");
    if (ct && (!hdr_end || ct < hdr_end)) {
        ct += 16;
        size_t l = strcspn(ct, "\r\n");
        if (l >= ctlen) l = ctlen - 1;
        memcpy(ctype, ct, l);
        ctype[l] = '\0';
    }
    return status;
}

/* Players ----------------------------------------------------------------------------------------
 */

typedef struct player {
    const char *name;
    wsc_conn *c;
    int opened, welcomed, joined, joined_count, queued_pos, closed, close_code;
    int frames_n0;  /* frames numbered 0 (the start, and again after a reset) */
    int errors[32]; /* count per error code */
    int pongs;
    int frames, bad_jpeg, out_of_order;
    uint64_t last_frame;
    uint32_t sent_seq, echoed_seq;
    int echo_ms_ok, echo_ms_bad;
    int send_inputs;
    double next_input_s;
    proto_welcome welcome;
    proto_joined joined_msg;
} player;

static void on_open(wsc_conn *c, void *user) {
    (void)c;
    ((player *)user)->opened = 1;
}

static double client_ms_of(uint32_t seq) {
    return 1000.0 + 40.0 * seq;
}

static void on_message(wsc_conn *c, const proto_msg *m, const uint8_t *raw, size_t len,
                       void *user) {
    (void)c, (void)raw, (void)len;
    player *p = user;
    switch (m->type) {
    case PROTO_WELCOME:
        p->welcomed = 1;
        p->welcome = m->u.welcome;
        break;
    case PROTO_JOINED:
        p->joined = 1;
        p->joined_count++;
        p->joined_msg = m->u.joined;
        break;
    case PROTO_QUEUE:
        p->queued_pos = (int)m->u.queue.position;
        break;
    case PROTO_PONG:
        p->pongs++;
        break;
    case PROTO_ERROR:
        if (m->u.error.code < 32) p->errors[m->u.error.code]++;
        printf("  [%s] error %s (%u, fatal %d): %s\n", p->name,
               proto_error_name((int)m->u.error.code), m->u.error.code, m->u.error.fatal,
               m->u.error.message);
        break;
    case PROTO_FRAME: {
        const proto_frame *f = &m->u.frame;
        const uint8_t *j = f->jpeg.data;
        size_t n = f->jpeg.len;
        if (n < 4 || j[0] != 0xFF || j[1] != 0xD8 || j[n - 2] != 0xFF || j[n - 1] != 0xD9)
            p->bad_jpeg++;
        if (f->frame == 0)
            p->frames_n0++;
        else if (p->frames && f->frame <= p->last_frame)
            p->out_of_order++;
        p->last_frame = f->frame;
        p->frames++;
        if (f->input_seq) {
            if (f->input_seq > p->echoed_seq) p->echoed_seq = f->input_seq;
            if (f->input_client_ms == client_ms_of(f->input_seq))
                p->echo_ms_ok++;
            else
                p->echo_ms_bad++;
        }
        break;
    }
    default:
        break;
    }
}

static void on_bad(wsc_conn *c, const char *err, void *user) {
    (void)c;
    printf("  [%s] undecodable message from the server: %s\n", ((player *)user)->name, err);
    ((player *)user)->errors[0]++;
}

static void on_close(wsc_conn *c, int code, const char *reason, void *user) {
    (void)c;
    player *p = user;
    p->closed = 1;
    p->close_code = code;
    p->c = NULL;
    printf("  [%s] closed: code %d reason '%s'\n", p->name, code, reason);
}

static const wsc_handlers handlers = {on_open, on_message, on_bad, on_close};

static wsc_ctx *g_ws;
static server_proc g_srv;

typedef int (*cond_fn)(void *);

/* Services clients (sending each player's inputs at 25 Hz) until cond holds or timeout_s. */
static int run_until(player **ps, int np, cond_fn cond, void *arg, double timeout_s) {
    double t0 = now_s();
    while (!cond(arg)) {
        if (now_s() - t0 > timeout_s) return 0;
        wsc_service(g_ws, 10);
        pump_log(&g_srv);
        double t = now_s();
        for (int i = 0; i < np; i++) {
            player *p = ps[i];
            if (!p->send_inputs || !p->c || !p->joined || t < p->next_input_s) continue;
            p->next_input_s = t + 0.04;
            proto_msg m;
            memset(&m, 0, sizeof m);
            m.type = PROTO_INPUT;
            m.u.input.seq = ++p->sent_seq;
            m.u.input.client_ms = client_ms_of(p->sent_seq);
            m.u.input.keys = 1; /* forward */
            m.u.input.mouse_dx = 0.01f;
            wsc_send(p->c, &m);
        }
    }
    return 1;
}

static int c_opened(void *a) {
    return ((player *)a)->opened || ((player *)a)->closed;
}
static int c_welcomed(void *a) {
    return ((player *)a)->welcomed || ((player *)a)->closed;
}
static int c_joined(void *a) {
    return ((player *)a)->joined || ((player *)a)->closed;
}
static int c_queued(void *a) {
    return ((player *)a)->queued_pos || ((player *)a)->closed;
}
static int c_closed(void *a) {
    return ((player *)a)->closed;
}
static int c_pong(void *a) {
    return ((player *)a)->pongs || ((player *)a)->closed;
}
static int c_frames_echo(void *a) {
    player *p = a;
    return (p->frames >= 24 && p->echoed_seq >= 3) || p->closed;
}
static int c_restarted(void *a) {
    return ((player *)a)->frames_n0 >= 2 || ((player *)a)->closed;
}
static int c_frames12(void *a) {
    return ((player *)a)->frames >= 12 || ((player *)a)->closed;
}
static int c_error(void *a) {
    player *p = a;
    for (int i = 1; i < 32; i++)
        if (p->errors[i]) return 1;
    return p->closed;
}

static void send_type(player *p, proto_type t) {
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = t;
    if (t == PROTO_HELLO) {
        m.u.hello.min_version = 1;
        m.u.hello.max_version = 1;
        snprintf(m.u.hello.client, sizeof m.u.hello.client, "ws_smoke");
    }
    if (t == PROTO_PING) m.u.ping.id = 7;
    tu_check(p->c && wsc_send(p->c, &m) == 0, "%s: sent %s", p->name, proto_type_name(t));
}

static void send_join(player *p) {
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_JOIN;
    snprintf(m.u.join.scene, sizeof m.u.join.scene, "default");
    m.u.join.seed = 5;
    m.u.join.has_seed = 1;
    tu_check(p->c && wsc_send(p->c, &m) == 0, "%s: sent join", p->name);
}

static int connect_player(player *p, const char *name) {
    memset(p, 0, sizeof *p);
    p->name = name;
    p->c = wsc_connect(g_ws, "127.0.0.1", g_srv.port, "/ws", &handlers, p);
    return p->c != NULL;
}

static void make_web_root(char *dir, size_t n, char *outside, size_t on) {
    snprintf(dir, n, "/tmp/ws_smoke_web_XXXXXX");
    if (!mkdtemp(dir)) return;
    char path[512];
    snprintf(path, sizeof path, "%s/index.html", dir);
    FILE *f = fopen(path, "w");
    if (f) fputs("<!doctype html><title>smoke</title>hello smoke\n", f), fclose(f);
    snprintf(path, sizeof path, "%s/app.js", dir);
    f = fopen(path, "w");
    if (f) fputs("export const x = 1;\n", f), fclose(f);
    snprintf(path, sizeof path, "%s/.secret", dir);
    f = fopen(path, "w");
    if (f) fputs("SECRET-DOTFILE\n", f), fclose(f);
    snprintf(outside, on, "%s.outside", dir);
    f = fopen(outside, "w");
    if (f) fputs("SECRET-OUTSIDE\n", f), fclose(f);
    snprintf(path, sizeof path, "%s/escape.txt", dir);
    if (symlink(outside, path)) perror("symlink");
}

/* Waits for the server to exit after a SIGTERM (sent here when `signal_it`). */
static void stop_server(server_proc *sp, int signal_it) {
    if (signal_it) kill(sp->pid, SIGTERM);
    int status = -1;
    double ts = now_s();
    while (now_s() - ts < 15) {
        pump_log(sp);
        if (waitpid(sp->pid, &status, WNOHANG) == sp->pid) break;
        sleep_ms(20);
    }
    pump_log(sp);
    tu_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "server exited with status %d after SIGTERM (in %.2f s)",
             WIFEXITED(status) ? WEXITSTATUS(status) : -1, now_s() - ts);
    if (!WIFEXITED(status)) kill(sp->pid, SIGKILL);
    close(sp->log_fd);
}

static void send_input(player *p, uint32_t seq) {
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_INPUT;
    m.u.input.seq = seq;
    m.u.input.client_ms = client_ms_of(seq);
    wsc_send(p->c, &m);
}

/* Limits: token, input rate, message size, idle timeout, on a second server with tight settings. */
static void phase2(const char *exe) {
    memset(&g_srv, 0, sizeof g_srv);
    char *sargv[] = {(char *)exe,
                     "--port",
                     "0",
                     "--model",
                     "synthetic:tiny",
                     "--max-sessions",
                     "2",
                     "--max-queue",
                     "0",
                     "--idle-timeout",
                     "2",
                     "--token",
                     "s3cret",
                     "--max-input-hz",
                     "5",
                     "--max-upload-bytes",
                     "1024",
                     NULL};
    int ok = start_server(&g_srv, sargv) == 0;
    tu_check(ok, "second server (token, 5 inputs/s, 1 KiB uploads, 2 s idle) on port %d",
             g_srv.port);
    if (!ok) return;
    static player H, I, J, K;
    player *all[] = {&H, &I, &J, &K};
    connect_player(&H, "H");
    connect_player(&I, "I");
    connect_player(&J, "J");
    run_until(all, 4, c_opened, &J, 10);
    send_type(&H, PROTO_HELLO);
    send_type(&I, PROTO_HELLO);
    send_type(&J, PROTO_HELLO);
    /* Each connection's welcome arrives on its own: wait for all three, not only the last sent. */
    run_until(all, 4, c_welcomed, &J, 10);
    run_until(all, 4, c_welcomed, &I, 10);
    run_until(all, 4, c_welcomed, &H, 10);
    tu_check(H.welcome.token_required && H.welcome.limits.max_input_hz == 5 &&
                 H.welcome.limits.max_message_bytes >= H.welcome.limits.max_upload_bytes + 1024,
             "welcome: auth, max_hz %u, max_msg %u >= max_upload %u + 1024",
             H.welcome.limits.max_input_hz, H.welcome.limits.max_message_bytes,
             H.welcome.limits.max_upload_bytes);
    send_join(&H);
    run_until(all, 4, c_closed, &H, 10);
    tu_check(H.errors[PROTO_ERR_UNAUTHORIZED] == 1 && H.close_code == 4008,
             "H: join without the token -> unauthorized, close %d", H.close_code);
    {
        proto_msg m;
        memset(&m, 0, sizeof m);
        m.type = PROTO_JOIN;
        snprintf(m.u.join.token, sizeof m.u.join.token, "s3cret");
        wsc_send(I.c, &m);
    }
    run_until(all, 4, c_joined, &I, 20);
    tu_check(I.joined, "I: join with the token -> joined");
    for (uint32_t q = 1; q <= 8; q++) send_input(&I, q);
    run_until(all, 4, c_error, &I, 10);
    tu_check(I.errors[PROTO_ERR_RATE_LIMITED] == 1 && !I.closed,
             "I: 8 inputs at once with max_hz 5 -> one non-fatal rate_limited");
    for (uint32_t q = 9; q <= 30; q++) send_input(&I, q);
    run_until(all, 4, c_closed, &I, 10);
    tu_check(I.close_code == 4000 + PROTO_ERR_RATE_LIMITED,
             "I: over 4 x max_hz within a second -> fatal rate_limited, close %d", I.close_code);
    static uint8_t big[8192];
    memset(big, 0x90, sizeof big);
    wsc_send_raw(J.c, big, sizeof big, 1);
    run_until(all, 4, c_closed, &J, 10);
    tu_check(J.errors[PROTO_ERR_TOO_LARGE] == 1 && J.close_code == 4000 + PROTO_ERR_TOO_LARGE,
             "J: an 8 KiB message over max_msg -> too_large, close %d", J.close_code);
    connect_player(&K, "K");
    double t0 = now_s();
    run_until(all, 4, c_closed, &K, 10);
    tu_check(K.errors[PROTO_ERR_IDLE_TIMEOUT] == 1 && K.close_code == 4000 + PROTO_ERR_IDLE_TIMEOUT,
             "K: silent for the 2 s idle timeout -> idle_timeout after %.1f s, close %d",
             now_s() - t0, K.close_code);
    stop_server(&g_srv, 1);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: ws_smoke path/to/wmserve\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    lws_set_log_level(LLL_ERR, NULL);
    char web[256], outside[300];
    make_web_root(web, sizeof web, outside, sizeof outside);
    char *sargv[] = {argv[1],
                     "--port",
                     "0",
                     "--bind",
                     "127.0.0.1",
                     "--model",
                     "synthetic:tiny",
                     "--max-sessions",
                     "1",
                     "--max-queue",
                     "1",
                     "--web",
                     web,
                     "--idle-timeout",
                     "30",
                     "--log-level",
                     "info",
                     NULL};
    int ok = start_server(&g_srv, sargv) == 0;
    tu_check(ok, "server started and reported its port (%d)", g_srv.port);
    if (!ok) return tu_finish("ws_smoke");

    /* HTTP */
    char body[1 << 16], ct[128];
    int st = http_get(g_srv.port, "/healthz", body, sizeof body, ct, sizeof ct);
    tu_check(st == 200 && strstr(body, "\"status\":\"ok\"") && strstr(ct, "json"),
             "GET /healthz: status %d, type '%s', body has \"status\":\"ok\"", st, ct);
    st = http_get(g_srv.port, "/metrics", body, sizeof body, ct, sizeof ct);
    tu_check(st == 200 && strstr(body, "# TYPE wmserve_sessions_active gauge") &&
                 strstr(body, "wmserve_stage_seconds_bucket{stage=\"dit\",le=\"+Inf\"}") &&
                 strstr(ct, "version=0.0.4"),
             "GET /metrics: status %d, type '%s', Prometheus gauges and histograms", st, ct);
    st = http_get(g_srv.port, "/", body, sizeof body, ct, sizeof ct);
    tu_check(st == 200 && strstr(body, "hello smoke") && strstr(ct, "text/html"),
             "GET / serves index.html as text/html (status %d, type '%s')", st, ct);
    st = http_get(g_srv.port, "/app.js", body, sizeof body, ct, sizeof ct);
    tu_check(st == 200 && strstr(ct, "javascript"), "GET /app.js: status %d, type '%s'", st, ct);
    const char *bad_paths[] = {"/../ws_smoke_web", "/%2e%2e/etc/passwd", "/.secret", "/escape.txt",
                               "/nothing-here"};
    for (size_t i = 0; i < sizeof bad_paths / sizeof *bad_paths; i++) {
        st = http_get(g_srv.port, bad_paths[i], body, sizeof body, ct, sizeof ct);
        tu_check(st >= 400 && st < 500 && !strstr(body, "SECRET-"), "GET %s refused with %d",
                 bad_paths[i], st);
    }

    char err[256];
    tu_check(wsc_ctx_create(&g_ws, err, sizeof err) == 0, "websocket client context");
    static player A, B, C, D, E, F, G;
    player *all[] = {&A, &B, &C, &D, &E, &F, &G};

    /* A plays. */
    tu_check(connect_player(&A, "A"), "A connects");
    run_until(all, 7, c_opened, &A, 10);
    tu_check(A.opened, "A: websocket open");
    send_type(&A, PROTO_HELLO);
    run_until(all, 7, c_welcomed, &A, 10);
    tu_check(A.welcomed && A.welcome.version == 1 && A.welcome.n_scenes >= 1 &&
                 !strcmp(A.welcome.scenes[0], "default") && A.welcome.n_variants == 1,
             "A: welcome version %u, %d scene(s) (first '%s'), variant '%s'", A.welcome.version,
             A.welcome.n_scenes, A.welcome.scenes[0], A.welcome.variants[0]);
    send_join(&A);
    run_until(all, 7, c_joined, &A, 20);
    tu_check(A.joined && A.joined_msg.width == 128 && A.joined_msg.height == 64 &&
                 A.joined_msg.fps == 25 && A.joined_msg.n_keys == 4,
             "A: joined %ux%u at %u fps with %d keys", A.joined_msg.width, A.joined_msg.height,
             A.joined_msg.fps, A.joined_msg.n_keys);
    A.send_inputs = 1;
    double t0 = now_s();
    run_until(all, 7, c_frames_echo, &A, 30);
    double dt = now_s() - t0;
    tu_check(A.frames >= 24 && A.bad_jpeg == 0 && A.out_of_order == 0,
             "A: %d frames in %.2f s (%.1f fps), %d not JPEG SOI..EOI, %d out of order", A.frames,
             dt, A.frames / dt, A.bad_jpeg, A.out_of_order);
    tu_check(A.echoed_seq >= 3 && A.echo_ms_bad == 0,
             "A: inputs echoed: newest input_seq %u of %u sent; %d frames with matching client_ms, "
             "%d mismatched",
             A.echoed_seq, A.sent_seq, A.echo_ms_ok, A.echo_ms_bad);

    /* B is queued, C is turned away. */
    tu_check(connect_player(&B, "B"), "B connects");
    run_until(all, 7, c_opened, &B, 10);
    send_type(&B, PROTO_HELLO);
    send_join(&B);
    run_until(all, 7, c_queued, &B, 10);
    tu_check(B.queued_pos == 1 && !B.joined, "B: queued at position %d", B.queued_pos);
    tu_check(connect_player(&C, "C"), "C connects");
    run_until(all, 7, c_opened, &C, 10);
    send_type(&C, PROTO_HELLO);
    send_join(&C);
    run_until(all, 7, c_closed, &C, 10);
    tu_check(C.errors[PROTO_ERR_SERVER_FULL] == 1 && C.close_code == 4000 + PROTO_ERR_SERVER_FULL,
             "C: server_full error and close code %d", C.close_code);

    /* Bad input on D: recoverable errors first, then a fatal one. */
    tu_check(connect_player(&D, "D"), "D connects");
    run_until(all, 7, c_opened, &D, 10);
    send_type(&D, PROTO_HELLO);
    run_until(all, 7, c_welcomed, &D, 10);
    {
        proto_msg m;
        memset(&m, 0, sizeof m);
        m.type = PROTO_INPUT;
        m.u.input.seq = 1;
        wsc_send(D.c, &m);
    }
    run_until(all, 7, c_error, &D, 10);
    tu_check(D.errors[PROTO_ERR_NOT_JOINED] == 1 && !D.closed,
             "D: input before join -> not_joined, connection still open");
    send_type(&D, PROTO_PING);
    run_until(all, 7, c_pong, &D, 10);
    tu_check(D.pongs == 1, "D: ping -> pong after the error");
    static const uint8_t garbage[] = {0xc1, 0x00, 0xff, 0x13};
    wsc_send_raw(D.c, garbage, sizeof garbage, 1);
    run_until(all, 7, c_closed, &D, 10);
    tu_check(D.errors[PROTO_ERR_BAD_MESSAGE] == 1 && D.close_code == 4000 + PROTO_ERR_BAD_MESSAGE,
             "D: garbage -> bad_message, close code %d", D.close_code);
    /* E skips hello: fatal. */
    tu_check(connect_player(&E, "E"), "E connects");
    run_until(all, 7, c_opened, &E, 10);
    send_type(&E, PROTO_PING);
    run_until(all, 7, c_closed, &E, 10);
    tu_check(E.errors[PROTO_ERR_BAD_MESSAGE] == 1 && E.close_code == 4000 + PROTO_ERR_BAD_MESSAGE &&
                 !E.pongs,
             "E: a first message other than hello -> bad_message, close code %d", E.close_code);
    /* F sends a text frame after hello: fatal. */
    tu_check(connect_player(&F, "F"), "F connects");
    run_until(all, 7, c_opened, &F, 10);
    send_type(&F, PROTO_HELLO);
    wsc_send_raw(F.c, (const uint8_t *)"{\"t\":\"ping\"}", 12, 0);
    run_until(all, 7, c_closed, &F, 10);
    tu_check(F.welcomed && F.errors[PROTO_ERR_BAD_MESSAGE] == 1 && F.close_code == 4001,
             "F: text message -> bad_message, close code %d", F.close_code);

    /* A leaves: closed with 1000; B is promoted and plays. */
    A.send_inputs = 0;
    send_type(&A, PROTO_LEAVE);
    run_until(all, 7, c_closed, &A, 10);
    tu_check(A.close_code == 1000, "A: leave -> close code %d", A.close_code);
    run_until(all, 7, c_joined, &B, 20);
    tu_check(B.joined, "B: promoted to a slot after A left");
    B.send_inputs = 1;
    run_until(all, 7, c_frames12, &B, 20);
    tu_check(B.frames >= 12 && B.bad_jpeg == 0 && B.frames_n0 == 1, "B: %d frames after promotion",
             B.frames);
    /* Reset: joined again, frames restart at 0. */
    send_type(&B, PROTO_RESET);
    int b_frames = B.frames;
    run_until(all, 7, c_restarted, &B, 20);
    tu_check(B.joined_count == 2 && B.frames_n0 == 2,
             "B: reset -> joined again (%d) and frame numbers restart at 0 (%d frames since)",
             B.joined_count, B.frames - b_frames);

    /* G uploads a start image: a corrupt one is refused (non-fatal), a valid PNG is accepted and,
     * with B holding the only slot, queued. */
    tu_check(connect_player(&G, "G"), "G connects");
    run_until(all, 7, c_opened, &G, 10);
    send_type(&G, PROTO_HELLO);
    run_until(all, 7, c_welcomed, &G, 10);
    if (G.welcome.limits.max_upload_bytes) {
        static const uint8_t png[] = {
            0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49,
            0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02,
            0x00, 0x00, 0x00, 0xf0, 0xca, 0xea, 0x34, 0x00, 0x00, 0x00, 0x10, 0x49, 0x44,
            0x41, 0x54, 0x78, 0x9c, 0x63, 0x38, 0x91, 0x62, 0x04, 0x47, 0x0c, 0xc8, 0x1c,
            0x00, 0x92, 0xfa, 0x0a, 0xf1, 0x4b, 0x4e, 0x88, 0xc0, 0x00, 0x00, 0x00, 0x00,
            0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
        static const uint8_t junk[] = {0x89, 'P', 'N', 'G', 1, 2, 3, 4, 5, 6, 7, 8};
        proto_msg m;
        memset(&m, 0, sizeof m);
        m.type = PROTO_JOIN;
        m.u.join.image.data = junk;
        m.u.join.image.len = sizeof junk;
        wsc_send(G.c, &m);
        run_until(all, 7, c_error, &G, 20);
        tu_check(G.errors[PROTO_ERR_BAD_IMAGE] == 1 && !G.closed,
                 "G: corrupt upload -> bad_image, connection still open");
        m.u.join.image.data = png;
        m.u.join.image.len = sizeof png;
        wsc_send(G.c, &m);
        run_until(all, 7, c_queued, &G, 20);
        tu_check(G.queued_pos == 1, "G: 4x2 PNG upload accepted and queued at %d", G.queued_pos);
    } else {
        tu_check(1, "G: uploads disabled by this model (max_upload 0); upload checks skipped");
    }

    st = http_get(g_srv.port, "/metrics", body, sizeof body, ct, sizeof ct);
    tu_check(st == 200 && strstr(body, "wmserve_errors_total{code=\"server_full\"} 1") &&
                 strstr(body, "wmserve_sessions_active 1") &&
                 !strstr(body, "wmserve_frames_sent_total 0\n"),
             "metrics after play: server_full counted once, one active session, frames sent");

    /* Shutdown. */
    kill(g_srv.pid, SIGTERM);
    run_until(all, 7, c_closed, &B, 10);
    tu_check(B.errors[PROTO_ERR_SHUTTING_DOWN] == 1 && B.close_code == 1001,
             "B: shutting_down error, close code %d", B.close_code);
    stop_server(&g_srv, 0); /* SIGTERM was sent above */
    phase2(argv[1]);
    wsc_ctx_destroy(g_ws);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", web, outside);
    if (system(cmd)) {
    }
    return tu_finish("ws_smoke");
}

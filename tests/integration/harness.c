/* Test harness of the wmserve integration tests: see harness.h. */
#define _GNU_SOURCE /* mkdtemp, prctl */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <png.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

double h_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The server process ------------------------------------------------------------------------------ */

static void handle_line(h_server *s) {
    s->line[s->line_len] = '\0';
    printf("  [server] %s\n", s->line);
    s->lines++;
    /* text log format: "<ts> info listening port=NNN bind=..." */
    const char *p = strstr(s->line, " listening ");
    const char *q = p ? strstr(p, " port=") : NULL;
    if (q && !s->port) s->port = atoi(q + 6);
    s->line_len = 0;
}

void h_server_pump_log(h_server *s) {
    if (s->log_fd <= 0) return;
    char buf[8192];
    for (;;) {
        ssize_t n = read(s->log_fd, buf, sizeof buf);
        if (n <= 0) return;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                handle_line(s);
            } else if (s->line_len < sizeof s->line - 1) {
                s->line[s->line_len++] = buf[i];
            }
        }
    }
}

int h_server_alive(h_server *s) {
    if (!s->pid) return 0;
    int st;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == s->pid) {
        s->exit_status = st;
        s->pid = 0;
        return 0;
    }
    return 1;
}

int h_server_start(h_server *s, const char *bin, const char *const *args) {
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/wmserve-itest-XXXXXX");
    if (!mkdtemp(s->dir)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(s->log_path, sizeof s->log_path, "%s/server.log", s->dir);
    const char *argv[64];
    int n = 0;
    /* WM_ITEST_LOG_LEVEL=debug: the server's per-block scheduling lines, to see why a rate
     * check failed. */
    const char *level = getenv("WM_ITEST_LOG_LEVEL") ? getenv("WM_ITEST_LOG_LEVEL") : "info";
    const char *base[] = {bin, "--port", "0", "--bind", "127.0.0.1", "--model", "synthetic:tiny",
                          "--log-level", level};
    for (size_t i = 0; i < sizeof base / sizeof *base; i++) argv[n++] = base[i];
    for (int i = 0; args && args[i] && n < 62; i++) argv[n++] = args[i];
    argv[n] = NULL;
    printf("  starting:");
    for (int i = 0; i < n; i++) printf(" %s", argv[i]);
    printf("\n");
    int out = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    if (out < 0) return -1;
    pid_t parent = getpid();
    s->pid = fork();
    if (s->pid < 0) return -1;
    if (s->pid == 0) {
        /* The server must not outlive the test (a ctest timeout kills only the test). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(126);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(out, 1);
        dup2(out, 2);
        execv(bin, (char *const *)argv);
        perror("execv");
        _exit(127);
    }
    close(out);
    s->log_fd = open(s->log_path, O_RDONLY);
    double t0 = h_now();
    while (!s->port && h_now() - t0 < 20) {
        usleep(10000);
        h_server_pump_log(s);
        if (!h_server_alive(s)) {
            h_server_pump_log(s);
            printf("  server exited during start-up (status %d)\n", s->exit_status);
            return -1;
        }
    }
    return s->port ? 0 : -1;
}

int h_server_wait_exit(h_server *s, double timeout_s, int *status) {
    double t0 = h_now();
    for (;;) {
        h_server_pump_log(s);
        if (!h_server_alive(s)) {
            h_server_pump_log(s);
            if (status) *status = s->exit_status;
            return 1;
        }
        if (h_now() - t0 > timeout_s) return 0;
        usleep(10000);
    }
}

void h_server_stop(h_server *s) {
    if (s->pid) {
        kill(s->pid, SIGTERM);
        if (!h_server_wait_exit(s, 10, NULL)) {
            printf("  server did not exit within 10 s of SIGTERM: SIGKILL\n");
            kill(s->pid, SIGKILL);
            h_server_wait_exit(s, 5, NULL);
        }
    }
    h_server_pump_log(s);
    if (s->log_fd > 0) close(s->log_fd);
    s->log_fd = 0;
    if (s->dir[0]) {
        s->lws_errors = h_server_log_count(s, " error lws ");
        unlink(s->log_path);
        rmdir(s->dir);
        s->dir[0] = '\0';
    }
}

long h_server_mem_kb(const h_server *s, const char *field) {
    if (!s->pid) return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, fl) && line[fl] == ':') {
            kb = atol(line + fl + 1);
            break;
        }
    fclose(f);
    return kb;
}

int h_server_log_count(const h_server *s, const char *needle) {
    FILE *f = fopen(s->log_path, "r");
    if (!f) return -1;
    char line[8192];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle)) n++;
    fclose(f);
    return n;
}

/* HTTP --------------------------------------------------------------------------------------------- */

static int connect_loopback(int port, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Writes all of p, waiting up to timeout_s for room. */
static int write_all(int fd, const uint8_t *p, size_t n, double timeout_s) {
    double t0 = h_now();
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
        if (h_now() - t0 > timeout_s) return -1;
        struct pollfd pf = {fd, POLLOUT, 0};
        poll(&pf, 1, 20);
    }
    return 0;
}

int h_http_get(int port, const char *path, char *body, size_t bodylen, double timeout_s) {
    int fd = connect_loopback(port, 0);
    if (fd < 0) return -1;
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write_all(fd, (const uint8_t *)req, (size_t)n, timeout_s)) {
        close(fd);
        return -1;
    }
    static char resp[1 << 18];
    size_t got = 0;
    double t0 = h_now();
    for (;;) {
        struct pollfd pf = {fd, POLLIN, 0};
        int left = (int)((timeout_s - (h_now() - t0)) * 1000);
        if (left <= 0 || poll(&pf, 1, left) <= 0) {
            close(fd);
            return -1;
        }
        ssize_t r = read(fd, resp + got, sizeof resp - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
        if (got == sizeof resp - 1) break;
    }
    close(fd);
    resp[got] = '\0';
    int status = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1) return -1;
    const char *hdr_end = strstr(resp, "\r\n\r\n");
    snprintf(body, bodylen, "%s", hdr_end ? hdr_end + 4 : "");
    return status;
}

double h_metric(const char *body, const char *key) {
    size_t kl = strlen(key);
    for (const char *p = body; p && *p;) {
        if (!strncmp(p, key, kl) && p[kl] == ' ') return strtod(p + kl + 1, NULL);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return NAN;
}

double h_server_metric(const h_server *s, const char *key) {
    static char body[1 << 17];
    if (h_http_get(s->port, "/metrics", body, sizeof body, 3) != 200) return NAN;
    return h_metric(body, key);
}

/* Raw websocket client -------------------------------------------------------------------------- */

/* RFC 6455 section 1.3's example key, whose accept value is given there. */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static int grow(uint8_t **p, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    uint8_t *q = realloc(*p, c);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Reads what is available (waiting up to timeout_ms for the first byte). 1 read something, 0
 * nothing, -1 EOF/error. */
static int fill(h_rawws *r, int timeout_ms) {
    if (r->fd < 0 || r->eof) return -1;
    struct pollfd pf = {r->fd, POLLIN, 0};
    if (poll(&pf, 1, timeout_ms) <= 0) return 0;
    if (grow(&r->in, &r->in_cap, r->in_len + 65536)) return -1;
    ssize_t n = recv(r->fd, r->in + r->in_len, 65536, MSG_DONTWAIT);
    if (n > 0) {
        r->in_len += (size_t)n;
        r->bytes_read += (uint64_t)n;
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    r->eof = 1;
    return -1;
}

int h_rawws_connect(h_rawws *r, int port, int rcvbuf, char *err, size_t errlen) {
    return h_rawws_connect_ex(r, port, rcvbuf, "", NULL, err, errlen);
}

int h_rawws_connect_ex(h_rawws *r, int port, int rcvbuf, const char *headers, int *status,
                       char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    if (status) *status = 0;
    r->fd = connect_loopback(port, rcvbuf);
    if (r->fd < 0) {
        snprintf(err, errlen, "connect: %s", strerror(errno));
        return -1;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     port, headers ? headers : "");
    if (n < 0 || (size_t)n >= sizeof req || write_all(r->fd, (const uint8_t *)req, (size_t)n, 5)) {
        snprintf(err, errlen, "handshake write failed");
        return -1;
    }
    double t0 = h_now();
    char *end = NULL;
    while (!end) {
        if (h_now() - t0 > 5 || fill(r, 50) < 0) {
            if (status && r->in_len > 12 && !strncmp((char *)r->in, "HTTP/1.", 7))
                *status = atoi((char *)r->in + 9);
            snprintf(err, errlen, "no handshake answer");
            return -1;
        }
        if (grow(&r->in, &r->in_cap, r->in_len + 1)) return -1;
        r->in[r->in_len] = 0;
        end = strstr((char *)r->in, "\r\n\r\n");
    }
    size_t hdr = (size_t)(end + 4 - (char *)r->in);
    *end = 0;
    if (status && !strncmp((char *)r->in, "HTTP/1.", 7)) *status = atoi((char *)r->in + 9);
    if (strncmp((char *)r->in, "HTTP/1.1 101", 12) || !strstr((char *)r->in, WS_ACCEPT)) {
        snprintf(err, errlen, "bad handshake answer: %.120s", (char *)r->in);
        return -1;
    }
    memmove(r->in, r->in + hdr, r->in_len - hdr);
    r->in_len -= hdr;
    return 0;
}

int h_rawws_send_frame(h_rawws *r, int opcode, int fin, const uint8_t *p, size_t n, uint64_t declared) {
    if (r->fd < 0) return -1;
    uint64_t len = declared > n ? declared : n;
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        h[hl++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) h[hl++] = (uint8_t)(len >> (8 * i));
    }
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    memcpy(h + hl, mask, 4);
    hl += 4;
    uint8_t *buf = malloc(hl + n + 1);
    if (!buf) return -1;
    memcpy(buf, h, hl);
    for (size_t i = 0; i < n; i++) buf[hl + i] = p[i] ^ mask[i & 3];
    int rc = write_all(r->fd, buf, hl + n, 5);
    free(buf);
    return rc;
}

int h_rawws_send_msg(h_rawws *r, const proto_msg *m) {
    proto_buf b = {0};
    int rc = proto_encode(m, &b);
    if (!rc) rc = h_rawws_send_frame(r, 2, 1, b.data, b.len, 0);
    proto_buf_free(&b);
    return rc;
}

/* Parses one frame from r->in if complete: 1 with a whole message, 0 need more, -1 bad framing. */
static int parse_one(h_rawws *r, int *opcode, const uint8_t **payload, size_t *n) {
    for (;;) {
        if (r->in_len < 2) return 0;
        const uint8_t *b = r->in;
        int fin = b[0] & 0x80, op = b[0] & 0x0f, masked = b[1] & 0x80;
        uint64_t len = b[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (r->in_len < 4) return 0;
            len = ((uint64_t)b[2] << 8) | b[3];
            hl = 4;
        } else if (len == 127) {
            if (r->in_len < 10) return 0;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | b[2 + i];
            hl = 10;
        }
        if (masked) return -1; /* a server never masks */
        if (len > (64u << 20)) return -1;
        if (r->in_len < hl + len) return 0;
        const uint8_t *pl = b + hl;
        size_t consumed = hl + (size_t)len;
        if (op == 0x9) { /* ping: answer, keep going */
            uint8_t tmp[125];
            size_t l = len < sizeof tmp ? (size_t)len : sizeof tmp;
            memcpy(tmp, pl, l);
            memmove(r->in, r->in + consumed, r->in_len - consumed);
            r->in_len -= consumed;
            h_rawws_send_frame(r, 0xA, 1, tmp, l, 0);
            continue;
        }
        if (op == 0xA) {
            memmove(r->in, r->in + consumed, r->in_len - consumed);
            r->in_len -= consumed;
            continue;
        }
        if (op == 0x8) {
            r->close_code = len >= 2 ? (pl[0] << 8) | pl[1] : 1005;
            r->msg_len = 0;
            if (grow(&r->msg, &r->msg_cap, (size_t)len + 1)) return -1;
            memcpy(r->msg, pl, (size_t)len);
            r->msg_len = (size_t)len;
            r->msg_opcode = 8;
        } else {
            if (op != 0) {
                r->msg_len = 0;
                r->msg_opcode = op;
            }
            if (grow(&r->msg, &r->msg_cap, r->msg_len + (size_t)len + 1)) return -1;
            memcpy(r->msg + r->msg_len, pl, (size_t)len);
            r->msg_len += (size_t)len;
        }
        memmove(r->in, r->in + consumed, r->in_len - consumed);
        r->in_len -= consumed;
        if (fin || op == 0x8) {
            *opcode = r->msg_opcode;
            *payload = r->msg;
            *n = r->msg_len;
            return 1;
        }
    }
}

int h_rawws_recv(h_rawws *r, int timeout_ms, int *opcode, const uint8_t **payload, size_t *n) {
    double t0 = h_now();
    for (;;) {
        int p = parse_one(r, opcode, payload, n);
        if (p) return p;
        int left = timeout_ms - (int)((h_now() - t0) * 1000);
        if (left < 0) return 0;
        if (fill(r, left) < 0) return -1;
    }
}

int h_rawws_drain(h_rawws *r) {
    for (;;) {
        int f = fill(r, 0);
        if (f < 0) return -1;
        if (f == 0) return 0;
        r->in_len = 0; /* discard: a drained stream is not parsed */
    }
}

void h_rawws_abort(h_rawws *r, int rst) {
    if (r->fd >= 0) {
        if (rst) {
            struct linger l = {1, 0};
            setsockopt(r->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(r->fd);
    }
    r->fd = -1;
    free(r->in);
    free(r->msg);
    r->in = r->msg = NULL;
    r->in_len = r->in_cap = r->msg_len = r->msg_cap = 0;
}

/* Images ------------------------------------------------------------------------------------------ */

/* Offset of the first SOF marker (walking the segments), or -1 with err. */
static long find_sof(const uint8_t *p, size_t n, char *err, size_t errlen) {
    if (n < 4 || p[0] != 0xFF || p[1] != 0xD8) {
        snprintf(err, errlen, "no SOI (starts %02x %02x)", n > 0 ? p[0] : 0, n > 1 ? p[1] : 0);
        return -1;
    }
    size_t i = 2;
    while (i + 4 <= n) {
        if (p[i] != 0xFF) {
            snprintf(err, errlen, "expected a marker at byte %zu, found %02x", i, p[i]);
            return -1;
        }
        uint8_t m = p[i + 1];
        if (m == 0xFF) { /* fill byte */
            i++;
            continue;
        }
        size_t len = ((size_t)p[i + 2] << 8) | p[i + 3];
        if (len < 2 || i + 2 + len > n) {
            snprintf(err, errlen, "segment %02x at byte %zu has bad length %zu", m, i, len);
            return -1;
        }
        /* SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) */
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (len < 8) {
                snprintf(err, errlen, "SOF segment too short (%zu)", len);
                return -1;
            }
            return (long)i;
        }
        if (m == 0xDA || m == 0xD9) break; /* scan before any SOF */
        i += 2 + len;
    }
    snprintf(err, errlen, "no SOF marker before the scan");
    return -1;
}

int h_jpeg_sof(const uint8_t *p, size_t n, int *w, int *h, int *ncomp, int *marker, char *err,
               size_t errlen) {
    long i = find_sof(p, n, err, errlen);
    if (i < 0) return -1;
    if (p[n - 2] != 0xFF || p[n - 1] != 0xD9) {
        snprintf(err, errlen, "no EOI (ends %02x %02x)", p[n - 2], p[n - 1]);
        return -1;
    }
    const uint8_t *s = p + i + 4; /* precision, height (2), width (2), components */
    *h = (s[1] << 8) | s[2];
    *w = (s[3] << 8) | s[4];
    *ncomp = s[5];
    *marker = p[i + 1];
    return 0;
}

int h_jpeg_decode(const uint8_t *p, size_t n, int *w, int *h, char *err, size_t errlen) {
    tjhandle tj = tjInitDecompress();
    if (!tj) {
        snprintf(err, errlen, "tjInitDecompress failed");
        return -1;
    }
    int sub, cs, rc = -1;
    if (tjDecompressHeader3(tj, p, (unsigned long)n, w, h, &sub, &cs)) {
        snprintf(err, errlen, "header: %s", tjGetErrorStr2(tj));
    } else if (*w <= 0 || *h <= 0 || *w > 16384 || *h > 16384) {
        snprintf(err, errlen, "implausible size %dx%d", *w, *h);
    } else {
        unsigned char *rgb = malloc((size_t)*w * (size_t)*h * 3);
        if (rgb && !tjDecompress2(tj, p, (unsigned long)n, rgb, *w, 0, *h, TJPF_RGB, 0))
            rc = 0;
        else
            snprintf(err, errlen, "decode: %s", tjGetErrorStr2(tj));
        free(rgb);
    }
    tjDestroy(tj);
    return rc;
}

static uint8_t *test_picture(int w, int h) {
    uint8_t *px = malloc((size_t)w * (size_t)h * 3);
    if (!px) return NULL;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = px + ((size_t)y * (size_t)w + (size_t)x) * 3;
            double dx = x - 0.6 * w, dy = y - 0.4 * h;
            int disc = dx * dx + dy * dy < 0.04 * (double)w * w;
            q[0] = disc ? 240 : (uint8_t)(255 * x / (w > 1 ? w - 1 : 1));
            q[1] = disc ? 200 : (uint8_t)(255 * y / (h > 1 ? h - 1 : 1));
            q[2] = disc ? 40 : (uint8_t)(128 + 100 * ((x / 16 + y / 16) & 1));
        }
    return px;
}

int h_make_png(int w, int h, uint8_t **out, size_t *n) {
    *out = NULL;
    uint8_t *px = test_picture(w, h);
    if (!px) return -1;
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_RGB;
    png_alloc_size_t size = 0;
    int rc = -1;
    if (png_image_write_to_memory(&img, NULL, &size, 0, px, 0, NULL) && size) {
        *out = malloc(size);
        if (*out && png_image_write_to_memory(&img, *out, &size, 0, px, 0, NULL)) {
            *n = size;
            rc = 0;
        }
    }
    png_image_free(&img);
    free(px);
    if (rc) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

int h_make_jpeg(int w, int h, uint8_t **out, size_t *n) {
    *out = NULL;
    uint8_t *px = test_picture(w, h);
    tjhandle tj = tjInitCompress();
    unsigned char *buf = NULL;
    unsigned long len = 0;
    int rc = -1;
    if (px && tj && !tjCompress2(tj, px, w, 0, h, TJPF_RGB, &buf, &len, TJSAMP_420, 90, 0)) {
        *out = malloc(len);
        if (*out) {
            memcpy(*out, buf, len);
            *n = len;
            rc = 0;
        }
    }
    if (buf) tjFree(buf);
    if (tj) tjDestroy(tj);
    free(px);
    return rc;
}

static uint32_t crc32_png(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int h_png_set_size(uint8_t *png, size_t n, uint32_t w, uint32_t h) {
    /* signature (8), then IHDR: length (4) "IHDR" (4) width height ... (13) CRC (4) */
    if (n < 33 || memcmp(png + 12, "IHDR", 4)) return -1;
    put32(png + 16, w);
    put32(png + 20, h);
    put32(png + 29, crc32_png(png + 12, 17));
    return 0;
}

int h_jpeg_set_size(uint8_t *jpg, size_t n, uint16_t w, uint16_t h) {
    char err[128];
    long i = find_sof(jpg, n, err, sizeof err);
    if (i < 0) return -1;
    jpg[i + 5] = (uint8_t)(h >> 8);
    jpg[i + 6] = (uint8_t)h;
    jpg[i + 7] = (uint8_t)(w >> 8);
    jpg[i + 8] = (uint8_t)w;
    return 0;
}

uint8_t *h_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = len > 0 ? malloc((size_t)len) : NULL;
    if (p && fread(p, 1, (size_t)len, f) != (size_t)len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) *n = (size_t)len;
    return p;
}

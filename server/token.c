/* Signed tokens: see token.h. */
#include "server/token.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

int srv_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen, uint8_t out[32]) {
    unsigned int n = 0;
    if (klen > (size_t)INT32_MAX) return -1;
    static const uint8_t empty = 0;
    if (!HMAC(EVP_sha256(), klen ? key : &empty, (int)klen, msg ? msg : &empty, mlen, out, &n))
        return -1;
    return n == 32 ? 0 : -1;
}

int srv_token_secret_load(const char *path, uint8_t *secret, size_t *len, char *err,
                          size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "--token-secret %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = fread(secret, 1, SRV_SECRET_MAX, f);
    fclose(f);
    while (n && (secret[n - 1] == '\n' || secret[n - 1] == '\r')) n--;
    if (n >= SRV_SECRET_MAX || n < 16) {
        snprintf(err, errlen, "--token-secret %s: the secret must be 16..%d bytes", path,
                 SRV_SECRET_MAX - 1);
        return -1;
    }
    *len = n;
    return 0;
}

static void to_hex(const uint8_t *p, size_t n, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int sign(const uint8_t *secret, size_t slen, const char *payload, size_t plen,
                char hex[65]) {
    uint8_t mac[32];
    if (srv_hmac_sha256(secret, slen, payload, plen, mac)) return -1;
    to_hex(mac, 32, hex);
    return 0;
}

int srv_token_make(const uint8_t *secret, size_t slen, int64_t expiry, char *out, size_t n) {
    char payload[40], hex[65];
    int pl = snprintf(payload, sizeof payload, "v1.%" PRId64, expiry);
    if (pl < 0 || expiry < 0 || sign(secret, slen, payload, (size_t)pl, hex)) return -1;
    int w = snprintf(out, n, "%s.%s", payload, hex);
    return w > 0 && (size_t)w < n ? 0 : -1;
}

int srv_token_is_signed(const char *token) {
    return token && !strncmp(token, "v1.", 3);
}

int srv_token_check(const uint8_t *secret, size_t slen, const char *token, int64_t now, char *err,
                    size_t errlen) {
    const int is_signed = srv_token_is_signed(token);
    const char *p = is_signed ? token + 3 : NULL, *dot = is_signed ? strchr(p, '.') : NULL;
    size_t digits = dot ? (size_t)(dot - p) : 0;
    int ok = dot && digits >= 1 && digits <= 18 && strlen(dot + 1) == 64;
    int64_t expiry = 0;
    for (size_t i = 0; ok && i < digits; i++) {
        ok = p[i] >= '0' && p[i] <= '9';
        expiry = expiry * 10 + (p[i] - '0');
    }
    if (!ok) {
        snprintf(err, errlen, "malformed signed token (want v1.<expiry>.<64 hex digits>)");
        return -1;
    }
    char hex[65];
    if (sign(secret, slen, token, (size_t)(dot - token), hex)) {
        snprintf(err, errlen, "cannot compute the token signature");
        return -1;
    }
    /* Constant time over the 64 digits: no early exit on the first difference. */
    unsigned diff = 0;
    for (int i = 0; i < 64; i++) diff |= (unsigned)(hex[i] ^ dot[1 + i]);
    if (diff) {
        snprintf(err, errlen, "bad token signature");
        return -1;
    }
    if (expiry <= now) {
        snprintf(err, errlen, "token expired %" PRId64 " s ago", now - expiry);
        return -1;
    }
    return 0;
}

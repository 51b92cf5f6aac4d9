/* Signed access tokens with an expiry: "v1.<expiry unix seconds>.<hex HMAC-SHA256(secret,
 * "v1.<expiry>")>" (64 lowercase hex digits), checked in constant time. HMAC-SHA256 is OpenSSL's
 * libcrypto. The secret comes from a file (--token-secret), never from a flag. */
#ifndef WM_SERVER_TOKEN_H
#define WM_SERVER_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define SRV_SECRET_MAX 256
#define SRV_TOKEN_MAX  96

/* HMAC-SHA256 of msg under key. 0, or -1 (libcrypto failed). */
int srv_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen, uint8_t out[32]);

/* Reads the secret: the file's bytes without trailing newlines; at least 16, at most
 * SRV_SECRET_MAX - 1 bytes. 0 with *len, or -1 with err. */
int srv_token_secret_load(const char *path, uint8_t *secret, size_t *len, char *err, size_t errlen);

/* Writes the token expiring at `expiry` into out (SRV_TOKEN_MAX bytes). 0 or -1. */
int srv_token_make(const uint8_t *secret, size_t slen, int64_t expiry, char *out, size_t n);

/* 1 when token looks like a signed token (starts with "v1."), else 0. */
int srv_token_is_signed(const char *token);

/* 0 when token is well-formed, correctly signed and not expired at `now`; else -1 with a message
 * telling which ("malformed", "bad signature" or "expired"). */
int srv_token_check(const uint8_t *secret, size_t slen, const char *token, int64_t now, char *err,
                    size_t errlen);

#endif

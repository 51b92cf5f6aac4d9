/* Error message formatting for the engine's status-code convention. */
#include "engine/errors.h"

#include <stdarg.h>
#include <stdio.h>

int eng_errorf(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *eng_strerror(int code) {
    switch (code) {
    case ENG_OK:
        return "ok";
    case ENG_EINVAL:
        return "invalid argument";
    case ENG_EIO:
        return "I/O error";
    case ENG_ENOMEM:
        return "out of memory";
    case ENG_ECONFIG:
        return "invalid model config";
    case ENG_ECONFIG_FOREIGN:
        return "config of another format";
    case ENG_EFORMAT:
        return "malformed file";
    case ENG_EWEIGHTS:
        return "invalid weights";
    case ENG_ESTATE:
        return "invalid state";
    default:
        return "unknown error";
    }
}

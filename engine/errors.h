/* Error codes and the message convention shared by the engine: functions return 0 or a negative
 * ENG_E* code and write a human message naming the offending thing into a caller buffer. */
#ifndef WM_ENGINE_ERRORS_H
#define WM_ENGINE_ERRORS_H

#include <stddef.h>

enum {
    ENG_OK = 0,
    ENG_EINVAL = -1,          /* bad argument from the caller */
    ENG_EIO = -2,             /* file system error */
    ENG_ENOMEM = -3,          /* allocation failed */
    ENG_ECONFIG = -4,         /* config.json invalid or unsupported */
    ENG_ECONFIG_FOREIGN = -5, /* config.json of another format (e.g. Diffusers) */
    ENG_EFORMAT = -6,         /* malformed file (safetensors, JSON, ...) */
    ENG_EWEIGHTS = -7,        /* weights missing, unexpected, wrong shape/dtype, non-finite */
    ENG_ESTATE = -8,          /* call not valid in the object's current state */
};

/* Formats into err (if non-NULL) and returns code; for `return eng_errorf(...)`. */
int eng_errorf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *eng_strerror(int code);

#endif

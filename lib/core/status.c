/* status.c — status names and texts, and the thread-local message of the last error. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "attn.h"

#define ATTN_MSG_MAX 2048

static _Thread_local char last_message[ATTN_MSG_MAX];

const char *attn_status_name(int status)
{
    switch (status) {
#define ATTN_STATUS_NAME(id, code, text)                                                           \
    case code:                                                                                     \
        return #id;
        ATTN_STATUS_LIST(ATTN_STATUS_NAME)
#undef ATTN_STATUS_NAME
    }
    return "ATTN_UNKNOWN";
}

const char *attn_status_text(int status)
{
    switch (status) {
#define ATTN_STATUS_TEXT(id, code, text)                                                           \
    case code:                                                                                     \
        return text;
        ATTN_STATUS_LIST(ATTN_STATUS_TEXT)
#undef ATTN_STATUS_TEXT
    }
    return "unknown status";
}

const char *attn_last_error(void)
{
    return last_message;
}

void attn_error_clear(void)
{
    last_message[0] = '\0';
}

int attn_error_set(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return status;
}

int attn_error_context(int status, const char *fmt, ...)
{
    /* The new context goes in front: "reading x.h5: dataset /q: rank 2, expected 3". */
    char context[ATTN_MSG_MAX];
    char old[ATTN_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
    memcpy(old, last_message, sizeof old);
    if (old[0] == '\0')
        snprintf(last_message, sizeof last_message, "%s: %s", context, attn_status_text(status));
    else
        snprintf(last_message, sizeof last_message, "%s: %s", context, old);
    return status;
}

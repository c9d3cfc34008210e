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

/* Append text to last_message, truncating at the buffer's end. */
static void append(size_t *pos, const char *text)
{
    while (*text != '\0' && *pos + 1 < ATTN_MSG_MAX)
        last_message[(*pos)++] = *text++;
    last_message[*pos] = '\0';
}

int attn_error_context(int status, const char *fmt, ...)
{
    /* The new context goes in front: "reading x.h5: dataset /q: rank 2, expected 3". */
    char old[ATTN_MSG_MAX];
    memcpy(old, last_message, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    size_t pos = k < 0 ? 0 : ((size_t) k < ATTN_MSG_MAX ? (size_t) k : ATTN_MSG_MAX - 1);
    append(&pos, ": ");
    append(&pos, old[0] != '\0' ? old : attn_status_text(status));
    return status;
}

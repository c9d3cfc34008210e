/* version.c — build and runtime provenance: version, compiler, configure arguments, BLAS. */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

#include "attn.h"

const char *attn_version(void)
{
    return PACKAGE_VERSION;
}

const char *attn_git_describe(void)
{
    return ATTN_GIT_DESCRIBE;
}

const char *attn_configure_args(void)
{
    return ATTN_CONFIGURE_ARGS;
}

const char *attn_cc_version(void)
{
    return ATTN_CC_VERSION;
}

/* OpenBLAS's query functions are looked up at run time: libblas.so.3 is a Debian alternative that
 * may be the reference BLAS, which lacks them. */
typedef char *(*string_fn)(void);
typedef int (*int_fn)(void);

int attn_blas_threads(void)
{
    int_fn threads = (int_fn) (uintptr_t) dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
    return threads != NULL ? threads() : 1;
}

const char *attn_blas_info(char *buf, size_t len)
{
    string_fn config = (string_fn) (uintptr_t) dlsym(RTLD_DEFAULT, "openblas_get_config");
    string_fn core = (string_fn) (uintptr_t) dlsym(RTLD_DEFAULT, "openblas_get_corename");
    const char *preset = getenv("OPENBLAS_CORETYPE");
    if (config == NULL || core == NULL) {
        snprintf(buf, len, "reference BLAS (not OpenBLAS), 1 thread");
        return buf;
    }
    snprintf(buf, len, "%s; kernel %s%s%s%s; %d thread%s", config(), core(),
             preset != NULL ? " (OPENBLAS_CORETYPE=" : "", preset != NULL ? preset : "",
             preset != NULL ? " preset in the environment)" : "", attn_blas_threads(),
             attn_blas_threads() == 1 ? "" : "s");
    return buf;
}

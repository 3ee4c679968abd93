#ifndef OUTPOST_SYSTEM_H
#define OUTPOST_SYSTEM_H
#include <sys/types.h>
#include <stddef.h>

/* Linux calls and constants that Swift's Glibc module does not expose (they need _GNU_SOURCE). */
extern const int outpost_O_NOATIME;
extern const int outpost_SEEK_DATA;
extern const int outpost_SEEK_HOLE;
ssize_t outpost_llistxattr(const char *path, char *list, size_t size);
ssize_t outpost_lgetxattr(const char *path, const char *name, void *value, size_t size);
int outpost_fsetxattr(int fd, const char *name, const void *value, size_t size);
int outpost_lsetxattr(const char *path, const char *name, const void *value, size_t size);
/* mallopt(M_ARENA_MAX, n): caps glibc's per-thread malloc arenas, which otherwise keep freed memory per thread. */
int outpost_limit_malloc_arenas(int n);
#endif

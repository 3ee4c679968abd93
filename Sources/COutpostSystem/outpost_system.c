#define _GNU_SOURCE
#include <malloc.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/xattr.h>
#include "outpost_system.h"

const int outpost_O_NOATIME = O_NOATIME;
const int outpost_SEEK_DATA = SEEK_DATA;
const int outpost_SEEK_HOLE = SEEK_HOLE;

ssize_t outpost_llistxattr(const char *path, char *list, size_t size) { return llistxattr(path, list, size); }
ssize_t outpost_lgetxattr(const char *path, const char *name, void *value, size_t size) { return lgetxattr(path, name, value, size); }
int outpost_fsetxattr(int fd, const char *name, const void *value, size_t size) { return fsetxattr(fd, name, value, size, 0); }
int outpost_lsetxattr(const char *path, const char *name, const void *value, size_t size) { return lsetxattr(path, name, value, size, 0); }

int outpost_limit_malloc_arenas(int n) {
#ifdef M_ARENA_MAX
    return mallopt(M_ARENA_MAX, n);
#else
    (void)n;
    return 0;
#endif
}

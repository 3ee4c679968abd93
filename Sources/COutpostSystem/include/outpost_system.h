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
/* O_PATH descriptors: an entry reached without following links and without opening it (a device's driver is
   not called). Owner, mode and times are set through the descriptor, so they reach exactly that inode. */
extern const int outpost_O_PATH;
int outpost_fchown_opath(int fd, uid_t uid, gid_t gid);
/* fchmodat2(fd, "", mode, AT_EMPTY_PATH) (Linux 6.6), else chmod("/proc/self/fd/N"). Not for symlinks. */
int outpost_fchmod_opath(int fd, mode_t mode);
/* Access and modification time := sec.nsec, by utimensat(fd, "", …, AT_EMPTY_PATH), else on "/proc/self/fd/N"
   (not for symlinks: errno EOPNOTSUPP). Seconds and nanoseconds, not a struct timespec: a header that declares
   that type makes Swift attribute it to this module. */
int outpost_utimens_opath(int fd, long long sec, long nsec);
/* renameat2(RENAME_NOREPLACE): fails with EEXIST when the new name exists. File systems without the flag get a
   hard link (atomic too) and then, without hard links either, a check before a plain rename. */
int outpost_renameat_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
/* mallopt(M_ARENA_MAX, n): caps glibc's per-thread malloc arenas, which otherwise keep freed memory per thread. */
int outpost_limit_malloc_arenas(int n);
#endif

#define _GNU_SOURCE
#include <malloc.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/xattr.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include "outpost_system.h"

const int outpost_O_NOATIME = O_NOATIME;
const int outpost_SEEK_DATA = SEEK_DATA;
const int outpost_SEEK_HOLE = SEEK_HOLE;
const int outpost_O_PATH = O_PATH;

ssize_t outpost_llistxattr(const char *path, char *list, size_t size) { return llistxattr(path, list, size); }
ssize_t outpost_lgetxattr(const char *path, const char *name, void *value, size_t size) { return lgetxattr(path, name, value, size); }
int outpost_fsetxattr(int fd, const char *name, const void *value, size_t size) { return fsetxattr(fd, name, value, size, 0); }
int outpost_lsetxattr(const char *path, const char *name, const void *value, size_t size) { return lsetxattr(path, name, value, size, 0); }

int outpost_fchown_opath(int fd, uid_t uid, gid_t gid) { return fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW); }

static void proc_fd_path(char *buf, size_t size, int fd) { snprintf(buf, size, "/proc/self/fd/%d", fd); }

int outpost_fchmod_opath(int fd, mode_t mode) {
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452 /* the same number on every architecture */
#endif
    if (syscall(SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH) == 0) return 0;
    /* Older kernels (ENOSYS) or seccomp filters: the magic link reaches the same inode. */
    char path[64];
    proc_fd_path(path, sizeof path, fd);
    return chmod(path, mode);
}

int outpost_utimens_opath(int fd, long long sec, long nsec) {
    const struct timespec times[2] = { { .tv_sec = sec, .tv_nsec = nsec }, { .tv_sec = sec, .tv_nsec = nsec } };
    if (utimensat(fd, "", times, AT_EMPTY_PATH) == 0) return 0;
    int saved = errno;
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    if (S_ISLNK(st.st_mode)) { errno = saved == EINVAL ? EOPNOTSUPP : saved; return -1; }
    char path[64];
    proc_fd_path(path, sizeof path, fd);
    return utimensat(AT_FDCWD, path, times, 0);
}

int outpost_renameat_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
    if (syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -1;
    if (linkat(olddirfd, oldpath, newdirfd, newpath, 0) == 0) { unlinkat(olddirfd, oldpath, 0); return 0; }
    if (errno != EPERM && errno != EOPNOTSUPP) return -1;
    struct stat st;
    if (fstatat(newdirfd, newpath, &st, AT_SYMLINK_NOFOLLOW) == 0) { errno = EEXIST; return -1; }
    return renameat(olddirfd, oldpath, newdirfd, newpath);
}

int outpost_limit_malloc_arenas(int n) {
#ifdef M_ARENA_MAX
    return mallopt(M_ARENA_MAX, n);
#else
    (void)n;
    return 0;
#endif
}

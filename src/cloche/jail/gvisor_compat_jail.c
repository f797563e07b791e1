/* Preloaded into every process of a gVisor jail (through /etc/ld.so.preload): statx() without
 * AT_NO_AUTOMOUNT.
 *
 * The runsc release Debian 12 ships (2022-12) refuses statx() calls that carry AT_NO_AUTOMOUNT with
 * EINVAL, and coreutils (ls, stat, cp, du, ...) always pass it, so they fail on every path. The flag
 * only matters for automount points, which a gVisor jail has none of: dropping it changes nothing else.
 * This is compatibility, not isolation: the code may remove it, and only its own programs are affected. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf) {
    return (int)syscall(SYS_statx, dirfd, path, flags & ~AT_NO_AUTOMOUNT, mask, buf);
}

/*
 * cloche-spawn: the host-side step between the server and bwrap.
 *
 *   cloche-spawn ERRFD UID CGROUP_FDS RLIMITS -- BWRAP ARGV0 [ARGS...]
 *
 *   ERRFD       a pipe's write end: a failure is written there (and the exit is 127); on success it
 *               closes with the exec of bwrap, so the server reads EOF
 *   UID         the sandbox's host uid; the gid is the same number and no supplementary group is kept
 *   CGROUP_FDS  comma-separated fds of the files the server (root) opened for joining this run's cgroups
 *               (tasks on cgroup v1: this process is single-threaded; cgroup.procs on v2), or "-"
 *   RLIMITS     comma-separated RESOURCE=VALUE (soft = hard), or "-"
 *
 * In this order: drop to UID, join the run's cgroups, set the rlimits, exec bwrap. That is the order the
 * server's preexec_fn used, so every guarantee of the cgroup and rlimit layers holds as before.
 *
 * Why a program and not preexec_fn: a preexec_fn (or user=, group=) forces CPython to fork() the whole
 * server, copy its page tables and run Python code in the child (10-30 ms on a busy host); without them
 * it uses vfork(), which costs well under a millisecond.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int errfd = -1;

static void fail(const char *fmt, ...) {
    char message[512];
    int saved = errno;
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof message) n = sizeof message - 1;
    n += snprintf(message + n, sizeof message - n, ": %s", strerror(saved));
    if ((size_t)n >= sizeof message) n = sizeof message - 1;
    if (errfd >= 0 && write(errfd, message, n) < 0) {
        /* nothing more can be said */
    }
    _exit(127);
}

static long number(const char *text, const char *what) {
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end) {
        errno = EINVAL;
        fail("bad %s '%s'", what, text);
    }
    return value;
}

static void join_cgroups(char *list) {
    if (strcmp(list, "-") == 0) return;
    for (char *item = strtok(list, ","); item; item = strtok(NULL, ",")) {
        int fd = (int)number(item, "cgroup fd");
        if (write(fd, "0", 1) != 1) fail("cannot join the run's cgroup (fd %d)", fd);
        close(fd);
    }
}

static void set_rlimits(char *list) {
    if (strcmp(list, "-") == 0) return;
    for (char *item = strtok(list, ","); item; item = strtok(NULL, ",")) {
        char *eq = strchr(item, '=');
        if (!eq) {
            errno = EINVAL;
            fail("bad rlimit '%s'", item);
        }
        *eq = '\0';
        int resource = (int)number(item, "rlimit resource");
        unsigned long long value = strtoull(eq + 1, NULL, 10);
        struct rlimit limit = {(rlim_t)value, (rlim_t)value};
        if (setrlimit(resource, &limit) != 0) fail("cannot set rlimit %d to %llu", resource, value);
    }
}

int main(int argc, char **argv) {
    if (argc < 8 || strcmp(argv[5], "--") != 0) {
        fprintf(stderr, "usage: cloche-spawn ERRFD UID CGROUP_FDS RLIMITS -- BWRAP ARGV0 [ARGS...]\n");
        return 2;
    }
    errfd = (int)number(argv[1], "error fd");
    if (fcntl(errfd, F_SETFD, FD_CLOEXEC) != 0) fail("cannot mark the error fd close-on-exec");
    uid_t uid = (uid_t)number(argv[2], "uid");
    if (uid == 0) {
        errno = EPERM;
        fail("refusing to run a jail as root");
    }
    if (setgroups(0, NULL) != 0) fail("setgroups");
    if (setresgid(uid, uid, uid) != 0) fail("setresgid %u", (unsigned)uid);
    if (setresuid(uid, uid, uid) != 0) fail("setresuid %u", (unsigned)uid);
    if (getuid() != uid || geteuid() != uid || getgid() != uid || getegid() != uid) {
        errno = EPERM;
        fail("identity did not change to %u", (unsigned)uid);
    }
    join_cgroups(argv[3]);
    set_rlimits(argv[4]);
    execv(argv[6], argv + 7);
    fail("cannot execute %s", argv[6]);
    return 127;
}

/*
 * cloche-egress-launcher: the in-jail half of registry-only egress, as a launcher.
 *
 *   cloche-egress-launcher PORT SOCKET -- COMMAND [ARGS...]
 *
 * Listens on 127.0.0.1:PORT inside the jail's network namespace, starts COMMAND, and relays every TCP
 * connection to the host proxy's unix SOCKET (bound into the jail). Exits with COMMAND's status; the relays
 * die with the jail. It enforces nothing: the host proxy decides.
 *
 * Why C and not the Python launcher (egress_launcher_jail.py): every exec with egress pays this
 * program's start-up, and Python with asyncio costs ~100 ms before the user's code may start; this
 * costs ~1 ms.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t child_pid = 0;

static void on_child(int sig) { (void)sig; /* only interrupts ppoll */ }

static void forward_signal(int sig) {
    if (child_pid > 0) kill(child_pid, sig);
}

static int connect_upstream(const char *path) {
    struct sockaddr_un addr;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Copy both ways until both directions are closed; a half-close is passed on with shutdown(). */
static void relay(int client, const char *path) {
    int upstream = connect_upstream(path);
    if (upstream < 0) _exit(1);
    int fds[2] = {client, upstream};
    int open_dir[2] = {1, 1}; /* 0: client->upstream, 1: upstream->client */
    char buf[65536];
    while (open_dir[0] || open_dir[1]) {
        struct pollfd p[2] = {{fds[0], open_dir[0] ? POLLIN : 0, 0}, {fds[1], open_dir[1] ? POLLIN : 0, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (!open_dir[i] || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(fds[i], buf, sizeof buf);
            if (n <= 0) {
                open_dir[i] = 0;
                shutdown(fds[1 - i], SHUT_WR);
                continue;
            }
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(fds[1 - i], buf + off, (size_t)(n - off));
                if (w <= 0) _exit(0);
                off += w;
            }
        }
    }
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: cloche-egress-launcher PORT SOCKET -- COMMAND [ARGS...]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *path = argv[2];
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 128) < 0) {
        perror("cloche-egress-launcher: listen");
        return 1;
    }
    /* SIGCHLD stays blocked except inside ppoll, so the command's exit wakes the loop at once, race-free. */
    struct sigaction on_chld;
    memset(&on_chld, 0, sizeof on_chld);
    on_chld.sa_handler = on_child;
    sigaction(SIGCHLD, &on_chld, NULL);
    sigset_t chld, original;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &original);
    pid_t pid = fork();
    if (pid < 0) {
        perror("cloche-egress-launcher: fork");
        return 1;
    }
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &original, NULL);
        signal(SIGCHLD, SIG_DFL);
        close(listener);
        execvp(argv[4], argv + 4);
        fprintf(stderr, "%s: %s\n", argv[4], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    child_pid = pid;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    for (;;) {
        int status;
        pid_t done;
        while ((done = waitpid(-1, &status, WNOHANG)) > 0) {
            if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        struct pollfd p = {listener, POLLIN, 0};
        sigset_t waiting;
        sigemptyset(&waiting);
        if (ppoll(&p, 1, NULL, &waiting) <= 0) continue; /* EINTR: a child exited */
        int client = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) continue;
        pid_t relay_pid = fork();
        if (relay_pid == 0) {
            close(listener);
            relay(client, path);
        }
        close(client);
    }
}

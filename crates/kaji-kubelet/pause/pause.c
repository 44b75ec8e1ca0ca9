/*
 * Kaji's pause program: the process that holds a pod sandbox's namespaces.
 *
 * It waits forever in pause(2), exits 0 on SIGTERM or SIGINT, and reaps zombies on SIGCHLD
 * (it is PID 1 of the pod's PID namespace when the pod shares one), like Kubernetes' own
 * build/pause/linux/pause.c. Built static by crates/kaji-kubelet/build.rs.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        puts("kaji pause 3.10");
        return 0;
    }
    if (getpid() != 1) {
        fprintf(stderr, "pause: warning: not running as PID 1\n");
    }

    struct sigaction stop = {0};
    stop.sa_handler = on_stop;
    sigemptyset(&stop.sa_mask);
    if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0) {
        perror("pause: sigaction");
        return 1;
    }

    struct sigaction child = {0};
    child.sa_handler = on_child;
    sigemptyset(&child.sa_mask);
    child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    if (sigaction(SIGCHLD, &child, NULL) < 0) {
        perror("pause: sigaction");
        return 1;
    }

    for (;;) {
        pause();
    }
    return 42; /* unreachable */
}

/* Writes a spool as the injected library would, for `warmcal profile` tests
 * that need no CUDA: run as the profiled command (it reads WARMCAL_OUT and
 * WARMCAL_SESSION) or with a path and session given.
 *
 * usage: make_spool SCENARIO RANK [PATH SESSION]
 *   SCENARIO: ok (two phases, normal exit), killed (ends inside phase
 *   "context"), idle (no phase). The pid written is this process's.
 *   MAKE_SPOOL_WORLD sets the world size written (default 4),
 *   MAKE_SPOOL_RANK_FROM the rank_from info (absent by default).
 *       make_spool count-signals FILE
 *   counts the SIGINT, SIGTERM and SIGHUP it receives: creates FILE.ready
 *   once its handlers are in place, waits for a signal (at most 60 s),
 *   then one more second for any copy of it, and writes to FILE
 *   "<INT> <TERM> <HUP> <foreground>" (foreground: 1 when its process
 *   group holds the terminal on its input). Exits 0. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "warmcal/spool.h"

#define MIB (1024ull * 1024ull)

static warmcal_spool_writer *w;
static warmcal_error err;

static void fail(void)
{
    fprintf(stderr, "make_spool: %s: %s\n", err.source, err.text);
    exit(1);
}

static void ev(uint64_t t, int kind, uint64_t bytes, uint64_t addr)
{
    warmcal_spool_event e;
    memset(&e, 0, sizeof e);
    e.time_ns = t;
    e.kind = (uint8_t)kind;
    e.bytes = bytes;
    e.address = addr;
    if (warmcal_spool_write_event(w, &e, &err))
        fail();
}

static volatile sig_atomic_t got_int, got_term, got_hup;

static void count(int sig)
{
    if (sig == SIGINT)
        got_int++;
    else if (sig == SIGTERM)
        got_term++;
    else
        got_hup++;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int count_signals(const char *file)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    char ready[4200];
    snprintf(ready, sizeof ready, "%s.ready", file);
    FILE *r = fopen(ready, "w");
    if (!r || fclose(r) != 0)
        return 1;
    for (int i = 0; i < 6000 && !(got_int || got_term || got_hup); i++)
        sleep_ms(10);
    sleep_ms(1000); /* room for a second copy to arrive */
    int fg = isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) == getpgrp();
    FILE *f = fopen(file, "w");
    if (!f)
        return 1;
    fprintf(f, "%d %d %d %d\n", (int)got_int, (int)got_term, (int)got_hup, fg);
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "count-signals") == 0)
        return count_signals(argv[2]);
    if (argc != 3 && argc != 5) {
        fprintf(stderr, "usage: make_spool SCENARIO RANK [PATH SESSION]\n");
        return 2;
    }
    const char *scenario = argv[1], *rank = argv[2];
    char path[4096], pid[32];
    const char *session = argc == 5 ? argv[4] : getenv("WARMCAL_SESSION");
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    if (argc == 5)
        snprintf(path, sizeof path, "%s", argv[3]);
    else
        snprintf(path, sizeof path, "%s/rank-%s.%s.spool", getenv("WARMCAL_OUT"), rank, pid);
    if (warmcal_spool_writer_open(&w, path, &err))
        fail();
    const char *model = getenv("WARMCAL_MODEL"), *world = getenv("MAKE_SPOOL_WORLD");
    const char *from = getenv("MAKE_SPOOL_RANK_FROM");
    const char *info[][2] = {{"session", session ? session : ""}, {"pid", pid}, {"rank", rank},
                             {"world_size", world ? world : "4"}, {"rank_from", from ? from : ""},
                             {"model", model ? model : "spool-model"},
                             {"gpu_name", "Fake GPU"}, {"gpu_total_bytes", "1073741824"}};
    for (size_t i = 0; i < sizeof info / sizeof info[0]; i++)
        if (info[i][1][0] && warmcal_spool_write_info(w, info[i][0], info[i][1], &err))
            fail();
    ev(10, WARMCAL_EV_DEVICE_FREE, 1000 * MIB, 0);
    if (strcmp(scenario, "idle") != 0) {
        if (warmcal_spool_write_phase_begin(w, 100, "context", 256, 1, &err))
            fail();
        ev(110, WARMCAL_EV_ALLOC, 64 * MIB, 0x1000);
        ev(120, WARMCAL_EV_FREE, 0, 0x1000);
        if (warmcal_spool_write_phase_end(w, 200, &err))
            fail();
        if (warmcal_spool_write_phase_begin(w, 300, "context", 512, 1, &err))
            fail();
        ev(310, WARMCAL_EV_ALLOC, 128 * MIB, 0x2000);
        if (strcmp(scenario, "killed") != 0) {
            ev(320, WARMCAL_EV_FREE, 0, 0x2000);
            if (warmcal_spool_write_phase_end(w, 400, &err))
                fail();
        }
    }
    if (strcmp(scenario, "killed") != 0 && warmcal_spool_write_exit(w, 500, &err))
        fail();
    if (warmcal_spool_writer_close(w, &err))
        fail();
    return 0;
}

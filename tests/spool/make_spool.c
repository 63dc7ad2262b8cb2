/* Writes a spool as the injected library would, for `warmcal profile` tests
 * that need no CUDA: run as the profiled command (it reads WARMCAL_OUT and
 * WARMCAL_SESSION) or with a path and session given.
 *
 * usage: make_spool SCENARIO RANK [PATH SESSION]
 *   SCENARIO: ok (two phases, normal exit), killed (ends inside phase
 *   "context"), idle (no phase). The pid written is this process's. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(int argc, char **argv)
{
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
    const char *model = getenv("WARMCAL_MODEL");
    const char *info[][2] = {{"session", session ? session : ""}, {"pid", pid}, {"rank", rank},
                             {"world_size", "4"}, {"model", model ? model : "spool-model"},
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

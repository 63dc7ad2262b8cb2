/* Rank and world size from launchers' environments (inject.h,
 * launcher_env.c): each launcher's variables, their precedence, a size
 * taken from a launcher that agrees on the rank, and strictly checked
 * numbers. The test sets its own environment; it starts from none of the
 * variables set. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/launcher.h"

#include "warmcal/error.h"

#include "../check.h"

#include <stdlib.h>
#include <string.h>

static const char *const all_vars[] = {
    "WARMCAL_RANK", "WARMCAL_WORLD_SIZE", "RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID", "SLURM_NTASKS",
};

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof all_vars / sizeof all_vars[0]; i++)
        unsetenv(all_vars[i]);
}

typedef struct {
    int rc, rank, size;
    const char *from;
    char msg[256];
} result;

static result run(void)
{
    result r;
    r.rc = warmcal_launcher_rank(NULL, NULL, &r.rank, &r.size, &r.from, r.msg, sizeof r.msg);
    return r;
}

static void no_launcher_gives_rank_0_of_1_from_none(void)
{
    clear_env();
    result r = run();
    CHECK(r.rc == 0);
    CHECK(r.rank == 0 && r.size == 1);
    CHECK(strcmp(r.from, "none") == 0);
    CHECK(r.msg[0] == '\0');
}

static void each_launcher_gives_its_rank_and_size(void)
{
    static const struct {
        const char *rank_var, *size_var;
    } launchers[] = {
        {"WARMCAL_RANK", "WARMCAL_WORLD_SIZE"}, {"RANK", "WORLD_SIZE"},
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"}, {"PMI_RANK", "PMI_SIZE"},
        {"SLURM_PROCID", "SLURM_NTASKS"},
    };
    for (size_t i = 0; i < sizeof launchers / sizeof launchers[0]; i++) {
        clear_env();
        setenv(launchers[i].rank_var, "3", 1);
        setenv(launchers[i].size_var, "8", 1);
        result r = run();
        CHECK(r.rc == 0);
        CHECK(r.rank == 3 && r.size == 8);
        CHECK(strcmp(r.from, launchers[i].rank_var) == 0);
        CHECK(r.msg[0] == '\0');
    }
}

static void launchers_are_read_in_order_of_precedence(void)
{
    clear_env();
    setenv("SLURM_PROCID", "1", 1), setenv("SLURM_NTASKS", "2", 1);
    setenv("PMI_RANK", "2", 1), setenv("PMI_SIZE", "3", 1);
    setenv("OMPI_COMM_WORLD_RANK", "3", 1), setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    setenv("RANK", "4", 1), setenv("WORLD_SIZE", "5", 1);
    result r = run();
    CHECK(r.rc == 0 && r.rank == 4 && r.size == 5 && strcmp(r.from, "RANK") == 0);
    setenv("WARMCAL_RANK", "5", 1), setenv("WARMCAL_WORLD_SIZE", "6", 1);
    r = run();
    CHECK(r.rc == 0 && r.rank == 5 && r.size == 6 && strcmp(r.from, "WARMCAL_RANK") == 0);
    unsetenv("WARMCAL_RANK"), unsetenv("WARMCAL_WORLD_SIZE"), unsetenv("RANK");
    unsetenv("WORLD_SIZE");
    r = run();
    CHECK(r.rc == 0 && r.rank == 3 && r.size == 4 &&
          strcmp(r.from, "OMPI_COMM_WORLD_RANK") == 0);
    /* an empty variable counts as unset */
    setenv("OMPI_COMM_WORLD_RANK", "", 1);
    r = run();
    CHECK(r.rc == 0 && r.rank == 2 && r.size == 3 && strcmp(r.from, "PMI_RANK") == 0);
}

static void a_rank_without_size_takes_it_from_a_launcher_that_agrees(void)
{
    clear_env();
    setenv("PMIX_RANK", "2", 1);
    setenv("SLURM_PROCID", "2", 1), setenv("SLURM_NTASKS", "4", 1);
    result r = run();
    CHECK(r.rc == 0 && r.rank == 2 && r.size == 4 && strcmp(r.from, "PMIX_RANK") == 0);
    CHECK(r.msg[0] == '\0');
    /* a launcher with another rank describes another job: not used */
    setenv("SLURM_PROCID", "0", 1);
    r = run();
    CHECK(r.rc == 0 && r.rank == 2 && r.size == 3);
    CHECK_STR_CONTAINS(r.msg, "PMIX_RANK=2");
    CHECK_STR_CONTAINS(r.msg, "rank + 1");
}

static void an_unknown_size_is_rank_plus_one_with_a_note(void)
{
    clear_env();
    setenv("WARMCAL_RANK", "6", 1);
    result r = run();
    CHECK(r.rc == 0 && r.rank == 6 && r.size == 7 && strcmp(r.from, "WARMCAL_RANK") == 0);
    CHECK_STR_CONTAINS(r.msg, "world size");
    /* the override's size comes from a launcher that agrees on the rank */
    setenv("RANK", "6", 1), setenv("WORLD_SIZE", "16", 1);
    r = run();
    CHECK(r.rc == 0 && r.rank == 6 && r.size == 16 && r.msg[0] == '\0');
}

static void bad_numbers_are_refused_with_the_variable_named(void)
{
    static const char *const bad[] = {"-1", "+1", " 1", "1 ", "1x", "0x1", "2147483648",
                                      "99999999999999999999", "one"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        clear_env();
        setenv("OMPI_COMM_WORLD_RANK", bad[i], 1);
        setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
        result r = run();
        CHECK(r.rc == WARMCAL_E_FIELD);
        CHECK_STR_CONTAINS(r.msg, "OMPI_COMM_WORLD_RANK");
        CHECK(r.rank == 0 && r.size == 1 && strcmp(r.from, "none") == 0);
        clear_env();
        setenv("SLURM_PROCID", "0", 1);
        setenv("SLURM_NTASKS", bad[i], 1);
        r = run();
        CHECK(r.rc == WARMCAL_E_FIELD);
        CHECK_STR_CONTAINS(r.msg, "SLURM_NTASKS");
    }
    clear_env();
    setenv("RANK", "0", 1), setenv("WORLD_SIZE", "0", 1);
    result r = run();
    CHECK(r.rc == WARMCAL_E_FIELD);
    CHECK_STR_CONTAINS(r.msg, "WORLD_SIZE=0");
    /* the largest rank has no room for a size */
    clear_env();
    setenv("PMIX_RANK", "2147483647", 1);
    r = run();
    CHECK(r.rc == WARMCAL_E_FIELD);
    /* leading zeros are digits too */
    clear_env();
    setenv("RANK", "007", 1), setenv("WORLD_SIZE", "010", 1);
    r = run();
    CHECK(r.rc == 0 && r.rank == 7 && r.size == 10);
}

static void a_rank_not_below_the_size_is_refused(void)
{
    clear_env();
    setenv("RANK", "4", 1), setenv("WORLD_SIZE", "4", 1);
    result r = run();
    CHECK(r.rc == WARMCAL_E_FIELD);
    CHECK_STR_CONTAINS(r.msg, "RANK=4 is not below WORLD_SIZE=4");
}

static void a_world_size_override_without_rank_is_refused(void)
{
    clear_env();
    setenv("WARMCAL_WORLD_SIZE", "4", 1);
    setenv("RANK", "1", 1), setenv("WORLD_SIZE", "4", 1);
    result r = run();
    CHECK(r.rc == WARMCAL_E_FIELD);
    CHECK_STR_CONTAINS(r.msg, "WARMCAL_WORLD_SIZE");
    CHECK(r.rank == 0 && r.size == 1);
}

int main(void)
{
    RUN(no_launcher_gives_rank_0_of_1_from_none);
    RUN(each_launcher_gives_its_rank_and_size);
    RUN(launchers_are_read_in_order_of_precedence);
    RUN(a_rank_without_size_takes_it_from_a_launcher_that_agrees);
    RUN(an_unknown_size_is_rank_plus_one_with_a_note);
    RUN(bad_numbers_are_refused_with_the_variable_named);
    RUN(a_rank_not_below_the_size_is_refused);
    RUN(a_world_size_override_without_rank_is_refused);
    clear_env();
    CHECK_DONE();
}

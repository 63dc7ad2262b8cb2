/* `warmcal profile [OPTIONS] -- CMD [ARGS...]`: runs CMD with the CUPTI
 * injection library loaded by the CUDA driver (and by NVTX), forwards
 * signals and the exit status like `nsys profile`, then turns the spools the
 * run left into one trace per rank. `--convert DIR` does only the last step. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"
#include "warmcal/spool.h"

#define DEFAULT_OUT "warmcal-traces"
#define INJECT_NAME "libwarmcal-inject.so"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: warmcal profile [--out DIR] [--model M] [--device N] [--events]\n"
            "                       [--keep-spool] -- CMD [ARGS...]\n"
            "       warmcal profile --convert DIR [--model M] [--events] [--keep-spool]\n\n"
            "Run CMD with warmcal's CUPTI profiler injected (no change to CMD), then write\n"
            "one trace per rank, DIR/rank-<R>.h5, from the spools the run left in DIR.\n"
            "Phases are NVTX ranges named 'warmcal tokens=N batch=B label=L'. Signals are\n"
            "passed to CMD; the exit status is CMD's (128+N when a signal N ended it; 2 when\n"
            "CMD succeeded but a trace could not be written).\n\n"
            "  --out DIR      where spools and traces go (default %s; created)\n"
            "  --model M      the model name written in the traces\n"
            "  --device N     the CUDA device to record (default: the first one used)\n"
            "  --events       write each trace's /events timeline too\n"
            "  --keep-spool   keep the spools once converted\n"
            "  --convert DIR  only convert the spools in DIR (runs set up by hand)\n\n"
            "The injection library is $WARMCAL_INJECT_LIB, else ../lib/%s beside\n"
            "this program, else the one of the build tree.\n",
            DEFAULT_OUT, INJECT_NAME);
}

typedef struct {
    const char *out, *convert, *model, *device;
    int events, keep_spool;
    char **cmd;
} options;

/* --- the injection library ------------------------------------------------ */

static int is_regular(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0;
}

/* The injection library's absolute path, malloc'd, or NULL with a message. */
static char *find_inject_lib(void)
{
    const char *env = getenv("WARMCAL_INJECT_LIB");
    if (env && env[0]) {
        char *real = is_regular(env) ? realpath(env, NULL) : NULL;
        if (!real)
            fprintf(stderr, "warmcal profile: WARMCAL_INJECT_LIB=%s: not a readable file\n", env);
        return real;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            char installed[PATH_MAX + 32];
            *slash = '\0';
            snprintf(installed, sizeof installed, "%s/../lib/%s", exe, INJECT_NAME);
            if (is_regular(installed))
                return realpath(installed, NULL);
        }
    }
#ifdef WARMCAL_INJECT_BUILD_PATH
    if (is_regular(WARMCAL_INJECT_BUILD_PATH))
        return realpath(WARMCAL_INJECT_BUILD_PATH, NULL);
    fprintf(stderr,
            "warmcal profile: cannot find %s (set WARMCAL_INJECT_LIB, or build the target "
            "warmcal-inject)\n",
            INJECT_NAME);
#else
    fprintf(stderr, "warmcal profile: this build of warmcal has no CUPTI support (the CUDA "
                    "toolkit was not found when it was configured); set WARMCAL_INJECT_LIB to "
                    "an installed %s\n",
            INJECT_NAME);
#endif
    return NULL;
}

/* --- signals --------------------------------------------------------------- */

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
#define N_FORWARDED (sizeof forwarded / sizeof forwarded[0])

static volatile sig_atomic_t child_pid = 0;

/* A signal for warmcal profile is meant for the command. One the kernel
 * sent to the whole process group (Ctrl-C, a terminal hang-up) has reached
 * the command already and is not sent twice. */
static void forward(int sig, siginfo_t *info, void *context)
{
    (void)context;
    if (info && info->si_code == SI_KERNEL)
        return;
    int saved = errno;
    if (child_pid > 0)
        kill((pid_t)child_pid, sig);
    errno = saved;
}

static int install_forwarding(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = forward;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_FORWARDED; i++)
        if (sigaction(forwarded[i], &sa, NULL) != 0)
            return -1;
    return 0;
}

/* --- running the command --------------------------------------------------- */

static int set_env(const char *name, const char *value)
{
    if (setenv(name, value, 1) != 0) {
        fprintf(stderr, "warmcal profile: cannot set %s: %s\n", name, strerror(errno));
        return -1;
    }
    return 0;
}

/* Start cmd and wait for it; returns its exit status as a shell gives it
 * (128+N when killed by signal N), or -1 when it could not be started. */
static int run_command(char **cmd)
{
    sigset_t block, old;
    sigemptyset(&block);
    for (size_t i = 0; i < N_FORWARDED; i++)
        sigaddset(&block, forwarded[i]);
    /* Blocked across fork: a signal that arrives before the child's pid is
     * known waits, and is forwarded once it is. */
    sigprocmask(SIG_BLOCK, &block, &old);
    if (install_forwarding() != 0) {
        fprintf(stderr, "warmcal profile: cannot forward signals: %s\n", strerror(errno));
        sigprocmask(SIG_SETMASK, &old, NULL);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "warmcal profile: cannot start '%s': %s\n", cmd[0], strerror(errno));
        sigprocmask(SIG_SETMASK, &old, NULL);
        return -1;
    }
    if (pid == 0) {
        for (size_t i = 0; i < N_FORWARDED; i++)
            signal(forwarded[i], SIG_DFL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvp(cmd[0], cmd);
        int e = errno;
        /* as a shell says it: 127 not found, 126 found but not runnable */
        if (e == ENOENT)
            fprintf(stderr, "warmcal profile: %s: command not found\n", cmd[0]);
        else
            fprintf(stderr, "warmcal profile: %s: cannot run: %s\n", cmd[0], strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }
    child_pid = pid;
    sigprocmask(SIG_SETMASK, &old, NULL);
    int status;
    pid_t got;
    do {
        got = waitpid(pid, &status, 0);
    } while (got < 0 && errno == EINTR);
    child_pid = 0;
    if (got < 0) {
        fprintf(stderr, "warmcal profile: cannot wait for '%s': %s\n", cmd[0], strerror(errno));
        return -1;
    }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* --- converting ------------------------------------------------------------ */

static void print_error(const warmcal_error *err)
{
    char msg[WARMCAL_ERROR_SOURCE_LEN + WARMCAL_ERROR_WHERE_LEN + WARMCAL_ERROR_TEXT_LEN];
    fprintf(stderr, "warmcal profile: %s\n", warmcal_error_format(err, msg, sizeof msg));
}

static void print_report(const warmcal_spool_job *j, const warmcal_spool_convert_report *r)
{
    if (!r->trace_written) {
        fprintf(stderr,
                "warmcal profile: rank %d (pid %ld): no phase recorded, no trace written (phases "
                "are NVTX ranges named 'warmcal tokens=N ...')\n",
                j->rank, j->pid);
    } else {
        fprintf(stderr,
                "warmcal profile: rank %d: %s: %zu phase%s, %zu lower-bound, %" PRIu64
                " dropped records",
                r->rank, j->trace_path, r->phases, r->phases == 1 ? "" : "s",
                r->lower_bound_phases, r->dropped_records);
        if (r->ended_in_phase)
            fprintf(stderr, "; process %s inside phase '%s' (tokens %" PRIu64 "), kept as aborted",
                    r->exited_normally ? "exited" : "killed", r->ended_label, r->ended_tokens);
        fputc('\n', stderr);
    }
    if (r->truncated_bytes)
        fprintf(stderr, "warmcal profile: rank %d: the spool's last %zu bytes were cut short "
                        "(the process was killed while writing) and were left out\n",
                j->rank, r->truncated_bytes);
}

/* Convert the listed spools; returns the number of failures. */
static int convert_all(const char *dir, const char *session, const options *o)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_spool_job *jobs = NULL;
    size_t n = 0;
    if (warmcal_spool_list(dir, session, &jobs, &n, &err) != 0) {
        print_error(&err);
        return 1;
    }
    int failures = 0;
    if (n == 0 && session)
        fprintf(stderr,
                "warmcal profile: no spool from this run in %s (was the command a CUDA program? "
                "the injected library says why it stopped, if it did)\n",
                dir);
    else if (n == 0) {
        fprintf(stderr, "warmcal profile: no spool (*.spool) to convert in %s\n", dir);
        failures = 1;
    }
    warmcal_spool_convert_options copts = {.model = o->model, .with_events = o->events};
    for (size_t i = 0; i < n; i++) {
        warmcal_spool_job *j = &jobs[i];
        if (j->rc) {
            /* its session is unknown: most likely this run's, and never
             * passed over in silence */
            print_error(&j->err);
            failures++;
            continue;
        }
        if (j->same_rank)
            fprintf(stderr, "warmcal profile: warning: several spools of rank %d: %s is named by "
                            "its pid\n",
                    j->rank, j->trace_path);
        warmcal_spool_convert_report rep;
        warmcal_error_clear(&err);
        if (warmcal_spool_convert(j->spool_path, j->trace_path, &copts, &rep, &err) != 0) {
            print_error(&err);
            failures++;
            continue;
        }
        print_report(j, &rep);
        if (!o->keep_spool && unlink(j->spool_path) != 0)
            fprintf(stderr, "warmcal profile: warning: cannot remove %s: %s\n", j->spool_path,
                    strerror(errno));
    }
    warmcal_spool_jobs_free(jobs, n);
    return failures;
}

/* --- command --------------------------------------------------------------- */

/* "--name VALUE" or "--name=VALUE"; advances *i past what it used. */
static int option_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *value = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "warmcal profile: %s needs a value\n\n", name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

static int parse(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int got = 0;
        if (strcmp(a, "--") == 0) {
            o->cmd = argv + i + 1;
            if (i + 1 >= argc) {
                fprintf(stderr, "warmcal profile: no command after '--'\n\n");
                return -1;
            }
            break;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            return 1;
        } else if (strcmp(a, "--events") == 0) {
            o->events = 1;
        } else if (strcmp(a, "--keep-spool") == 0) {
            o->keep_spool = 1;
        } else if ((got = option_value(argc, argv, &i, "--out", &o->out)) ||
                   (got = option_value(argc, argv, &i, "--model", &o->model)) ||
                   (got = option_value(argc, argv, &i, "--device", &o->device)) ||
                   (got = option_value(argc, argv, &i, "--convert", &o->convert))) {
            if (got < 0)
                return -1;
        } else if (a[0] == '-') {
            fprintf(stderr, "warmcal profile: unknown option '%s'\n\n", a);
            return -1;
        } else {
            /* nsys-like: the command may follow the options without '--' */
            o->cmd = argv + i;
            break;
        }
    }
    if (o->convert && (o->cmd || o->out || o->device)) {
        fprintf(stderr, "warmcal profile: --convert takes no command, --out or --device\n\n");
        return -1;
    }
    if (!o->convert && !o->cmd) {
        fprintf(stderr, "warmcal profile: no command given\n\n");
        return -1;
    }
    if (o->model && !o->model[0]) {
        fprintf(stderr, "warmcal profile: --model is empty\n\n");
        return -1;
    }
    if (o->device) {
        char *end;
        errno = 0;
        long d = strtol(o->device, &end, 10);
        if (errno || end == o->device || *end || d < 0 || d > INT_MAX) {
            fprintf(stderr, "warmcal profile: --device: expected a device number, found '%s'\n\n",
                    o->device);
            return -1;
        }
    }
    return 0;
}

int warmcal_cmd_profile(int argc, char **argv)
{
    options o;
    int p = parse(argc, argv, &o);
    if (p != 0) {
        usage(p > 0 ? stdout : stderr);
        return p > 0 ? WARMCAL_EXIT_OK : WARMCAL_EXIT_USAGE;
    }
    if (o.convert) {
        char *dir = realpath(o.convert, NULL);
        if (!dir) {
            fprintf(stderr, "warmcal profile: %s: %s\n", o.convert, strerror(errno));
            return WARMCAL_EXIT_USAGE;
        }
        int failures = convert_all(dir, NULL, &o);
        free(dir);
        return failures ? WARMCAL_EXIT_USAGE : WARMCAL_EXIT_OK;
    }

    warmcal_error err;
    warmcal_error_clear(&err);
    char *dir = NULL, *lib = NULL, session[WARMCAL_SPOOL_SESSION_LEN];
    if (warmcal_spool_prepare_dir(o.out ? o.out : DEFAULT_OUT, &dir, &err) != 0 ||
        warmcal_spool_new_session(session, sizeof session, &err) != 0) {
        print_error(&err);
        free(dir);
        return WARMCAL_EXIT_USAGE;
    }
    if (!(lib = find_inject_lib()) || set_env("CUDA_INJECTION64_PATH", lib) ||
        set_env("NVTX_INJECTION64_PATH", lib) || set_env("WARMCAL_OUT", dir) ||
        set_env("WARMCAL_SESSION", session) || (o.model && set_env("WARMCAL_MODEL", o.model)) ||
        (o.device && set_env("WARMCAL_DEVICE", o.device))) {
        free(lib);
        free(dir);
        return WARMCAL_EXIT_USAGE;
    }
    free(lib);
    int status = run_command(o.cmd);
    if (status < 0) {
        free(dir);
        return WARMCAL_EXIT_USAGE;
    }
    int failures = convert_all(dir, session, &o);
    free(dir);
    if (failures && status == 0) {
        fprintf(stderr, "warmcal profile: the command succeeded but %d spool%s could not be "
                        "converted (above); exit status 2\n",
                failures, failures == 1 ? "" : "s");
        return WARMCAL_EXIT_USAGE;
    }
    return status;
}

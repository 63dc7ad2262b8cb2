/* `warmcal profile [OPTIONS] -- CMD [ARGS...]`: runs CMD with the CUPTI
 * injection library loaded by the CUDA driver (and by NVTX), forwards
 * signals and the exit status like `nsys profile`, then turns the spools the
 * run left into one trace per rank. `--convert DIR` does only the last step. */
#define _GNU_SOURCE /* realpath, strsignal */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "commands.h"
#include "install_paths.h"
#include "warmcal/spool.h"

#define DEFAULT_OUT "warmcal-traces"
/* the run-time name: a runtime-only install has no development link */
#define INJECT_NAME "libwarmcal-inject.so." WARMCAL_SOVERSION

static void usage(FILE *out)
{
    fprintf(out,
            "usage: warmcal profile [--out DIR] [--model M] [--device N] [--events]\n"
            "                       [--keep-spool] -- CMD [ARGS...]\n"
            "       warmcal profile --convert DIR [--model M] [--events] [--keep-spool]\n\n"
            "Run CMD with warmcal's CUPTI profiler injected (no change to CMD), then write\n"
            "one trace per rank, DIR/rank-<R>.h5, from the spools the run left in DIR.\n"
            "Phases are NVTX ranges named 'warmcal tokens=N batch=B label=L'. CMD runs in\n"
            "its own process group (with the terminal); signals sent to warmcal profile are\n"
            "passed to it once. The exit status is CMD's (128+N when a signal N ended it,\n"
            "and SIGINT is passed on as SIGINT; 2 when CMD succeeded but a trace could not\n"
            "be written). A signal during the conversion stops it (exit 128+N).\n\n"
            "  --out DIR      where spools and traces go (default %s; created)\n"
            "  --model M      the model name written in the traces\n"
            "  --device N     the CUDA device to record (default: the first one used)\n"
            "  --events       write each trace's /events timeline too\n"
            "  --keep-spool   keep the spools once converted\n"
            "  --convert DIR  only convert the spools in DIR (runs set up by hand)\n\n"
            "The injection library is $WARMCAL_INJECT_LIB, else ../lib/%s beside\n"
            "this program, else the one of the build tree. Bad arguments: exit 2.\n\n"
            "examples:\n"
            "  mpirun -np 4 warmcal profile --out traces/ -- python3 serve.py --tp 4\n"
            "  warmcal profile --out traces/ --model my-model --device 0 -- ./warmup --tokens 4096\n"
            "  warmcal profile --convert traces/ --model my-model\n",
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
    /* installed: PREFIX/lib/libwarmcal-inject.so beside PREFIX/bin/warmcal;
     * then the build tree's, relative to the build tree's command */
    static const char *const beside[] = {
        WARMCAL_INSTALL_LIBDIR_REL "/" INJECT_NAME,
#ifdef WARMCAL_INJECT_BUILD_PATH
        WARMCAL_INJECT_BUILD_PATH,
#endif
    };
    char *path = warmcal_beside_exe_first(beside, sizeof beside / sizeof beside[0], is_regular);
    char *real = path ? realpath(path, NULL) : NULL;
    free(path);
    if (real)
        return real;
#ifdef WARMCAL_INJECT_BUILD_PATH
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

/* The command runs in a process group of its own, and warmcal profile
 * stands in for it in the caller's group: a signal for the whole group
 * (kill -- -PGID, a launcher's group kill) reaches warmcal profile alone and
 * is passed on once, to the command's group. At a terminal the command's
 * group is made the foreground one, so Ctrl-C, Ctrl-\ and Ctrl-Z reach the
 * command straight from the terminal, once, and never warmcal profile.
 * When it is not (input not the terminal, or after bg and fg), Ctrl-Z
 * reaches warmcal profile: SIGTSTP is passed on, and warmcal profile stops
 * once the command has (follow_stop). SIGTSTP and SIGCONT, last here, are
 * taken only while the command runs. */
static const int forwarded[] = {SIGINT,  SIGTERM, SIGHUP,  SIGQUIT,
                                SIGUSR1, SIGUSR2, SIGTSTP, SIGCONT};
#define N_FORWARDED (sizeof forwarded / sizeof forwarded[0])
#define N_JOB_SIGNALS 2 /* SIGTSTP, SIGCONT */

static volatile sig_atomic_t child_pid = 0;   /* > 0: the command, not yet reaped */
static volatile sig_atomic_t handed_tty = 0;  /* the command's group has the terminal */
static volatile sig_atomic_t cancel_sig = 0;  /* after the command: the signal that stops the conversion */
static volatile sig_atomic_t stop_asked = 0;  /* SIGTSTP reached warmcal profile */
static volatile sig_atomic_t following = 0;   /* follow_stop will continue the command itself */
static volatile sig_atomic_t stepd_pid = 0;   /* > 0: the parent is Slurm's slurmstepd */

static void on_signal(int sig, siginfo_t *info, void *context)
{
    (void)context;
    int saved = errno;
    pid_t pid = (pid_t)child_pid;
    if (sig == SIGTSTP)
        stop_asked = 1;
    if (pid > 0) {
        /* a terminal's signal (a hang-up reaching the session leader) has
         * reached the command's foreground group already */
        int from_terminal = handed_tty && info && info->si_code == SI_KERNEL;
        /* slurmstepd (proctrack/cgroup, linuxproc) signals every process of
         * the step one by one: the command has this signal already */
        int from_stepd = stepd_pid > 0 && info && info->si_code <= 0 && info->si_pid == stepd_pid;
        int skip = from_terminal || from_stepd || (sig == SIGCONT && following);
        if (!skip && kill(-pid, sig) != 0)
            kill(pid, sig); /* the command left its group */
    } else if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT) {
        if (!cancel_sig)
            cancel_sig = sig;
    }
    errno = saved;
}

typedef struct {
    struct sigaction orig[N_FORWARDED];
    int installed[N_FORWARDED];
    struct sigaction orig_chld;
} dispositions;

/* Take the first n forwarded signals, except those the caller ignores
 * (nohup's SIGHUP): they stay ignored, here and in the command. */
static int install_handlers(dispositions *d, size_t n)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < n; i++) {
        if (sigaction(forwarded[i], NULL, &d->orig[i]) != 0)
            return -1;
        d->installed[i] = d->orig[i].sa_handler != SIG_IGN;
        if (d->installed[i] && sigaction(forwarded[i], &sa, NULL) != 0)
            return -1;
    }
    return 0;
}

static sigset_t forwarded_set(void)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < N_FORWARDED; i++)
        sigaddset(&set, forwarded[i]);
    return set;
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

/* Give the terminal to process group pgrp; SIGTTOU is blocked meanwhile
 * (a background process that changes the terminal's group is sent it).
 * Returns tcsetpgrp's result. */
static int give_terminal(int tty, pid_t pgrp)
{
    sigset_t ttou, old;
    sigemptyset(&ttou);
    sigaddset(&ttou, SIGTTOU);
    sigprocmask(SIG_BLOCK, &ttou, &old);
    int rc = tcsetpgrp(tty, pgrp);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Under srun, warmcal profile's parent is slurmstepd, which signals every
 * process of the step (proctrack/cgroup): its pid, or 0. Only the parent
 * named slurmstepd counts: mpirun's daemons, started by srun inside an
 * allocation, have the same variables but signal their children only. */
static pid_t slurmstepd_parent(void)
{
    if (!getenv("SLURM_STEP_ID") && !getenv("SLURM_JOB_ID"))
        return 0;
    pid_t ppid = getppid();
    char path[64], name[32] = "";
    snprintf(path, sizeof path, "/proc/%ld/comm", (long)ppid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (!fgets(name, sizeof name, f))
        name[0] = '\0';
    fclose(f);
    name[strcspn(name, "\n")] = '\0';
    return strcmp(name, "slurmstepd") == 0 ? ppid : 0;
}

/* In the forked child: its own process group (and the terminal, when
 * warmcal profile had it), the caller's signal dispositions and mask, then
 * the command. */
static void exec_child(char **cmd, const dispositions *d, const sigset_t *old_mask, int tty,
                       pid_t parent, int exec_errno_fd)
{
    setpgid(0, 0);
    if (tty >= 0)
        give_terminal(tty, getpid());
#ifdef __linux__
    /* warmcal profile killed (SIGKILL: it catches the rest): the command
     * goes too, as it would have in a shared process group */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        raise(SIGKILL);
#else
    (void)parent;
#endif
    for (size_t i = 0; i < N_FORWARDED; i++)
        signal(forwarded[i], d->installed[i] ? SIG_DFL : SIG_IGN);
    sigaction(SIGCHLD, &d->orig_chld, NULL);
    sigprocmask(SIG_SETMASK, old_mask, NULL);
    execvp(cmd[0], cmd);
    int e = errno;
    /* tells warmcal profile that the command never ran (the pipe closes
     * unwritten on a successful exec) */
    ssize_t told = write(exec_errno_fd, &e, sizeof e);
    (void)told;
    /* as a shell says it: 127 not found, 126 found but not runnable */
    if (e == ENOENT)
        fprintf(stderr, "warmcal profile: %s: command not found\n", cmd[0]);
    else
        fprintf(stderr, "warmcal profile: %s: cannot run: %s\n", cmd[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
}

/* Stop warmcal profile with sig, its default action (our SIGTSTP handler
 * would pass it on again), and return once continued. An orphaned process
 * group discards SIGTSTP, SIGTTIN and SIGTTOU: it returns at once then. */
static void stop_self(int sig)
{
    struct sigaction dfl, orig;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    int swapped = sig != SIGSTOP && sigaction(sig, &dfl, &orig) == 0;
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, &old);
    raise(sig);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (swapped)
        sigaction(sig, &orig, NULL);
}

/* The command stopped (Ctrl-Z, a read from the terminal in the background,
 * or the SIGTSTP warmcal profile passed on): stop warmcal profile the same
 * way, so that the shell sees the job stopped, and when continued, continue
 * the command (with the terminal again if the job is in the foreground).
 * tty < 0 (no terminal): warmcal profile stops with SIGSTOP. */
static void follow_stop(int tty, pid_t pid, int stop_sig)
{
    /* bash's fg of a running job (after bg) gives the terminal to
     * warmcal profile's group and sends no SIGCONT: the command learns it
     * only when it reads or sets the terminal. The job is in the
     * foreground: hand the terminal on, and the command goes on. */
    if (tty >= 0 && (stop_sig == SIGTTIN || stop_sig == SIGTTOU) && tcgetpgrp(tty) == getpgrp() &&
        give_terminal(tty, pid) == 0) {
        handed_tty = 1;
        stop_asked = 0;
        if (kill(-pid, SIGCONT) != 0)
            kill(pid, SIGCONT);
        return;
    }
    following = 1;
    if (handed_tty) {
        give_terminal(tty, getpgrp());
        handed_tty = 0;
    }
    int own = tty < 0 ? SIGSTOP
              : (stop_sig == SIGTSTP || stop_sig == SIGTTIN || stop_sig == SIGTTOU) ? stop_sig
                                                                                  : SIGTSTP;
    stop_self(own);
    stop_asked = 0;
    if (tty >= 0 && tcgetpgrp(tty) == getpgrp() && give_terminal(tty, pid) == 0)
        handed_tty = 1;
    if (kill(-pid, SIGCONT) != 0)
        kill(pid, SIGCONT);
    following = 0;
}

/* The caller's SIGTSTP and SIGCONT back, once the command is reaped: a
 * Ctrl-Z during the conversion stops warmcal profile as usual. */
static void restore_job_signals(const dispositions *d)
{
    for (size_t i = N_FORWARDED - N_JOB_SIGNALS; i < N_FORWARDED; i++)
        if (d->installed[i])
            sigaction(forwarded[i], &d->orig[i], NULL);
}

/* Start cmd and wait for it; returns its exit status as a shell gives it
 * (128+N when killed by signal N, with *killed_by = N; 127 or 126 with
 * *not_run set when it could not be executed), or -1 when it could not be
 * started or waited for. */
static int run_command(char **cmd, int *killed_by, int *not_run)
{
    *killed_by = 0;
    *not_run = 0;
    dispositions d;
    memset(&d, 0, sizeof d);
    sigset_t block = forwarded_set(), old;
    /* Blocked across fork: a signal that arrives before the child's pid is
     * known waits, and is forwarded once it is. */
    sigprocmask(SIG_BLOCK, &block, &old);
    /* an ignored SIGCHLD would make the kernel reap the command itself:
     * waitpid would never see it (the command gets the caller's back) */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    stepd_pid = slurmstepd_parent();
    if (sigaction(SIGCHLD, &dfl, &d.orig_chld) != 0 || install_handlers(&d, N_FORWARDED) != 0) {
        fprintf(stderr, "warmcal profile: cannot forward signals: %s\n", strerror(errno));
        sigprocmask(SIG_SETMASK, &old, NULL);
        return -1;
    }
    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
        fprintf(stderr, "warmcal profile: cannot start '%s': %s\n", cmd[0], strerror(errno));
        restore_job_signals(&d);
        sigprocmask(SIG_SETMASK, &old, NULL);
        return -1;
    }
    /* The terminal goes to the command when warmcal profile is in its
     * foreground with it as input: an interactive command. A background
     * job, or one whose input is a file or /dev/null (a script's `&`), keeps
     * its place; terminal signals then reach warmcal profile, which passes
     * them on. */
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    int job_control = tty >= 0 && isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) == getpgrp() &&
                      tcgetpgrp(tty) == getpgrp();
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "warmcal profile: cannot start '%s': %s\n", cmd[0], strerror(errno));
        restore_job_signals(&d);
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (tty >= 0)
            close(tty);
        close(exec_pipe[0]);
        close(exec_pipe[1]);
        return -1;
    }
    if (pid == 0) {
        close(exec_pipe[0]);
        exec_child(cmd, &d, &old, job_control ? tty : -1, parent, exec_pipe[1]);
    }
    close(exec_pipe[1]);
    /* both sides set the group and the terminal: whichever runs first */
    setpgid(pid, pid);
    if (job_control) {
        give_terminal(tty, pid);
        handed_tty = 1;
    }
    child_pid = pid;
    sigprocmask(SIG_SETMASK, &old, NULL);

    int status = 0, rc = 0;
    for (;;) {
        /* WNOWAIT: the command stays a zombie until child_pid is cleared,
         * so a signal forwarded meanwhile never reaches a reused pid */
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WSTOPPED | WNOWAIT) != 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "warmcal profile: cannot wait for '%s': %s\n", cmd[0], strerror(errno));
            rc = -1;
            break;
        }
        if (si.si_code == CLD_STOPPED) {
            siginfo_t consumed;
            memset(&consumed, 0, sizeof consumed);
            while (waitid(P_PID, (id_t)pid, &consumed, WSTOPPED) != 0 && errno == EINTR)
                ;
            int sig = si.si_status;
            if ((tty >= 0 && (sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)) || stop_asked)
                follow_stop(tty, pid, sig);
            continue;
        }
        sigprocmask(SIG_BLOCK, &block, &old);
        child_pid = 0;
        restore_job_signals(&d);
        sigprocmask(SIG_SETMASK, &old, NULL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        break;
    }
    if (rc < 0) {
        sigprocmask(SIG_BLOCK, &block, &old);
        child_pid = 0;
        restore_job_signals(&d);
        sigprocmask(SIG_SETMASK, &old, NULL);
    }
    if (rc == 0) {
        /* the command has exited: its end of the pipe is closed */
        int exec_errno = 0;
        ssize_t got;
        while ((got = read(exec_pipe[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR)
            ;
        *not_run = got == (ssize_t)sizeof exec_errno;
    }
    close(exec_pipe[0]);
    if (handed_tty) {
        give_terminal(tty, getpgrp());
        handed_tty = 0;
    }
    if (tty >= 0)
        close(tty);
    if (rc < 0)
        return -1;
    if (WIFSIGNALED(status)) {
        *killed_by = WTERMSIG(status);
        return 128 + WTERMSIG(status);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* --- converting ------------------------------------------------------------ */

static void print_error(const warmcal_error *err)
{
    char msg[WARMCAL_ERROR_SOURCE_LEN + WARMCAL_ERROR_WHERE_LEN + WARMCAL_ERROR_TEXT_LEN];
    fprintf(stderr, "warmcal profile: %s\n", warmcal_error_format(err, msg, sizeof msg));
}

static void print_report(const warmcal_spool_job *j, const warmcal_spool_convert_report *r,
                         const char *dir)
{
    if (!r->trace_written) {
        fprintf(stderr,
                "warmcal profile: rank %d (pid %ld): no phase recorded, no trace written (phases "
                "are NVTX ranges named 'warmcal tokens=N ...')\n",
                j->rank, j->pid);
    } else {
        if (r->rank_claimed)
            fprintf(stderr,
                    "warmcal profile: warning: two processes claim rank %d: %s/rank-%d.h5 was "
                    "written during this run by another session (%s) and is kept; this trace is "
                    "%s (give each process its rank: its launcher's variables, or "
                    "WARMCAL_RANK and WARMCAL_WORLD_SIZE)\n",
                    r->rank, dir, r->rank, r->claimed_by_session[0] ? r->claimed_by_session : "none",
                    r->trace_path);
        if (r->other_world_size)
            fprintf(stderr,
                    "warmcal profile: warning: rank %d (pid %ld) found no rank in its environment "
                    "(counted as rank 0 of 1), but other traces in %s are from a run of %d ranks: "
                    "was it started without its launcher's variables?\n",
                    r->rank, r->pid, dir, r->other_world_size);
        fprintf(stderr,
                "warmcal profile: rank %d: %s: %zu phase%s, %zu lower-bound, %" PRIu64
                " dropped records",
                r->rank, r->trace_path, r->phases, r->phases == 1 ? "" : "s",
                r->lower_bound_phases, r->dropped_records);
        if (r->recovered_alloc_failures)
            fprintf(stderr, ", %" PRIu64 " failed allocation%s retried with success",
                    r->recovered_alloc_failures, r->recovered_alloc_failures == 1 ? "" : "s");
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

/* Convert the listed spools; returns the number of failures. A signal
 * (cancel_sig) stops it between and inside conversions. */
static int convert_all(const char *dir, const char *session, uint64_t run_start_ns,
                       const options *o)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_spool_job *jobs = NULL;
    size_t n = 0;
    if (warmcal_spool_list(dir, session, &jobs, &n, &err) != 0) {
        print_error(&err);
        return 1;
    }
    int failures = 0, converted = 0;
    warmcal_spool_convert_options copts = {.model = o->model,
                                           .with_events = o->events,
                                           .run_start_ns = run_start_ns,
                                           .cancel = &cancel_sig};
    for (size_t i = 0; i < n && !cancel_sig; i++) {
        warmcal_spool_job *j = &jobs[i];
        if (j->rc) {
            /* its session unknown: this run's unless it was last written
             * before the run began */
            if (session && j->mtime_ns >= 0 && (uint64_t)j->mtime_ns < run_start_ns) {
                char msg[WARMCAL_ERROR_SOURCE_LEN + WARMCAL_ERROR_WHERE_LEN + WARMCAL_ERROR_TEXT_LEN];
                fprintf(stderr,
                        "warmcal profile: warning: %s: unreadable spool of an earlier run, left as "
                        "it is (%s)\n",
                        j->spool_path, warmcal_error_format(&j->err, msg, sizeof msg));
                continue;
            }
            print_error(&j->err);
            failures++;
            continue;
        }
        converted++;
        if (j->same_rank)
            fprintf(stderr, "warmcal profile: warning: several spools of rank %d: %s is named by "
                            "its pid\n",
                    j->rank, j->trace_path);
        warmcal_spool_convert_report rep;
        warmcal_error_clear(&err);
        if (warmcal_spool_convert(j->spool_path, j->trace_path, &copts, &rep, &err) != 0) {
            if (rep.canceled)
                break;
            print_error(&err);
            failures++;
            continue;
        }
        print_report(j, &rep, dir);
        if (!o->keep_spool && unlink(j->spool_path) != 0)
            fprintf(stderr, "warmcal profile: warning: cannot remove %s: %s\n", j->spool_path,
                    strerror(errno));
    }
    if (!cancel_sig && converted == 0 && failures == 0) {
        if (session)
            fprintf(stderr,
                    "warmcal profile: no spool from this run in %s (was the command a CUDA "
                    "program? the injected library says why it stopped, if it did)\n",
                    dir);
        else {
            fprintf(stderr, "warmcal profile: no spool (*.spool) to convert in %s\n", dir);
            failures = 1;
        }
    }
    warmcal_spool_jobs_free(jobs, n);
    return failures;
}

/* The status for a run whose conversion a signal stopped: the spools not
 * converted are kept, the temporary file is gone. */
static int canceled_status(const char *dir)
{
    int sig = cancel_sig;
    fprintf(stderr,
            "warmcal profile: conversion stopped by signal %d (%s); the spools not converted are "
            "kept: warmcal profile --convert %s\n",
            sig, strsignal(sig), dir);
    return 128 + sig;
}

/* Leave with status, or die of SIGINT when sig (the signal that killed
 * the command, or that stopped the conversion) is SIGINT: a shell running
 * warmcal profile in a loop stops at Ctrl-C only when its command was
 * killed by SIGINT (bash, zsh: "wait and cooperative exit"), and the
 * terminal's Ctrl-C went to the command alone. A command that exits 130 by
 * itself gives 130. Other signals give 128+N, as nsys gives them. */
static int finish(int status, int sig)
{
    if (sig == SIGINT) {
        fflush(NULL);
        signal(SIGINT, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise(SIGINT);
    }
    return status;
}

/* Stop the conversion at SIGINT, SIGTERM, SIGHUP or SIGQUIT (--convert:
 * no command runs). */
static void install_cancel(void)
{
    dispositions d;
    memset(&d, 0, sizeof d);
    (void)install_handlers(&d, N_FORWARDED - N_JOB_SIGNALS);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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
        fprintf(stderr, "warmcal profile: %s needs a value (see 'warmcal profile --help')\n", name);
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
                fprintf(stderr, "warmcal profile: no command after '--' (see 'warmcal profile "
                                "--help')\n");
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
            fprintf(stderr, "warmcal profile: unknown option '%s' (see 'warmcal profile --help')\n",
                    a);
            return -1;
        } else {
            /* nsys-like: the command may follow the options without '--' */
            o->cmd = argv + i;
            break;
        }
    }
    if (o->convert && (o->cmd || o->out || o->device)) {
        fprintf(stderr, "warmcal profile: --convert takes no command, --out or --device (see "
                        "'warmcal profile --help')\n");
        return -1;
    }
    if (!o->convert && !o->cmd) {
        fprintf(stderr, "warmcal profile: no command given (see 'warmcal profile --help')\n");
        return -1;
    }
    if (o->model && !o->model[0]) {
        fprintf(stderr, "warmcal profile: --model is empty (see 'warmcal profile --help')\n");
        return -1;
    }
    if (o->device) {
        char *end;
        errno = 0;
        long d = strtol(o->device, &end, 10);
        if (errno || end == o->device || *end || d < 0 || d > INT_MAX) {
            fprintf(stderr, "warmcal profile: --device: expected a device number, found '%s' "
                            "(see 'warmcal profile --help')\n",
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
    if (p != 0) { /* a bad argument was named in one line above */
        if (p > 0)
            usage(stdout);
        return p > 0 ? WARMCAL_EXIT_OK : WARMCAL_EXIT_USAGE;
    }
    if (o.convert) {
        char *dir = realpath(o.convert, NULL);
        if (!dir) {
            fprintf(stderr, "warmcal profile: %s: %s\n", o.convert, strerror(errno));
            return WARMCAL_EXIT_USAGE;
        }
        install_cancel();
        int failures = convert_all(dir, NULL, 0, &o);
        int status = cancel_sig ? canceled_status(dir) : failures ? WARMCAL_EXIT_USAGE : WARMCAL_EXIT_OK;
        free(dir);
        return finish(status, cancel_sig);
    }
    uint64_t run_start = now_ns();

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
    int killed_by = 0, not_run = 0;
    int status = run_command(o.cmd, &killed_by, &not_run);
    if (status < 0) {
        free(dir);
        return WARMCAL_EXIT_USAGE;
    }
    if (not_run) {
        /* the command was not found or not runnable (said above): no spool
         * can be this run's */
        free(dir);
        return status;
    }
    int failures = convert_all(dir, session, run_start, &o);
    if (cancel_sig) {
        int stopped = canceled_status(dir);
        free(dir);
        /* a command killed by a signal keeps its status */
        return finish(killed_by ? status : stopped, killed_by ? killed_by : cancel_sig);
    }
    free(dir);
    if (failures && status == 0) {
        fprintf(stderr, "warmcal profile: the command succeeded but %d spool%s could not be "
                        "converted (above); exit status 2\n",
                failures, failures == 1 ? "" : "s");
        return WARMCAL_EXIT_USAGE;
    }
    return finish(status, killed_by);
}

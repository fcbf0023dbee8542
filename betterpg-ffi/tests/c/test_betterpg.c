/*
 * End-to-end test of the betterpg C API against real ZFS and PostgreSQL.
 *
 * Usage: test_betterpg HOME POOL_FILE POOL PORT_FIRST PORT_LAST
 *        (test_betterpg --child-branch HOME: the process it SIGKILLs, below)
 *
 * Initialises HOME with a new file-backed pool, creates a database, fills it
 * with libpq, branches it in both modes, checks the branches hold the rows,
 * with options handles (mode, quota, runtime; create's PostgreSQL version),
 * lists, stops, starts, resets and destroys, reads the pool's space, sweeps
 * the leftovers of a child process killed in the middle of a branch with gc,
 * and provokes every error it can (NULL arguments, unknown and invalid
 * names, taken names, bad flags), masks a branch and makes one schema-only
 * (a failing mask file is BETTERPG_RESULT_MASK), rewinds a rewindable
 * branch after writes (and is refused for one without a rewind point,
 * changing nothing). It destroys
 * what it created; the pool itself is left to the caller
 * (scripts/test-ffi.sh), which also cleans up after a crash.
 *
 * Exit status: 0 when every check passed, 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <betterpg.h>
#include <libpq-fe.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;
static int checks = 0;

static const char *last_error(void) {
    const char *m = betterpg_last_error_message();
    return m ? m : "(no message)";
}

#define CHECK(cond)                                                          \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            failures++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
        }                                                                    \
    } while (0)

/* Run CALL, which must return EXPECTED; on success of a failing call, the
 * last error message must be set, and on OK it must be NULL. */
#define EXPECT_RC(expected, call)                                            \
    do {                                                                     \
        betterpg_result rc_ = (call);                                        \
        checks++;                                                            \
        if (rc_ != (betterpg_result)(expected)) {                            \
            failures++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s\n  returned %u (%s), expected %s; last error: %s\n", \
                    __FILE__, __LINE__, #call, (unsigned)rc_,                \
                    betterpg_result_name(rc_), #expected, last_error());     \
        } else if (rc_ != BETTERPG_RESULT_OK &&                              \
                   betterpg_last_error_message() == NULL) {                  \
            failures++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s failed without a message\n",     \
                    __FILE__, __LINE__, #call);                              \
        } else if (rc_ == BETTERPG_RESULT_OK &&                              \
                   betterpg_last_error_message() != NULL) {                  \
            failures++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s succeeded but left a message\n", \
                    __FILE__, __LINE__, #call);                              \
        }                                                                    \
    } while (0)

/* A step the rest of the test depends on: stop at the first failure. */
#define REQUIRE_OK(call)                                                     \
    do {                                                                     \
        betterpg_result rc_ = (call);                                        \
        checks++;                                                            \
        if (rc_ != BETTERPG_RESULT_OK) {                                     \
            failures++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s\n  returned %u (%s): %s\n",      \
                    __FILE__, __LINE__, #call, (unsigned)rc_,                \
                    betterpg_result_name(rc_), last_error());                \
            goto out;                                                        \
        }                                                                    \
    } while (0)

#define REQUIRE(cond)                                                        \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            failures++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
            goto out;                                                        \
        }                                                                    \
    } while (0)

static int streq(const char *a, const char *b) {
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static int contains(const char *haystack, const char *needle) {
    return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* Run argv (an argument list, no shell) and copy the first line of its
 * stdout into out; 0 when it ran and exited 0. */
static int first_line_of(char *const argv[], char *out, size_t n) {
    int fds[2], status = 0;
    ssize_t got;
    pid_t pid;
    if (n == 0 || pipe(fds) != 0) return -1;
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    got = read(fds[0], out, n - 1);
    out[got > 0 ? got : 0] = 0;
    out[strcspn(out, "\n")] = 0;
    close(fds[0]);
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Run SQL on URL; return the first value of the first row as a number,
 * or -1 on any failure (printed). */
static long sql_number(const char *url, const char *sql) {
    long value = -1;
    PGconn *conn = PQconnectdb(url);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "  libpq: cannot connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return -1;
    }
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK && PQntuples(res) > 0) {
        value = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    } else if (st == PGRES_COMMAND_OK) {
        value = 0;
    } else {
        fprintf(stderr, "  libpq: %s: %s", sql, PQerrorMessage(conn));
    }
    PQclear(res);
    PQfinish(conn);
    return value;
}

/* The first value of SQL's first row on URL into OUT (empty on failure). */
static void sql_text(const char *url, const char *sql, char *out, size_t n) {
    out[0] = 0;
    PGconn *conn = PQconnectdb(url);
    if (PQstatus(conn) == CONNECTION_OK) {
        PGresult *res = PQexec(conn, sql);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0) {
            snprintf(out, n, "%s", PQgetvalue(res, 0, 0));
        } else {
            fprintf(stderr, "  libpq: %s: %s", sql, PQerrorMessage(conn));
        }
        PQclear(res);
    } else {
        fprintf(stderr, "  libpq: cannot connect: %s", PQerrorMessage(conn));
    }
    PQfinish(conn);
}

/* True when a libpq connection to URL succeeds. */
static int can_connect(const char *url) {
    PGconn *conn = PQconnectdb(url);
    int ok = PQstatus(conn) == CONNECTION_OK;
    PQfinish(conn);
    return ok;
}

/* The child of kill_mid_branch: branch src -> orphan with a fault injected
 * after the clone (betterpg then pauses there until killed). */
static int child_branch(const char *home) {
    betterpg_manager *m = NULL;
    if (setenv("BETTERPG_FAULT", "after_clone:pause", 1) != 0 ||
        betterpg_manager_open(home, &m) != BETTERPG_RESULT_OK) {
        fprintf(stderr, "child: cannot open %s: %s\n", home, last_error());
        return 2;
    }
    betterpg_result rc = betterpg_manager_branch(m, "src", "orphan", NULL, NULL);
    fprintf(stderr, "child: branch returned %s (it should have been killed)\n",
            betterpg_result_name(rc));
    betterpg_manager_free(m);
    return 3;
}

/* Run `SELF --child-branch HOME` and SIGKILL it once betterpg says it paused
 * after the clone: a process dying in the middle of a branch, with a
 * snapshot, a clone and a catalog entry made. Returns 1 when the child got
 * there and was killed. */
static int kill_mid_branch(const char *self, const char *home) {
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        return 0;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 0;
    }
    if (pid == 0) {
        /* Exec at once: the parent has threads, the child must not use them. */
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        char *args[] = {(char *)self, (char *)"--child-branch", (char *)home, NULL};
        execv(self, args);
        _exit(127);
    }
    close(fds[1]);
    char buf[8192];
    size_t len = 0;
    int paused = 0;
    time_t deadline = time(NULL) + 180;
    while (!paused && time(NULL) < deadline) {
        struct pollfd p = {fds[0], POLLIN, 0};
        if (poll(&p, 1, 1000) <= 0) {
            continue;
        }
        ssize_t n = read(fds[0], buf + len, sizeof buf - 1 - len);
        if (n <= 0) {
            break; /* the child exited */
        }
        len += (size_t)n;
        buf[len] = '\0';
        paused = strstr(buf, "pausing at after_clone") != NULL;
        if (len == sizeof buf - 1) {
            break;
        }
    }
    if (!paused) {
        fprintf(stderr, "  child never paused after the clone; it said:\n%.*s\n", (int)len, buf);
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(fds[0]);
    return paused && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

static void print_report(const betterpg_branch_report *report) {
    const betterpg_info *b = betterpg_branch_report_branch(report);
    printf("  branch %s (%s) of %s on port %u in %.0f ms:",
           betterpg_info_name(b), betterpg_info_mode(b), betterpg_info_parent(b),
           (unsigned)betterpg_info_port(b), betterpg_branch_report_total_millis(report));
    for (size_t i = 0; i < betterpg_branch_report_step_count(report); i++) {
        const char *step = NULL;
        double ms = 0;
        if (betterpg_branch_report_step(report, i, &step, &ms) == BETTERPG_RESULT_OK) {
            printf(" %s=%.0f", step, ms);
        }
    }
    printf("\n");
}

/* Checks every report must pass. */
static void check_report(const betterpg_branch_report *report, const char *name,
                         const char *mode) {
    const betterpg_info *b = betterpg_branch_report_branch(report);
    CHECK(b != NULL);
    CHECK(streq(betterpg_info_name(b), name));
    CHECK(streq(betterpg_info_kind(b), "branch"));
    CHECK(betterpg_info_is_branch(b));
    CHECK(streq(betterpg_info_parent(b), "src"));
    CHECK(streq(betterpg_info_mode(b), mode));
    CHECK(betterpg_info_snapshot(b) != NULL);
    CHECK(betterpg_info_is_running(b));
    CHECK(betterpg_branch_report_source_was_running(report));
    size_t n = betterpg_branch_report_step_count(report);
    CHECK(n > 0);
    int saw_snapshot = 0;
    for (size_t i = 0; i < n; i++) {
        const char *step = NULL;
        double ms = -1;
        EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_report_step(report, i, &step, &ms));
        CHECK(step != NULL && step[0] != '\0');
        CHECK(ms >= 0);
        saw_snapshot |= streq(step, "snapshot");
    }
    CHECK(saw_snapshot);
    /* Out of range and NULL outputs; the outputs stay untouched. */
    const char *step = "untouched";
    double ms = 42;
    EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT, betterpg_branch_report_step(report, n, &step, &ms));
    CHECK(streq(step, "untouched") && ms == 42);
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_report_step(report, 0, NULL, &ms));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_report_step(report, 0, &step, NULL));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_report_step(NULL, 0, &step, &ms));
    CHECK(streq(step, "untouched") && ms == 42);
    /* Isolation: the branch got its own password; this source reaches no
     * other system, so no warnings; lines and warnings are range-checked. */
    const char *iso = betterpg_branch_report_isolation_json(report);
    CHECK(iso != NULL && strstr(iso, "\"password_replaced\":true") != NULL);
    CHECK(betterpg_branch_report_isolation_json(NULL) == NULL);
    CHECK(betterpg_branch_report_warning_count(report) == 0);
    size_t nd = betterpg_branch_report_detached_count(report);
    for (size_t i = 0; i < nd; i++) {
        const char *line = NULL;
        EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_report_detached(report, i, &line));
        CHECK(line != NULL && line[0] != '\0');
    }
    const char *line = "untouched";
    EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT, betterpg_branch_report_detached(report, nd, &line));
    CHECK(streq(line, "untouched"));
    const char *k = "untouched", *d = "untouched", *nm = "untouched", *dt = "untouched";
    EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT,
              betterpg_branch_report_warning(report, 0, &k, &d, &nm, &dt));
    CHECK(streq(k, "untouched") && streq(dt, "untouched"));
}

/* The branch and create options builders, without a manager: every
 * setter, its refusals (NULL handle, NULL string, invalid UTF-8, unknown
 * mode), and ownership: each _new handle is freed once, here (valgrind
 * checks nothing leaks). What the options do is checked with a manager in
 * main(). */
static void test_options_handles(void) {
    betterpg_branch_options *b = betterpg_branch_options_new();
    betterpg_create_options *c = betterpg_create_options_new();
    CHECK(b != NULL && c != NULL);
    /* Two handles are two objects. */
    {
        betterpg_branch_options *b2 = betterpg_branch_options_new();
        CHECK(b2 != NULL && b2 != b);
        betterpg_branch_options_free(b2);
    }
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_mode(b, BETTERPG_MODE_CRASH_CONSISTENT));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_mode(b, BETTERPG_MODE_APPLICATION_CONSISTENT));
    EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT, betterpg_branch_options_set_mode(b, 7));
    CHECK(contains(betterpg_last_error_message(), "mode"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_mode(NULL, BETTERPG_MODE_CRASH_CONSISTENT));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_quota(b, (uint64_t)1 << 30));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_quota(b, 0));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_quota(NULL, 1));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_runtime(b, "native"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_runtime(b, NULL));
    EXPECT_RC(BETTERPG_RESULT_INVALID_UTF8, betterpg_branch_options_set_runtime(b, "\xff"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_runtime(NULL, "native"));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_image(b, "postgres:15"));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_image(b, "postgres:16"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_image(b, NULL));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_image(NULL, "x"));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_rewindable(b, true));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_rewindable(b, false));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_rewindable(NULL, true));

    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_create_options_set_pg_bin(c, "/usr/lib/postgresql/15/bin"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_create_options_set_pg_bin(c, NULL));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_create_options_set_pg_bin(NULL, "/x"));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_create_options_set_pg_version(c, 15));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_create_options_set_pg_version(c, 0));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_create_options_set_pg_version(NULL, 15));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_create_options_set_runtime(c, "native"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_create_options_set_runtime(c, NULL));
    EXPECT_RC(BETTERPG_RESULT_INVALID_UTF8, betterpg_create_options_set_image(c, "\xfe"));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_create_options_set_image(c, "postgres:15"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_create_options_set_image(NULL, "x"));

    /* Options are read, not consumed, by the calls: with a NULL manager the
     * call fails and the handles stay usable (and are freed once below). */
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_create(NULL, "x", c, NULL));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_branch(NULL, "x", "y", b, NULL));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_quota(b, 1));
    betterpg_branch_options_free(b);
    betterpg_create_options_free(c);
}

/* Errors that need no manager. */
static void test_without_manager(const char *home) {
    char missing[4096];
    snprintf(missing, sizeof missing, "%s-does-not-exist", home);
    betterpg_manager *sentinel = (betterpg_manager *)&failures; /* any non-NULL */
    betterpg_manager *m = sentinel;

    CHECK(streq(betterpg_version(), BETTERPG_VERSION));
    CHECK(BETTERPG_VERSION_NUMBER == BETTERPG_VERSION_MAJOR * 10000 + BETTERPG_VERSION_MINOR * 100 + BETTERPG_VERSION_PATCH);
    CHECK(streq(betterpg_result_name(BETTERPG_RESULT_OK), "ok"));
    CHECK(streq(betterpg_result_name(BETTERPG_RESULT_NOT_FOUND), "not_found"));
    CHECK(streq(betterpg_result_name(BETTERPG_RESULT_PANIC), "panic"));
    CHECK(streq(betterpg_result_name(123456), "unknown"));

    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_open(NULL, &m));
    CHECK(m == sentinel);
    CHECK(contains(betterpg_last_error_message(), "home"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_open(home, NULL));
    EXPECT_RC(BETTERPG_RESULT_NOT_INITIALIZED, betterpg_manager_open(missing, &m));
    CHECK(m == sentinel);
    CHECK(contains(betterpg_last_error_message(), "not initialised"));
    CHECK(betterpg_last_error_sqlstate() == NULL && betterpg_last_error_reason() == NULL);
    EXPECT_RC(BETTERPG_RESULT_INVALID_UTF8, betterpg_manager_open("\xff\xfe", &m));
    CHECK(m == sentinel);

    /* Every verb rejects a NULL manager. */
    betterpg_info *info = NULL;
    betterpg_info_list *list = NULL;
    betterpg_branch_report *report = NULL;
    char *s = NULL;
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_create(NULL, "x", NULL, &info));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_branch(NULL, "x", "y", NULL, &report));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_reset(NULL, "x", NULL, &report));
    {
        betterpg_rewind_report *rr = NULL;
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_rewind(NULL, "x", &rr));
        CHECK(rr == NULL);
    }
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_last_branch_report(NULL, &report));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_start(NULL, "x", &info));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_stop(NULL, "x", &info));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_destroy(NULL, "x", false));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_info(NULL, "x", &info));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_list(NULL, &list));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_url(NULL, "x", &s));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_logs(NULL, "x", 0, &s));
    CHECK(info == NULL && list == NULL && report == NULL && s == NULL);

    /* Options. */
    betterpg_init_options *opts = betterpg_init_options_new();
    CHECK(opts != NULL);
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_pool_file(NULL, "/tmp/x.img", 1 << 30, "p"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_pool_file(opts, NULL, 1 << 30, "p"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_pool_file(opts, "/tmp/x.img", 1 << 30, NULL));
    EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT, betterpg_init_options_set_pool_file(opts, "/tmp/x.img", 0, "p"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_dataset(opts, NULL));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_pg_bin(opts, NULL));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_os_user(opts, NULL));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_listen_address(opts, NULL));
    EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT, betterpg_init_options_set_port_range(opts, 0, 10));
    EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT, betterpg_init_options_set_port_range(opts, 20, 10));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_port_range(NULL, 1, 10));
    /* No storage set: refused before anything is made. */
    EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT, betterpg_manager_init(missing, opts, &m));
    CHECK(contains(betterpg_last_error_message(), "no storage"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_init(missing, NULL, &m));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_init(NULL, opts, &m));
    CHECK(m == sentinel);
    /* A pool name that is not a valid name: a configuration error. */
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_init_options_set_pool_file(opts, "/tmp/betterpg-test/never.img", 1 << 30, "bad pool!"));
    EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_manager_init(missing, opts, &m));
    CHECK(m == sentinel);
    /* A branch headroom above 90%: refused before any pool is made. */
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_branch_space(NULL, 20, 0));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_init_options_set_pool_file(opts, "/tmp/betterpg-test/never.img", 1 << 30, "bpgffinever"));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_init_options_set_branch_space(opts, 91, 0));
    EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_manager_init(missing, opts, &m));
    CHECK(contains(betterpg_last_error_message(), "0 (no limit on branches) to 90"));
    CHECK(m == sentinel);
    /* Container limits too small for PostgreSQL: refused the same way. */
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_init_options_set_branch_space(opts, 20, 0));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_docker_limits(NULL, 0, 0));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_init_options_set_docker_limits(opts, (uint64_t)1 << 20, 100));
    EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_manager_init(missing, opts, &m));
    CHECK(contains(betterpg_last_error_message(), "docker memory limit"));
    CHECK(m == sentinel);
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_init_options_set_docker_limits(opts, (uint64_t)1 << 30, 5));
    EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_manager_init(missing, opts, &m));
    CHECK(contains(betterpg_last_error_message(), "docker pids limit"));
    CHECK(m == sentinel);
    {
        FILE *never = fopen("/tmp/betterpg-test/never.img", "rb");
        CHECK(never == NULL);
        if (never) fclose(never);
    }
    /* A ZFS property betterpg does not set (sync=disabled would ack
       commits before they are on disk): refused before any pool is made. */
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_zfs_property(NULL, "atime", "off"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_zfs_property(opts, NULL, "off"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_init_options_set_zfs_property(opts, "atime", NULL));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_init_options_set_branch_space(opts, 20, 0));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_init_options_set_docker_limits(opts, 0, 0));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_init_options_set_zfs_property(opts, "sync", "disabled"));
    EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_manager_init(missing, opts, &m));
    CHECK(contains(betterpg_last_error_message(), "sync"));
    CHECK(m == sentinel);
    {
        FILE *never = fopen("/tmp/betterpg-test/never.img", "rb");
        CHECK(never == NULL);
        if (never) fclose(never);
    }
    betterpg_init_options_free(opts);

    test_options_handles();

    /* NULL handles: getters give NULL/0/false, frees do nothing. */
    CHECK(betterpg_info_name(NULL) == NULL);
    CHECK(betterpg_info_url(NULL) == NULL);
    CHECK(betterpg_info_port(NULL) == 0);
    CHECK(!betterpg_info_is_running(NULL));
    CHECK(betterpg_info_list_len(NULL) == 0);
    CHECK(betterpg_info_list_get(NULL, 0) == NULL);
    CHECK(betterpg_branch_report_branch(NULL) == NULL);
    CHECK(betterpg_branch_report_step_count(NULL) == 0);
    CHECK(!betterpg_info_rewindable(NULL));
    CHECK(betterpg_rewind_report_branch(NULL) == NULL);
    CHECK(betterpg_rewind_report_snapshot(NULL) == NULL);
    CHECK(betterpg_rewind_report_step_count(NULL) == 0);
    CHECK(betterpg_rewind_report_total_millis(NULL) == 0);
    betterpg_rewind_report_free(NULL);
    betterpg_manager_free(NULL);
    betterpg_info_free(NULL);
    betterpg_info_list_free(NULL);
    betterpg_branch_report_free(NULL);
    betterpg_init_options_free(NULL);
    betterpg_branch_options_free(NULL);
    betterpg_create_options_free(NULL);
    betterpg_string_free(NULL);
}

/* --- doctor and following logs ------------------------------------------
 * betterpg_doctor on an initialised home and on one that is not;
 * betterpg_manager_follow_logs yields the tail, then what the server writes. */
static void test_doctor(const char *home) {
    betterpg_doctor_report *d = NULL;
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_doctor(NULL, &d));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_doctor(home, NULL));
    CHECK(d == NULL);
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_doctor(home, &d));
    CHECK(d != NULL);
    CHECK(betterpg_doctor_report_ok(d));
    CHECK(betterpg_doctor_report_initialised(d));
    CHECK(betterpg_doctor_report_zpool_list_ok(d));
    CHECK(betterpg_doctor_report_problem_count(d) == 0);
    CHECK(betterpg_doctor_report_problem(d, 0) == NULL);
    CHECK(betterpg_doctor_report_postgres_major(d) == 15);
    CHECK(contains(betterpg_doctor_report_postgres_bin(d), "bin"));
    CHECK(streq(betterpg_doctor_report_storage_backend(d), "cli") ||
          streq(betterpg_doctor_report_storage_backend(d), "libzfs"));
    CHECK(betterpg_doctor_report_storage_reason(d) != NULL);
    CHECK(streq(betterpg_doctor_report_os_user(d), "postgres"));
    CHECK(streq(betterpg_doctor_report_zfs_flavor(d), "openzfs") ||
          streq(betterpg_doctor_report_zfs_flavor(d), "legacy"));
    for (size_t i = 0; i < betterpg_doctor_report_warning_count(d); i++) {
        CHECK(betterpg_doctor_report_warning(d, i) != NULL);
    }
    CHECK(betterpg_doctor_report_warning(d, betterpg_doctor_report_warning_count(d)) == NULL);
    betterpg_doctor_report_free(d);
    d = NULL;
    /* A home that is not initialised: the machine only. */
    char none[4200];
    snprintf(none, sizeof none, "%s-not-initialised", home);
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_doctor(none, &d));
    CHECK(d != NULL && !betterpg_doctor_report_initialised(d));
    CHECK(betterpg_doctor_report_postgres_major(d) == 15);
    betterpg_doctor_report_free(d);
    /* NULL reports. */
    CHECK(!betterpg_doctor_report_ok(NULL));
    CHECK(betterpg_doctor_report_problem_count(NULL) == 0);
    CHECK(betterpg_doctor_report_storage_backend(NULL) == NULL);
    betterpg_doctor_report_free(NULL);
}

/* --- protecting copies: the audit log -------------------------------------
 * Every branch and url so far is in HOME/audit.log; betterpg_manager_audit_json
 * reads it (filtered by since), a bad since is a config error. */
static void test_audit(betterpg_manager *m) {
    char *json = NULL;
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_audit_json(m, NULL, &json));
    CHECK(json != NULL);
    if (json) {
        CHECK(json[0] == '[');
        CHECK(contains(json, "\"operation\":\"create\""));
        CHECK(contains(json, "\"operation\":\"branch\""));
        CHECK(contains(json, "\"branch\":\"app\""));
        CHECK(contains(json, "\"source\":\"src\""));
        CHECK(contains(json, "\"result\":\"error\""));
        CHECK(!contains(json, "postgresql://"));
        betterpg_string_free(json);
    }
    json = NULL;
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_audit_json(m, "1h", &json));
    CHECK(json != NULL && contains(json, "\"operation\":\"branch\""));
    betterpg_string_free(json);
    json = NULL;
    /* A time in the future: nothing since. */
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_audit_json(m, "2999-01-01T00:00:00Z", &json));
    CHECK(json != NULL && streq(json, "[]"));
    betterpg_string_free(json);
    json = (char *)&failures;
    EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_manager_audit_json(m, "yesterday", &json));
    CHECK(contains(betterpg_last_error_message(), "since"));
    CHECK(json == (char *)&failures);
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_audit_json(NULL, NULL, &json));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_audit_json(m, NULL, NULL));
}

/* --- mask-check: personal-looking columns no rule covers --------------------
 * A table of emails in the source is listed as uncovered; a rules file
 * naming the column covers it. */
static void test_mask_check(betterpg_manager *m, const char *home, const char *url) {
    char *json = NULL;
    char rules[4096];
    CHECK(sql_number(url, "CREATE TABLE people (id int, email text)") == 0);
    CHECK(sql_number(url, "INSERT INTO people SELECT g, 'p' || g || '@example.com' "
                          "FROM generate_series(1, 20) g") == 0);
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_mask_check_json(m, "src", NULL, 0, &json));
    CHECK(json != NULL);
    if (json) {
        CHECK(contains(json, "\"uncovered\":[{\"database\":\"postgres\",\"schema\":\"public\","
                             "\"table\":\"people\",\"column\":\"email\""));
        CHECK(contains(json, "\"covered\":[]"));
        CHECK(contains(json, "\"sample_rows\":200"));
        betterpg_string_free(json);
    }
    json = NULL;
    snprintf(rules, sizeof rules, "%s/rules.toml", home);
    {
        FILE *f = fopen(rules, "w");
        CHECK(f != NULL);
        if (f) {
            fputs("[public.people]\nemail = \"email\"\n", f);
            fclose(f);
        }
    }
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_mask_check_json(m, "src", rules, 5, &json));
    CHECK(json != NULL && contains(json, "\"uncovered\":[]"));
    CHECK(json != NULL && contains(json, "\"sample_rows\":5"));
    betterpg_string_free(json);
    json = (char *)&failures;
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_mask_check_json(m, "nosuch", NULL, 0, &json));
    EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_manager_mask_check_json(m, "src", NULL, 1000000, &json));
    /* A rules file that is not there: the rules parser's error (config),
       naming the file. */
    EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_manager_mask_check_json(m, "src", "/nonexistent/r.toml", 0, &json));
    CHECK(contains(betterpg_last_error_message(), "/nonexistent/r.toml"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_mask_check_json(m, NULL, NULL, 0, &json));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_mask_check_json(m, "src", NULL, 0, NULL));
    CHECK(json == (char *)&failures);
    remove(rules);
    CHECK(sql_number(url, "DROP TABLE people") == 0);
}

/* Write TEXT to the file PATH; 0 on success. */
static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL) return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* --- masking: a branch masked before it is reachable; schema-only --------
 * The source gets a table of personal data; a branch made with
 * betterpg_branch_options_add_mask holds only masked values (checked over
 * the URL betterpg gives, with libpq), the source keeps its own; a
 * schema-only branch has the tables and no rows; a failing statement is
 * BETTERPG_RESULT_MASK naming the file and line and leaves nothing; a
 * missing file is BETTERPG_RESULT_MASK too, before anything is made. */
static void test_mask(betterpg_manager *m, const char *home, const char *src_url) {
    char mask[4096], bad[4096], missing[4096];
    betterpg_branch_options *o = NULL;
    betterpg_branch_report *r = NULL;
    betterpg_info *info = NULL;
    snprintf(mask, sizeof mask, "%s/mask-users.sql", home);
    snprintf(bad, sizeof bad, "%s/mask-bad.sql", home);
    snprintf(missing, sizeof missing, "%s/mask-missing.sql", home);
    CHECK(sql_number(src_url, "CREATE TABLE users (id int PRIMARY KEY, email text, phone text)") == 0);
    CHECK(sql_number(src_url, "INSERT INTO users SELECT g, 'margaret.okafor' || g || '@gmail.com', "
                              "'+44 7700 9' || lpad(g::text, 5, '0') FROM generate_series(1, 20) g") == 0);
    CHECK(write_text(mask, "-- users\nUPDATE users SET email = 'user' || id || '@example.invalid',\n"
                           "  phone = NULL;\n") == 0);
    CHECK(write_text(bad, "-- a typo\n\nUPDATE users SET emial = NULL;\n") == 0);

    /* Masked: only masked values on the branch, the source untouched. */
    o = betterpg_branch_options_new();
    CHECK(o != NULL);
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_add_mask(NULL, mask));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_add_mask(o, NULL));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_add_mask(o, mask));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_branch(m, "src", "masked", o, &r));
    if (r != NULL) {
        const char *url = betterpg_info_url(betterpg_branch_report_branch(r));
        CHECK(sql_number(url, "SELECT count(*) FROM users WHERE email = 'user' || id || "
                              "'@example.invalid' AND phone IS NULL") == 20);
        CHECK(sql_number(url, "SELECT count(*) FROM users WHERE email LIKE '%gmail%' "
                              "OR phone IS NOT NULL") == 0);
        CHECK(sql_number(url, "SELECT count(*) FROM t") == sql_number(src_url, "SELECT count(*) FROM t"));
        betterpg_branch_report_free(r);
        r = NULL;
    }
    CHECK(sql_number(src_url, "SELECT count(*) FROM users WHERE email LIKE '%@gmail.com' "
                              "AND phone IS NOT NULL") == 20);
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_destroy(m, "masked", false));

    /* Schema-only (with the masking too): the tables, no rows. */
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_schema_only(NULL, true));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_schema_only(o, true));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_branch(m, "src", "schemaonly", o, &r));
    if (r != NULL) {
        const char *url = betterpg_info_url(betterpg_branch_report_branch(r));
        CHECK(sql_number(url, "SELECT count(*) FROM users") == 0);
        CHECK(sql_number(url, "SELECT count(*) FROM t") == 0);
        CHECK(sql_number(url, "SELECT count(*) FROM pg_tables WHERE tablename IN ('t', 'users')") == 2);
        betterpg_branch_report_free(r);
        r = NULL;
    }
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_destroy(m, "schemaonly", false));
    betterpg_branch_options_free(o);

    /* A failing statement: BETTERPG_RESULT_MASK, file and line named,
     * nothing made. */
    o = betterpg_branch_options_new();
    CHECK(o != NULL);
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_add_mask(o, mask));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_add_mask(o, bad));
    EXPECT_RC(BETTERPG_RESULT_MASK, betterpg_manager_branch(m, "src", "badmask", o, &r));
    CHECK(contains(betterpg_last_error_message(), "mask-bad.sql line 3"));
    CHECK(contains(betterpg_last_error_message(), "emial"));
    CHECK(r == NULL);
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "badmask", &info));
    CHECK(info == NULL);
    betterpg_branch_options_free(o);

    /* A missing file: refused (the mask kind, naming it) before anything
     * is made. */
    o = betterpg_branch_options_new();
    CHECK(o != NULL);
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_add_mask(o, missing));
    EXPECT_RC(BETTERPG_RESULT_MASK, betterpg_manager_branch(m, "src", "badmask", o, &r));
    CHECK(contains(betterpg_last_error_message(), "mask-missing.sql"));
    CHECK(r == NULL);
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "badmask", &info));
    betterpg_branch_options_free(o);

    CHECK(sql_number(src_url, "DROP TABLE users") == 0);
    remove(mask);
    remove(bad);
}

/* --- credentials: rotate replaces the source's passwords ---------------------
 * A role with a password on src; a branch with credentials "rotate": the
 * source's password does not log in (libpq over TCP), the URL from
 * betterpg_manager_role_url does; "keep" keeps it and refuses the role URL. */
static void test_credentials(betterpg_manager *m, const char *src_url) {
    char url[512];
    char *role_url = NULL;
    betterpg_branch_report *r = NULL;
    betterpg_branch_options *o = betterpg_branch_options_new();
    CHECK(sql_number(src_url, "CREATE ROLE capp LOGIN PASSWORD 'capp-source-pw'") == 0);
    EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_branch_options_set_credentials(o, "share"));
    CHECK(contains(betterpg_last_error_message(), "credentials"));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_credentials(o, NULL));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_credentials(NULL, "keep"));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_mode(o, BETTERPG_MODE_CRASH_CONSISTENT));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_credentials(o, "rotate"));
    REQUIRE_OK(betterpg_manager_branch(m, "src", "crot", o, &r));
    snprintf(url, sizeof url, "postgresql://capp:capp-source-pw@127.0.0.1:%u/postgres",
             (unsigned)betterpg_info_port(betterpg_branch_report_branch(r)));
    CHECK(!can_connect(url));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_role_url(m, "crot", "capp", &role_url));
    CHECK(role_url != NULL && contains(role_url, "postgresql://capp:"));
    CHECK(role_url != NULL && can_connect(role_url));
    betterpg_string_free(role_url);
    role_url = (char *)&failures;
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_role_url(m, "crot", "nosuch", &role_url));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_role_url(m, "crot", NULL, &role_url));
    CHECK(role_url == (char *)&failures);
    betterpg_branch_report_free(r);
    r = NULL;
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_credentials(o, "keep"));
    REQUIRE_OK(betterpg_manager_branch(m, "src", "ckeep", o, &r));
    snprintf(url, sizeof url, "postgresql://capp:capp-source-pw@127.0.0.1:%u/postgres",
             (unsigned)betterpg_info_port(betterpg_branch_report_branch(r)));
    CHECK(can_connect(url));
    EXPECT_RC(BETTERPG_RESULT_UNSUPPORTED, betterpg_manager_role_url(m, "ckeep", "capp", &role_url));
    CHECK(contains(betterpg_last_error_message(), "keeps its source's role passwords"));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_destroy(m, "ckeep", false));
out:
    betterpg_branch_report_free(r);
    betterpg_branch_options_free(o);
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_destroy(m, "crot", false));
    CHECK(sql_number(src_url, "DROP ROLE capp") == 0);
}

/* Checks every rewind report must pass: the branch NAME, running and
 * rewindable on PORT with URL, the point's snapshot, the steps in order. */
static void check_rewind_report(const betterpg_rewind_report *rr, const char *name,
                                unsigned port, const char *url) {
    static const char *const steps[] = {"check", "stop", "rollback", "start"};
    char snap[128];
    const betterpg_info *b = betterpg_rewind_report_branch(rr);
    CHECK(b != NULL);
    CHECK(streq(betterpg_info_name(b), name));
    CHECK(betterpg_info_is_branch(b));
    CHECK(betterpg_info_is_running(b));
    CHECK(streq(betterpg_info_state(b), "ready"));
    CHECK(betterpg_info_rewindable(b));
    CHECK(betterpg_info_port(b) == port);
    CHECK(streq(betterpg_info_url(b), url));
    snprintf(snap, sizeof snap, "bpgrewind-%s", name);
    CHECK(streq(betterpg_rewind_report_snapshot(rr), snap));
    size_t n = betterpg_rewind_report_step_count(rr);
    CHECK(n == sizeof steps / sizeof steps[0]);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        const char *step = NULL;
        double ms = -1;
        EXPECT_RC(BETTERPG_RESULT_OK, betterpg_rewind_report_step(rr, i, &step, &ms));
        CHECK(i < sizeof steps / sizeof steps[0] && streq(step, steps[i]));
        CHECK(ms >= 0);
        sum += ms;
    }
    /* The steps add up to the whole call (no speed is asserted). */
    CHECK(sum <= betterpg_rewind_report_total_millis(rr) + 0.001);
    /* Out of range and NULL outputs; the outputs stay untouched. */
    const char *step = "untouched";
    double ms = 42;
    EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT, betterpg_rewind_report_step(rr, n, &step, &ms));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_rewind_report_step(rr, 0, NULL, &ms));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_rewind_report_step(rr, 0, &step, NULL));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_rewind_report_step(NULL, 0, &step, &ms));
    CHECK(streq(step, "untouched") && ms == 42);
}

static void print_rewind_report(const betterpg_rewind_report *rr) {
    const betterpg_info *b = betterpg_rewind_report_branch(rr);
    printf("  rewound %s to @%s on port %u in %.0f ms:", betterpg_info_name(b),
           betterpg_rewind_report_snapshot(rr), (unsigned)betterpg_info_port(b),
           betterpg_rewind_report_total_millis(rr));
    for (size_t i = 0; i < betterpg_rewind_report_step_count(rr); i++) {
        const char *step = NULL;
        double ms = 0;
        if (betterpg_rewind_report_step(rr, i, &step, &ms) == BETTERPG_RESULT_OK) {
            printf(" %s=%.0f", step, ms);
        }
    }
    printf("\n");
}

/* True when the branch report's steps include STEP. */
static int report_has_step(const betterpg_branch_report *r, const char *name) {
    for (size_t i = 0; i < betterpg_branch_report_step_count(r); i++) {
        const char *step = NULL;
        double ms = 0;
        if (betterpg_branch_report_step(r, i, &step, &ms) == BETTERPG_RESULT_OK &&
            streq(step, name)) {
            return 1;
        }
    }
    return 0;
}

/* --- rewind --------------------------------------------------------------
 * A branch of src made rewindable gets written to and rewound: its rows
 * are back, on the same port and URL, by a restarted server. Refusals
 * (protected, with a branch of its own, no rewind point, a database,
 * bad names) change nothing. app (made without a rewind point, holding
 * src's rows) gets one from a reset and is rewound. */
static void test_rewind(betterpg_manager *m, const char *app_url) {
    betterpg_branch_options *o = betterpg_branch_options_new();
    betterpg_branch_report *made = NULL, *reset = NULL;
    betterpg_rewind_report *rr = NULL;
    betterpg_rewind_report *const untouched = (betterpg_rewind_report *)&failures;
    betterpg_info *i = NULL;
    char url[512] = "", before[64] = "", after[64] = "";
    unsigned port = 0;
    long rows = 0, app_rows = 0;
    REQUIRE(o != NULL);
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_rewindable(o, true));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_rewindable(NULL, true));

    /* A rewindable branch: the report times its rewind point. */
    REQUIRE_OK(betterpg_manager_branch(m, "src", "rw", o, &made));
    print_report(made);
    {
        const betterpg_info *b = betterpg_branch_report_branch(made);
        CHECK(betterpg_info_rewindable(b));
        CHECK(report_has_step(made, "rewind_point"));
        port = betterpg_info_port(b);
        snprintf(url, sizeof url, "%s", betterpg_info_url(b));
    }
    REQUIRE_OK(betterpg_manager_info(m, "rw", &i));
    CHECK(betterpg_info_rewindable(i));
    betterpg_info_free(i);
    i = NULL;
    rows = sql_number(url, "SELECT count(*) FROM t");
    REQUIRE(rows > 0);

    /* Written to: rows gone, a table made. */
    CHECK(sql_number(url, "DELETE FROM t WHERE id <= 100") == 0);
    CHECK(sql_number(url, "CREATE TABLE scratch AS SELECT 1 AS x") == 0);
    CHECK(sql_number(url, "SELECT count(*) FROM t") == rows - 100);
    sql_text(url, "SELECT pg_postmaster_start_time()::text", before, sizeof before);
    CHECK(before[0] != 0);

    /* Rewind: the rows are back, the table gone; same port and URL; the
     * server was started again. */
    REQUIRE_OK(betterpg_manager_rewind(m, "rw", &rr));
    print_rewind_report(rr);
    check_rewind_report(rr, "rw", port, url);
    CHECK(sql_number(url, "SELECT count(*) FROM t") == rows);
    CHECK(sql_number(url, "SELECT count(*) FROM pg_tables WHERE tablename = 'scratch'") == 0);
    sql_text(url, "SELECT pg_postmaster_start_time()::text", after, sizeof after);
    CHECK(after[0] != 0 && !streq(before, after));
    betterpg_rewind_report_free(rr);
    rr = NULL;

    /* Refused, nothing changed (the row written here stays, the server
     * keeps running): protected, then with a branch of its own. */
    CHECK(sql_number(url, "INSERT INTO t VALUES (-7, 'kept')") == 0);
    REQUIRE_OK(betterpg_manager_protect(m, "rw", NULL));
    rr = untouched;
    EXPECT_RC(BETTERPG_RESULT_PROTECTED, betterpg_manager_rewind(m, "rw", &rr));
    REQUIRE_OK(betterpg_manager_unprotect(m, "rw", NULL));
    REQUIRE_OK(betterpg_manager_branch(m, "rw", "rwkid", NULL, NULL));
    EXPECT_RC(BETTERPG_RESULT_HAS_DEPENDENTS, betterpg_manager_rewind(m, "rw", &rr));
    CHECK(contains(betterpg_last_error_message(), "rwkid"));
    CHECK(rr == untouched);
    CHECK(sql_number(url, "SELECT count(*) FROM t WHERE id = -7") == 1);
    REQUIRE_OK(betterpg_manager_destroy(m, "rwkid", false));
    /* Once nothing depends on it, it rewinds (no report asked for). */
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_rewind(m, "rw", NULL));
    CHECK(sql_number(url, "SELECT count(*) FROM t WHERE id = -7") == 0);
    CHECK(sql_number(url, "SELECT count(*) FROM t") == rows);

    /* A branch made without a rewind point: UNSUPPORTED, and app is as it
     * was (running, ready, on its port, with its rows). */
    REQUIRE_OK(betterpg_manager_info(m, "app", &i));
    CHECK(!betterpg_info_rewindable(i));
    port = betterpg_info_port(i);
    betterpg_info_free(i);
    i = NULL;
    CHECK(sql_number(app_url, "INSERT INTO t VALUES (-8, 'kept')") == 0);
    app_rows = sql_number(app_url, "SELECT count(*) FROM t");
    sql_text(app_url, "SELECT pg_postmaster_start_time()::text", before, sizeof before);
    rr = untouched;
    EXPECT_RC(BETTERPG_RESULT_UNSUPPORTED, betterpg_manager_rewind(m, "app", &rr));
    CHECK(contains(betterpg_last_error_message(), "rewind point"));
    CHECK(streq(betterpg_result_name(BETTERPG_RESULT_UNSUPPORTED), "unsupported"));
    CHECK(rr == untouched);
    REQUIRE_OK(betterpg_manager_info(m, "app", &i));
    CHECK(betterpg_info_is_running(i) && streq(betterpg_info_state(i), "ready"));
    CHECK(betterpg_info_port(i) == port && !betterpg_info_rewindable(i));
    betterpg_info_free(i);
    i = NULL;
    CHECK(sql_number(app_url, "SELECT count(*) FROM t") == app_rows);
    CHECK(sql_number(app_url, "SELECT count(*) FROM t WHERE id = -8") == 1);
    sql_text(app_url, "SELECT pg_postmaster_start_time()::text", after, sizeof after);
    CHECK(after[0] != 0 && streq(before, after));
    /* Other refusals: a database, unknown and bad names, NULLs. */
    EXPECT_RC(BETTERPG_RESULT_UNSUPPORTED, betterpg_manager_rewind(m, "src", &rr));
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_rewind(m, "nosuch", &rr));
    EXPECT_RC(BETTERPG_RESULT_INVALID_NAME, betterpg_manager_rewind(m, "a b", &rr));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_rewind(m, NULL, &rr));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_rewind(NULL, "rw", &rr));
    CHECK(rr == untouched);
    rr = NULL;

    /* A reset with the option gives app a rewind point, of src's rows. */
    REQUIRE_OK(betterpg_manager_reset(m, "app", o, &reset));
    CHECK(betterpg_info_rewindable(betterpg_branch_report_branch(reset)));
    CHECK(report_has_step(reset, "rewind_point"));
    CHECK(betterpg_info_port(betterpg_branch_report_branch(reset)) == port);
    CHECK(sql_number(app_url, "SELECT count(*) FROM t WHERE id = -8") == 0);
    CHECK(sql_number(app_url, "INSERT INTO t VALUES (-9, 'gone')") == 0);
    REQUIRE_OK(betterpg_manager_rewind(m, "app", &rr));
    print_rewind_report(rr);
    check_rewind_report(rr, "app", port, app_url);
    CHECK(sql_number(app_url, "SELECT count(*) FROM t WHERE id = -9") == 0);
    CHECK(sql_number(app_url, "SELECT count(*) FROM t") == rows); /* src's, as rw's */
out:
    betterpg_info_free(i);
    betterpg_rewind_report_free(rr == untouched ? NULL : rr);
    betterpg_branch_report_free(made);
    betterpg_branch_report_free(reset);
    betterpg_branch_options_free(o);
    betterpg_manager_destroy(m, "rwkid", false);
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_destroy(m, "rw", false));
}

/* A branch tied to an owner process: kept while it runs; once it is gone,
 * gc lists it (dry run) and destroys it (item "branch"). A pid that names
 * no process is refused before anything is made. */
static int report_names(betterpg_gc_report *gr, const char *what_, const char *name_) {
    const char *what = NULL, *name = NULL, *reason = NULL;
    for (size_t i = 0; i < betterpg_gc_report_item_count(gr); i++) {
        if (betterpg_gc_report_item(gr, i, &what, &name, &reason) == BETTERPG_RESULT_OK &&
            streq(what, what_) && streq(name, name_))
            return 1;
    }
    return 0;
}

static void test_owner(betterpg_manager *m) {
    betterpg_branch_options *o = betterpg_branch_options_new();
    betterpg_branch_report *made = NULL;
    betterpg_gc_report *gr = NULL;
    betterpg_info *i = NULL;
    pid_t child = -1;
    REQUIRE(o != NULL);
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_owner_pid(NULL, 1));
    /* No such process: refused, nothing made. */
    REQUIRE_OK(betterpg_branch_options_set_owner_pid(o, 2147483000u));
    EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_manager_branch(m, "src", "owned", o, &made));
    CHECK(made == NULL);
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "owned", &i));

    child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        sleep(600);
        _exit(0);
    }
    REQUIRE_OK(betterpg_branch_options_set_owner_pid(o, (uint32_t)child));
    REQUIRE_OK(betterpg_manager_branch(m, "src", "owned", o, &made));
    CHECK(betterpg_info_owner_pid(betterpg_branch_report_branch(made)) == (uint32_t)child);
    REQUIRE_OK(betterpg_manager_info(m, "src", &i));
    CHECK(betterpg_info_owner_pid(i) == 0);
    betterpg_info_free(i);
    i = NULL;
    /* Owner alive: not garbage. */
    REQUIRE_OK(betterpg_manager_gc_report(m, true, &gr));
    CHECK(!report_names(gr, "branch", "owned"));
    betterpg_gc_report_free(gr);
    gr = NULL;
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    child = -1;
    /* Gone: listed by a dry run (which changes nothing), then destroyed. */
    REQUIRE_OK(betterpg_manager_gc_report(m, true, &gr));
    CHECK(report_names(gr, "branch", "owned"));
    betterpg_gc_report_free(gr);
    gr = NULL;
    REQUIRE_OK(betterpg_manager_info(m, "owned", &i));
    CHECK(betterpg_info_is_running(i));
    betterpg_info_free(i);
    i = NULL;
    REQUIRE_OK(betterpg_manager_gc_report(m, false, &gr));
    CHECK(report_names(gr, "branch", "owned"));
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "owned", &i));
out:
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    betterpg_info_free(i);
    betterpg_gc_report_free(gr);
    betterpg_branch_report_free(made);
    betterpg_branch_options_free(o);
    betterpg_manager_destroy(m, "owned", false);
}

static void test_follow_logs(betterpg_manager *m, const char *name, const char *url) {
    betterpg_log_follower *f = NULL;
    char *chunk = NULL;
    bool ended = true;
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_follow_logs(NULL, name, 2, &f));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_follow_logs(m, NULL, 2, &f));
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_follow_logs(m, "nosuch", 2, &f));
    CHECK(f == NULL);
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_log_follower_next(NULL, 10, &chunk, &ended));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_follow_logs(m, name, 2, &f));
    if (f == NULL) {
        CHECK(f != NULL);
        return;
    }
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_log_follower_next(f, 10, NULL, &ended));
    /* First the tail: two lines. */
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_log_follower_next(f, 5000, &chunk, &ended));
    CHECK(chunk != NULL && !ended);
    if (chunk) {
        int lines = 0;
        for (const char *c = chunk; *c; c++) lines += *c == '\n';
        CHECK(lines == 2);
    }
    betterpg_string_free(chunk);
    chunk = NULL;
    /* Then what the server writes after. */
    CHECK(sql_number(url, "DO $$BEGIN RAISE LOG 'bpg-follow-marker'; END$$") == 0);
    int seen = 0;
    for (int i = 0; i < 40 && !seen && !ended; i++) {
        EXPECT_RC(BETTERPG_RESULT_OK, betterpg_log_follower_next(f, 250, &chunk, &ended));
        if (chunk) seen = contains(chunk, "bpg-follow-marker");
        betterpg_string_free(chunk);
        chunk = NULL;
    }
    CHECK(seen);
    CHECK(!ended); /* a native server's log never ends */
    betterpg_log_follower_free(f);
    betterpg_log_follower_free(NULL);
}

/* A follow progress callback: counts its calls. */
static void count_progress(uint64_t done, uint64_t total, double rate, void *data) {
    (void)done;
    (void)total;
    (void)rate;
    ++*(unsigned long *)data;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--child-branch") == 0) {
        return child_branch(argv[2]);
    }
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOME POOL_FILE POOL PORT_FIRST PORT_LAST\n", argv[0]);
        return 2;
    }
    const char *home = argv[1], *pool_file = argv[2], *pool = argv[3];
    unsigned port_first = (unsigned)atoi(argv[4]), port_last = (unsigned)atoi(argv[5]);

    betterpg_init_options *opts = NULL;
    betterpg_create_options *copts = NULL;
    betterpg_branch_options *bopts = NULL;
    betterpg_manager *m = NULL, *m2 = NULL;
    betterpg_info *info = NULL, *src = NULL;
    betterpg_info_list *list = NULL;
    betterpg_branch_report *report = NULL, *report2 = NULL;
    char *url = NULL, *log = NULL;

    printf("betterpg %s (header %s)\n", betterpg_version(), BETTERPG_VERSION);
    test_without_manager(home);

    /* --- init a home on a new file-backed pool ---------------------------- */
    opts = betterpg_init_options_new();
    REQUIRE(opts != NULL);
    REQUIRE_OK(betterpg_init_options_set_pool_file(opts, pool_file, (uint64_t)1 << 30, pool));
    REQUIRE_OK(betterpg_init_options_set_port_range(opts, (uint16_t)port_first, (uint16_t)port_last));
    REQUIRE_OK(betterpg_init_options_set_branch_space(opts, 20, (uint64_t)32 << 20));
    REQUIRE_OK(betterpg_init_options_set_docker_limits(opts, (uint64_t)512 << 20, 200));
    REQUIRE_OK(betterpg_init_options_set_zfs_property(opts, "recordsize", "16K"));
    REQUIRE_OK(betterpg_manager_init(home, opts, &m));
    CHECK(betterpg_last_error_message() == NULL);
    {
        /* The container limits are in the home's config. */
        char path[4096], cfg[8192] = {0};
        snprintf(path, sizeof path, "%s/config.json", home);
        FILE *f = fopen(path, "rb");
        CHECK(f != NULL);
        if (f) {
            size_t n = fread(cfg, 1, sizeof cfg - 1, f);
            cfg[n] = 0;
            fclose(f);
        }
        CHECK(contains(cfg, "\"docker_memory\": 536870912"));
        CHECK(contains(cfg, "\"docker_pids\": 200"));
    }
    printf("  initialised %s on pool %s\n", home, pool);
    /* The property reached ZFS: ask zfs itself. */
    {
        char dataset[256], value[32] = "";
        snprintf(dataset, sizeof dataset, "%s/betterpg", pool);
        {
            char *const argv_[] = {"zfs", "get", "-H", "-o", "value", "recordsize", dataset, NULL};
            CHECK(first_line_of(argv_, value, sizeof value) == 0);
        }
        CHECK(strncmp(value, "16K", 3) == 0);
    }
    /* A second init of the same home is refused, the first one untouched. */
    m2 = (betterpg_manager *)&failures;
    EXPECT_RC(BETTERPG_RESULT_ALREADY_EXISTS, betterpg_manager_init(home, opts, &m2));
    CHECK(m2 == (betterpg_manager *)&failures);
    m2 = NULL;
    betterpg_init_options_free(opts);
    opts = NULL;
    /* Reopen: the home works through betterpg_manager_open too. */
    betterpg_manager_free(m);
    m = NULL;
    REQUIRE_OK(betterpg_manager_open(home, &m));
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_last_branch_report(m, &report));
    CHECK(report == NULL);

    /* --- create a database and fill it with libpq ------------------------- */
    REQUIRE_OK(betterpg_manager_create(m, "src", NULL, &src));
    CHECK(streq(betterpg_info_name(src), "src"));
    CHECK(streq(betterpg_info_kind(src), "database"));
    CHECK(!betterpg_info_is_branch(src));
    CHECK(betterpg_info_parent(src) == NULL);
    CHECK(betterpg_info_mode(src) == NULL);
    CHECK(betterpg_info_snapshot(src) == NULL);
    CHECK(streq(betterpg_info_status(src), "running"));
    CHECK(betterpg_info_is_running(src));
    CHECK(streq(betterpg_info_state(src), "ready"));
    CHECK(streq(betterpg_info_runtime(src), "native"));
    CHECK(betterpg_info_pg_version(src) == 15);
    CHECK(betterpg_info_port(src) >= port_first && betterpg_info_port(src) <= port_last);
    CHECK(betterpg_info_created_at(src) > 0);
    CHECK(!betterpg_info_protected(src));
    CHECK(betterpg_info_expires_at(src) == 0);
    CHECK(!betterpg_info_protected(NULL));
    CHECK(betterpg_info_expires_at(NULL) == 0);
    CHECK(contains(betterpg_info_dataset(src), pool));
    CHECK(contains(betterpg_info_url(src), "postgresql://"));
    printf("  created src on port %u\n", (unsigned)betterpg_info_port(src));

    REQUIRE(sql_number(betterpg_info_url(src),
                       "CREATE TABLE t (id int PRIMARY KEY, v text)") == 0);
    REQUIRE(sql_number(betterpg_info_url(src),
                       "INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 1000) i") == 0);
    REQUIRE(sql_number(betterpg_info_url(src), "SELECT count(*) FROM t") == 1000);

    /* Create errors. */
    info = (betterpg_info *)&failures;
    EXPECT_RC(BETTERPG_RESULT_ALREADY_EXISTS, betterpg_manager_create(m, "src", NULL, &info));
    CHECK(contains(betterpg_last_error_message(), "src"));
    EXPECT_RC(BETTERPG_RESULT_INVALID_NAME, betterpg_manager_create(m, "bad name!", NULL, &info));
    EXPECT_RC(BETTERPG_RESULT_INVALID_NAME, betterpg_manager_create(m, "", NULL, &info));
    EXPECT_RC(BETTERPG_RESULT_INVALID_NAME, betterpg_manager_create(m, "../etc", NULL, &info));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_create(m, NULL, NULL, &info));
    /* Create options reach the core: a PostgreSQL version this machine has
     * no binaries of, and binaries of another version than asked, are
     * refused before anything is made. */
    copts = betterpg_create_options_new();
    REQUIRE(copts != NULL);
    REQUIRE_OK(betterpg_create_options_set_pg_version(copts, 3));
    EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_manager_create(m, "v3", copts, &info));
    CHECK(contains(betterpg_last_error_message(), "PostgreSQL 3"));
    REQUIRE_OK(betterpg_create_options_set_pg_bin(copts, "/usr/lib/postgresql/15/bin"));
    EXPECT_RC(BETTERPG_RESULT_VERSION_MISMATCH, betterpg_manager_create(m, "v3", copts, &info));
    REQUIRE_OK(betterpg_create_options_set_pg_version(copts, 0));
    REQUIRE_OK(betterpg_create_options_set_pg_bin(copts, "/usr/lib/postgresql/15/bin"));
    REQUIRE_OK(betterpg_create_options_set_runtime(copts, "nosuch"));
    EXPECT_RC(BETTERPG_RESULT_UNSUPPORTED, betterpg_manager_create(m, "v3", copts, &info));
    CHECK(contains(betterpg_last_error_message(), "nosuch"));
    CHECK(info == (betterpg_info *)&failures);
    info = NULL;
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "v3", &info));
    CHECK(info == NULL);

    /* --- branch, application-consistent ----------------------------------- */
    /* The default options (NULL) are the application-consistent mode. */
    REQUIRE_OK(betterpg_manager_branch(m, "src", "app", NULL, &report));
    print_report(report);
    check_report(report, "app", "application-consistent");
    const betterpg_info *app = betterpg_branch_report_branch(report);
    CHECK(betterpg_info_port(app) >= port_first && betterpg_info_port(app) <= port_last);
    CHECK(betterpg_info_port(app) != betterpg_info_port(src));
    CHECK(sql_number(betterpg_info_url(app), "SELECT count(*) FROM t") == 1000);
    CHECK(sql_number(betterpg_info_url(app), "SELECT count(*) FROM t WHERE v = md5(id::text)") == 1000);
    /* The branch is independent of its source. */
    CHECK(sql_number(betterpg_info_url(src), "INSERT INTO t VALUES (1001, 'after')") == 0);
    CHECK(sql_number(betterpg_info_url(app), "DELETE FROM t WHERE id <= 10") == 0);
    CHECK(sql_number(betterpg_info_url(src), "SELECT count(*) FROM t") == 1001);
    CHECK(sql_number(betterpg_info_url(app), "SELECT count(*) FROM t") == 990);

    /* --- branch, crash-consistent with a quota, through an options handle;
     * report read back from the manager --------------------------------- */
    bopts = betterpg_branch_options_new();
    REQUIRE(bopts != NULL);
    REQUIRE_OK(betterpg_branch_options_set_mode(bopts, BETTERPG_MODE_CRASH_CONSISTENT));
    REQUIRE_OK(betterpg_branch_options_set_quota(bopts, (uint64_t)256 << 20));
    REQUIRE_OK(betterpg_manager_branch(m, "src", "crash", bopts, NULL));
    REQUIRE_OK(betterpg_manager_last_branch_report(m, &report2));
    print_report(report2);
    check_report(report2, "crash", "crash-consistent");
    /* The quota reached ZFS: ask zfs itself. */
    {
        char value[64] = "";
        const char *ds = betterpg_info_dataset(betterpg_branch_report_branch(report2));
        REQUIRE(ds != NULL);
        char *const argv_[] = {"zfs", "get", "-H", "-p", "-o", "value", "quota", (char *)ds, NULL};
        CHECK(first_line_of(argv_, value, sizeof value) == 0);
        CHECK(streq(value, "268435456"));
    }
    CHECK(sql_number(betterpg_info_url(betterpg_branch_report_branch(report2)),
                     "SELECT count(*) FROM t") == 1001);

    /* Branch errors: nothing is made, outputs untouched. */
    betterpg_branch_report *untouched = (betterpg_branch_report *)&failures;
    betterpg_branch_report *r = untouched;
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_branch(m, "nosuch", "b1", NULL, &r));
    CHECK(contains(betterpg_last_error_message(), "nosuch"));
    EXPECT_RC(BETTERPG_RESULT_ALREADY_EXISTS, betterpg_manager_branch(m, "src", "app", NULL, &r));
    EXPECT_RC(BETTERPG_RESULT_ALREADY_EXISTS, betterpg_manager_branch(m, "src", "src", bopts, &r));
    EXPECT_RC(BETTERPG_RESULT_INVALID_NAME, betterpg_manager_branch(m, "src", "no/slash", NULL, &r));
    EXPECT_RC(BETTERPG_RESULT_INVALID_NAME, betterpg_manager_branch(m, "bad name", "b1", NULL, &r));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_branch(m, NULL, "b1", NULL, &r));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_branch(m, "src", NULL, NULL, &r));
    /* Options the core refuses: a quota too small for PostgreSQL, a
     * runtime this build does not have. */
    {
        betterpg_branch_options *bad = betterpg_branch_options_new();
        REQUIRE(bad != NULL);
        EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_quota(bad, (uint64_t)1 << 20));
        EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_manager_branch(m, "src", "b1", bad, &r));
        CHECK(contains(betterpg_last_error_message(), "quota"));
        EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_quota(bad, 0));
        EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_runtime(bad, "nosuch"));
        EXPECT_RC(BETTERPG_RESULT_UNSUPPORTED, betterpg_manager_branch(m, "src", "b1", bad, &r));
        CHECK(contains(betterpg_last_error_message(), "nosuch"));
        betterpg_branch_options_free(bad);
    }
    CHECK(r == untouched);
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "b1", &info));
    CHECK(info == NULL);
    /* The report of the last successful branch is still "crash". */
    betterpg_branch_report_free(report2);
    report2 = NULL;
    REQUIRE_OK(betterpg_manager_last_branch_report(m, &report2));
    CHECK(streq(betterpg_info_name(betterpg_branch_report_branch(report2)), "crash"));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_last_branch_report(m, NULL));
    /* Another handle on the same home has made no branch. */
    REQUIRE_OK(betterpg_manager_open(home, &m2));
    r = untouched;
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_last_branch_report(m2, &r));
    CHECK(r == untouched);

    /* --- url, info, list --------------------------------------------------- */
    REQUIRE_OK(betterpg_manager_url(m2, "app", &url));
    CHECK(streq(url, betterpg_info_url(app)));
    CHECK(sql_number(url, "SELECT count(*) FROM t") == 990);
    betterpg_string_free(url);
    url = NULL;
    char *untouched_s = (char *)&failures;
    url = untouched_s;
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_url(m, "nosuch", &url));
    EXPECT_RC(BETTERPG_RESULT_INVALID_NAME, betterpg_manager_url(m, "a b", &url));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_url(m, NULL, &url));
    CHECK(url == untouched_s);
    url = NULL;
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_url(m, "app", NULL));

    /* --- settings (bpg config) --------------------------------------------- */
    {
        const char *keys[] = {"ttl", "keep_last", "credentials"};
        const char *vals[] = {"8h", "3", "rotate"};
        char *json = NULL;
        REQUIRE_OK(betterpg_manager_configure(m, "app", keys, vals, 3, &json));
        CHECK(json != NULL && strstr(json, "\"ttl\":28800") != NULL);
        CHECK(json != NULL && strstr(json, "\"keep_last\":3") != NULL);
        CHECK(json != NULL && strstr(json, "\"credentials\":\"rotate\"") != NULL);
        betterpg_string_free(json);
        json = NULL;
        /* Read back (count 0), from a second manager on the same home. */
        REQUIRE_OK(betterpg_manager_configure(m2, "app", NULL, NULL, 0, &json));
        CHECK(json != NULL && strstr(json, "\"ttl\":28800") != NULL);
        betterpg_string_free(json);
        json = NULL;
        /* A bad value fails, names the key, and changes nothing. */
        const char *bad_keys[] = {"keep_last", "ttl"};
        const char *bad_vals[] = {"7", "soon"};
        EXPECT_RC(BETTERPG_RESULT_CONFIG,
                  betterpg_manager_configure(m, "app", bad_keys, bad_vals, 2, &json));
        CHECK(json == NULL && contains(betterpg_last_error_message(), "ttl"));
        const char *unknown[] = {"colour"};
        EXPECT_RC(BETTERPG_RESULT_CONFIG,
                  betterpg_manager_configure(m, "app", unknown, bad_vals, 1, NULL));
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND,
                  betterpg_manager_configure(m, "nosuch", keys, vals, 1, NULL));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER,
                  betterpg_manager_configure(m, "app", NULL, vals, 1, NULL));
        REQUIRE_OK(betterpg_manager_configure(m, "app", NULL, NULL, 0, &json));
        CHECK(json != NULL && strstr(json, "\"keep_last\":3") != NULL);
        betterpg_string_free(json);
        json = NULL;
        const char *clear_keys[] = {"ttl", "keep_last", "credentials"};
        const char *clear_vals[] = {"none", "none", "none"};
        REQUIRE_OK(betterpg_manager_configure(m, "app", clear_keys, clear_vals, 3, &json));
        CHECK(json != NULL && strstr(json, "\"ttl\":null") != NULL);
        betterpg_string_free(json);
    }

    /* --- named snapshots --------------------------------------------------- */
    {
        char *json = NULL;
        char *app_url = NULL;
        REQUIRE_OK(betterpg_manager_url(m, "app", &app_url));
        REQUIRE_OK(betterpg_manager_snapshot(m, "app", "before",
                                             BETTERPG_MODE_APPLICATION_CONSISTENT, &json));
        CHECK(json != NULL && strstr(json, "\"full_name\":\"app@before\"") != NULL);
        CHECK(json != NULL && strstr(json, "\"mode\":\"application-consistent\"") != NULL);
        betterpg_string_free(json);
        json = NULL;
        /* The source moves on; a branch of the snapshot does not see it. */
        CHECK(sql_number(app_url, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(2001, 2100) g") == 0);
        CHECK(sql_number(app_url, "SELECT count(*) FROM t") == 1090);
        betterpg_branch_report *snap_report = NULL;
        REQUIRE_OK(betterpg_manager_branch(m, "app@before", "fromsnap", NULL, &snap_report));
        CHECK(sql_number(betterpg_info_url(betterpg_branch_report_branch(snap_report)),
                         "SELECT count(*) FROM t") == 990);
        CHECK(streq(betterpg_info_parent(betterpg_branch_report_branch(snap_report)), "app"));
        betterpg_branch_report_free(snap_report);
        snap_report = NULL;
        REQUIRE_OK(betterpg_manager_snapshots(m, "app", &json));
        CHECK(json != NULL && strstr(json, "\"branches\":[\"fromsnap\"]") != NULL);
        betterpg_string_free(json);
        json = NULL;
        /* reset_to: a branch of the source goes back to the snapshot. */
        REQUIRE_OK(betterpg_manager_branch(m, "app", "later", NULL, NULL));
        REQUIRE_OK(betterpg_manager_reset_to(m, "later", "app@before", NULL, &snap_report));
        CHECK(sql_number(betterpg_info_url(betterpg_branch_report_branch(snap_report)),
                         "SELECT count(*) FROM t") == 990);
        betterpg_branch_report_free(snap_report);
        /* A crash-consistent one, named by the time (of the branch: it goes
         * with it below). */
        REQUIRE_OK(betterpg_manager_snapshot(m, "later", NULL, BETTERPG_MODE_CRASH_CONSISTENT, &json));
        CHECK(json != NULL && strstr(json, "\"auto\":true") != NULL);
        betterpg_string_free(json);
        json = NULL;
        /* Bad input: typed errors, nothing written. */
        char *untouched_j = (char *)&failures;
        json = untouched_j;
        EXPECT_RC(BETTERPG_RESULT_INVALID_NAME,
                  betterpg_manager_snapshot(m, "app", "a b", BETTERPG_MODE_APPLICATION_CONSISTENT, &json));
        EXPECT_RC(BETTERPG_RESULT_ALREADY_EXISTS,
                  betterpg_manager_snapshot(m, "app", "before", BETTERPG_MODE_APPLICATION_CONSISTENT, &json));
        EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT, betterpg_manager_snapshot(m, "app", "x", 7, &json));
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_snapshots(m, "nosuch", &json));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER,
                  betterpg_manager_snapshot(m, NULL, "x", BETTERPG_MODE_APPLICATION_CONSISTENT, &json));
        CHECK(json == untouched_j);
        json = NULL;
        EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT, betterpg_manager_destroy_snapshot(m, "app", false));
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_branch(m, "app@nosuch", "x", NULL, NULL));
        /* Retention and the schedule, as dry runs (no policy: nothing goes). */
        REQUIRE_OK(betterpg_manager_prune_snapshots(m, NULL, true, &json));
        CHECK(json != NULL && strstr(json, "\"pruned\":[]") != NULL);
        betterpg_string_free(json);
        json = NULL;
        REQUIRE_OK(betterpg_manager_run_snapshot_policy(m, "app", true, &json));
        CHECK(json != NULL && strstr(json, "\"due\":[]") != NULL);
        betterpg_string_free(json);
        json = NULL;
        /* Destroy: refused while a branch depends on it; force takes it. */
        EXPECT_RC(BETTERPG_RESULT_HAS_DEPENDENTS,
                  betterpg_manager_destroy_snapshot(m, "app@before", false));
        REQUIRE_OK(betterpg_manager_destroy_snapshot(m, "app@before", true));
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_url(m, "fromsnap", &json));
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_url(m, "later", &json));
        REQUIRE_OK(betterpg_manager_snapshots(m, "app", &json));
        CHECK(json != NULL && strstr(json, "app@before") == NULL);
        betterpg_string_free(json);
        /* app as the checks below expect it. */
        CHECK(sql_number(app_url, "DELETE FROM t WHERE id > 2000") == 0);
        betterpg_string_free(app_url);
    }

    REQUIRE_OK(betterpg_manager_info(m, "crash", &info));
    CHECK(streq(betterpg_info_name(info), "crash"));
    CHECK(streq(betterpg_info_parent(info), "src"));
    CHECK(streq(betterpg_info_status(info), "running"));
    CHECK(betterpg_info_port(info) ==
          betterpg_info_port(betterpg_branch_report_branch(report2)));
    betterpg_info_free(info);
    info = NULL;
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "nosuch", &info));
    CHECK(contains(betterpg_last_error_message(), "nosuch"));
    EXPECT_RC(BETTERPG_RESULT_INVALID_NAME, betterpg_manager_info(m, "x;rm -rf", &info));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_info(m, "src", NULL));
    CHECK(info == NULL);

    REQUIRE_OK(betterpg_manager_list(m, &list));
    REQUIRE(betterpg_info_list_len(list) == 3);
    /* Parents before their branches, siblings by name. */
    CHECK(streq(betterpg_info_name(betterpg_info_list_get(list, 0)), "src"));
    CHECK(streq(betterpg_info_name(betterpg_info_list_get(list, 1)), "app"));
    CHECK(streq(betterpg_info_name(betterpg_info_list_get(list, 2)), "crash"));
    {
        int databases = 0, branches = 0;
        for (size_t i = 0; i < betterpg_info_list_len(list); i++) {
            const betterpg_info *e = betterpg_info_list_get(list, i);
            printf("  list: %-6s %-8s %-7s port %u\n", betterpg_info_name(e),
                   betterpg_info_kind(e), betterpg_info_status(e),
                   (unsigned)betterpg_info_port(e));
            if (betterpg_info_is_branch(e)) {
                branches++;
            } else {
                databases++;
            }
        }
        CHECK(databases == 1 && branches == 2);
    }
    CHECK(betterpg_info_list_get(list, 3) == NULL);
    betterpg_info_list_free(list);
    list = NULL;
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_list(m, NULL));

    /* --- stop / start ------------------------------------------------------ */
    REQUIRE_OK(betterpg_manager_stop(m, "app", &info));
    CHECK(streq(betterpg_info_status(info), "stopped"));
    CHECK(!betterpg_info_is_running(info));
    betterpg_info_free(info);
    info = NULL;
    CHECK(!can_connect(betterpg_info_url(app)));
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_stop(m, "app", NULL)); /* already stopped */
    {
        /* Another program on app's port: a port error whose reason says
         * "taken" (decide on the fields, not the message). */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd >= 0);
        /* The stopped server's connections may leave the port in TIME_WAIT;
         * SO_REUSEADDR binds anyway (a listener still refuses betterpg's
         * probe: Linux lets no second socket bind a listening port). */
        int one = 1;
        CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)betterpg_info_port(app));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int held = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 1) == 0;
        CHECK(held); /* a failure here is counted; the checks below need the port held */
        if (held) {
            EXPECT_RC(BETTERPG_RESULT_PORT, betterpg_manager_start(m, "app", &info));
            CHECK(info == NULL);
            CHECK(betterpg_last_error_reason() != NULL &&
                  streq(betterpg_last_error_reason(), "taken"));
            CHECK(betterpg_last_error_sqlstate() == NULL);
        }
        close(fd);
    }
    REQUIRE_OK(betterpg_manager_start(m, "app", &info));
    CHECK(streq(betterpg_info_status(info), "running"));
    CHECK(betterpg_info_port(info) == betterpg_info_port(app));
    betterpg_info_free(info);
    info = NULL;
    CHECK(sql_number(betterpg_info_url(app), "SELECT count(*) FROM t") == 990);
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_manager_start(m, "app", NULL)); /* already running */
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_start(m, "nosuch", &info));
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_stop(m, "nosuch", &info));
    EXPECT_RC(BETTERPG_RESULT_INVALID_NAME, betterpg_manager_start(m, "-x", &info));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_stop(m, NULL, &info));
    CHECK(info == NULL);

    REQUIRE_OK(betterpg_manager_logs(m, "app", 5, &log));
    CHECK(log != NULL && log[0] != '\0');
    betterpg_string_free(log);
    log = NULL;
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_logs(m, "nosuch", 5, &log));
    CHECK(log == NULL);
    test_follow_logs(m, "app", betterpg_info_url(app));
    test_doctor(home);
    test_audit(m);
    test_mask_check(m, home, betterpg_info_url(src));
    test_mask(m, home, betterpg_info_url(src));
    test_credentials(m, betterpg_info_url(src));

    /* --- reset: app goes back to src's current rows, same port ------------- */
    betterpg_branch_report_free(report2);
    report2 = NULL;
    /* The same options handle again: it was read, not consumed. */
    REQUIRE_OK(betterpg_manager_reset(m, "app", bopts, &report2));
    {
        const betterpg_info *reset = betterpg_branch_report_branch(report2);
        CHECK(streq(betterpg_info_name(reset), "app"));
        CHECK(streq(betterpg_info_mode(reset), "crash-consistent"));
        CHECK(betterpg_info_port(reset) == betterpg_info_port(app));
        /* Its password file was there: same password, same URL. */
        CHECK(!betterpg_branch_report_password_changed(report2));
        CHECK(!betterpg_branch_report_password_changed(NULL));
        CHECK(streq(betterpg_info_url(reset), betterpg_info_url(app)));
        CHECK(sql_number(betterpg_info_url(reset), "SELECT count(*) FROM t") == 1001);
        CHECK(sql_number(betterpg_info_url(app), "SELECT count(*) FROM t WHERE id <= 10") == 10);
    }
    r = untouched;
    EXPECT_RC(BETTERPG_RESULT_UNSUPPORTED, betterpg_manager_reset(m, "src", NULL, &r));
    CHECK(contains(betterpg_last_error_message(), "not a branch"));
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_reset(m, "nosuch", NULL, &r));
    EXPECT_RC(BETTERPG_RESULT_INVALID_NAME, betterpg_manager_reset(m, "a b", NULL, &r));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_reset(m, NULL, NULL, &r));
    /* A reset keeps the branch's runtime and image. */
    EXPECT_RC(BETTERPG_RESULT_OK, betterpg_branch_options_set_runtime(bopts, "native"));
    EXPECT_RC(BETTERPG_RESULT_UNSUPPORTED, betterpg_manager_reset(m, "app", bopts, &r));
    CHECK(contains(betterpg_last_error_message(), "runtime"));
    CHECK(r == untouched);
    /* A refused reset leaves the branch as it was. */
    CHECK(sql_number(betterpg_info_url(app), "SELECT count(*) FROM t") == 1001);
    test_rewind(m, betterpg_info_url(app));
    test_owner(m);

    /* --- pool space -------------------------------------------------------- */
    {
        betterpg_pool_usage u;
        memset(&u, 0xAB, sizeof u);
        REQUIRE_OK(betterpg_manager_pool_usage(m, &u));
        printf("  pool: %llu used, %llu available; branches %llu of %llu\n",
               (unsigned long long)u.used, (unsigned long long)u.available,
               (unsigned long long)u.branches_used, (unsigned long long)u.branches_limit);
        /* A 1 GiB pool file: used + available is a bit under it. */
        CHECK(u.used > 0 && u.available > 0);
        CHECK(u.used + u.available > ((uint64_t)1 << 30) / 2);
        CHECK(u.used + u.available <= (uint64_t)1 << 30);
        CHECK(!u.warning);
        /* Two live branches reserve 32 MiB each (set at init above). */
        CHECK(u.branches_used >= (uint64_t)64 << 20);
        /* Headroom 20%: the branches may not use the whole pool. */
        CHECK(u.branches_limit > u.branches_used);
        CHECK(u.branches_limit < u.used + u.available);
        CHECK(!u.branches_warning);
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_pool_usage(m, NULL));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_pool_usage(NULL, &u));
    }

    /* --- gc: a process killed in the middle of a branch ---------------------- */
    {
        size_t found = 12345;
        REQUIRE_OK(betterpg_manager_gc(m, true, &found));
        CHECK(found == 0);
        REQUIRE(kill_mid_branch(argv[0], home));
        printf("  killed a child process in the middle of branching src -> orphan\n");
        /* An operator's snapshot of the orphaned clone: gc leaves the clone
         * (and the snapshot it was cloned from) alone and says so in the
         * report's kept list, removing nothing of it. */
        {
            betterpg_info *oi = NULL;
            betterpg_gc_report *gr = NULL;
            char manual[512], out[64];
            const char *what = NULL, *name = NULL, *reason = NULL;
            REQUIRE_OK(betterpg_manager_info(m, "orphan", &oi));
            snprintf(manual, sizeof manual, "%s@operator-manual", betterpg_info_dataset(oi));
            {
                char *const argv_[] = {"zfs", "snapshot", manual, NULL};
                REQUIRE(first_line_of(argv_, out, sizeof out) == 0);
            }
            REQUIRE_OK(betterpg_manager_gc_report(m, true, &gr));
            CHECK(betterpg_gc_report_dry_run(gr));
            CHECK(betterpg_gc_report_kept_count(gr) == 2);
            int kept_clone = 0;
            for (size_t i = 0; i < betterpg_gc_report_kept_count(gr); i++) {
                REQUIRE_OK(betterpg_gc_report_kept(gr, i, &what, &name, &reason));
                printf("  gc keeps %s %s: %s\n", what, name, reason);
                if (streq(what, "dataset") && streq(name, betterpg_info_dataset(oi))) {
                    kept_clone = 1;
                    CHECK(contains(reason, "operator-manual"));
                }
            }
            CHECK(kept_clone);
            /* Nothing of the orphan is garbage while it is kept. */
            for (size_t i = 0; i < betterpg_gc_report_item_count(gr); i++) {
                REQUIRE_OK(betterpg_gc_report_item(gr, i, &what, &name, &reason));
                CHECK(!contains(name, "orphan"));
            }
            EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT,
                      betterpg_gc_report_kept(gr, 99, &what, &name, &reason));
            EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER,
                      betterpg_gc_report_kept(gr, 0, NULL, &name, &reason));
            EXPECT_RC(BETTERPG_RESULT_INVALID_ARGUMENT,
                      betterpg_gc_report_item(gr, 99, &what, &name, &reason));
            EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_gc_report(m, true, NULL));
            EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_gc_report(NULL, true, &gr));
            CHECK(betterpg_gc_report_kept_count(NULL) == 0);
            CHECK(betterpg_gc_report_item_count(NULL) == 0);
            CHECK(!betterpg_gc_report_dry_run(NULL));
            betterpg_gc_report_free(gr);
            betterpg_gc_report_free(NULL);
            /* The real run keeps them too; then the operator removes the
             * snapshot and gc may take the orphan. */
            REQUIRE_OK(betterpg_manager_gc_report(m, false, &gr));
            CHECK(!betterpg_gc_report_dry_run(gr));
            CHECK(betterpg_gc_report_kept_count(gr) == 2);
            betterpg_gc_report_free(gr);
            {
                char *const argv_[] = {"zfs", "destroy", manual, NULL};
                REQUIRE(first_line_of(argv_, out, sizeof out) == 0);
            }
            betterpg_info_free(oi);
        }
        found = 0;
        REQUIRE_OK(betterpg_manager_gc(m, true, &found));
        printf("  gc --dry-run found %zu leftovers\n", found);
        /* Killed after the clone, before the server started: the catalog
         * entry, the clone, its snapshot and the branch's password file
         * (no log yet: the server never ran). */
        CHECK(found == 4);
        {
            betterpg_gc_report *gr = NULL;
            REQUIRE_OK(betterpg_manager_gc_report(m, true, &gr));
            CHECK(betterpg_gc_report_item_count(gr) == found);
            CHECK(betterpg_gc_report_kept_count(gr) == 0);
            betterpg_gc_report_free(gr);
        }
        size_t again = 0;
        REQUIRE_OK(betterpg_manager_gc(m, true, &again));
        CHECK(again == found); /* a dry run changed nothing */
        size_t removed = 0;
        REQUIRE_OK(betterpg_manager_gc(m, false, &removed));
        CHECK(removed == found);
        REQUIRE_OK(betterpg_manager_gc(m, true, &again));
        CHECK(again == 0);
        REQUIRE_OK(betterpg_manager_gc(m, false, NULL));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_gc(NULL, true, &again));
        /* The sources kept serving, and the same branch now succeeds. */
        CHECK(sql_number(betterpg_info_url(src), "SELECT count(*) FROM t") == 1001);
        REQUIRE_OK(betterpg_manager_branch(m, "src", "orphan", NULL, NULL));
        REQUIRE_OK(betterpg_manager_url(m, "orphan", &url));
        CHECK(sql_number(url, "SELECT count(*) FROM t") == 1001);
        betterpg_string_free(url);
        url = NULL;
        REQUIRE_OK(betterpg_manager_destroy(m, "orphan", false));
    }

    /* --- branch at a point in time: retain_wal, set_at, the window -------- */
    {
        betterpg_info *pi = NULL, *pw = NULL;
        betterpg_branch_options *at = NULL;
        betterpg_branch_report *pr = NULL;
        const char *keys[] = {"retain_wal"}, *values[] = {"1h"};
        char lsn[64] = "", purl[512] = "";
        REQUIRE_OK(betterpg_manager_create(m, "pitr", NULL, &pi));
        snprintf(purl, sizeof purl, "%s", betterpg_info_url(pi));
        betterpg_info_free(pi);
        CHECK(betterpg_info_wal_retain_secs(src) == 0);
        CHECK(!betterpg_info_wal_active(src) && betterpg_info_wal_from_time(src) == NULL);
        REQUIRE_OK(betterpg_manager_configure(m, "pitr", keys, values, 1, NULL));
        /* archive_mode is read at start: a restart starts the retention. */
        REQUIRE_OK(betterpg_manager_stop(m, "pitr", NULL));
        REQUIRE_OK(betterpg_manager_start(m, "pitr", &pw));
        CHECK(betterpg_info_wal_retain_secs(pw) == 3600);
        CHECK(betterpg_info_wal_active(pw));
        CHECK(betterpg_info_wal_from_time(pw) != NULL);
        CHECK(betterpg_info_wal_from_lsn(pw) != NULL);
        betterpg_info_free(pw);
        CHECK(sql_number(purl, "CREATE TABLE p (x int)") == 0);
        CHECK(sql_number(purl, "INSERT INTO p VALUES (1)") == 0);
        sql_text(purl, "SELECT pg_current_wal_insert_lsn()::text", lsn, sizeof lsn);
        CHECK(lsn[0] != 0);
        CHECK(sql_number(purl, "INSERT INTO p VALUES (2)") == 0);
        at = betterpg_branch_options_new();
        REQUIRE(at != NULL);
        REQUIRE_OK(betterpg_branch_options_set_at(at, lsn));
        REQUIRE_OK(betterpg_manager_branch(m, "pitr", "pitr-at", at, &pr));
        CHECK(sql_number(betterpg_info_url(betterpg_branch_report_branch(pr)),
                         "SELECT count(*) FROM p") == 1);
        betterpg_branch_report_free(pr);
        REQUIRE_OK(betterpg_manager_info(m, "pitr", &pw));
        CHECK(betterpg_info_wal_to_time(pw) != NULL && betterpg_info_wal_to_lsn(pw) != NULL);
        CHECK(betterpg_info_wal_bytes(pw) > 0);
        betterpg_info_free(pw);
        /* Outside the window: a typed error stating it; nothing made. */
        REQUIRE_OK(betterpg_branch_options_set_at(at, "2000-01-01 00:00:00+00"));
        EXPECT_RC(BETTERPG_RESULT_OUT_OF_WINDOW, betterpg_manager_branch(m, "pitr", "early", at, NULL));
        CHECK(contains(betterpg_last_error_message(), "restorable window"));
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "early", &pw));
        REQUIRE_OK(betterpg_branch_options_set_at(at, "yesterday"));
        EXPECT_RC(BETTERPG_RESULT_CONFIG, betterpg_manager_branch(m, "pitr", "early", at, NULL));
        EXPECT_RC(BETTERPG_RESULT_UNSUPPORTED, betterpg_manager_reset(m, "pitr-at", at, NULL));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_at(NULL, lsn));
        REQUIRE_OK(betterpg_branch_options_set_at(at, NULL)); /* back to "now" */
        REQUIRE_OK(betterpg_manager_reset(m, "pitr-at", at, NULL));
        betterpg_branch_options_free(at);
        CHECK(betterpg_info_wal_retain_secs(NULL) == 0 && betterpg_info_wal_to_lsn(NULL) == NULL);
        REQUIRE_OK(betterpg_manager_destroy(m, "pitr", true));
    }

    /* --- protect ------------------------------------------------------------ */
    {
        betterpg_info *p = NULL;
        REQUIRE_OK(betterpg_manager_protect(m, "app", &p));
        CHECK(betterpg_info_protected(p));
        betterpg_info_free(p);
        p = NULL;
        /* Refused even forced, directly or through its parent. */
        EXPECT_RC(BETTERPG_RESULT_PROTECTED, betterpg_manager_destroy(m, "app", true));
        CHECK(contains(betterpg_last_error_message(), "protected"));
        EXPECT_RC(BETTERPG_RESULT_PROTECTED, betterpg_manager_destroy(m, "src", true));
        EXPECT_RC(BETTERPG_RESULT_PROTECTED, betterpg_manager_reset(m, "app", NULL, NULL));
        REQUIRE_OK(betterpg_manager_info(m, "app", &p));
        CHECK(betterpg_info_protected(p) && betterpg_info_is_running(p));
        betterpg_info_free(p);
        p = NULL;
        REQUIRE_OK(betterpg_manager_unprotect(m, "app", NULL));
        REQUIRE_OK(betterpg_manager_info(m, "app", &p));
        CHECK(!betterpg_info_protected(p));
        betterpg_info_free(p);
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_protect(m, "nosuch", NULL));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_protect(NULL, "app", NULL));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_unprotect(m, NULL, NULL));
    }

    /* --- expiry by a daemon pass --------------------------------------------- */
    {
        betterpg_branch_options *t = betterpg_branch_options_new();
        char *json = NULL;
        betterpg_info *ti = NULL;
        REQUIRE_OK(betterpg_branch_options_set_ttl(t, 1));
        REQUIRE_OK(betterpg_manager_branch(m, "src", "short", t, NULL));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_branch_options_set_ttl(NULL, 1));
        betterpg_branch_options_free(t);
        REQUIRE_OK(betterpg_manager_info(m, "short", &ti));
        CHECK(betterpg_info_expires_at(ti) > 0);
        betterpg_info_free(ti);
        ti = NULL;
        sleep(2);
        /* A dry run says so and changes nothing. */
        REQUIRE_OK(betterpg_manager_daemon_once(m, true, &json));
        CHECK(json != NULL && contains(json, "\"action\":\"expire\",\"name\":\"short\",\"result\":\"dry_run\""));
        betterpg_string_free(json);
        json = NULL;
        REQUIRE_OK(betterpg_manager_info(m, "short", &ti));
        betterpg_info_free(ti);
        ti = NULL;
        REQUIRE_OK(betterpg_manager_daemon_once(m, false, &json));
        CHECK(json != NULL && contains(json, "\"action\":\"expire\",\"name\":\"short\",\"result\":\"done\""));
        betterpg_string_free(json);
        json = NULL;
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "short", &ti));
        CHECK(ti == NULL);
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_daemon_once(NULL, true, NULL));
    }

    /* --- follow: a replica of a real primary (the database "src", reached on
     * 127.0.0.1 over a replication connection), with progress; refusals that
     * leave nothing --------------------------------------------------------- */
    {
        betterpg_follow_options *fo = betterpg_follow_options_new();
        betterpg_info *rep = NULL;
        betterpg_branch_report *rr = NULL;
        unsigned long calls = 0;
        char dir[4096], bad[512];
        REQUIRE(fo != NULL);
        snprintf(dir, sizeof dir, "%s/replicas/repc", home);
        /* Nothing listens on port 1: unreachable, no SQLSTATE. */
        EXPECT_RC(BETTERPG_RESULT_POSTGRES,
                  betterpg_manager_follow(m, "repc", "postgresql://rep:pw@127.0.0.1:1/postgres", fo, &rep));
        CHECK(contains(betterpg_last_error_message(), "check that the primary runs"));
        CHECK(!contains(betterpg_last_error_message(), ":pw@"));
        CHECK(betterpg_last_error_sqlstate() == NULL);
        CHECK(rep == NULL);
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "repc", &info));
        CHECK(access(dir, F_OK) != 0);
        /* A wrong password: the server's words, SQLSTATE 28P01. */
        snprintf(bad, sizeof bad, "postgresql://postgres:wrong@127.0.0.1:%u/postgres",
                 (unsigned)betterpg_info_port(src));
        EXPECT_RC(BETTERPG_RESULT_POSTGRES, betterpg_manager_follow(m, "repc", bad, NULL, &rep));
        CHECK(contains(betterpg_last_error_message(), "password authentication failed"));
        CHECK(betterpg_last_error_sqlstate() != NULL &&
              strcmp(betterpg_last_error_sqlstate(), "28P01") == 0);
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "repc", &info));
        CHECK(access(dir, F_OK) != 0);
        /* Refused before anything is asked: no user, a bad slot name, NULLs. */
        EXPECT_RC(BETTERPG_RESULT_CONFIG,
                  betterpg_manager_follow(m, "repc", "postgresql://127.0.0.1:1/postgres", NULL, &rep));
        CHECK(contains(betterpg_last_error_message(), "names no user"));
        REQUIRE_OK(betterpg_follow_options_set_slot(fo, "Bad-Slot"));
        EXPECT_RC(BETTERPG_RESULT_CONFIG,
                  betterpg_manager_follow(m, "repc", betterpg_info_url(src), fo, &rep));
        CHECK(contains(betterpg_last_error_message(), "invalid slot name"));
        REQUIRE_OK(betterpg_follow_options_set_slot(fo, NULL));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_follow(m, "repc", NULL, fo, &rep));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER,
                  betterpg_manager_follow(NULL, "repc", betterpg_info_url(src), fo, &rep));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_follow_options_set_slot(NULL, "s"));
        CHECK(rep == NULL);
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "repc", &info));

        /* The real thing: a replica of src, then a branch of the replica. */
        REQUIRE_OK(betterpg_follow_options_set_progress(fo, count_progress, &calls));
        REQUIRE_OK(betterpg_manager_follow(m, "repc", betterpg_info_url(src), fo, &rep));
        REQUIRE(rep != NULL);
        CHECK(strcmp(betterpg_info_kind(rep), "replica") == 0);
        CHECK(strcmp(betterpg_info_status(rep), "running") == 0);
        CHECK(calls > 0);
        CHECK(access(dir, F_OK) == 0);
        REQUIRE_OK(betterpg_manager_branch(m, "repc", "repdev", NULL, &rr));
        const char *dev_url = betterpg_info_url(betterpg_branch_report_branch(rr));
        long before = sql_number(betterpg_info_url(src), "SELECT count(*) FROM t");
        CHECK(before > 0 && sql_number(dev_url, "SELECT count(*) FROM t") == before);

        /* follow --rebuild: refused for what is not a replica, then a new
         * base backup (the stored URL and password: from_url "") takes the
         * replica's place on its port, while repdev, a clone of the old
         * data, runs on; the rebuilt replica is branched again. */
        {
            betterpg_info *rb = NULL;
            betterpg_branch_report *rr2 = NULL;
            REQUIRE_OK(betterpg_follow_options_set_rebuild(fo, true));
            EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_follow_options_set_rebuild(NULL, true));
            EXPECT_RC(BETTERPG_RESULT_INVALID_STATE, betterpg_manager_follow(m, "src", "", fo, &rb));
            CHECK(contains(betterpg_last_error_message(), "not a replica"));
            EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_follow(m, "nosuch", "", fo, &rb));
            CHECK(rb == NULL);
            calls = 0;
            REQUIRE_OK(betterpg_manager_follow(m, "repc", "", fo, &rb));
            REQUIRE(rb != NULL);
            CHECK(calls > 0);
            CHECK(strcmp(betterpg_info_kind(rb), "replica") == 0);
            CHECK(strcmp(betterpg_info_status(rb), "running") == 0);
            CHECK(betterpg_info_port(rb) == betterpg_info_port(rep));
            CHECK(strcmp(betterpg_info_dataset(rb), betterpg_info_dataset(rep)) != 0);
            CHECK(sql_number(dev_url, "SELECT count(*) FROM t") == before);
            CHECK(sql_number(dev_url, "INSERT INTO t VALUES (-1)") == 0);
            CHECK(sql_number(betterpg_info_url(src), "INSERT INTO t VALUES (1000001)") == 0);
            REQUIRE_OK(betterpg_manager_branch(m, "repc", "repdev2", NULL, &rr2));
            CHECK(sql_number(betterpg_info_url(betterpg_branch_report_branch(rr2)),
                             "SELECT count(*) FROM t") == before + 1);
            CHECK(sql_number(betterpg_info_url(src), "SELECT count(*) FROM t WHERE id < 0") == 0);
            REQUIRE_OK(betterpg_follow_options_set_rebuild(fo, false));
            betterpg_branch_report_free(rr2);
            betterpg_info_free(rb);
        }
        betterpg_branch_report_free(rr);
        REQUIRE_OK(betterpg_manager_destroy(m, "repc", true));
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "repdev", &info));
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "repdev2", &info));
        CHECK(access(dir, F_OK) != 0);
        betterpg_info_free(rep);
        betterpg_follow_options_free(fo);
        betterpg_follow_options_free(NULL);
    }

    /* --- attach / detach: refusals that record nothing ---------------------- */
    {
        size_t gone = 42;
        betterpg_info *att = NULL;
        /* A URL without a user is refused before anything is looked at. */
        EXPECT_RC(BETTERPG_RESULT_CONFIG,
                  betterpg_manager_attach(m, "prodc", "/nonexistent",
                                          "postgresql://127.0.0.1:1/postgres", &att));
        CHECK(contains(betterpg_last_error_message(), "names no user"));
        CHECK(att == NULL);
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "prodc", &info));
        /* Only an attached cluster is detached; a database is not touched. */
        EXPECT_RC(BETTERPG_RESULT_UNSUPPORTED, betterpg_manager_detach(m, "src", true, &gone));
        CHECK(contains(betterpg_last_error_message(), "not an attached cluster"));
        CHECK(gone == 42);
        CHECK(sql_number(betterpg_info_url(src), "SELECT count(*) FROM t") > 0);
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_detach(m, "nosuch", false, NULL));
        EXPECT_RC(BETTERPG_RESULT_INVALID_NAME, betterpg_manager_detach(m, "a.b", false, NULL));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER,
                  betterpg_manager_attach(m, "x", NULL, "postgresql://u@h/d", NULL));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER,
                  betterpg_manager_attach(NULL, "x", "/d", "postgresql://u@h/d", NULL));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_detach(NULL, "x", false, NULL));
        /* Policies for its branches are parsed (files found) before anything. */
        const char *pk[] = {"mask", "forbid_unmasked"};
        const char *pv[] = {"/nonexistent/m.sql", "true"};
        EXPECT_RC(BETTERPG_RESULT_CONFIG,
                  betterpg_manager_attach_with_settings(m, "prodc", "/nonexistent",
                                                        "postgresql://u@127.0.0.1:1/postgres",
                                                        pk, pv, 2, &att));
        CHECK(contains(betterpg_last_error_message(), "/nonexistent/m.sql"));
        CHECK(att == NULL);
        const char *bk[] = {"no_such_key"};
        EXPECT_RC(BETTERPG_RESULT_CONFIG,
                  betterpg_manager_attach_with_settings(m, "prodc", "/nonexistent",
                                                        "postgresql://u@127.0.0.1:1/postgres",
                                                        bk, pv + 1, 1, &att));
        EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "prodc", &info));
        EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER,
                  betterpg_manager_attach_with_settings(m, "x", "/d", "postgresql://u@h/d",
                                                        NULL, pv, 1, NULL));
    }

    /* --- destroy ------------------------------------------------------------ */
    EXPECT_RC(BETTERPG_RESULT_HAS_DEPENDENTS, betterpg_manager_destroy(m, "src", false));
    CHECK(contains(betterpg_last_error_message(), "app"));
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_destroy(m, "nosuch", false));
    EXPECT_RC(BETTERPG_RESULT_INVALID_NAME, betterpg_manager_destroy(m, "a.b", false));
    EXPECT_RC(BETTERPG_RESULT_NULL_PARAMETER, betterpg_manager_destroy(m, NULL, true));
    REQUIRE_OK(betterpg_manager_destroy(m, "app", false));
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_info(m, "app", &info));
    CHECK(!can_connect(betterpg_info_url(app)));
    /* The copy of the report outlives the branch. */
    CHECK(streq(betterpg_info_name(app), "app"));
    /* force: destroys crash, then src. */
    REQUIRE_OK(betterpg_manager_destroy(m, "src", true));
    REQUIRE_OK(betterpg_manager_list(m2, &list));
    CHECK(betterpg_info_list_len(list) == 0);
    betterpg_info_list_free(list);
    list = NULL;
    EXPECT_RC(BETTERPG_RESULT_NOT_FOUND, betterpg_manager_destroy(m, "src", true));

out:
    if (failures > 0 && m != NULL) {
        /* Leave no server behind after a failed step (errors ignored). */
        betterpg_manager_destroy(m, "src", true);
        betterpg_manager_destroy(m, "app", true);
        betterpg_manager_destroy(m, "crash", true);
        betterpg_manager_destroy(m, "orphan", true);
        betterpg_manager_destroy(m, "pitr", true);
        betterpg_manager_gc(m, false, NULL);
    }
    betterpg_init_options_free(opts);
    betterpg_create_options_free(copts);
    betterpg_branch_options_free(bopts);
    betterpg_info_free(info);
    betterpg_info_free(src);
    betterpg_info_list_free(list);
    betterpg_branch_report_free(report);
    betterpg_branch_report_free(report2);
    betterpg_string_free(url);
    betterpg_string_free(log);
    betterpg_manager_free(m2);
    betterpg_manager_free(m);
    printf("%d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}

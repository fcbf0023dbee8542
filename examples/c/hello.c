/* Use betterpg from C: create a database, branch it, print the branch's URL. */
#include <betterpg.h>
#include <stdio.h>

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, betterpg_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    betterpg_manager *m = NULL;
    betterpg_branch_options *opts = NULL;
    betterpg_branch_report *r = NULL;
    if (argc != 2) {
        fprintf(stderr, "usage: %s BETTERPG_HOME\n", argv[0]);
        return 2;
    }
    if (betterpg_manager_open(argv[1], &m)) return fail("open");
    if (betterpg_manager_create(m, "prod", NULL, NULL)) return fail("create"); /* default options */
    opts = betterpg_branch_options_new(); /* ours to free; the call only reads it */
    betterpg_branch_options_set_mode(opts, BETTERPG_MODE_APPLICATION_CONSISTENT);
    betterpg_branch_options_set_quota(opts, (uint64_t)1 << 30); /* at most 1 GiB of the pool */
    if (betterpg_manager_branch(m, "prod", "dev", opts, &r)) return fail("branch");
    betterpg_branch_options_free(opts);
    const betterpg_info *dev = betterpg_branch_report_branch(r);
    printf("branch %s of %s in %.0f ms: psql '%s'\n", betterpg_info_name(dev),
           betterpg_info_parent(dev), betterpg_branch_report_total_millis(r), betterpg_info_url(dev));
    betterpg_branch_report_free(r);
    if (betterpg_manager_destroy(m, "prod", true)) return fail("destroy"); /* and its branches */
    betterpg_manager_free(m);
    return 0;
}

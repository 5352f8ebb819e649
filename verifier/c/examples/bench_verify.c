/* The C side of verifier/bindings-bench.sh: tether_verify in a loop on one
 * token at a fixed time, to set against Verifier::verify_at in Rust
 * (verifier/c/examples/bench_verify.rs) on the same token.
 *
 *   bench_verify TOKEN_FILE VENDOR_PUB_FILE NOW SERVICE LEEWAY SECONDS_PER_MODE
 *
 * Prints "c cold OPS_PER_S" (tether_verifier_new_from_pem, tether_verify,
 * tether_verifier_free per call: the PEM parsed, empty caches, three
 * signatures checked) and "c cached OPS_PER_S" (one verifier, the same token
 * again: a cache hit), and "c cached_n OPS_PER_S" (the same through
 * tether_verify_n, the length given). No claims JSON is asked for (NULL), as the Rust loop
 * builds none. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tether_verifier.h>

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    char *buf = malloc(1 << 16);
    if (!buf) exit(2);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    while (*len > 0 && (buf[*len - 1] == '\n' || buf[*len - 1] == '\r')) (*len)--;
    buf[*len] = '\0';
    return buf;
}

static void check(TetherStatus st, const char *what) {
    if (st != TETHER_STATUS_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, tether_status_name(st), tether_last_error());
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s TOKEN_FILE VENDOR_PUB_FILE NOW SERVICE LEEWAY SECONDS_PER_MODE\n", argv[0]);
        return 2;
    }
    size_t token_len, pem_len;
    char *token = slurp(argv[1], &token_len);
    char *pem = slurp(argv[2], &pem_len);
    pem[pem_len++] = '\n'; /* PEM text ends with a newline */
    uint64_t now = strtoull(argv[3], NULL, 10);
    TetherExpectations expect = {
        .service = argv[4], .features = NULL, .features_len = 0,
        .leeway_secs = strtoull(argv[5], NULL, 10), .instance = NULL,
    };
    double secs = atof(argv[6]);

    long n = 0;
    double start = seconds(), elapsed;
    do {
        for (int i = 0; i < 64; i++) {
            TetherVerifier *v = NULL;
            check(tether_verifier_new_from_pem((const uint8_t *)pem, pem_len, &expect, &v), "new");
            check(tether_verify(v, token, NULL, now, NULL), "verify (cold)");
            tether_verifier_free(v);
        }
        n += 64;
    } while ((elapsed = seconds() - start) < secs);
    printf("c cold %.0f\n", (double)n / elapsed);

    TetherVerifier *v = NULL;
    check(tether_verifier_new_from_pem((const uint8_t *)pem, pem_len, &expect, &v), "new");
    check(tether_verify(v, token, NULL, now, NULL), "verify (first)");
    n = 0;
    start = seconds();
    do {
        for (int i = 0; i < 64; i++) check(tether_verify(v, token, NULL, now, NULL), "verify (cached)");
        n += 64;
    } while ((elapsed = seconds() - start) < secs);
    printf("c cached %.0f\n", (double)n / elapsed);

    /* The same, with the length given (tether_verify_n): no strlen. */
    n = 0;
    start = seconds();
    do {
        for (int i = 0; i < 64; i++)
            check(tether_verify_n(v, (const uint8_t *)token, token_len, NULL, now, NULL), "verify_n (cached)");
        n += 64;
    } while ((elapsed = seconds() - start) < secs);
    printf("c cached_n %.0f\n", (double)n / elapsed);
    tether_verifier_free(v);
    free(token);
    free(pem);
    return 0;
}

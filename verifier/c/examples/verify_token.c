/*
 * verify_token: verify a Tether token from C with libtether_verifier, and
 * optionally keep a service licensed with the refresher.
 *
 *   verify_token VENDOR_PUB SERVICE [FEATURE...] < token
 *       verifies the token on stdin now; prints the claims (JSON) or why it
 *       is refused. Exit 0: verified, 1: refused, 2: usage or setup error.
 *   verify_token --watch URL SECRET_FILE VENDOR_PUB SERVICE
 *       starts the refresher, waits up to 15 s for a license, prints the
 *       state, stops (giving the seat back). Exit 0: licensed, 1: not.
 *
 * Build (verifier/bindings-test.sh does):
 *   gcc -o verify_token verify_token.c $(pkg-config --cflags --libs tether-verifier)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tether_verifier.h"

static int usage(void) {
    fprintf(stderr,
            "usage: verify_token VENDOR_PUB SERVICE [FEATURE...] < token\n"
            "       verify_token --watch URL SECRET_FILE VENDOR_PUB SERVICE\n");
    return 2;
}

static const char *why(void) {
    const char *e = tether_last_error();
    return e ? e : "(no detail)";
}

static int watch(const char *url, const char *secret_file, const char *vendor_pub,
                 const char *service) {
    TetherExpectations expect = {.service = service, .leeway_secs = 5};
    TetherVerifier *verifier = NULL;
    TetherStatus st = tether_verifier_new_from_file(vendor_pub, &expect, &verifier);
    if (st != TETHER_STATUS_OK) {
        fprintf(stderr, "verifier: %s: %s\n", tether_status_name(st), why());
        return 2;
    }
    TetherWatch *w = NULL;
    st = tether_watch_start(url, secret_file, verifier, &w);
    tether_verifier_free(verifier); /* the watch keeps what it needs */
    if (st != TETHER_STATUS_OK) {
        fprintf(stderr, "watch: %s: %s\n", tether_status_name(st), why());
        return 2;
    }
    struct timespec tick = {0, 100 * 1000 * 1000};
    for (int i = 0; i < 150 && !tether_watch_is_licensed(w); i++) nanosleep(&tick, NULL);
    TetherLicenseState state;
    char *reason = NULL;
    st = tether_watch_state(w, &state, &reason);
    int licensed = st == TETHER_STATUS_OK && state == TETHER_LICENSE_STATE_LICENSED;
    printf("watch: %s (%s)\n", licensed ? "licensed" : "unlicensed", reason ? reason : "?");
    tether_string_free(reason);
    char *claims = NULL;
    if (tether_watch_claims(w, &claims) == TETHER_STATUS_OK && claims) printf("%s\n", claims);
    tether_string_free(claims);
    tether_watch_stop(w);
    return licensed ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--watch") == 0) {
        if (argc != 6) return usage();
        return watch(argv[2], argv[3], argv[4], argv[5]);
    }
    if (argc < 3) return usage();

    /* The token: stdin, trailing whitespace trimmed. */
    static char token[64 * 1024];
    size_t n = fread(token, 1, sizeof token - 1, stdin);
    token[n] = '\0';
    while (n > 0 && (token[n - 1] == '\n' || token[n - 1] == '\r' || token[n - 1] == ' '))
        token[--n] = '\0';

    TetherExpectations expect = {
        .service = argv[2],
        .features = (const char *const *)&argv[3],
        .features_len = (size_t)(argc - 3),
        .leeway_secs = 5,
        .instance = NULL,
    };
    TetherVerifier *verifier = NULL;
    TetherStatus st = tether_verifier_new_from_file(argv[1], &expect, &verifier);
    if (st != TETHER_STATUS_OK) {
        fprintf(stderr, "verifier: %s: %s\n", tether_status_name(st), why());
        return 2;
    }
    char *claims = NULL;
    st = tether_verify(verifier, token, NULL, 0 /* now */, &claims);
    if (st == TETHER_STATUS_OK) {
        printf("%s\n", claims);
    } else {
        printf("refused: %s: %s\n", tether_status_name(st), why());
    }
    tether_string_free(claims);
    tether_verifier_free(verifier);
    return st == TETHER_STATUS_OK ? 0 : (st < TETHER_STATUS_NULL_ARGUMENT ? 1 : 2);
}

/*
 * The conformance set (tests/conformance/vectors.json) through the C ABI,
 * plus bad input across the boundary. verifier/bindings-test.sh flattens the
 * JSON into one line per vector, fields separated by tabs:
 *   name expected now service features(comma-separated) leeway instance nonce
 *   accepted token refuse_grace vendor_pub
 * (an empty field is none; the PEM's newlines written as \n). accepted is
 * "-" for none (verify with tether_verify), else "=" and the accepted nonces
 * comma-separated (verify with tether_verify_fresh; "=" alone: none accepted).
 * refuse_grace is 1 for a verifier made with tether_verifier_refuse_grace.
 * Prints "N passed, N failed"; exit 0 only when none failed.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tether_verifier.h"

static int passed, failed;

static void check(int ok, const char *what, const char *detail) {
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL %s: %s\n", what, detail ? detail : "");
    }
}

static char *unescape_newlines(char *s) {
    char *r = s, *w = s;
    while (*r) {
        if (r[0] == '\\' && r[1] == 'n') {
            *w++ = '\n';
            r += 2;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return s;
}

static void run_vector(char *line) {
    char *f[12];
    for (int i = 0; i < 12; i++) {
        f[i] = strsep(&line, "\t");
        if (!f[i]) {
            check(0, "vector line", "fewer than 12 fields");
            return;
        }
    }
    const char *name = f[0], *expected = f[1];
    unsigned long long now = strtoull(f[2], NULL, 10);
    const char *features[16];
    size_t nfeat = 0;
    for (char *p = f[4]; p && *p && nfeat < 16;) features[nfeat++] = strsep(&p, ",");
    TetherExpectations expect = {
        .service = f[3],
        .features = features,
        .features_len = nfeat,
        .leeway_secs = strtoull(f[5], NULL, 10),
        .instance = *f[6] ? f[6] : NULL,
    };
    const char *nonce = *f[7] ? f[7] : NULL;
    int fresh = f[8][0] == '=';
    const char *accepted[16];
    size_t naccepted = 0;
    for (char *p = f[8] + 1; fresh && p && *p && naccepted < 16;)
        accepted[naccepted++] = strsep(&p, ",");
    const char *token = f[9];
    int refuse_grace = strcmp(f[10], "1") == 0;
    char *pem = unescape_newlines(f[11]);

    TetherVerifier *v = NULL;
    TetherStatus st = tether_verifier_new_from_pem((const uint8_t *)pem, strlen(pem), &expect, &v);
    if (st != TETHER_STATUS_OK) {
        check(0, name, tether_last_error());
        return;
    }
    if (refuse_grace && tether_verifier_refuse_grace(v) != TETHER_STATUS_OK) {
        check(0, name, tether_last_error());
        tether_verifier_free(v);
        return;
    }
    char *claims = NULL;
    st = fresh ? tether_verify_fresh(v, token, naccepted ? accepted : NULL, naccepted, now, &claims)
               : tether_verify(v, token, nonce, now, &claims);
    const char *got = tether_status_name(st);
    char detail[256];
    snprintf(detail, sizeof detail, "expected %s, got %s (%s)", expected, got,
             tether_last_error() ? tether_last_error() : "");
    int ok = strcmp(got, expected) == 0;
    if (ok && st == TETHER_STATUS_OK) ok = claims != NULL && strstr(claims, "\"aud\"") != NULL;
    if (ok && st == TETHER_STATUS_OK && fresh) ok = strstr(claims, "\"nonce_period\":300") != NULL;
    if (ok && st != TETHER_STATUS_OK) ok = claims == NULL;
    check(ok, name, detail);
    tether_string_free(claims);
    tether_verifier_free(v);
}

static void bad_input(const char *pem) {
    TetherExpectations expect = {.service = "backend", .leeway_secs = 5};
    TetherVerifier *v = NULL;
    check(tether_verifier_new_from_file(NULL, &expect, &v) == TETHER_STATUS_NULL_ARGUMENT && !v,
          "NULL path", NULL);
    check(tether_verifier_new_from_file("/nonexistent/vendor.pub", &expect, &v) ==
              TETHER_STATUS_BAD_KEY,
          "missing key file", NULL);
    check(tether_verifier_new_from_file("/etc/hostname", &expect, &v) == TETHER_STATUS_BAD_KEY,
          "not a key file", NULL);
    check(tether_verifier_new_from_pem((const uint8_t *)"junk", 4, &expect, &v) ==
              TETHER_STATUS_BAD_KEY,
          "junk PEM", NULL);
    check(tether_verifier_new_from_pem((const uint8_t *)pem, strlen(pem), NULL, &v) ==
              TETHER_STATUS_NULL_ARGUMENT,
          "NULL expectations", NULL);
    TetherExpectations bad_instance = {.service = "backend", .instance = "no spaces allowed"};
    check(tether_verifier_new_from_pem((const uint8_t *)pem, strlen(pem), &bad_instance, &v) ==
              TETHER_STATUS_INVALID_ARGUMENT,
          "bad instance id", NULL);
    check(tether_verifier_new_from_pem((const uint8_t *)pem, strlen(pem), &expect, &v) ==
              TETHER_STATUS_OK,
          "good PEM", tether_last_error());
    char *claims = (char *)1;
    check(tether_verify(NULL, "x", NULL, 0, &claims) == TETHER_STATUS_NULL_ARGUMENT && !claims,
          "NULL verifier", NULL);
    check(tether_verifier_refuse_grace(NULL) == TETHER_STATUS_NULL_ARGUMENT,
          "refuse_grace: NULL verifier", NULL);
    check(tether_verify(v, NULL, NULL, 0, NULL) == TETHER_STATUS_NULL_ARGUMENT, "NULL token",
          NULL);
    check(tether_verify(v, "\xff\xfe.a.b", NULL, 0, NULL) == TETHER_STATUS_INVALID_UTF8,
          "non-UTF-8 token", NULL);
    const char *nonces[] = {"n-1", NULL, "\xff"};
    claims = (char *)1;
    check(tether_verify_fresh(NULL, "x", nonces, 1, 0, &claims) == TETHER_STATUS_NULL_ARGUMENT &&
              !claims,
          "fresh: NULL verifier", NULL);
    check(tether_verify_fresh(v, NULL, nonces, 1, 0, NULL) == TETHER_STATUS_NULL_ARGUMENT,
          "fresh: NULL token", NULL);
    check(tether_verify_fresh(v, "a.b.c", NULL, 1, 0, NULL) == TETHER_STATUS_NULL_ARGUMENT,
          "fresh: NULL array", NULL);
    check(tether_verify_fresh(v, "a.b.c", NULL, SIZE_MAX, 0, NULL) == TETHER_STATUS_NULL_ARGUMENT,
          "fresh: NULL array, huge count", NULL);
    check(tether_verify_fresh(v, "a.b.c", nonces, SIZE_MAX, 0, NULL) ==
              TETHER_STATUS_INVALID_ARGUMENT,
          "fresh: huge count", NULL);
    check(tether_verify_fresh(v, "a.b.c", nonces, 2, 0, NULL) == TETHER_STATUS_NULL_ARGUMENT,
          "fresh: NULL element", NULL);
    const char *bad_nonce[] = {"\xff\xfe"};
    check(tether_verify_fresh(v, "a.b.c", bad_nonce, 1, 0, NULL) == TETHER_STATUS_INVALID_UTF8,
          "fresh: non-UTF-8 nonce", NULL);
    check(tether_verify_fresh(v, "a.b.c", NULL, 0, 0, &claims) == TETHER_STATUS_MALFORMED && !claims,
          "fresh: no nonces, bad token", NULL);
    check(strcmp(tether_status_name(TETHER_STATUS_NOT_INCLUDED), "not_included") == 0 &&
              strcmp(tether_status_name(TETHER_STATUS_OVER_SEATS), "over_seats") == 0 &&
              strcmp(tether_status_name(TETHER_STATUS_STALE_NONCE), "stale_nonce") == 0 &&
              TETHER_STATUS_NOT_INCLUDED == 16 && TETHER_STATUS_STALE_NONCE == 18,
          "freshness status codes", NULL);
    size_t big = 1 << 20;
    char *huge = malloc(big + 1);
    memset(huge, 'a', big);
    huge[big] = '\0';
    check(tether_verify(v, huge, NULL, 0, NULL) == TETHER_STATUS_MALFORMED, "1 MiB token", NULL);
    free(huge);
    TetherWatch *w = NULL;
    check(tether_watch_start(NULL, NULL, v, &w) == TETHER_STATUS_NULL_ARGUMENT && !w,
          "watch NULL url", NULL);
    check(tether_watch_start("http://127.0.0.1:1", "/nonexistent", v, &w) == TETHER_STATUS_IO,
          "watch missing secret file", NULL);
    check(tether_watch_start("ftp://x", "/nonexistent", v, &w) == TETHER_STATUS_INVALID_ARGUMENT,
          "watch bad url", NULL);
    check(!tether_watch_is_licensed(NULL), "NULL watch unlicensed", NULL);
    TetherLicenseState state = TETHER_LICENSE_STATE_LICENSED;
    check(tether_watch_state(NULL, &state, NULL) == TETHER_STATUS_NULL_ARGUMENT &&
              state == TETHER_LICENSE_STATE_UNLICENSED,
          "NULL watch state", NULL);
    tether_watch_stop(NULL);
    tether_verifier_free(NULL);
    tether_string_free(NULL);
    check(strcmp(tether_status_name(9999), "unknown") == 0, "unknown status name", NULL);
    tether_verifier_free(v);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: conformance VECTORS.tsv\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 2;
    }
    char *line = NULL, *first_pem = NULL;
    size_t cap = 0;
    ssize_t len;
    int vectors = 0;
    while ((len = getline(&line, &cap, in)) > 0) {
        if (line[len - 1] == '\n') line[len - 1] = '\0';
        if (!first_pem) {
            char *last_tab = strrchr(line, '\t');
            if (last_tab) first_pem = unescape_newlines(strdup(last_tab + 1));
        }
        run_vector(line);
        vectors++;
    }
    free(line);
    fclose(in);
    check(vectors >= 20, "vector count", "fewer than 20 vectors");
    if (first_pem) bad_input(first_pem);
    free(first_pem);
    printf("C conformance (libtether_verifier %s): %d vectors\n", tether_version(), vectors);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

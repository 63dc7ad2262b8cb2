/* Byte counts as users type them, and the error record's contract: first
 * error wins, long file names keep their end, formatting leaves out what is empty.
 * Also the UTF-8 rule every file format shares. */
#include "../check.h"
#include "warmcal/error.h"
#include "warmcal/text.h"
#include "warmcal/units.h"

static void expect_bytes(const char *text, uint64_t want)
{
    uint64_t got = 0;
    warmcal_error err = {0};
    int rc = warmcal_parse_bytes(text, &got, "gpu_memory", &err);
    if (rc != WARMCAL_OK || got != want) {
        fprintf(stderr, "  '%s': rc %d, got %llu, want %llu (%s)\n", text, rc,
                (unsigned long long)got, (unsigned long long)want, err.text);
        check_failures++;
    }
}

static void expect_rejected(const char *text, const char *why)
{
    uint64_t got = 0;
    warmcal_error err = {0};
    int rc = warmcal_parse_bytes(text, &got, "gpu_memory", &err);
    if (rc != WARMCAL_E_FIELD || strcmp(err.where, "gpu_memory") != 0 || !strstr(err.text, why)) {
        fprintf(stderr, "  '%s': rc %d, where '%s', text '%s'\n", text, rc, err.where, err.text);
        check_failures++;
    }
}

static void byte_counts_take_binary_and_decimal_units(void)
{
    expect_bytes("0", 0);
    expect_bytes("1048576", 1048576);
    expect_bytes("3GiB", 3ull << 30);
    expect_bytes("3 GiB", 3ull << 30);
    expect_bytes("3gib", 3ull << 30);
    expect_bytes("512MiB", 512ull << 20);
    expect_bytes("1.5GiB", 3ull << 29);
    expect_bytes("0.5KiB", 512);
    expect_bytes("2TiB", 2ull << 40);
    expect_bytes("80GB", 80000000000ull);
    expect_bytes("1K", 1024);
    expect_bytes("18446744073709551615", UINT64_MAX);
}

static void decimal_byte_counts_are_exact(void)
{
    /* a binary double of the fraction rounds some of these one byte short */
    expect_bytes("0.035KB", 35);
    expect_bytes("0.1KB", 100);
    expect_bytes("0.001KB", 1);
    expect_bytes("0.3MB", 300000);
    expect_bytes("4.2GB", 4200000000ull);
    expect_bytes("1.1TB", 1100000000000ull);
    expect_bytes("0.07GB", 70000000);
    expect_bytes("1.5GiB", 3ull << 29);
    expect_bytes("0.0009765625KiB", 1); /* 1/1024, written out exactly */
    expect_bytes("0.1KiB", 102);        /* 102.4: whole bytes, rounded down */
    expect_bytes("1.3MiB", 1363148);    /* 1363148.8 */
    expect_bytes("0.0001KB", 0);        /* a tenth of a byte */
    expect_bytes("0.9999999999999999999999999999KiB", 1023);
    expect_bytes("1.000000000000000000000000001KB", 1000);
    /* the largest count, reached through a fraction */
    expect_bytes("18446744073.709551615GB", UINT64_MAX);
    expect_bytes("16777215.99999999999999TiB", UINT64_MAX);
    expect_bytes("16777215.999999999999999999TiB", UINT64_MAX);
    expect_bytes("18446744073.7095516150001GB", UINT64_MAX); /* .0001 byte over: rounded down */
    expect_bytes("16777215TiB", UINT64_MAX - (1ull << 40) + 1);

    /* every byte count below 2^44, in each decimal unit and in KiB, written
     * with exactly the digits its value needs, reads back as itself */
    static const struct {
        const char *unit;
        uint64_t scale;
        int digits;      /* fraction digits that write any count in this unit exactly */
        uint64_t to_ten; /* 10^digits / scale */
    } units[] = {{"KB", 1000, 3, 1}, {"MB", 1000000, 6, 1}, {"GB", 1000000000, 9, 1},
                 {"TB", 1000000000000ull, 12, 1}, {"KiB", 1024, 10, 9765625}};
    uint64_t x = 88172645463325252ull;
    int wrong = 0;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t bytes = (x >> 20) >> (x % 40);
        for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
            char text[64];
            snprintf(text, sizeof text, "%" PRIu64 ".%0*" PRIu64 "%s", bytes / units[u].scale,
                     units[u].digits, bytes % units[u].scale * units[u].to_ten, units[u].unit);
            uint64_t got = 0;
            warmcal_error err = {0};
            if ((warmcal_parse_bytes(text, &got, "x", &err) != WARMCAL_OK || got != bytes) &&
                wrong++ < 5)
                fprintf(stderr, "  '%s': got %" PRIu64 ", want %" PRIu64 "\n", text, got, bytes);
            /* one more digit, a trailing 9: still that count, never the next */
            snprintf(text + strlen(text) - strlen(units[u].unit), 32, "9%s", units[u].unit);
            got = 0;
            if ((warmcal_parse_bytes(text, &got, "x", &err) != WARMCAL_OK || got != bytes) &&
                wrong++ < 5)
                fprintf(stderr, "  '%s': got %" PRIu64 ", want %" PRIu64 "\n", text, got, bytes);
        }
    }
    CHECK(wrong == 0);
}

static void malformed_byte_counts_are_rejected(void)
{
    expect_rejected("", "not a byte count");
    expect_rejected("GiB", "not a byte count");
    expect_rejected("-1", "not a byte count");
    expect_rejected("1.5", "not a byte count");      /* a fraction of a byte */
    expect_rejected("1.5e3GiB", "not a byte count"); /* no exponents */
    expect_rejected("1.GiB", "not a byte count");
    expect_rejected("3 parsecs", "not a byte count");
    expect_rejected("18446744073709551616", "does not fit in 64 bits");
    expect_rejected("17179869184GiB", "does not fit in 64 bits");
    /* 2^64 bytes exactly, and a hair above the largest count */
    expect_rejected("16777216TiB", "does not fit in 64 bits");
    expect_rejected("16777216.0TiB", "does not fit in 64 bits");
    expect_rejected("18446744073.709551616GB", "does not fit in 64 bits");
    expect_rejected("1.5B", "not a byte count");
}

static void first_error_wins_and_names_stay_readable(void)
{
    warmcal_error err = {0};
    CHECK(warmcal_error_set(&err, WARMCAL_E_FIELD, "a.json", "tp", "first %d", 1) == WARMCAL_E_FIELD);
    CHECK(warmcal_error_set(&err, WARMCAL_E_IO, "b.json", NULL, "second") == WARMCAL_E_IO);
    CHECK_EQ_U64(err.code, (uint64_t)(int64_t)WARMCAL_E_FIELD);
    char buf[512];
    CHECK(strcmp(warmcal_error_format(&err, buf, sizeof buf), "a.json: tp: first 1") == 0);
    warmcal_error_clear(&err);
    char long_path[400];
    memset(long_path, 'x', sizeof long_path);
    memcpy(long_path + sizeof long_path - 12, "/rank-3.h5", 11);
    warmcal_error_set(&err, WARMCAL_E_IO, long_path, NULL, "cannot open");
    CHECK(strncmp(err.source, "...", 3) == 0);
    CHECK_STR_CONTAINS(err.source, "/rank-3.h5");
    CHECK(strlen(err.source) == WARMCAL_ERROR_SOURCE_LEN - 1);
    CHECK_STR_CONTAINS(warmcal_error_format(&err, buf, sizeof buf), "/rank-3.h5: cannot open");
    warmcal_error_clear(&err);
    err.code = WARMCAL_E_TIMEOUT; /* a code with no text formats as its name */
    CHECK(strcmp(warmcal_error_format(&err, buf, sizeof buf), "deadline passed") == 0);
    CHECK(warmcal_error_set(NULL, WARMCAL_E_INVAL, NULL, NULL, "ignored") == WARMCAL_E_INVAL);
    /* the exported function itself, as callers that bypass error.h's macro
     * reach it (Python's ctypes, a pointer to it), returns the code too */
    CHECK((warmcal_error_set)(NULL, WARMCAL_E_IO, NULL, NULL, "ignored") == WARMCAL_E_IO);
    int (*set)(warmcal_error *, int, const char *, const char *, const char *, ...) =
        warmcal_error_set;
    CHECK(set(&err, WARMCAL_E_RANGE, NULL, NULL, "ignored: first error wins") == WARMCAL_E_RANGE);
    CHECK_EQ_U64(err.code, (uint64_t)(int64_t)WARMCAL_E_TIMEOUT);
    CHECK(strcmp(warmcal_strerror(12345), "unknown error") == 0);
}

/* The reference: what "%.2f unit" prints for the exact quotient (exact in a
 * double below 2^53 bytes, since the units are powers of two). */
static void reference_bytes(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, len, "%.2f %s", v, units[u]);
}

static void formatted_bytes_round_as_printf_does(void)
{
    char got[64], want[64];
    /* edges: unit boundaries, exact ties (0.125 -> 0.12, 0.375 -> 0.38), a
     * carry into the whole part, the largest values */
    uint64_t edges[] = {0, 1, 1023, 1024, 1024 + 128, 1024 + 384, 1024 + 5, 1024 + 6,
                        2047, 2048, (1ull << 20) - 1, (1ull << 20) - 5243, (1ull << 20) - 5242,
                        1ull << 30, (3ull << 30) + (1ull << 27), (1ull << 40) - 1, 1ull << 40,
                        (1ull << 50) + 12345, (1ull << 53) - 1};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        warmcal_format_bytes(edges[i], got, sizeof got);
        reference_bytes(edges[i], want, sizeof want);
        if (strcmp(got, want) != 0)
            fprintf(stderr, "%" PRIu64 ": '%s', printf says '%s'\n", edges[i], got, want);
        CHECK(strcmp(got, want) == 0);
    }
    uint64_t x = 88172645463325252ull;
    int differ = 0;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t bytes = (x >> 11) >> (x % 44); /* below 2^53, every magnitude */
        warmcal_format_bytes(bytes, got, sizeof got);
        reference_bytes(bytes, want, sizeof want);
        if (strcmp(got, want) != 0 && differ++ < 5)
            fprintf(stderr, "%" PRIu64 ": '%s', printf says '%s'\n", bytes, got, want);
    }
    CHECK(differ == 0);
    CHECK(strcmp(warmcal_format_bytes(3ull << 30, got, sizeof got), "3.00 GiB") == 0);
    CHECK(strcmp(warmcal_format_bytes(UINT64_MAX, got, sizeof got), "16777216.00 TiB") == 0);
    /* a short buffer gets what fits, terminated, as snprintf would */
    char small[5];
    CHECK(strcmp(warmcal_format_bytes(3ull << 30, small, sizeof small), "3.00") == 0);
    CHECK(warmcal_format_bytes(1, small, 0) == small);
}

static void only_well_formed_utf8_is_text(void)
{
    CHECK(warmcal_utf8_valid(""));
    CHECK(warmcal_utf8_valid("meta-llama/Llama-3.1-70B"));
    CHECK(warmcal_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")); /* 2, 3, 4 bytes */
    CHECK(warmcal_utf8_valid("\xf4\x8f\xbf\xbf"));                       /* U+10FFFF */
    CHECK(!warmcal_utf8_valid("\xff\xfe"));
    CHECK(!warmcal_utf8_valid("a\x80"));             /* a lone continuation byte */
    CHECK(!warmcal_utf8_valid("caf\xc3"));           /* cut inside a character */
    CHECK(!warmcal_utf8_valid("\xc0\xaf"));          /* overlong '/' */
    CHECK(!warmcal_utf8_valid("\xe0\x80\xaf"));      /* overlong, 3 bytes */
    CHECK(!warmcal_utf8_valid("\xed\xa0\x80"));      /* a surrogate */
    CHECK(!warmcal_utf8_valid("\xf4\x90\x80\x80"));  /* above U+10FFFF */
}

int main(void)
{
    RUN(byte_counts_take_binary_and_decimal_units);
    RUN(decimal_byte_counts_are_exact);
    RUN(only_well_formed_utf8_is_text);
    RUN(malformed_byte_counts_are_rejected);
    RUN(first_error_wins_and_names_stay_readable);
    RUN(formatted_bytes_round_as_printf_does);
    CHECK_DONE();
}

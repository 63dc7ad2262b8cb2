/* The NVTX phase convention's parser (phase_message.h): what it accepts,
 * the defaults it fills in, and each kind of refusal — including messages
 * that are not NUL-terminated and numbers too long for 64 bits. */
#include "warmcal/phase_message.h"

#include "warmcal/trace.h"

#include "../check.h"

#include <string.h>

static int parse(const char *s, warmcal_phase_message *m)
{
    return warmcal_phase_message_parse(s, strlen(s), m);
}

static void phase_message_gives_tokens_batch_and_label(void)
{
    warmcal_phase_message m;
    CHECK(parse("warmcal tokens=4096 batch=8 label=generation", &m) == WARMCAL_MSG_PHASE);
    CHECK_EQ_U64(m.tokens, 4096);
    CHECK_EQ_U64(m.batch, 8);
    CHECK(strcmp(m.label, "generation") == 0);

    CHECK(parse("warmcal label=x   batch=3 tokens=7  ", &m) == WARMCAL_MSG_PHASE);
    CHECK_EQ_U64(m.tokens, 7);
    CHECK_EQ_U64(m.batch, 3);
    CHECK(strcmp(m.label, "x") == 0);
}

static void phase_message_defaults_batch_one_and_label_context(void)
{
    warmcal_phase_message m;
    CHECK(parse("warmcal tokens=1", &m) == WARMCAL_MSG_PHASE);
    CHECK_EQ_U64(m.tokens, 1);
    CHECK_EQ_U64(m.batch, 1);
    CHECK(strcmp(m.label, WARMCAL_PHASE_DEFAULT_LABEL) == 0);
    CHECK(strcmp(m.label, "context") == 0);
}

static void phase_message_accepts_the_limits_of_each_field(void)
{
    warmcal_phase_message m;
    CHECK(parse("warmcal tokens=1099511627776 batch=4294967295", &m) == WARMCAL_MSG_PHASE);
    CHECK_EQ_U64(m.tokens, WARMCAL_TRACE_TOKENS_MAX);
    CHECK_EQ_U64(m.batch, UINT32_MAX);
    CHECK(parse("warmcal tokens=00000000000000000000000000042", &m) == WARMCAL_MSG_PHASE);
    CHECK_EQ_U64(m.tokens, 42);
    /* 31 bytes of label, and UTF-8 */
    CHECK(parse("warmcal tokens=1 label=abcdefghijklmnopqrstuvwxyz01234", &m) == WARMCAL_MSG_PHASE);
    CHECK(strlen(m.label) == 31);
    CHECK(parse("warmcal tokens=1 label=g\xC3\xA9n\xC3\xA9ration", &m) == WARMCAL_MSG_PHASE);
    CHECK(strcmp(m.label, "g\xC3\xA9n\xC3\xA9ration") == 0);
    CHECK(parse("warmcal tokens=1 label=a=b", &m) == WARMCAL_MSG_PHASE);
    CHECK(strcmp(m.label, "a=b") == 0);
}

static void messages_not_starting_with_the_word_are_not_ours(void)
{
    static const char *const others[] = {
        "", "forward", "warmca", "warmcalx tokens=1", "Warmcal tokens=1", " warmcal tokens=1",
        "warmcal\ttokens=1", "warmcal=1", "warmcal_tokens=1", "nccl:all_reduce",
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        warmcal_phase_message m = {.tokens = 99};
        int r = parse(others[i], &m);
        if (r != WARMCAL_MSG_NOT_OURS)
            fprintf(stderr, "  \"%s\" gave %d\n", others[i], r);
        CHECK(r == WARMCAL_MSG_NOT_OURS);
        CHECK_EQ_U64(m.tokens, 99); /* untouched */
    }
    CHECK(warmcal_phase_message_parse(NULL, 0, NULL) == WARMCAL_MSG_NOT_OURS);
}

static void each_malformed_message_names_its_fault(void)
{
    static const struct {
        const char *msg;
        int result;
    } bad[] = {
        {"warmcal", WARMCAL_MSG_BAD_TOKENS},
        {"warmcal ", WARMCAL_MSG_BAD_TOKENS},
        {"warmcal batch=2 label=x", WARMCAL_MSG_BAD_TOKENS},
        {"warmcal tokens=0", WARMCAL_MSG_BAD_TOKENS},
        {"warmcal tokens=", WARMCAL_MSG_BAD_TOKENS},
        {"warmcal tokens=-1", WARMCAL_MSG_BAD_TOKENS},
        {"warmcal tokens=+1", WARMCAL_MSG_BAD_TOKENS},
        {"warmcal tokens=1k", WARMCAL_MSG_BAD_TOKENS},
        {"warmcal tokens=0x10", WARMCAL_MSG_BAD_TOKENS},
        {"warmcal tokens=1099511627777", WARMCAL_MSG_BAD_TOKENS},
        {"warmcal tokens=18446744073709551617", WARMCAL_MSG_BAD_TOKENS},
        {"warmcal tokens=99999999999999999999999999999", WARMCAL_MSG_BAD_TOKENS},
        {"warmcal tokens=1 batch=0", WARMCAL_MSG_BAD_BATCH},
        {"warmcal tokens=1 batch=", WARMCAL_MSG_BAD_BATCH},
        {"warmcal tokens=1 batch=4294967296", WARMCAL_MSG_BAD_BATCH},
        {"warmcal tokens=1 batch=two", WARMCAL_MSG_BAD_BATCH},
        {"warmcal tokens=1 label=", WARMCAL_MSG_BAD_LABEL},
        {"warmcal tokens=1 label=abcdefghijklmnopqrstuvwxyz012345", WARMCAL_MSG_BAD_LABEL},
        {"warmcal tokens=1 label=a\tb", WARMCAL_MSG_BAD_LABEL},
        {"warmcal tokens=1 label=a\x7f", WARMCAL_MSG_BAD_LABEL},
        {"warmcal tokens=1 label=\xC2\x85", WARMCAL_MSG_BAD_LABEL},       /* C1 control */
        {"warmcal tokens=1 label=\xC3", WARMCAL_MSG_BAD_LABEL},           /* cut sequence */
        {"warmcal tokens=1 label=\xC0\xAF", WARMCAL_MSG_BAD_LABEL},       /* overlong */
        {"warmcal tokens=1 label=\xED\xA0\x80", WARMCAL_MSG_BAD_LABEL},   /* surrogate */
        {"warmcal tokens=1 label=\xFF", WARMCAL_MSG_BAD_LABEL},
        {"warmcal tokens=1 tokens=2", WARMCAL_MSG_BAD_KEY},
        {"warmcal tokens=1 batch=1 batch=1", WARMCAL_MSG_BAD_KEY},
        {"warmcal tokens=1 label=a label=b", WARMCAL_MSG_BAD_KEY},
        {"warmcal tokens=1 seq=4", WARMCAL_MSG_BAD_KEY},
        {"warmcal tokens=1 context", WARMCAL_MSG_BAD_KEY},
        {"warmcal =1", WARMCAL_MSG_BAD_KEY},
        {"warmcal Tokens=1", WARMCAL_MSG_BAD_KEY},
        {"warmcal junk", WARMCAL_MSG_BAD_KEY},
        /* the first fault in message order decides */
        {"warmcal batch=0 tokens=0", WARMCAL_MSG_BAD_BATCH},
        {"warmcal seq=1 tokens=0", WARMCAL_MSG_BAD_KEY},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        warmcal_phase_message m = {.tokens = 99};
        int r = parse(bad[i].msg, &m);
        if (r != bad[i].result)
            fprintf(stderr, "  \"%s\" gave %d, expected %d\n", bad[i].msg, r, bad[i].result);
        CHECK(r == bad[i].result);
        CHECK_EQ_U64(m.tokens, 99); /* untouched */
        const char *text = warmcal_phase_message_error(r);
        CHECK(text && text[0]);
    }
}

static void parser_reads_exactly_len_bytes(void)
{
    warmcal_phase_message m;
    const char *s = "warmcal tokens=12345";
    /* cut inside the number: the bytes after len are not read */
    CHECK(warmcal_phase_message_parse(s, strlen(s) - 2, &m) == WARMCAL_MSG_PHASE);
    CHECK_EQ_U64(m.tokens, 123);
    /* exactly the word */
    CHECK(warmcal_phase_message_parse(s, 7, &m) == WARMCAL_MSG_BAD_TOKENS);
    CHECK(warmcal_phase_message_parse(s, 6, &m) == WARMCAL_MSG_NOT_OURS);
    /* a NUL byte inside is a byte like any other: not a digit, not a label */
    static const char nul_tokens[] = "warmcal tokens=1\0002";
    CHECK(warmcal_phase_message_parse(nul_tokens, sizeof nul_tokens - 1, &m) ==
          WARMCAL_MSG_BAD_TOKENS);
    static const char nul_label[] = "warmcal tokens=1 label=a\000b";
    CHECK(warmcal_phase_message_parse(nul_label, sizeof nul_label - 1, &m) ==
          WARMCAL_MSG_BAD_LABEL);
    /* not NUL-terminated at all: a buffer with no NUL */
    char raw[24];
    memcpy(raw, "warmcal tokens=9 label=z", 24);
    CHECK(warmcal_phase_message_parse(raw, sizeof raw, &m) == WARMCAL_MSG_PHASE);
    CHECK(strcmp(m.label, "z") == 0);
    /* out may be NULL: a check only */
    CHECK(warmcal_phase_message_parse(raw, sizeof raw, NULL) == WARMCAL_MSG_PHASE);
}

static void phase_check_applies_the_message_rules_to_c_api_values(void)
{
    warmcal_phase_message m;
    CHECK(warmcal_phase_check(NULL, 5, 2, &m) == WARMCAL_MSG_PHASE);
    CHECK(strcmp(m.label, "context") == 0);
    CHECK_EQ_U64(m.tokens, 5);
    CHECK_EQ_U64(m.batch, 2);
    CHECK(warmcal_phase_check("generation", WARMCAL_TRACE_TOKENS_MAX, UINT32_MAX, &m) ==
          WARMCAL_MSG_PHASE);
    CHECK(strcmp(m.label, "generation") == 0);
    CHECK(warmcal_phase_check("x", 0, 1, &m) == WARMCAL_MSG_BAD_TOKENS);
    CHECK(warmcal_phase_check("x", WARMCAL_TRACE_TOKENS_MAX + 1, 1, &m) == WARMCAL_MSG_BAD_TOKENS);
    CHECK(warmcal_phase_check("x", 1, 0, &m) == WARMCAL_MSG_BAD_BATCH);
    CHECK(warmcal_phase_check("", 1, 1, &m) == WARMCAL_MSG_BAD_LABEL);
    CHECK(warmcal_phase_check("two words", 1, 1, &m) == WARMCAL_MSG_BAD_LABEL);
    CHECK(warmcal_phase_check("abcdefghijklmnopqrstuvwxyz012345", 1, 1, &m) ==
          WARMCAL_MSG_BAD_LABEL);
    CHECK(warmcal_phase_check("abcdefghijklmnopqrstuvwxyz01234", 1, 1, &m) == WARMCAL_MSG_PHASE);
    CHECK(warmcal_phase_check("\xC3(", 1, 1, &m) == WARMCAL_MSG_BAD_LABEL);
}

int main(void)
{
    RUN(phase_message_gives_tokens_batch_and_label);
    RUN(phase_message_defaults_batch_one_and_label_context);
    RUN(phase_message_accepts_the_limits_of_each_field);
    RUN(messages_not_starting_with_the_word_are_not_ours);
    RUN(each_malformed_message_names_its_fault);
    RUN(parser_reads_exactly_len_bytes);
    RUN(phase_check_applies_the_message_rules_to_c_api_values);
    CHECK_DONE();
}

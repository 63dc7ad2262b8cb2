/* The phase message parser (warmcal/phase_message.h): reads "warmcal tokens=N
 * batch=B label=L" from NVTX range messages without allocating, so that it
 * can run on every range a server pushes, and so that it can be fuzzed. */
#include "warmcal/phase_message.h"

#include "warmcal/text.h"
#include "warmcal/trace.h"

#include <string.h>

#define WORD "warmcal"
#define WORD_LEN (sizeof WORD - 1)

/* A decimal number of digits only, at most max. The digit count is bounded
 * before the sum so that no input can overflow 64 bits: 20 digits hold any
 * uint64_t once leading zeros are skipped. */
static int parse_number(const char *s, size_t len, uint64_t max, uint64_t *value)
{
    if (len == 0)
        return 0;
    size_t i = 0;
    while (i < len && s[i] == '0')
        i++;
    if (len - i > 19)
        return 0; /* 20 significant digits exceed every bound used here (2^40, 2^32 - 1) */
    uint64_t v = 0;
    for (size_t k = 0; k < len; k++) {
        if (s[k] < '0' || s[k] > '9')
            return 0;
        v = v * 10 + (uint64_t)(s[k] - '0');
    }
    if (v == 0 || v > max)
        return 0;
    *value = v;
    return 1;
}

/* A label: 1..31 bytes, no space and no control character (C0, DEL, C1 —
 * the last encoded as C2 80..C2 9F), well-formed UTF-8. Copied into out. */
static int parse_label(const char *s, size_t len, char out[WARMCAL_LABEL_LEN])
{
    if (len == 0 || len >= WARMCAL_LABEL_LEN)
        return 0;
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c <= 0x20 || c == 0x7F)
            return 0;
        if (c == 0xC2 && k + 1 < len && (unsigned char)s[k + 1] <= 0x9F)
            return 0; /* C1 controls; a bad continuation byte fails the UTF-8 check */
    }
    char buf[WARMCAL_LABEL_LEN];
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (!warmcal_utf8_valid(buf))
        return 0;
    memcpy(out, buf, len + 1);
    return 1;
}

int warmcal_phase_message_parse(const char *msg, size_t len, warmcal_phase_message *out)
{
    if (!msg || len < WORD_LEN || memcmp(msg, WORD, WORD_LEN) != 0)
        return WARMCAL_MSG_NOT_OURS;
    if (len > WORD_LEN && msg[WORD_LEN] != ' ')
        return WARMCAL_MSG_NOT_OURS; /* "warmcalx", "warmcal\t...": another word */

    warmcal_phase_message m;
    memset(&m, 0, sizeof m);
    m.batch = 1;
    memcpy(m.label, WARMCAL_PHASE_DEFAULT_LABEL, sizeof WARMCAL_PHASE_DEFAULT_LABEL);
    int seen_tokens = 0, seen_batch = 0, seen_label = 0;

    size_t i = WORD_LEN;
    for (;;) {
        while (i < len && msg[i] == ' ')
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && msg[i] != ' ')
            i++;
        const char *field = msg + start;
        size_t flen = i - start;
        const char *eq = memchr(field, '=', flen);
        if (!eq)
            return WARMCAL_MSG_BAD_KEY;
        size_t klen = (size_t)(eq - field);
        const char *value = eq + 1;
        size_t vlen = flen - klen - 1;
        if (klen == 6 && memcmp(field, "tokens", 6) == 0) {
            if (seen_tokens++)
                return WARMCAL_MSG_BAD_KEY;
            if (!parse_number(value, vlen, WARMCAL_TRACE_TOKENS_MAX, &m.tokens))
                return WARMCAL_MSG_BAD_TOKENS;
        } else if (klen == 5 && memcmp(field, "batch", 5) == 0) {
            uint64_t b = 0;
            if (seen_batch++)
                return WARMCAL_MSG_BAD_KEY;
            if (!parse_number(value, vlen, UINT32_MAX, &b))
                return WARMCAL_MSG_BAD_BATCH;
            m.batch = (uint32_t)b;
        } else if (klen == 5 && memcmp(field, "label", 5) == 0) {
            if (seen_label++)
                return WARMCAL_MSG_BAD_KEY;
            if (!parse_label(value, vlen, m.label))
                return WARMCAL_MSG_BAD_LABEL;
        } else {
            return WARMCAL_MSG_BAD_KEY;
        }
    }
    if (!seen_tokens)
        return WARMCAL_MSG_BAD_TOKENS;
    if (out)
        *out = m;
    return WARMCAL_MSG_PHASE;
}

int warmcal_phase_check(const char *label, uint64_t tokens, uint32_t batch,
                         warmcal_phase_message *out)
{
    warmcal_phase_message m;
    memset(&m, 0, sizeof m);
    if (tokens == 0 || tokens > WARMCAL_TRACE_TOKENS_MAX)
        return WARMCAL_MSG_BAD_TOKENS;
    if (batch == 0)
        return WARMCAL_MSG_BAD_BATCH;
    m.tokens = tokens;
    m.batch = batch;
    if (!label)
        memcpy(m.label, WARMCAL_PHASE_DEFAULT_LABEL, sizeof WARMCAL_PHASE_DEFAULT_LABEL);
    else {
        size_t len = 0;
        while (len < WARMCAL_LABEL_LEN && label[len]) /* bounded: the label may be long */
            len++;
        if (!parse_label(label, len, m.label))
            return WARMCAL_MSG_BAD_LABEL;
    }
    if (out)
        *out = m;
    return WARMCAL_MSG_PHASE;
}

const char *warmcal_phase_message_error(int result)
{
    switch (result) {
    case WARMCAL_MSG_BAD_TOKENS:
        return "tokens=N missing, not a decimal number, or outside 1..2^40";
    case WARMCAL_MSG_BAD_BATCH:
        return "batch=B not a decimal number, or outside 1..4294967295";
    case WARMCAL_MSG_BAD_LABEL:
        return "label=L empty, longer than 31 bytes, or not printable UTF-8 without spaces";
    case WARMCAL_MSG_BAD_KEY:
        return "a field that is not tokens=, batch= or label=, or one given twice";
    case WARMCAL_MSG_PHASE:
        return "a phase message";
    case WARMCAL_MSG_NOT_OURS:
        return "not a warmcal message";
    default:
        return "unknown result";
    }
}

/* Telling jansson's allocation failures from damaged text: whether a text is
 * well-formed JSON, decided without allocating (jansson 2.14's loader reports
 * most failed allocations not as out of memory but as a syntax error,
 * "invalid token near '"name"'", or with no error at all), and whether a
 * document jansson did load holds what its text says (a failed allocation
 * can also cut a token short without any error). */
#include "table_private.h"

#include <jansson.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* jansson's JSON_PARSER_MAX_DEPTH: deeper text is an error of its own there */
#define MAX_DEPTH 2048

typedef struct {
    const unsigned char *p, *end;
} scan;

static void skip_space(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(scan *s, unsigned *out)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++, s->p++) {
        if (s->p >= s->end)
            return 0;
        unsigned c = *s->p;
        unsigned d = c >= '0' && c <= '9'   ? c - '0'
                     : c >= 'a' && c <= 'f' ? c - 'a' + 10
                     : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                            : 16;
        if (d == 16)
            return 0;
        v = v << 4 | d;
    }
    *out = v;
    return 1;
}

/* A string from its opening quote: no control characters, known escapes,
 * \u surrogates in pairs. Bytes from 0x80 are left to jansson's own UTF-8
 * check, which has its own error code. */
static int string(scan *s)
{
    s->p++;
    while (s->p < s->end) {
        unsigned c = *s->p++;
        if (c == '"')
            return 1;
        if (c < 0x20)
            return 0;
        if (c != '\\')
            continue;
        if (s->p >= s->end)
            return 0;
        c = *s->p++;
        if (c != 'u') {
            if (!strchr("\"\\/bfnrt", (int)c) || c == '\0')
                return 0;
            continue;
        }
        unsigned u;
        if (!hex4(s, &u) || (u >= 0xDC00 && u <= 0xDFFF))
            return 0;
        if (u >= 0xD800 && u <= 0xDBFF) {
            unsigned low;
            if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
                return 0;
            s->p += 2;
            if (!hex4(s, &low) || low < 0xDC00 || low > 0xDFFF)
                return 0;
        }
    }
    return 0;
}

static int digits(scan *s)
{
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int number(scan *s)
{
    if (*s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0') {
        s->p++;
        if (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            return 0;
    } else if (!digits(s)) {
        return 0;
    }
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!digits(s))
            return 0;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!digits(s))
            return 0;
    }
    return 1;
}

/* true, false or null, not followed by a letter (jansson reads a whole
 * word before it compares). */
static int literal(scan *s)
{
    static const char *const words[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(words[k]);
        if ((size_t)(s->end - s->p) >= n && memcmp(s->p, words[k], n) == 0) {
            s->p += n;
            unsigned c = s->p < s->end ? *s->p : 0;
            return !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
        }
    }
    return 0;
}

/* The document: an object or an array at the top (jansson's default),
 * nested at most MAX_DEPTH deep, then only white space. Containers are
 * tracked in a bit stack (1: an object), so nothing is allocated. */
int warmcal__json_well_formed(const char *text, size_t len)
{
    scan s = {(const unsigned char *)text, (const unsigned char *)text + len};
    uint8_t is_object[MAX_DEPTH / 8 + 1];
    size_t depth = 0;
    skip_space(&s);
    if (s.p >= s.end || (*s.p != '{' && *s.p != '['))
        return 0;
    for (;;) {
        /* here a value is expected (or a container's end right after its start) */
        skip_space(&s);
        if (s.p >= s.end)
            return 0;
        unsigned c = *s.p;
        if (c == '{' || c == '[') {
            if (depth == MAX_DEPTH)
                return 0;
            if (c == '{')
                is_object[depth / 8] |= (uint8_t)(1u << (depth % 8));
            else
                is_object[depth / 8] &= (uint8_t)~(1u << (depth % 8));
            depth++;
            s.p++;
            skip_space(&s);
            if (s.p < s.end && *s.p == (c == '{' ? '}' : ']')) {
                s.p++;
                depth--;
                goto after_value;
            }
            if (c == '[')
                continue;
            goto key;
        }
        if (c == '"') {
            if (!string(&s))
                return 0;
        } else {
            if (c == '-' || (c >= '0' && c <= '9') ? !number(&s) : !literal(&s))
                return 0;
            /* jansson reads one character past a number or a word and puts
             * it back, and a NUL byte put back is lost: it accepts "1\0," */
            if (s.p < s.end && *s.p == '\0')
                s.p++;
        }
    after_value:
        /* a value ended: the enclosing container goes on or closes */
        for (;;) {
            skip_space(&s);
            if (depth == 0)
                return s.p == s.end;
            int object = is_object[(depth - 1) / 8] >> ((depth - 1) % 8) & 1;
            if (s.p >= s.end)
                return 0;
            if (*s.p == ',') {
                s.p++;
                break;
            }
            if (*s.p != (object ? '}' : ']'))
                return 0;
            s.p++;
            depth--;
        }
        if (!(is_object[(depth - 1) / 8] >> ((depth - 1) % 8) & 1))
            continue; /* the next element of an array */
    key:
        skip_space(&s);
        if (s.p >= s.end || *s.p != '"' || !string(&s))
            return 0;
        skip_space(&s);
        if (s.p >= s.end || *s.p != ':')
            return 0;
        s.p++;
    }
}

/* --- the parsed document against its text ------------------------------------
 * jansson 2.14's lexer ignores a failed allocation while it collects a
 * token's characters: the token then loses characters, and the load still
 * succeeds ("0123456789abcdef" read as 63 of its 64 characters, 1234.5 as
 * 124.5). So a load that succeeded is held against the text it came from,
 * token by token, in document order (jansson keeps objects in insertion
 * order, and duplicate keys are refused). */

static int same_value(scan *s, json_t *v, int depth);

static size_t utf8_encode(unsigned cp, unsigned char out[4])
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The string token at s->p, decoded, equals want[0..len). */
static int same_string(scan *s, const char *want, size_t len)
{
    size_t k = 0;
    s->p++;
    while (s->p < s->end) {
        unsigned c = *s->p++;
        unsigned char bytes[4];
        size_t n = 1;
        if (c == '"')
            return k == len;
        bytes[0] = (unsigned char)c;
        if (c == '\\') {
            if (s->p >= s->end)
                return 0;
            c = *s->p++;
            static const char escapes[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
            const char *e = c == 'u' ? NULL : strchr(escapes, (int)c);
            if (c == 'u') {
                unsigned cp, low;
                if (!hex4(s, &cp))
                    return 0;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (s->end - s->p < 2)
                        return 0;
                    s->p += 2; /* the \u of the pair's second half */
                    if (!hex4(s, &low))
                        return 0;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                }
                n = utf8_encode(cp, bytes);
            } else if (!e || c == '\0' || (e - escapes) % 2) {
                return 0;
            } else {
                bytes[0] = (unsigned char)e[1];
            }
        }
        if (n > len - k || memcmp(want + k, bytes, n) != 0)
            return 0;
        k += n;
    }
    return 0;
}

/* The number token at s->p has v's value: an integer digit by digit, a
 * real through strtod as jansson reads it (with the locale's decimal
 * point, as jansson does). */
static int same_number(scan *s, const json_t *v)
{
    const unsigned char *start = s->p;
    if (!number(s))
        return 0;
    size_t n = (size_t)(s->p - start);
    if (json_is_integer(v)) {
        int negative = *start == '-';
        uint64_t mag = 0;
        for (size_t k = negative; k < n; k++) {
            if (start[k] < '0' || start[k] > '9' || mag > (UINT64_MAX - 9) / 10)
                return 0;
            mag = mag * 10 + (start[k] - '0');
        }
        json_int_t i = json_integer_value(v);
        uint64_t want = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
        return mag == want && (negative ? i <= 0 : i >= 0);
    }
    if (!json_is_real(v))
        return 0;
    char small[128], *copy = n < sizeof small ? small : malloc(n + 1);
    if (!copy)
        return 0;
    memcpy(copy, start, n);
    copy[n] = '\0';
    const char *point = localeconv()->decimal_point;
    char *dot = strchr(copy, '.');
    if (dot && point[0] != '.')
        *dot = point[0];
    int same = strtod(copy, NULL) == json_real_value(v);
    if (copy != small)
        free(copy);
    return same;
}

static int same_container(scan *s, json_t *v, int depth)
{
    int object = *s->p == '{';
    if (object ? !json_is_object(v) : !json_is_array(v))
        return 0;
    s->p++;
    void *iter = object ? json_object_iter(v) : NULL;
    size_t index = 0;
    skip_space(s);
    if (s->p < s->end && *s->p == (object ? '}' : ']')) {
        s->p++;
        return object ? iter == NULL : json_array_size(v) == 0;
    }
    for (;;) {
        json_t *item;
        if (object) {
            skip_space(s);
            if (!iter || s->p >= s->end || *s->p != '"' ||
                !same_string(s, json_object_iter_key(iter), json_object_iter_key_len(iter)))
                return 0;
            skip_space(s);
            if (s->p >= s->end || *s->p != ':')
                return 0;
            s->p++;
            item = json_object_iter_value(iter);
            iter = json_object_iter_next(v, iter);
        } else {
            if (index >= json_array_size(v))
                return 0;
            item = json_array_get(v, index++);
        }
        if (!same_value(s, item, depth + 1))
            return 0;
        skip_space(s);
        if (s->p >= s->end)
            return 0;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p != (object ? '}' : ']'))
            return 0;
        s->p++;
        return object ? iter == NULL : index == json_array_size(v);
    }
}

static int same_value(scan *s, json_t *v, int depth)
{
    skip_space(s);
    if (s->p >= s->end || depth > MAX_DEPTH)
        return 0;
    unsigned c = *s->p;
    if (c == '{' || c == '[')
        return same_container(s, v, depth);
    if (c == '"')
        return json_is_string(v) && same_string(s, json_string_value(v), json_string_length(v));
    int same;
    if (c == '-' || (c >= '0' && c <= '9')) {
        same = same_number(s, v);
    } else {
        const unsigned char *start = s->p;
        same = literal(s) && (*start == 't'   ? json_is_true(v)
                              : *start == 'f' ? json_is_false(v)
                                              : json_is_null(v));
    }
    if (same && s->p < s->end && *s->p == '\0') /* as jansson, see warmcal__json_well_formed */
        s->p++;
    return same;
}

int warmcal__json_same_as_text(json_t *root, const char *text, size_t len)
{
    scan s = {(const unsigned char *)text, (const unsigned char *)text + len};
    if (!root || !same_value(&s, root, 1))
        return 0;
    skip_space(&s);
    return s.p == s.end;
}

/* The NVTX injection: NVTX loads this library through NVTX_INJECTION64_PATH
 * and calls InitializeInjectionNvtx2, where we put our functions into its
 * push/pop and start/end slots. A range whose message follows the phase
 * convention (phase_message.h) opens a phase; its own pop or end closes it.
 * Everything else is counted (push levels) and otherwise ignored. */
#define NVTX_NO_IMPL /* a tool: NVTX's types and declarations, not its implementation */
#include <nvtx3/nvToolsExt.h>

#include "inject.h"
#include "warmcal/phase_message.h"

#include "warmcal/error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

/* ---- Domains ---------------------------------------------------------- */

/* NVTX keeps one push/pop stack per domain and thread. A domain's handle is
 * ours; it holds the index of its push-level counter in each thread's
 * state. Domains beyond the last slot share it (their levels then mix, so a
 * phase pushed in one may be closed by a pop in another: warned once). */
#define DOMAIN_SLOTS 64
#define DOMAIN_MAGIC 0x776d6364u   /* "wmcd" */
#define STRING_MAGIC 0x776d6373u   /* "wmcs" */

struct nvtxDomainRegistration_st {
    uint32_t magic;
    uint32_t slot;                      /* 1..DOMAIN_SLOTS - 1; 0 is the global domain */
    struct nvtxDomainRegistration_st *next;
    char name[];                        /* UTF-8 */
};

static pthread_mutex_t domain_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nvtxDomainRegistration_st *domains; /* under domain_lock; never freed */
static uint32_t domain_count;                     /* under domain_lock */

static unsigned domain_slot(nvtxDomainHandle_t d)
{
    return d && d->magic == DOMAIN_MAGIC ? d->slot : 0;
}

/* The same name gives the same handle (NVTX's instances in one process —
 * PyTorch's and the program's — then share the domain's levels). NULL (the
 * global domain) when out of memory. */
static nvtxDomainHandle_t domain_create(const char *name, size_t len)
{
    struct nvtxDomainRegistration_st *d;
    pthread_mutex_lock(&domain_lock);
    for (d = domains; d; d = d->next)
        if (strlen(d->name) == len && memcmp(d->name, name, len) == 0)
            break;
    if (!d && (d = malloc(sizeof *d + len + 1)) != NULL) {
        d->magic = DOMAIN_MAGIC;
        if (domain_count < DOMAIN_SLOTS - 1)
            domain_count++;
        else
            warmcal__inject_warn_once(WARMCAL__WARN_NVTX_LIMIT,
                                      "more than %d NVTX domains: the push levels of the "
                                      "later ones are counted together",
                                      DOMAIN_SLOTS - 1);
        d->slot = domain_count;
        memcpy(d->name, name, len);
        d->name[len] = '\0';
        d->next = domains;
        domains = d;
    }
    pthread_mutex_unlock(&domain_lock);
    return d;
}

/* ---- Messages --------------------------------------------------------- */

/* A message's text for a warning: at most 80 bytes, printable ASCII, the
 * rest as '?', so a hostile message cannot garble the terminal. */
static void quote(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = len < cap - 4 ? len : cap - 4, k;
    for (k = 0; k < n; k++)
        dst[k] = src[k] >= 0x20 && src[k] < 0x7F ? src[k] : '?';
    if (n < len)
        dst[k++] = '.', dst[k++] = '.', dst[k++] = '.';
    dst[k] = '\0';
}

#define QUOTE_LEN 84

static void warn_malformed(int result, const char *text, size_t len)
{
    int kind;
    switch (result) {
    case WARMCAL_MSG_BAD_BATCH: kind = WARMCAL__WARN_MSG_BATCH; break;
    case WARMCAL_MSG_BAD_LABEL: kind = WARMCAL__WARN_MSG_LABEL; break;
    case WARMCAL_MSG_BAD_KEY: kind = WARMCAL__WARN_MSG_KEY; break;
    default: kind = WARMCAL__WARN_MSG_SYNTAX; break;
    }
    char q[QUOTE_LEN];
    quote(q, sizeof q, text, len);
    warmcal__inject_warn_once(kind, "NVTX range \"%s\" is not a phase: %s", q,
                              warmcal_phase_message_error(result));
}

/* Cheap test before any strlen: does the message start with the word? */
static int starts_with_word(const char *s)
{
    return strncmp(s, "warmcal", 7) == 0 && (s[7] == ' ' || s[7] == '\0');
}

/* Parse an ASCII (UTF-8) message; warns once per kind when malformed. */
static int classify_a(const char *s, warmcal_phase_message *m)
{
    if (!s || !starts_with_word(s))
        return WARMCAL_MSG_NOT_OURS;
    size_t len = strlen(s);
    int r = warmcal_phase_message_parse(s, len, m);
    if (r < 0)
        warn_malformed(r, s, len);
    return r;
}

/* A wide message as UTF-8 into buf (cap bytes, cap >= 8). A code point that
 * is no Unicode scalar, or text beyond the buffer, leaves a 0xFF byte (never
 * valid UTF-8) in its place, so the parser refuses the message rather than
 * reading a different one. Returns the length written. */
static size_t wide_to_utf8(const wchar_t *w, char *buf, size_t cap)
{
    size_t n = 0;
    for (; *w; w++) {
        unsigned long c = (unsigned long)*w;
        unsigned char enc[4];
        size_t k;
        if (c < 0x80)
            enc[0] = (unsigned char)c, k = 1;
        else if (c < 0x800)
            enc[0] = (unsigned char)(0xC0 | (c >> 6)), enc[1] = (unsigned char)(0x80 | (c & 0x3F)),
            k = 2;
        else if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF)
            enc[0] = 0xFF, k = 1;
        else if (c < 0x10000)
            enc[0] = (unsigned char)(0xE0 | (c >> 12)),
            enc[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F)),
            enc[2] = (unsigned char)(0x80 | (c & 0x3F)), k = 3;
        else
            enc[0] = (unsigned char)(0xF0 | (c >> 18)),
            enc[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F)),
            enc[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F)),
            enc[3] = (unsigned char)(0x80 | (c & 0x3F)), k = 4;
        if (n + k > cap - 1) { /* keep one byte for the marker */
            buf[n++] = (char)0xFF;
            break;
        }
        memcpy(buf + n, enc, k);
        n += k;
    }
    return n;
}

/* Longer than any well-formed phase message with a few spaces to spare. */
#define WIDE_BUF 512

static int classify_w(const wchar_t *w, warmcal_phase_message *m)
{
    static const wchar_t word[] = L"warmcal";
    if (!w || wcsncmp(w, word, 7) != 0 || (w[7] != L' ' && w[7] != L'\0'))
        return WARMCAL_MSG_NOT_OURS;
    char buf[WIDE_BUF];
    size_t len = wide_to_utf8(w, buf, sizeof buf);
    int r = warmcal_phase_message_parse(buf, len, m);
    if (r < 0)
        warn_malformed(r, buf, len);
    return r;
}

/* ---- Registered strings ----------------------------------------------- */

/* A registered string is parsed once, when registered: the handle carries
 * the result (and, when malformed, the text for the warning at use). Strings
 * that are not ours share one static handle, so only warmcal messages
 * allocate; registrations live as long as the process, as NVTX allows. */
struct nvtxStringRegistration_st {
    uint32_t magic;
    int result;
    warmcal_phase_message m;
    char text[QUOTE_LEN];
    struct nvtxStringRegistration_st *next;
};

/* Every registration we allocated, so the process's memory stays accounted
 * for (leak checkers) even after the program drops its handles. */
static pthread_mutex_t string_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nvtxStringRegistration_st *strings; /* under string_lock; never freed */

static struct nvtxStringRegistration_st not_ours_string = {.magic = STRING_MAGIC,
                                                          .result = WARMCAL_MSG_NOT_OURS};

static nvtxStringHandle_t string_register(const char *s, size_t len)
{
    warmcal_phase_message m;
    int r = warmcal_phase_message_parse(s, len, &m);
    if (r == WARMCAL_MSG_NOT_OURS)
        return &not_ours_string;
    struct nvtxStringRegistration_st *h = calloc(1, sizeof *h);
    if (!h)
        return &not_ours_string; /* out of memory: this phase is missed, the server runs on */
    h->magic = STRING_MAGIC;
    h->result = r;
    if (r == WARMCAL_MSG_PHASE)
        h->m = m;
    quote(h->text, sizeof h->text, s, len);
    pthread_mutex_lock(&string_lock);
    h->next = strings;
    strings = h;
    pthread_mutex_unlock(&string_lock);
    return h;
}

static int classify_registered(nvtxStringHandle_t h, warmcal_phase_message *m)
{
    if (!h || h->magic != STRING_MAGIC || h->result == WARMCAL_MSG_NOT_OURS)
        return WARMCAL_MSG_NOT_OURS;
    if (h->result < 0) {
        warn_malformed(h->result, h->text, strlen(h->text));
        return h->result;
    }
    *m = h->m;
    return WARMCAL_MSG_PHASE;
}

/* The message of an event attribute structure: checked against its own
 * size before any field is read. */
static int classify_ex(const nvtxEventAttributes_t *a, warmcal_phase_message *m)
{
    if (!a || a->version < 1 ||
        a->size < offsetof(nvtxEventAttributes_t, message) + sizeof a->message)
        return WARMCAL_MSG_NOT_OURS;
    switch (a->messageType) {
    case NVTX_MESSAGE_TYPE_ASCII: return classify_a(a->message.ascii, m);
    case NVTX_MESSAGE_TYPE_UNICODE: return classify_w(a->message.unicode, m);
    case NVTX_MESSAGE_TYPE_REGISTERED: return classify_registered(a->message.registered, m);
    default: return WARMCAL_MSG_NOT_OURS;
    }
}

/* ---- Phases from ranges ----------------------------------------------- */

/* Open a phase for a range with a phase message; the token, or 0. */
static uint64_t open_phase(const warmcal_phase_message *m)
{
    uint64_t token = 0;
    warmcal__open_phase held = {.label = ""};
    int rc = warmcal__phase_open(m->label, m->tokens, m->batch, &token, &held);
    if (rc == WARMCAL__PHASE_NESTED)
        warmcal__inject_warn_once(WARMCAL__WARN_NESTED,
                                  "NVTX phase range (tokens=%llu batch=%u label=%s) ignored: another "
                                  "phase is open (opened by %s at tokens=%llu batch=%u label=%s); phases "
                                  "do not nest, and a phase whose range was never closed (an exception "
                                  "between its push and pop) blocks all later ones",
                                  (unsigned long long)m->tokens, m->batch, m->label,
                                  held.by_api ? "warmcal_phase_begin" : "an NVTX range",
                                  (unsigned long long)held.tokens, held.batch, held.label);
    return rc == 0 ? token : 0;
}

/* Push/pop: only one phase is open in the process, so a thread needs no
 * stack of "was this a phase?" flags — only each domain's level and where
 * its own phase push sits, if any. That is exact at any depth. */
typedef struct {
    int32_t level[DOMAIN_SLOTS]; /* ranges open per domain */
    uint64_t phase_token;        /* the phase this thread's push opened, or 0 */
    unsigned phase_slot;         /* its domain */
    int32_t phase_level;         /* its level: the pop back to this level closes it */
} thread_ranges;

static _Thread_local thread_ranges ranges;

static int push(unsigned slot, int result, const warmcal_phase_message *m)
{
    thread_ranges *t = &ranges;
    int32_t level = t->level[slot];
    if (level == INT32_MAX)
        return -1; /* a runaway push loop: refuse rather than wrap */
    if (result == WARMCAL_MSG_PHASE) {
        /* while any phase is open (this thread's too) this warns and opens nothing */
        uint64_t token = open_phase(m);
        if (token) {
            t->phase_token = token;
            t->phase_slot = slot;
            t->phase_level = level;
        }
    }
    t->level[slot] = level + 1;
    return level;
}

static int pop(unsigned slot)
{
    thread_ranges *t = &ranges;
    if (t->level[slot] == 0)
        return -1; /* a pop without its push */
    int32_t level = --t->level[slot];
    if (t->phase_token && t->phase_slot == slot && t->phase_level == level) {
        uint64_t token = t->phase_token;
        t->phase_token = 0;
        (void)warmcal__phase_close(token);
    }
    return level;
}

static int push_a(const char *message)
{
    warmcal_phase_message m;
    return push(0, classify_a(message, &m), &m);
}

static int push_w(const wchar_t *message)
{
    warmcal_phase_message m;
    return push(0, classify_w(message, &m), &m);
}

static int push_ex(const nvtxEventAttributes_t *attr)
{
    warmcal_phase_message m;
    return push(0, classify_ex(attr, &m), &m);
}

static int pop_global(void)
{
    return pop(0);
}

static int domain_push_ex(nvtxDomainHandle_t d, const nvtxEventAttributes_t *attr)
{
    warmcal_phase_message m;
    return push(domain_slot(d), classify_ex(attr, &m), &m);
}

static int domain_pop(nvtxDomainHandle_t d)
{
    return pop(domain_slot(d));
}

/* Start/end: ids are ours (never 0, which NVTX returns when no tool is
 * attached) and unique in the process; end may come from any thread. The
 * phase's range id is published after its token, so an end that sees the
 * id sees the token. */
static _Atomic uint64_t next_range_id = 1;
static _Atomic uint64_t phase_range_id;
static _Atomic uint64_t phase_range_token;

static nvtxRangeId_t start(int result, const warmcal_phase_message *m)
{
    nvtxRangeId_t id = atomic_fetch_add_explicit(&next_range_id, 1, memory_order_relaxed);
    if (result == WARMCAL_MSG_PHASE) {
        uint64_t token = open_phase(m);
        if (token) {
            atomic_store(&phase_range_token, token);
            atomic_store(&phase_range_id, id);
        }
    }
    return id;
}

static void end(nvtxRangeId_t id)
{
    uint64_t expected = id;
    if (id && atomic_load_explicit(&phase_range_id, memory_order_relaxed) == id &&
        atomic_compare_exchange_strong(&phase_range_id, &expected, 0))
        (void)warmcal__phase_close(atomic_load(&phase_range_token));
}

static nvtxRangeId_t start_a(const char *message)
{
    warmcal_phase_message m;
    return start(classify_a(message, &m), &m);
}

static nvtxRangeId_t start_w(const wchar_t *message)
{
    warmcal_phase_message m;
    return start(classify_w(message, &m), &m);
}

static nvtxRangeId_t start_ex(const nvtxEventAttributes_t *attr)
{
    warmcal_phase_message m;
    return start(classify_ex(attr, &m), &m);
}

static nvtxRangeId_t domain_start_ex(nvtxDomainHandle_t d, const nvtxEventAttributes_t *attr)
{
    (void)d; /* ids are unique across domains */
    warmcal_phase_message m;
    return start(classify_ex(attr, &m), &m);
}

static void domain_end(nvtxDomainHandle_t d, nvtxRangeId_t id)
{
    (void)d;
    end(id);
}

/* ---- Domain and string registration ------------------------------------ */

static nvtxDomainHandle_t domain_create_a(const char *name)
{
    return name ? domain_create(name, strlen(name)) : NULL;
}

static nvtxDomainHandle_t domain_create_w(const wchar_t *name)
{
    char buf[WIDE_BUF];
    return name ? domain_create(buf, wide_to_utf8(name, buf, sizeof buf)) : NULL;
}

static nvtxStringHandle_t register_string_a(nvtxDomainHandle_t d, const char *s)
{
    (void)d; /* a handle is valid in every domain: it carries its own result */
    return s ? string_register(s, strlen(s)) : &not_ours_string;
}

static nvtxStringHandle_t register_string_w(nvtxDomainHandle_t d, const wchar_t *s)
{
    (void)d;
    char buf[WIDE_BUF];
    return s ? string_register(buf, wide_to_utf8(s, buf, sizeof buf)) : &not_ours_string;
}

/* The child of a fork: a parent thread may have held either lock. The
 * registries themselves stay valid (they only ever grow). */
void warmcal__nvtx_after_fork_child(void)
{
    pthread_mutex_init(&domain_lock, NULL);
    pthread_mutex_init(&string_lock, NULL);
}

/* ---- Attaching to an NVTX instance -------------------------------------- */

/* Put fn into slot id of a module's table, if that NVTX has the slot. */
static int fill(NvtxFunctionTable table, unsigned size, unsigned id, NvtxFunctionPointer fn)
{
    if (!table || id >= size || !table[id])
        return 0;
    *table[id] = fn;
    return 1;
}

#define FN(f) ((NvtxFunctionPointer)(f))

/* Called by every NVTX instance in the process (each library that compiled
 * NVTX's headers in has its own), on its first NVTX call. Returns 1 when
 * attached; 0 tells that instance to make every call a no-op. Slots we do
 * not fill (marks, names, resources, ...) stay no-ops. */
WARMCAL_API int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t getExportTable);
int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t getExportTable)
{
    if (!getExportTable)
        return 0;
    const NvtxExportTableCallbacks *cb = getExportTable(NVTX_ETID_CALLBACKS);
    if (!cb || cb->struct_size < offsetof(NvtxExportTableCallbacks, GetModuleFunctionTable) +
                                     sizeof cb->GetModuleFunctionTable ||
        !cb->GetModuleFunctionTable)
        return 0;
    const NvtxExportTableVersionInfo *vi = getExportTable(NVTX_ETID_VERSIONINFO);
    if (vi && vi->struct_size >= offsetof(NvtxExportTableVersionInfo, SetInjectionNvtxVersion) +
                                     sizeof vi->SetInjectionNvtxVersion &&
        vi->SetInjectionNvtxVersion)
        vi->SetInjectionNvtxVersion(NVTX_VERSION);

    int filled = 0;
    NvtxFunctionTable t = NULL;
    unsigned size = 0;
    if (cb->GetModuleFunctionTable(NVTX_CB_MODULE_CORE, &t, &size)) {
        filled += fill(t, size, NVTX_CBID_CORE_RangePushA, FN(push_a));
        filled += fill(t, size, NVTX_CBID_CORE_RangePushW, FN(push_w));
        filled += fill(t, size, NVTX_CBID_CORE_RangePushEx, FN(push_ex));
        filled += fill(t, size, NVTX_CBID_CORE_RangePop, FN(pop_global));
        filled += fill(t, size, NVTX_CBID_CORE_RangeStartA, FN(start_a));
        filled += fill(t, size, NVTX_CBID_CORE_RangeStartW, FN(start_w));
        filled += fill(t, size, NVTX_CBID_CORE_RangeStartEx, FN(start_ex));
        filled += fill(t, size, NVTX_CBID_CORE_RangeEnd, FN(end));
    }
    t = NULL;
    size = 0;
    if (cb->GetModuleFunctionTable(NVTX_CB_MODULE_CORE2, &t, &size)) {
        filled += fill(t, size, NVTX_CBID_CORE2_DomainRangePushEx, FN(domain_push_ex));
        filled += fill(t, size, NVTX_CBID_CORE2_DomainRangePop, FN(domain_pop));
        filled += fill(t, size, NVTX_CBID_CORE2_DomainRangeStartEx, FN(domain_start_ex));
        filled += fill(t, size, NVTX_CBID_CORE2_DomainRangeEnd, FN(domain_end));
        filled += fill(t, size, NVTX_CBID_CORE2_DomainCreateA, FN(domain_create_a));
        filled += fill(t, size, NVTX_CBID_CORE2_DomainCreateW, FN(domain_create_w));
        filled += fill(t, size, NVTX_CBID_CORE2_DomainRegisterStringA, FN(register_string_a));
        filled += fill(t, size, NVTX_CBID_CORE2_DomainRegisterStringW, FN(register_string_w));
    }
    return filled > 0;
}

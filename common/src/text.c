/* Text checks (see warmcal/text.h): the one UTF-8 rule the trace reader,
 * the trace writer and the table share, so a name one accepts the others
 * accept too. */
#include "warmcal/text.h"

int warmcal_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned lead = *p, cp;
        int more;
        if (lead < 0x80) {
            p++;
            continue;
        }
        if (lead >= 0xC2 && lead <= 0xDF)
            more = 1, cp = lead & 0x1F;
        else if (lead >= 0xE0 && lead <= 0xEF)
            more = 2, cp = lead & 0x0F;
        else if (lead >= 0xF0 && lead <= 0xF4)
            more = 3, cp = lead & 0x07;
        else
            return 0; /* a continuation byte, or a lead that only overlong or too-large forms use */
        for (int k = 1; k <= more; k++) {
            if ((p[k] & 0xC0) != 0x80) /* also stops at the NUL */
                return 0;
            cp = (cp << 6) | (p[k] & 0x3F);
        }
        if ((more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        p += more + 1;
    }
    return 1;
}

/*
 * libFuzzer harness for text.c. text_sanitize() output must be valid UTF-8
 * by an independent strict validator, hold no C0 but TAB, no DEL and no C1,
 * fit TEXT_SANITIZED_MAX(n), and be a fixed point (sanitising it again
 * changes nothing). Input that is already valid UTF-8 without controls
 * passes unchanged; valid UTF-8 with controls loses exactly the controls.
 * The name rules ride along: text_is_name() agrees with a plain restatement,
 * and text_name_eq()/text_name_hash() agree with ASCII case folding.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* No control code point (the input is valid UTF-8). */
static bool
has_no_control(const uint8_t *p, size_t n)
{
    size_t len;

    for (size_t i = 0; i < n; i += len)
        if (fuzz_is_control(fuzz_utf8_decode(p + i, &len)))
            return false;
    return true;
}

/* Valid UTF-8 with its control code points removed. */
static size_t
drop_controls(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t len, w = 0;

    for (size_t i = 0; i < n; i += len) {
        uint32_t cp = fuzz_utf8_decode(p + i, &len);

        if (!fuzz_is_control(cp)) {
            memcpy(out + w, p + i, len);
            w += len;
        }
    }
    return w;
}

static void
check_names(const uint8_t *data, size_t size)
{
    char a[TEXT_NAME_MAX + 2], b[TEXT_NAME_MAX + 2];
    size_t n = size < TEXT_NAME_MAX + 1 ? size : TEXT_NAME_MAX + 1;
    bool want = n >= 1 && n <= TEXT_NAME_MAX;

    for (size_t i = 0; i < n; i++) {
        uint8_t c = data[i];

        want = want && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '-');
    }
    FUZZ_CHECK(text_is_name((const char *)data, n) == want);
    if (!want)
        return;
    /* a name and its case-flipped copy are the same name, with one hash */
    memcpy(a, data, n);
    a[n] = '\0';
    for (size_t i = 0; i <= n; i++) {
        char c = a[i];

        b[i] = (c >= 'a' && c <= 'z')   ? (char)(c - 32)
               : (c >= 'A' && c <= 'Z') ? (char)(c + 32)
                                        : c;
    }
    FUZZ_CHECK(text_name_eq(a, b) && text_name_eq(b, a));
    FUZZ_CHECK(text_name_hash(a) == text_name_hash(b));
    b[n - 1] = b[n - 1] == '_' ? '-' : '_';
    FUZZ_CHECK(!text_name_eq(a, b));
    b[n - 1] = '\0';
    FUZZ_CHECK(!text_name_eq(a, b) && !text_name_eq(b, a));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = malloc(TEXT_SANITIZED_MAX(size) + 1);
    char *again = malloc(TEXT_SANITIZED_MAX(TEXT_SANITIZED_MAX(size)) + 1);
    uint8_t *plain = malloc(size + 1);
    size_t n, m, k;

    FUZZ_CHECK(out != NULL && again != NULL && plain != NULL);
    n = text_sanitize(data, size, out);
    FUZZ_CHECK(n <= TEXT_SANITIZED_MAX(size));
    FUZZ_CHECK(fuzz_utf8_valid((const uint8_t *)out, n));
    FUZZ_CHECK(has_no_control((const uint8_t *)out, n));
    m = text_sanitize((const uint8_t *)out, n, again);
    FUZZ_CHECK(m == n && memcmp(again, out, n) == 0);
    if (fuzz_utf8_valid(data, size)) {
        k = drop_controls(data, size, plain);
        FUZZ_CHECK(n == k && memcmp(out, plain, k) == 0);
        if (k == size)
            FUZZ_CHECK(has_no_control(data, size));
    } else {
        /* something was replaced: U+FFFD must appear */
        FUZZ_CHECK(memmem(out, n, "\xEF\xBF\xBD", 3) != NULL);
    }
    check_names(data, size);
    free(out);
    free(again);
    free(plain);
    return 0;
}

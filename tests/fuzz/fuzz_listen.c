/*
 * libFuzzer harness for cfg_parse_listen(). The input up to its first NUL
 * is the "[ADDR:]PORT" spec. On success the host is NUL-terminated, holds
 * no brackets, and is either a host name of letters, digits, '.' and '-'
 * or an IPv6 address (with an optional zone); the port is canonical decimal
 * 0..65535; a spec without ':' gives the empty host; and printing the result
 * back as a spec ("host:port" or "[host]:port") parses to the same thing.
 * On failure err is one printable line starting with the quoted spec.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
hostname_ok(const char *h)
{
    for (; *h != '\0'; h++)
        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') ||
              *h == '.' || *h == '-'))
            return false;
    return true;
}

static bool
ipv6_ok(const char *h)
{
    char addr[CFG_HOST_MAX];
    struct in6_addr a6;
    size_t n = strcspn(h, "%");

    memcpy(addr, h, n);
    addr[n] = '\0';
    return inet_pton(AF_INET6, addr, &a6) == 1 && (h[n] == '\0' || h[n + 1] != '\0');
}

static void
check_ok(const char *spec, const struct cfg_listen *l)
{
    struct cfg_listen again;
    char re[CFG_HOST_MAX + 16], err[512];
    size_t n = strnlen(l->host, CFG_HOST_MAX);

    FUZZ_CHECK(n < CFG_HOST_MAX);
    FUZZ_CHECK(strchr(l->host, '[') == NULL && strchr(l->host, ']') == NULL);
    FUZZ_CHECK(fuzz_port_ok(l->port));
    if (strchr(l->host, ':') != NULL)
        FUZZ_CHECK(ipv6_ok(l->host));
    else
        FUZZ_CHECK(hostname_ok(l->host));
    if (strchr(spec, ':') == NULL)
        FUZZ_CHECK(l->host[0] == '\0');
    if (strchr(l->host, ':') != NULL)
        snprintf(re, sizeof re, "[%s]:%s", l->host, l->port);
    else
        snprintf(re, sizeof re, "%s:%s", l->host, l->port);
    FUZZ_CHECK(cfg_parse_listen(re, &again, err, sizeof err) == 0);
    FUZZ_CHECK(strcmp(again.host, l->host) == 0 && strcmp(again.port, l->port) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *spec = malloc(size + 1), err[512], tiny[4];
    struct cfg_listen l, l2;
    int rc;

    FUZZ_CHECK(spec != NULL);
    memcpy(spec, data, size);
    spec[size] = '\0';
    memset(err, 'x', sizeof err);
    rc = cfg_parse_listen(spec, &l, err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL);
    if (rc == 0) {
        check_ok(spec, &l);
    } else {
        size_t n = strnlen(err, sizeof err);

        FUZZ_CHECK(n > 0 && n < sizeof err && err[0] == '"');
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK((uint8_t)err[i] >= 0x20 && (uint8_t)err[i] != 0x7F);
    }
    /* the answer does not depend on the room for the message */
    FUZZ_CHECK(cfg_parse_listen(spec, &l2, tiny, sizeof tiny) == rc);
    FUZZ_CHECK(cfg_parse_listen(spec, &l2, NULL, 0) == rc);
    if (rc == 0)
        FUZZ_CHECK(memcmp(&l, &l2, sizeof l) == 0);
    free(spec);
    return 0;
}

/*
 * echo: RFC 862 ("any data received is sent back") on the client layer. It
 * keeps no state of its own: the client's output queue is the only buffer,
 * and nothing is ever added to the stream, not even on shutdown or timeout.
 * It sees client.h only.
 */
#include "echo.h"

/*
 * Send every byte back (RFC 862). If the peer stops reading and its queue
 * reaches --max-output, stop reading from it too: its bytes then wait in the
 * kernel, the receive window closes and TCP slows the sender down. Nothing
 * is dropped. echo_drain() resumes once half of the queue has gone out.
 */
static int
echo_read(struct client *c, const uint8_t *data, size_t len)
{
    int rc;

    if ((rc = client_write(c, data, len)) < 0)
        return rc; /* the client layer closes it and logs why */
    if (client_output_full(c))
        client_pause_read(c);
    return 0;
}

static void
echo_drain(struct client *c)
{
    client_resume_read(c);
}

/*
 * Half-close: the peer has sent all it will. What it is still owed is in the
 * output queue; client_finish() sends it, then our FIN, then closes.
 */
static void
echo_eof(struct client *c)
{
    client_finish(c, CLIENT_WHY_BYE);
}

const struct client_ops echo_ops = {
    .name = "echo",
    .read = echo_read,
    .eof = echo_eof,
    .drain = echo_drain,
};
